//! The examples in `examples/`, run as a platform would run them, against otpd.

use std::process::{Command, Output};

use crate::amqp::{broker_app, messages_to, wait_for_message_to, BROKER_URL};
use crate::helpers::*;

/// Runs examples/publish_request.py for the dev tenant with `arguments`, on `namespace`.
fn publish_request(python: &std::path::Path, namespace: &str, arguments: &[&str]) -> Output {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/publish_request.py");
    Command::new(python)
        .arg(example)
        .args([
            "--tenant",
            "dev",
            "--namespace",
            namespace,
            "--timeout",
            "15",
        ])
        .args(arguments)
        .env("OTPD_AMQP_URL", BROKER_URL)
        .output()
        .expect("run examples/publish_request.py")
}

/// The outcome the example printed, and its exit code.
fn outcome(output: &Output) -> (serde_json::Value, Option<i32>) {
    let printed = String::from_utf8_lossy(&output.stdout);
    let outcome = serde_json::from_str(printed.trim()).unwrap_or_else(|_| {
        panic!(
            "the example printed no JSON outcome:\n{printed}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (outcome, output.status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_publisher_gets_its_outcome_by_reply_to_and_a_retry_sends_one_code() {
    let (app, broker) = broker_app().await;
    let python = python_tools().join("python");
    let namespace = broker.namespace.clone();
    let to = de_mobile(77);
    let run = |arguments: Vec<String>| {
        let python = python.clone();
        let namespace = namespace.clone();
        tokio::task::spawn_blocking(move || {
            let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
            outcome(&publish_request(&python, &namespace, &arguments))
        })
    };
    let first = vec![
        "--to".to_owned(),
        to.clone(),
        "--request-id".to_owned(),
        "r-ex-1".to_owned(),
    ];

    let (created, exit) = run(first.clone()).await.unwrap();
    assert_eq!(exit, Some(0), "{created}");
    assert_eq!(created["type"], "verification.created");
    assert_eq!(created["request_id"], "r-ex-1");
    let id = created["id"].as_str().expect("an id").to_owned();
    let message = wait_for_message_to(&app, &to).await;

    // The same request_id again (a retry after a timeout): the same verification, no
    // second code.
    let (again, exit) = run(first).await.unwrap();
    assert_eq!(exit, Some(0), "{again}");
    assert_eq!(again["id"], id.as_str());

    // Another request for the same number within the cooldown: refused, with a reason.
    let (refused, exit) = run(vec!["--to".to_owned(), to.clone()]).await.unwrap();
    assert_eq!(exit, Some(1), "{refused}");
    assert_eq!(refused["type"], "verification.rejected");
    assert_eq!(refused["error"]["code"], "resend_cooldown");

    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(messages_to(&app, &to).len(), 1, "one code was sent");
    let code = message_code(&message, 6);
    for printed in [&created, &again, &refused] {
        assert!(
            !printed.to_string().contains(&code),
            "an outcome holds the code"
        );
    }
    drop(app);
    broker.clean_up().await;
}
