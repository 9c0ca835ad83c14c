//! Secrets stay out of logs: with RUST_LOG=trace no code and no API key is ever printed.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn post(
    client: &reqwest::Client,
    server: &OtpdProcess,
    key: &str,
    path: &str,
    body: Value,
) -> Reply {
    send(authed(client, Method::POST, server.url(path), key).json(&body)).await
}

#[tokio::test]
async fn trace_logs_never_contain_codes_or_api_keys() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let mut server = OtpdProcess::start(
        store.path(),
        &[
            ("RUST_LOG", "trace"),
            ("OTPD__VERIFICATION__RESEND_COOLDOWN_SECONDS", "1"),
        ],
    );
    let key = wait_for_dev_key(store.path()).await;

    // A: wrong then right, by id.
    let a = post(
        &client,
        &server,
        &key,
        "/v1/verifications",
        json!({"to": DE_MOBILE, "channel": "sms", "code_length": 10}),
    )
    .await;
    a.expect_status(201);
    let a_id = a.str("id").to_string();
    let a_code = message_code(&wait_for_messages(store.path(), &a_id, 1).await[0], 10);
    post(
        &client,
        &server,
        &key,
        &format!("/v1/verifications/{a_id}/check"),
        json!({"code": "1111111111"}),
    )
    .await
    .expect_status(200);
    let ok = post(
        &client,
        &server,
        &key,
        &format!("/v1/verifications/{a_id}/check"),
        json!({"code": a_code}),
    )
    .await;
    assert_eq!(ok.body["valid"], true, "{}", ok.text);

    // B: resend, then the old code, then the new one by destination.
    let b_body = json!({"to": FR_MOBILE, "channel": "sms", "code_length": 8});
    let b = post(&client, &server, &key, "/v1/verifications", b_body.clone()).await;
    b.expect_status(201);
    let b_id = b.str("id").to_string();
    let b_old = message_code(&wait_for_messages(store.path(), &b_id, 1).await[0], 8);
    sleep_until(b.str("resend_available_at")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let resend = post(&client, &server, &key, "/v1/verifications", b_body.clone()).await;
        if resend.status.as_u16() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no resend: {}",
            resend.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let b_new = message_code(&wait_for_messages(store.path(), &b_id, 2).await[1], 8);
    post(
        &client,
        &server,
        &key,
        &format!("/v1/verifications/{b_id}/check"),
        json!({"code": b_old}),
    )
    .await
    .expect_status(200);
    let ok = post(
        &client,
        &server,
        &key,
        "/v1/verifications/check",
        json!({"to": FR_MOBILE, "channel": "sms", "code": b_new}),
    )
    .await;
    assert_eq!(ok.body["valid"], true, "{}", ok.text);

    // C: an email code, left unchecked.
    let c = post(
        &client,
        &server,
        &key,
        "/v1/verifications",
        json!({"to": EMAIL, "channel": "email", "code_length": 10}),
    )
    .await;
    c.expect_status(201);
    let c_code = message_code(
        &wait_for_messages(store.path(), c.str("id"), 1).await[0],
        10,
    );

    let output = server.stop();

    assert!(
        output.contains("TRACE"),
        "RUST_LOG=trace produced no trace lines"
    );
    for code in [&a_code, &b_old, &b_new, &c_code] {
        assert!(
            !contains_code(&output, code),
            "code {code} appears in the logs"
        );
    }
    assert!(!output.contains(&key), "the API key appears in the logs");
}
