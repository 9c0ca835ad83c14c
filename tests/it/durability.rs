//! A SIGKILLed otpd loses nothing it acknowledged: verifications and queued messages survive.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_verification_survives_kill_9_and_its_code_still_approves() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let mut first = OtpdProcess::start(store.path(), &[]);
    let key = wait_for_dev_key(store.path()).await;
    let created = send(
        authed(&client, Method::POST, first.url("/v1/verifications"), &key)
            .json(&json!({"to": DE_MOBILE, "channel": "sms"})),
    )
    .await;
    created.expect_status(201);
    let id = created.str("id").to_string();
    let code = message_code(&wait_for_messages(store.path(), &id, 1).await[0], 6);
    let wrong = send(
        authed(
            &client,
            Method::POST,
            first.url(&format!("/v1/verifications/{id}/check")),
            &key,
        )
        .json(&json!({"code": format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)})),
    )
    .await;
    assert_eq!(wrong.u64("attempts_remaining"), 4);

    first.stop();
    let second = OtpdProcess::start(store.path(), &[]);

    assert_eq!(
        std::fs::read_to_string(store.path().join("dev-api-key"))
            .unwrap()
            .trim(),
        key,
        "a restart must not replace the dev key"
    );
    let record = send(authed(
        &client,
        Method::GET,
        second.url(&format!("/v1/verifications/{id}")),
        &key,
    ))
    .await;
    record.expect_status(200);
    assert_eq!(record.str("status"), "pending");
    assert_eq!(
        record.u64("attempts_remaining"),
        4,
        "the used attempt was lost"
    );
    let check = send(
        authed(
            &client,
            Method::POST,
            second.url(&format!("/v1/verifications/{id}/check")),
            &key,
        )
        .json(&json!({"code": code})),
    )
    .await;
    check.expect_status(200);
    assert_eq!(check.body["valid"], true, "{}", check.text);
    assert_eq!(check.str("status"), "approved");
    assert_eq!(
        outbox_messages(store.path(), &id).len(),
        1,
        "the restart sent the code again"
    );
}

#[tokio::test]
async fn a_queued_message_is_delivered_after_kill_9_and_restart() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let mut first = OtpdProcess::start(store.path(), &[("OTPD__SANDBOX__DELAY_MS", "5000")]);
    let key = wait_for_dev_key(store.path()).await;
    let started = std::time::Instant::now();
    let created = send(
        authed(&client, Method::POST, first.url("/v1/verifications"), &key)
            .json(&json!({"to": DE_MOBILE, "channel": "sms"})),
    )
    .await;
    created.expect_status(201);
    let id = created.str("id").to_string();

    first.stop();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the kill came too late to test the resume: {:?}",
        started.elapsed()
    );
    assert!(
        outbox_messages(store.path(), &id).is_empty(),
        "the message was written despite a 5 s sandbox delay"
    );
    let second = OtpdProcess::start(store.path(), &[("OTPD__SANDBOX__DELAY_MS", "0")]);

    let messages = wait_for_messages(store.path(), &id, 1).await;

    assert_eq!(messages.len(), 1);
    let code = message_code(&messages[0], 6);
    let check = send(
        authed(
            &client,
            Method::POST,
            second.url(&format!("/v1/verifications/{id}/check")),
            &key,
        )
        .json(&json!({"code": code})),
    )
    .await;
    assert_eq!(check.body["valid"], true, "{}", check.text);
}

#[tokio::test]
async fn a_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let mut first = OtpdProcess::start(store.path(), &[]);
    let key = wait_for_dev_key(store.path()).await;
    send(
        authed(&client, Method::POST, first.url("/v1/verifications"), &key)
            .json(&json!({"to": DE_MOBILE, "channel": "sms"})),
    )
    .await
    .expect_status(201);
    first.stop();
    let state = store.path().join("state");
    let keep = tempfile::tempdir().unwrap();
    let saved = keep.path().join("state");
    copy_dir(&state, &saved);

    // Its log file emptied (as by a truncating copy or a damaged disk): sled alone would
    // open it as a new, empty store.
    std::fs::write(state.join("db"), b"").unwrap();
    let (status, output) =
        OtpdProcess::run_to_exit(store.path(), &[], std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "otpd started on an emptied store:\n{output}"
    );
    assert!(output.contains("has lost its state"), "{output}");
    assert!(output.contains(&state.display().to_string()), "{output}");

    // Its settings file damaged: a clear refusal naming the directory, not a crash.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&saved, &state);
    std::fs::write(state.join("conf"), [0xffu8; 62]).unwrap();
    let (status, output) =
        OtpdProcess::run_to_exit(store.path(), &[], std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "otpd started on a damaged store:\n{output}"
    );
    assert!(output.contains(&state.display().to_string()), "{output}");
    assert!(output.contains("may be damaged"), "{output}");
    assert!(!output.contains("panicked"), "{output}");

    // Put back, it opens with what it held.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&saved, &state);
    let again = OtpdProcess::start(store.path(), &[]);
    send(client.get(again.url("/readyz")))
        .await
        .expect_status(200);
}

/// Copies the files of `from` (and its subdirectories) into a new directory `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
