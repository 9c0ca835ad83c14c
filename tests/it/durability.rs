//! A SIGKILLed otpd loses nothing it acknowledged: verifications and queued messages survive,
//! fifty kills under steady writes too, on either engine; a store whose state was lost is
//! refused at start.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_verification_survives_kill_9_and_its_code_still_approves() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let mut first = OtpdProcess::start(store.path(), &[]);
    let key = wait_for_dev_key(store.path()).await;
    let created = first.create_sms(&client, &key, DE_MOBILE).await;
    created.expect_status(201);
    let id = created.str("id").to_string();
    let code = message_code(&wait_for_messages(store.path(), &id, 1).await[0], 6);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let wrong = first.check_code(&client, &key, &id, &wrong).await;
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
    let record = second.get_verification(&client, &key, &id).await;
    record.expect_status(200);
    assert_eq!(record.str("status"), "pending");
    assert_eq!(
        record.u64("attempts_remaining"),
        4,
        "the used attempt was lost"
    );
    let check = second.check_code(&client, &key, &id, &code).await;
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
    let created = first.create_sms(&client, &key, DE_MOBILE).await;
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
    let check = second.check_code(&client, &key, &id, &code).await;
    assert_eq!(check.body["valid"], true, "{}", check.text);
}

#[tokio::test]
async fn a_store_opens_with_the_engine_that_made_it_unless_named_and_a_new_one_is_an_lsm_tree() {
    let client = http_client();
    // A store sled made, as every store before `store.engine` was.
    let made_by_sled = tempfile::tempdir().unwrap();
    let mut first = OtpdProcess::start(made_by_sled.path(), &[("OTPD__STORE__ENGINE", "sled")]);
    let key = wait_for_dev_key(made_by_sled.path()).await;
    let created = first.create_sms(&client, &key, DE_MOBILE).await;
    created.expect_status(201);
    let id = created.str("id").to_string();
    first.stop();

    let second = OtpdProcess::start(made_by_sled.path(), &[]);
    second
        .get_verification(&client, &key, &id)
        .await
        .expect_status(200);
    let state = made_by_sled.path().join("state");
    assert!(
        state.join("conf").is_file() && !state.join("journals").exists(),
        "the sled store did not stay sled's"
    );
    assert_says_store_engine(&second, "sled");

    let new = tempfile::tempdir().unwrap();
    let third = OtpdProcess::start(new.path(), &[]);
    let state = new.path().join("state");
    assert!(
        state.join("journals").is_dir() && !state.join("conf").exists(),
        "a new store is not an LSM tree"
    );
    assert_says_store_engine(&third, "lsm");
}

/// That `process` said at start which engine its store opened with, and that no setting named it.
fn assert_says_store_engine(process: &OtpdProcess, engine: &str) {
    let output = process.output();
    let said = output
        .lines()
        .find(|line| line.contains("Opened the store"))
        .unwrap_or_else(|| panic!("otpd did not say which engine its store is on:\n{output}"));
    assert!(
        said.contains(&format!("engine=\"{engine}\"")) && said.contains("named=false"),
        "{said}"
    );
}

/// How a test harms a store of one engine: as if its state were lost, or its files damaged.
struct Harm {
    engine: &'static str,
    /// Leaves the files as the engine would open them as a new, empty store.
    lose_state: fn(&std::path::Path),
    /// Leaves the files as the engine cannot open them.
    damage: fn(&std::path::Path),
}

#[tokio::test]
async fn a_sled_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory() {
    a_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory(Harm {
        engine: "sled",
        // Its log file emptied (as by a truncating copy or a damaged disk): sled alone
        // would open it as a new, empty store.
        lose_state: |state| std::fs::write(state.join("db"), b"").unwrap(),
        damage: |state| std::fs::write(state.join("conf"), [0xffu8; 62]).unwrap(),
    })
    .await;
}

#[tokio::test]
async fn an_lsm_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory() {
    a_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory(Harm {
        engine: "lsm",
        // Its tables and journals gone: the tree alone would start again empty.
        lose_state: |state| {
            for folder in ["partitions", "journals"] {
                std::fs::remove_dir_all(state.join(folder)).unwrap();
            }
            std::fs::remove_file(state.join("version")).unwrap();
        },
        damage: |state| std::fs::write(state.join("version"), [0xffu8; 62]).unwrap(),
    })
    .await;
}

async fn a_store_that_lost_its_state_or_is_damaged_is_refused_at_start_naming_its_directory(
    harm: Harm,
) {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let env = [("OTPD__STORE__ENGINE", harm.engine)];
    let mut first = OtpdProcess::start(store.path(), &env);
    let key = wait_for_dev_key(store.path()).await;
    first
        .create_sms(&client, &key, DE_MOBILE)
        .await
        .expect_status(201);
    first.stop();
    let state = store.path().join("state");
    let keep = tempfile::tempdir().unwrap();
    let saved = keep.path().join("state");
    copy_dir(&state, &saved);

    (harm.lose_state)(&state);
    let (status, output) =
        OtpdProcess::run_to_exit(store.path(), &env, std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "otpd started on an emptied store:\n{output}"
    );
    assert!(output.contains("has lost its state"), "{output}");
    assert!(output.contains(&state.display().to_string()), "{output}");

    // Its settings file damaged: a clear refusal naming the directory, not a crash.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&saved, &state);
    (harm.damage)(&state);
    let (status, output) =
        OtpdProcess::run_to_exit(store.path(), &env, std::time::Duration::from_secs(20));
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
    let again = OtpdProcess::start(store.path(), &env);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9_cycles_under_steady_writes_keep_every_acknowledged_verification_on_sled() {
    fifty_kill_9_cycles_under_steady_writes_keep_every_acknowledged_verification("sled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9_cycles_under_steady_writes_keep_every_acknowledged_verification_on_lsm() {
    fifty_kill_9_cycles_under_steady_writes_keep_every_acknowledged_verification("lsm").await;
}

async fn fifty_kill_9_cycles_under_steady_writes_keep_every_acknowledged_verification(
    engine: &str,
) {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let store = tempfile::tempdir().unwrap();
    let env = [
        ("OTPD__STORE__ENGINE", engine),
        ("OTPD__RATE_LIMITS__TENANT_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__TENANT_BURST", "100000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "100000"),
        // Sequential numbers that are never verified are a pump by design here.
        ("OTPD__FRAUD__MODE", "monitor"),
    ];
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next_number = Arc::new(AtomicU32::new(0));
    let mut reopens = Vec::new();
    let mut first_acks = Vec::new();
    let mut key = None;
    for _ in 0..50 {
        let started = Instant::now();
        let mut server = OtpdProcess::start(store.path(), &env);
        reopens.push(started.elapsed());
        let key = match &key {
            Some(key) => String::clone(key),
            None => key.insert(wait_for_dev_key(store.path()).await).clone(),
        };
        // Four writers create until the kill; only a 201 counts as acknowledged.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (url, key) = (server.url("/v1/verifications"), key.clone());
                let (stop, acknowledged, next_number) =
                    (stop.clone(), acknowledged.clone(), next_number.clone());
                tokio::spawn(async move {
                    let client = http_client();
                    while !stop.load(Ordering::SeqCst) {
                        let n = next_number.fetch_add(1, Ordering::SeqCst);
                        let reply = authed(&client, Method::POST, url.clone(), &key)
                            .json(&json!({"to": format!("+49151{n:08}"), "channel": "sms"}))
                            .send()
                            .await;
                        let Ok(reply) = reply else { break };
                        if reply.status() == 201 {
                            if let Ok(body) = reply.json::<serde_json::Value>().await {
                                let id = body["id"].as_str().unwrap_or_default().to_owned();
                                acknowledged.lock().unwrap().push(id);
                            }
                        }
                    }
                })
            })
            .collect();
        // The kill comes 100-400 ms after this start's first acknowledged create, writes in
        // flight.
        let before = acknowledged.lock().unwrap().len();
        let waiting = Instant::now();
        while acknowledged.lock().unwrap().len() == before {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "no create was acknowledged within 10 s of a restart"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first_acks.push(waiting.elapsed());
        let pause = 100 + rand::random::<u64>() % 300;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.stop();
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            let _ = writer.await;
        }
    }

    let server = OtpdProcess::start(store.path(), &env);
    let key = key.expect("the dev key");
    let client = http_client();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut missing = Vec::new();
    for id in &acknowledged {
        let reply = server.get_verification(&client, &key, id).await;
        if reply.status != 200 {
            missing.push(id.clone());
        }
    }
    let slowest = reopens.iter().max().copied().unwrap_or_default();
    eprintln!(
        "50 kill -9 cycles: {} creates acknowledged, {} missing after the last; slowest start to listening {slowest:?}, to the first create acknowledged {:?}",
        acknowledged.len(),
        missing.len(),
        first_acks.iter().max()
    );
    assert!(
        acknowledged.len() >= 500,
        "only {} creates were acknowledged",
        acknowledged.len()
    );
    assert!(missing.is_empty(), "acknowledged but gone: {missing:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "a restart took {slowest:?}"
    );
}
