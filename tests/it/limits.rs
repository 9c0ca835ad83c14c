//! Resend cooldown, per-destination send limit and request rate limits.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// Repeats the create for `body` after `resend_available_at` until it is no longer a cooldown.
async fn resend_when_allowed(app: &TestApp, body: &Value, resend_available_at: &str) -> Reply {
    sleep_until(resend_available_at).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app.create(body).await;
        let cooling = reply.status.as_u16() == 429 && reply.error_code() == "resend_cooldown";
        if !cooling || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_second_create_within_the_cooldown_is_429_resend_cooldown() {
    let app = spawn_app().await;
    let first = app.create_sms(DE_MOBILE).await;
    let id = first["id"].as_str().unwrap();
    app.messages_for(id, 1).await;

    let again = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;

    again.expect_error(429, "resend_cooldown");
    let wait = again.retry_after();
    assert!((1..=30).contains(&wait), "retry_after_seconds {wait}");
    // Another destination is not affected, and nothing more went to the first one.
    app.create_sms(FR_MOBILE).await;
    assert_eq!(outbox_messages(app.store_dir(), id).len(), 1);
}

#[tokio::test]
async fn a_tenant_whose_resends_keep_the_code_gets_the_same_code_again_and_both_messages_work() {
    let keeps_code = otpd::access::TenantSettings {
        resend_keeps_code: Some(true),
        ..Default::default()
    };
    let (mut app, acme, _) = crate::access::app_with_acme(keeps_code, |s| {
        s.verification.resend_cooldown_seconds = 1;
    });
    app.api_key = acme;
    let body = json!({"to": DE_MOBILE, "channel": "sms", "code_length": 10});
    let first = app.create(&body).await;
    first.expect_status(201);
    let id = first.str("id").to_string();
    let code = app.code_for_len(&id, 10).await;
    let wrong = app.check_code(&id, "0000000000").await;
    assert_eq!(wrong.u64("attempts_remaining"), 4);

    let resend = resend_when_allowed(&app, &body, first.str("resend_available_at")).await;
    resend.expect_status(200);
    assert_eq!(resend.str("id"), id);
    assert_eq!(
        resend.str("expires_at"),
        first.str("expires_at"),
        "a kept code does not live longer for being sent again"
    );
    let messages = app.messages_for(&id, 2).await;
    assert_eq!(
        message_code(&messages[1], 10),
        code,
        "the same code, sent again"
    );
    // The first message's code, typed late, works; attempts stay counted per verification.
    let late = app.check_code(&id, &code).await;
    assert_eq!(late.body["valid"], true, "{}", late.text);
    assert_eq!(late.u64("attempts_remaining"), 3);
}

#[tokio::test]
async fn a_resend_after_the_cooldown_sends_a_new_code_and_retires_the_old() {
    let app = spawn_app_with(|s| s.verification.resend_cooldown_seconds = 1).await;
    let body = json!({"to": DE_MOBILE, "channel": "sms", "code_length": 10});
    let first = app.create(&body).await;
    first.expect_status(201);
    let id = first.str("id").to_string();
    let old_code = app.code_for_len(&id, 10).await;
    let wrong = app.check_code(&id, "0000000000").await;
    assert_eq!(wrong.u64("attempts_remaining"), 4);

    let resend = resend_when_allowed(&app, &body, first.str("resend_available_at")).await;

    resend.expect_status(200);
    assert_eq!(resend.str("id"), id, "a resend keeps the id");
    assert_eq!(resend.str("status"), "pending");
    assert_eq!(
        resend.u64("attempts_remaining"),
        4,
        "used attempts stay used"
    );
    let messages = app.messages_for(&id, 2).await;
    assert_eq!(messages.len(), 2);
    let new_code = message_code(&messages[1], 10);
    assert_ne!(new_code, old_code);
    let old = app.check_code(&id, &old_code).await;
    assert_eq!(
        old.body["valid"], false,
        "the old code still works: {}",
        old.text
    );
    assert_eq!(old.u64("attempts_remaining"), 3);
    let new = app.check_code(&id, &new_code).await;
    assert_eq!(new.body["valid"], true, "{}", new.text);
    assert_eq!(new.u64("attempts_remaining"), 2);
}

#[tokio::test]
async fn sends_past_the_destination_limit_are_429_too_many_sends() {
    let app = spawn_app_with(|s| {
        s.verification.resend_cooldown_seconds = 1;
        s.verification.sends_per_destination = 2;
    })
    .await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"});
    let first = app.create(&body).await;
    first.expect_status(201);
    let id = first.str("id").to_string();
    let second = resend_when_allowed(&app, &body, first.str("resend_available_at")).await;
    second.expect_status(200);

    let third = resend_when_allowed(&app, &body, second.str("resend_available_at")).await;

    third.expect_error(429, "too_many_sends");
    third.retry_after();
    let marker = app.create_sms(FR_MOBILE).await;
    app.messages_for(marker["id"].as_str().unwrap(), 1).await;
    assert_eq!(outbox_messages(app.store_dir(), &id).len(), 2);
}

#[tokio::test]
async fn the_client_ip_rate_limit_is_429_rate_limited_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.rate_limits.client_ip_per_second = 1.0;
        s.rate_limits.client_ip_burst = 2;
    })
    .await;

    let mut replies = Vec::new();
    for n in 0..6 {
        replies.push(
            app.create(&json!({"to": de_mobile(n), "channel": "sms"}))
                .await,
        );
    }

    assert_eq!(replies[0].status.as_u16(), 201, "{}", replies[0].text);
    let limited: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status.as_u16() == 429)
        .collect();
    assert!(
        limited.len() >= 3,
        "burst 2 at 1/s let {} of 6 quick requests through",
        6 - limited.len()
    );
    for reply in limited {
        reply.expect_error(429, "rate_limited");
        let wait = reply.retry_after();
        assert!(wait <= 2, "retry_after_seconds {wait} at 1 request/s");
    }
}

#[tokio::test]
async fn the_tenant_rate_limit_applies_to_one_tenant_only() {
    let app = spawn_app_with(|s| {
        s.rate_limits.tenant_per_second = 1.0;
        s.rate_limits.tenant_burst = 2;
    })
    .await;
    let acme = app.add_tenant("acme");

    let mut dev_statuses = Vec::new();
    let mut last_limited = None;
    for n in 0..6 {
        let reply = app
            .create(&json!({"to": de_mobile(n), "channel": "sms"}))
            .await;
        dev_statuses.push(reply.status.as_u16());
        if reply.status.as_u16() == 429 {
            last_limited = Some(reply);
        }
    }
    let acme_reply = send(
        app.request_as(&acme, Method::POST, "/v1/verifications")
            .json(&json!({"to": FR_MOBILE, "channel": "sms"})),
    )
    .await;

    let limited = last_limited.unwrap_or_else(|| panic!("no 429 for dev: {dev_statuses:?}"));
    limited.expect_error(429, "rate_limited");
    limited.retry_after();
    assert!(
        dev_statuses.iter().filter(|s| **s == 429).count() >= 3,
        "{dev_statuses:?}"
    );
    acme_reply.expect_status(201);
}

#[tokio::test]
async fn checks_are_limited_per_client_ip_and_a_trusted_proxy_names_the_client() {
    let app = spawn_app_with(|s| {
        s.rate_limits.client_ip_per_second = 0.1;
        s.rate_limits.client_ip_burst = 2;
        s.http.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let id = app.sms_id(DE_MOBILE).await;
    let check_from = |client: Option<&'static str>| {
        let request = app
            .request(Method::POST, &format!("/v1/verifications/{id}/check"))
            .json(&json!({"code": "000000"}));
        let request = match client {
            Some(address) => request.header("X-Forwarded-For", address),
            None => request,
        };
        send(request)
    };
    check_from(None).await.expect_status(200);
    check_from(None).await.expect_status(200);
    let limited = check_from(None).await;
    limited.expect_error(429, "rate_limited");
    assert!(limited.retry_after() >= 1);
    // Behind the trusted proxy (the loopback peer), the forwarded address is the client.
    check_from(Some("203.0.113.5")).await.expect_status(200);
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_changes_nothing() {
    let app = spawn_app_with(|s| {
        s.rate_limits.client_ip_per_second = 0.1;
        s.rate_limits.client_ip_burst = 1;
    })
    .await;
    let id = app.sms_id(DE_MOBILE).await;
    let check = |forwarded: &'static str| {
        send(
            app.request(Method::POST, &format!("/v1/verifications/{id}/check"))
                .header("X-Forwarded-For", forwarded)
                .json(&json!({"code": "000000"})),
        )
    };
    check("203.0.113.5").await.expect_status(200);
    check("203.0.113.6").await.expect_error(429, "rate_limited");
}
