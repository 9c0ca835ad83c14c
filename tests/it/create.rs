//! POST /v1/verifications: what a successful issue returns and what reaches the phone.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sms_create_returns_201_with_a_pending_masked_record() {
    let app = spawn_app().await;

    let reply = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    reply.expect_status(201);
    assert!(reply.str("id").starts_with("ver_"), "id: {}", reply.text);
    assert_eq!(reply.str("status"), "pending");
    assert_eq!(reply.str("channel"), "sms");
    assert_eq!(reply.str("to"), DE_MOBILE_MASKED);
    assert_eq!(reply.u64("attempts_remaining"), 5);
    assert!(
        !reply.text.contains(DE_MOBILE),
        "full number leaked: {}",
        reply.text
    );
}

#[tokio::test]
async fn create_sends_a_six_digit_code_to_the_sandbox_outbox() {
    let app = spawn_app().await;
    let created = app.create_sms(DE_MOBILE).await;
    let id = created["id"].as_str().unwrap();

    let messages = app.messages_for(id, 1).await;

    assert_eq!(messages.len(), 1, "one message per issue: {messages:?}");
    let message = &messages[0];
    assert_eq!(message["to"], DE_MOBILE);
    assert_eq!(message["channel"], "sms");
    let code = message_code(message, 6);
    assert!(
        !created.to_string().contains(&code),
        "the create response must not carry the code"
    );
}

#[tokio::test]
async fn numbers_of_other_countries_are_accepted_and_masked() {
    let app = spawn_app().await;

    let fr = app.create_sms(FR_MOBILE).await;
    let us = app.create_sms(US_NUMBER).await;

    assert_eq!(fr["to"], FR_MOBILE_MASKED);
    assert_eq!(us["to"], US_NUMBER_MASKED);
    assert_ne!(fr["id"], us["id"]);
}

#[tokio::test]
async fn code_length_is_honoured_at_both_ends_of_its_range() {
    let app = spawn_app().await;

    for (n, len) in [(1, 4usize), (2, 10), (3, 8)] {
        let reply = app
            .create(&json!({"to": de_mobile(n), "channel": "sms", "code_length": len}))
            .await;
        reply.expect_status(201);
        let id = reply.str("id");
        let code = app.code_for_len(id, len).await;
        assert_eq!(code.len(), len);
        app.check_code(id, &code).await.expect_status(200);
    }
}

#[tokio::test]
async fn expiry_and_resend_times_follow_ttl_and_cooldown() {
    let app = spawn_app().await;

    let default_ttl = app.create_sms(&de_mobile(1)).await;
    let short_ttl = app
        .create(&json!({"to": de_mobile(2), "channel": "sms", "ttl_seconds": 60}))
        .await;
    short_ttl.expect_status(201);

    let expires = seconds_from_now(default_ttl["expires_at"].as_str().unwrap());
    assert!(
        (295.0..=301.0).contains(&expires),
        "default ttl: expires in {expires} s"
    );
    let expires = seconds_from_now(short_ttl.str("expires_at"));
    assert!(
        (55.0..=61.0).contains(&expires),
        "ttl 60: expires in {expires} s"
    );
    let resend = seconds_from_now(short_ttl.str("resend_available_at"));
    assert!(
        (25.0..=31.0).contains(&resend),
        "cooldown 30: resend in {resend} s"
    );
}

#[tokio::test]
async fn email_channel_is_accepted_masked_and_delivered() {
    let app = spawn_app().await;

    let reply = app.create(&json!({"to": EMAIL, "channel": "email"})).await;

    reply.expect_status(201);
    assert_eq!(reply.str("channel"), "email");
    let to = reply.str("to");
    assert_ne!(to, EMAIL, "the address must be masked in responses");
    assert!(to.contains('*'), "masked address expected, got {to:?}");
    let id = reply.str("id");
    let messages = app.messages_for(id, 1).await;
    assert_eq!(messages[0]["to"], EMAIL);
    assert_eq!(messages[0]["channel"], "email");
    let code = message_code(&messages[0], 6);
    app.check_code(id, &code).await.expect_status(200);
}

#[tokio::test]
async fn optional_fields_are_accepted() {
    let app = spawn_app().await;

    let reply = app
        .create(&json!({
            "to": DE_MOBILE, "channel": "sms", "locale": "de", "template": "login",
            "session_id": "s-123", "code_length": 6, "ttl_seconds": 300
        }))
        .await;

    reply.expect_status(201);
    assert_eq!(reply.str("status"), "pending");
    let id = reply.str("id");
    app.code_for(id).await;
}

#[tokio::test]
async fn different_destinations_and_channels_get_separate_verifications() {
    let app = spawn_app().await;

    let first = app.create_sms(&de_mobile(1)).await;
    let second = app.create_sms(&de_mobile(2)).await;
    let email = app.create(&json!({"to": EMAIL, "channel": "email"})).await;

    email.expect_status(201);
    assert_ne!(first["id"], second["id"]);
    assert_ne!(first["id"], email.body["id"]);
}

#[tokio::test]
async fn the_sandbox_outbox_is_readable_by_otpd_s_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    app.code_for(&id).await;
    let mode = std::fs::metadata(outbox_path(app.store_dir()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
