//! GET /v1/verifications/{id} and POST /v1/verifications/{id}/cancel.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn get_returns_the_record_without_the_code() {
    let app = spawn_app().await;
    let created = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "code_length": 10}))
        .await;
    let id = created.str("id");
    let code = app.code_for_len(id, 10).await;

    let record = app.get(id).await;

    record.expect_status(200);
    assert_eq!(record.str("id"), id);
    assert_eq!(record.str("status"), "pending");
    assert_eq!(record.str("channel"), "sms");
    assert_eq!(record.str("to"), DE_MOBILE_MASKED);
    assert_eq!(record.u64("attempts_remaining"), 5);
    assert!(
        ["queued", "sent", "delivered", "failed"].contains(&record.str("delivery")),
        "delivery: {}",
        record.text
    );
    assert_eq!(record.str("expires_at"), created.str("expires_at"));
    let created_at = timestamp(record.str("created_at"));
    assert!(created_at <= timestamp(record.str("expires_at")));
    assert!(
        !contains_code(&record.text, &code),
        "GET leaked the code: {}",
        record.text
    );
    assert!(
        !record.text.contains(DE_MOBILE),
        "GET leaked the number: {}",
        record.text
    );
}

#[tokio::test]
async fn get_names_the_sandbox_provider_once_sent() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    app.code_for(&id).await;

    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let record = loop {
        let record = app.get(&id).await;
        record.expect_status(200);
        if record.str("delivery") != "queued" {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "delivery still queued: {}",
            record.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };

    assert!(
        ["sent", "delivered"].contains(&record.str("delivery")),
        "{}",
        record.text
    );
    assert_eq!(record.str("provider"), "sandbox");
}

#[tokio::test]
async fn get_reflects_approval() {
    let app = spawn_app().await;
    let (id, _) = app.approved_sms(DE_MOBILE).await;

    let record = app.get(&id).await;

    assert_eq!(record.str("status"), "approved");
    assert_eq!(record.u64("attempts_remaining"), 4);
}

#[tokio::test]
async fn cancel_turns_a_pending_verification_to_canceled() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;

    let canceled = app.cancel(&id).await;

    canceled.expect_status(200);
    assert_eq!(canceled.str("status"), "canceled");
    assert_eq!(app.get(&id).await.str("status"), "canceled");
    app.check_code(&id, &code)
        .await
        .expect_error(409, "canceled");
    let by_destination = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": code}))
        .await;
    assert_ne!(
        by_destination.body["valid"], true,
        "{}",
        by_destination.text
    );
}

#[tokio::test]
async fn after_cancel_a_new_verification_can_be_issued_at_once() {
    let app = spawn_app().await;
    let first = app.sms_id(DE_MOBILE).await;
    app.cancel(&first).await.expect_status(200);

    let second = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    second.expect_status(201);
    assert_ne!(second.str("id"), first);
    let code = app.code_for(second.str("id")).await;
    app.check_code(second.str("id"), &code)
        .await
        .expect_status(200);
}

#[tokio::test]
async fn after_approval_a_new_verification_can_be_issued_at_once() {
    let app = spawn_app().await;
    let first = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&first).await;
    app.check_code(&first, &code).await.expect_status(200);

    let second = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    second.expect_status(201);
    assert_ne!(second.str("id"), first);
    assert_eq!(second.u64("attempts_remaining"), 5);
}

#[tokio::test]
async fn unknown_ids_are_404_for_get_and_cancel() {
    let app = spawn_app().await;

    app.get("ver_doesnotexist0000000000")
        .await
        .expect_error(404, "not_found");
    app.cancel("ver_doesnotexist0000000000")
        .await
        .expect_error(404, "not_found");
    app.get("not-even-an-id")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn another_tenant_can_neither_see_nor_touch_a_verification() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;
    let acme = app.add_tenant("acme");

    let get = send(app.request_as(&acme, Method::GET, &format!("/v1/verifications/{id}"))).await;
    let check = send(
        app.request_as(
            &acme,
            Method::POST,
            &format!("/v1/verifications/{id}/check"),
        )
        .json(&json!({"code": code})),
    )
    .await;
    let by_destination = send(
        app.request_as(&acme, Method::POST, "/v1/verifications/check")
            .json(&json!({"to": DE_MOBILE, "channel": "sms", "code": code})),
    )
    .await;
    let cancel = send(app.request_as(
        &acme,
        Method::POST,
        &format!("/v1/verifications/{id}/cancel"),
    ))
    .await;

    get.expect_error(404, "not_found");
    check.expect_error(404, "not_found");
    by_destination.expect_error(404, "not_found");
    cancel.expect_error(404, "not_found");
    let record = app.get(&id).await;
    assert_eq!(record.str("status"), "pending");
    assert_eq!(record.u64("attempts_remaining"), 5);
    // The owner can still use the code the other tenant tried.
    assert_eq!(app.check_code(&id, &code).await.body["valid"], true);
}

#[tokio::test]
async fn the_resend_cooldown_is_per_tenant() {
    let app = spawn_app().await;
    app.create_sms(DE_MOBILE).await;
    let acme = app.add_tenant("acme");

    let reply = app
        .create_as(&acme, &json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    reply.expect_status(201);
    let id = reply.str("id");
    app.code_for(id).await;
    app.get(id).await.expect_error(404, "not_found");
}
