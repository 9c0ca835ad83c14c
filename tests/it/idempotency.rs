//! The Idempotency-Key header on POST /v1/verifications.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn create_with_key(app: &TestApp, api_key: &str, key: &str, body: &Value) -> Reply {
    send(
        app.request_as(api_key, Method::POST, "/v1/verifications")
            .header("Idempotency-Key", key)
            .json(body),
    )
    .await
}

/// Waits until a marker verification issued now has been delivered, then counts messages for `id`.
async fn messages_after_a_marker(app: &TestApp, id: &str, marker_to: &str) -> usize {
    let marker = app.create_sms(marker_to).await;
    app.messages_for(marker["id"].as_str().unwrap(), 1).await;
    outbox_messages(app.store_dir(), id).len()
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response_and_sends_nothing() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    let first = create_with_key(&app, &app.api_key, "idem-1", &body).await;
    first.expect_status(201);
    let id = first.str("id").to_string();
    app.messages_for(&id, 1).await;

    let second = create_with_key(&app, &app.api_key, "idem-1", &body).await;
    let third = create_with_key(&app, &app.api_key, "idem-1", &body).await;

    second.expect_status(201);
    assert_eq!(
        second.body, first.body,
        "replay differs from the first response"
    );
    assert_eq!(third.body, first.body);
    assert_eq!(
        messages_after_a_marker(&app, &id, FR_MOBILE).await,
        1,
        "a replay sent another message"
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_idempotency_key_reused() {
    let app = spawn_app().await;
    let first = create_with_key(
        &app,
        &app.api_key,
        "idem-2",
        &json!({"to": DE_MOBILE, "channel": "sms"}),
    )
    .await;
    first.expect_status(201);

    let other_number = create_with_key(
        &app,
        &app.api_key,
        "idem-2",
        &json!({"to": FR_MOBILE, "channel": "sms"}),
    )
    .await;
    let other_option = create_with_key(
        &app,
        &app.api_key,
        "idem-2",
        &json!({"to": DE_MOBILE, "channel": "sms", "code_length": 8}),
    )
    .await;

    other_number.expect_error(422, "idempotency_key_reused");
    other_option.expect_error(422, "idempotency_key_reused");
    let marker = app.create_sms(US_NUMBER).await;
    app.messages_for(marker["id"].as_str().unwrap(), 1).await;
    let to_fr: Vec<_> = read_outbox(app.store_dir())
        .into_iter()
        .filter(|m| m["to"] == FR_MOBILE)
        .collect();
    assert!(
        to_fr.is_empty(),
        "a reused key still sent a code: {to_fr:?}"
    );
}

#[tokio::test]
async fn different_keys_are_not_replays() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    create_with_key(&app, &app.api_key, "idem-a", &body)
        .await
        .expect_status(201);

    let second = create_with_key(&app, &app.api_key, "idem-b", &body).await;

    second.expect_error(429, "resend_cooldown");
}

#[tokio::test]
async fn a_failed_create_is_not_remembered() {
    let app = spawn_app().await;
    let invalid = create_with_key(
        &app,
        &app.api_key,
        "idem-3",
        &json!({"to": "+49123", "channel": "sms"}),
    )
    .await;
    invalid.expect_error(422, "invalid_destination");

    let valid = create_with_key(
        &app,
        &app.api_key,
        "idem-3",
        &json!({"to": DE_MOBILE, "channel": "sms"}),
    )
    .await;

    valid.expect_status(201);
}

#[tokio::test]
async fn a_refused_create_is_not_replayed_after_the_cause_is_gone() {
    let app = spawn_app_with(|s| s.verification.resend_cooldown_seconds = 1).await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    let first = app.create(&body).await;
    first.expect_status(201);
    let cooldown = create_with_key(&app, &app.api_key, "idem-4", &body).await;
    cooldown.expect_error(429, "resend_cooldown");
    sleep_until(first.str("resend_available_at")).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let retried = loop {
        let reply = create_with_key(&app, &app.api_key, "idem-4", &body).await;
        if reply.status.as_u16() != 429 || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    retried.expect_status(200);
    assert_eq!(retried.str("id"), first.str("id"));
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_tenant() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    let dev = create_with_key(&app, &app.api_key, "shared-key", &body).await;
    dev.expect_status(201);
    let acme = app.add_tenant("acme");

    let other = create_with_key(&app, &acme, "shared-key", &body).await;

    other.expect_status(201);
    assert_ne!(
        other.str("id"),
        dev.str("id"),
        "tenant acme got dev's response"
    );
}

#[tokio::test]
async fn a_key_past_its_time_is_decided_afresh_though_the_sweep_has_not_come() {
    let app = spawn_app_with(|settings| settings.verification.idempotency_ttl_seconds = 1).await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    let first = create_with_key(&app, &app.api_key, "idem-late", &body).await;
    first.expect_status(201);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    let other = json!({"to": FR_MOBILE, "channel": "sms"});
    let later = create_with_key(&app, &app.api_key, "idem-late", &other).await;
    later.expect_status(201);
    assert_ne!(later.str("id"), first.str("id"), "the old answer replayed");
}
