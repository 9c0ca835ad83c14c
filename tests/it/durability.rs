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
