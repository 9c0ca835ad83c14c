//! POST /v1/verifications/{id}/check and /v1/verifications/check: attempts, sessions, outcomes.

use serde_json::json;

use crate::helpers::*;

async fn issued(app: &TestApp, to: &str) -> (String, String) {
    let id = app.sms_id(to).await;
    let code = app.code_for(&id).await;
    (id, code)
}

/// A six-digit code that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn the_right_code_approves_and_uses_one_attempt() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;

    let reply = app.check_code(&id, &code).await;

    reply.expect_status(200);
    assert_eq!(reply.str("id"), id);
    assert_eq!(reply.body["valid"], true);
    assert_eq!(reply.str("status"), "approved");
    assert_eq!(reply.u64("attempts_remaining"), 4);
}

#[tokio::test]
async fn a_code_is_accepted_only_once() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;
    app.check_code(&id, &code).await.expect_status(200);

    let again = app.check_code(&id, &code).await;

    again.expect_error(409, "already_approved");
    let wrong_after = app.check_code(&id, &wrong(&code)).await;
    wrong_after.expect_error(409, "already_approved");
}

#[tokio::test]
async fn a_wrong_code_is_valid_false_and_uses_an_attempt() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;

    let reply = app.check_code(&id, &wrong(&code)).await;

    reply.expect_status(200);
    assert_eq!(reply.body["valid"], false);
    assert_eq!(reply.str("status"), "pending");
    assert_eq!(reply.u64("attempts_remaining"), 4);
    let right = app.check_code(&id, &code).await;
    right.expect_status(200);
    assert_eq!(right.body["valid"], true);
    assert_eq!(right.u64("attempts_remaining"), 3);
}

#[tokio::test]
async fn the_last_failed_attempt_sets_max_attempts_reached() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;

    for remaining in (0..5u64).rev() {
        let reply = app.check_code(&id, &wrong(&code)).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], false);
        assert_eq!(reply.u64("attempts_remaining"), remaining);
        let status = if remaining == 0 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!(
            reply.str("status"),
            status,
            "after a failure with {remaining} left"
        );
    }

    app.check_code(&id, &code)
        .await
        .expect_error(409, "max_attempts_reached");
    let record = app.get(&id).await;
    assert_eq!(record.str("status"), "max_attempts_reached");
    assert_eq!(record.u64("attempts_remaining"), 0);
}

#[tokio::test]
async fn max_attempts_follows_the_setting() {
    let app = spawn_app_with(|s| s.verification.max_attempts = 3).await;
    let created = app.create_sms(DE_MOBILE).await;
    assert_eq!(created["attempts_remaining"], 3);
    let id = created["id"].as_str().unwrap();
    let code = app.code_for(id).await;

    for _ in 0..3 {
        app.check_code(id, &wrong(&code)).await.expect_status(200);
    }

    app.check_code(id, &code)
        .await
        .expect_error(409, "max_attempts_reached");
}

#[tokio::test]
async fn malformed_codes_are_400_and_use_no_attempt() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;
    let bodies = [
        json!({}),
        json!({"code": null}),
        json!({"code": 123456}),
        json!({"code": "12a456"}),
        json!({"code": " 123456"}),
        json!({"code": "123"}),
        json!({"code": "12345678901"}),
        json!({"code": ""}),
    ];

    for body in bodies {
        let reply = app.check(&id, &body).await;
        assert_eq!(reply.status.as_u16(), 400, "{body}: {}", reply.text);
        reply.expect_error(400, "invalid_request");
    }

    let record = app.get(&id).await;
    assert_eq!(
        record.u64("attempts_remaining"),
        5,
        "malformed codes used attempts"
    );
    let right = app.check_code(&id, &code).await;
    assert_eq!(right.body["valid"], true, "{}", right.text);
    assert_eq!(right.u64("attempts_remaining"), 4);
}

#[tokio::test]
async fn the_session_id_must_match() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "session_id": "s-123"}))
        .await;
    created.expect_status(201);
    let id = created.str("id");
    let code = app.code_for(id).await;

    let missing = app.check(id, &json!({"code": code})).await;
    let other = app
        .check(id, &json!({"code": code, "session_id": "s-999"}))
        .await;
    let right = app
        .check(id, &json!({"code": code, "session_id": "s-123"}))
        .await;

    for (what, reply) in [
        ("missing session_id", &missing),
        ("other session_id", &other),
    ] {
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], false, "{what}: {}", reply.text);
        assert_eq!(reply.str("status"), "pending", "{what}");
    }
    assert_eq!(missing.u64("attempts_remaining"), 4);
    assert_eq!(other.u64("attempts_remaining"), 3);
    right.expect_status(200);
    assert_eq!(right.body["valid"], true, "{}", right.text);
    assert_eq!(right.str("status"), "approved");
    assert_eq!(right.u64("attempts_remaining"), 2);
}

#[tokio::test]
async fn amount_and_payee_must_match_when_the_create_gave_them() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "amount": "10.00 EUR", "payee": "Acme"}))
        .await;
    created.expect_status(201);
    let id = created.str("id");
    let code = app.code_for(id).await;

    for (what, body) in [
        ("no transaction", json!({"code": code})),
        (
            "other amount",
            json!({"code": code, "amount": "1000 EUR", "payee": "Acme"}),
        ),
        ("no payee", json!({"code": code, "amount": "10.00 EUR"})),
    ] {
        let reply = app.check(id, &body).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], false, "{what}: {}", reply.text);
    }
    let bad = app.check(id, &json!({"code": code, "amount": ""})).await;
    bad.expect_error(400, "invalid_request");
    let right = app
        .check(
            id,
            &json!({"code": code, "amount": "10.00 EUR", "payee": "Acme"}),
        )
        .await;
    assert_eq!(right.body["valid"], true, "{}", right.text);
    assert_eq!(right.u64("attempts_remaining"), 1);
}

#[tokio::test]
async fn check_by_destination_approves_the_pending_verification() {
    let app = spawn_app().await;
    let (id, code) = issued(&app, DE_MOBILE).await;

    let wrong_reply = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": wrong(&code)}))
        .await;
    let right = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": code}))
        .await;

    wrong_reply.expect_status(200);
    assert_eq!(wrong_reply.str("id"), id);
    assert_eq!(wrong_reply.body["valid"], false);
    assert_eq!(wrong_reply.u64("attempts_remaining"), 4);
    right.expect_status(200);
    assert_eq!(right.str("id"), id);
    assert_eq!(right.body["valid"], true);
    assert_eq!(right.str("status"), "approved");
    assert_eq!(right.u64("attempts_remaining"), 3);
    assert_eq!(app.get(&id).await.str("status"), "approved");
}

#[tokio::test]
async fn check_by_destination_applies_the_session_id_and_code_format() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "session_id": "s-1"}))
        .await;
    let id = created.str("id");
    let code = app.code_for(id).await;

    let malformed = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": "abc"}))
        .await;
    let no_session = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": code}))
        .await;
    let with_session = app
        .check_by_destination(
            &json!({"to": DE_MOBILE, "channel": "sms", "code": code, "session_id": "s-1"}),
        )
        .await;

    malformed.expect_error(400, "invalid_request");
    assert_eq!(no_session.body["valid"], false, "{}", no_session.text);
    assert_eq!(no_session.u64("attempts_remaining"), 4);
    assert_eq!(with_session.body["valid"], true, "{}", with_session.text);
}

#[tokio::test]
async fn check_by_destination_without_a_pending_verification_is_404() {
    let app = spawn_app().await;
    let (_, code) = issued(&app, DE_MOBILE).await;

    let other_number = app
        .check_by_destination(&json!({"to": FR_MOBILE, "channel": "sms", "code": code}))
        .await;
    let other_channel = app
        .check_by_destination(&json!({"to": EMAIL, "channel": "email", "code": code}))
        .await;

    other_number.expect_error(404, "not_found");
    other_channel.expect_error(404, "not_found");
}

#[tokio::test]
async fn check_of_an_unknown_id_is_404() {
    let app = spawn_app().await;

    let reply = app.check_code("ver_doesnotexist0000000000", "123456").await;

    reply.expect_error(404, "not_found");
}

/// Waits 32 s of wall clock (the minimum ttl is 30 s), in parallel with the other tests of
/// this binary, which take longer than that together.
#[tokio::test]
async fn an_expired_verification_is_410_on_check_and_expired_on_get() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "ttl_seconds": 30}))
        .await;
    created.expect_status(201);
    let id = created.str("id");
    let code = app.code_for(id).await;

    // expires_at is written in whole seconds (truncated), so the real expiry may be up to 1 s
    // later than it says.
    sleep_until(created.str("expires_at")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    app.check_code(id, &code).await.expect_error(410, "expired");
    assert_eq!(app.get(id).await.str("status"), "expired");
    let by_destination = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": code}))
        .await;
    assert!(
        [404, 410].contains(&by_destination.status.as_u16()),
        "{}",
        by_destination.text
    );
    // An expired verification is no longer pending: a new one can be issued at once.
    app.create_sms(DE_MOBILE).await;
}
