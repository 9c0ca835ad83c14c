//! "Why didn't my user get the code?": each verification's delivery timeline (every try, its
//! provider's answer, what otpd did next, the receipt), and an admin's lookup of a number's
//! recent verifications.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::access::app_with_acme;
use crate::helpers::*;
use crate::openapi::Description;
use crate::providers::http_provider;
use otpd::access::TenantSettings;
use otpd::domain::Channel;
use otpd::testing::fakes::FakeProviderServer;

const ATTEMPTS: &str = "/v1/verifications/{id}/attempts";
const LOOKUP: &str = "/v1/admin/verifications";

async fn timeline(app: &TestApp, id: &str) -> Reply {
    send(app.request(Method::GET, &format!("/v1/verifications/{id}/attempts"))).await
}

/// The timeline once it holds `count` entries.
async fn timeline_of(app: &TestApp, id: &str, count: usize) -> Reply {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let reply = timeline(app, id).await;
        reply.expect_status(200);
        let kept = reply.body["attempts"].as_array().map_or(0, Vec::len);
        if kept >= count {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the timeline never held {count} entries: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many receipts of the sandbox `otpd_time_to_delivered_seconds` has timed (the
/// registry is the process's: other tests' receipts count too).
async fn delivered_count(app: &TestApp) -> u64 {
    let metrics = send(app.anonymous(Method::GET, "/metrics")).await;
    metrics
        .text
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"otpd_time_to_delivered_seconds_count{provider="sandbox"} "#)
        })
        .map_or(0, |count| count.trim().parse().unwrap())
}

fn entry(reply: &Reply, index: usize) -> &Value {
    &reply.body["attempts"][index]
}

#[tokio::test]
async fn the_timeline_shows_each_try_the_retry_the_failover_and_the_receipt() {
    let primary = FakeProviderServer::start().await.unwrap();
    primary.control().fail_share(1.0);
    let app = spawn_app_with(|s| {
        s.providers = BTreeMap::from([("primary".to_string(), http_provider(&primary))]);
        let routes = BTreeMap::from([
            (Channel::Sms, vec!["primary".into(), "sandbox".into()]),
            (Channel::Email, vec!["sandbox".into()]),
        ]);
        s.routing.regions = BTreeMap::from([("default".to_string(), routes)]);
        s.delivery.attempts_per_provider = 2;
    })
    .await;
    let described = Description::of(&app).await;

    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;
    let sent = timeline_of(&app, &id, 3).await;
    described.expect_described("get", ATTEMPTS, &sent);

    let (first, second, third) = (entry(&sent, 0), entry(&sent, 1), entry(&sent, 2));
    for (n, attempt) in [first, second, third].iter().enumerate() {
        assert_eq!(attempt["attempt"], n as u64 + 1, "{}", sent.text);
        assert_eq!(attempt["send"], 1);
        assert_eq!(attempt["channel"], "sms");
        assert_eq!(attempt["region"], "eu", "the region of a German number");
        assert!(attempt["started_at"].is_string());
    }
    assert_eq!(
        (&first["provider"], &first["outcome"], &first["next"]),
        (&json!("primary"), &json!("transient"), &json!("retry")),
        "{}",
        sent.text
    );
    assert!(first["retry_in_ms"].is_u64(), "{}", sent.text);
    assert!(
        first["detail"].as_str().unwrap().contains("HTTP 500"),
        "the provider's answer is shown: {}",
        sent.text
    );
    assert_eq!(
        (&second["provider"], &second["outcome"], &second["next"]),
        (&json!("primary"), &json!("transient"), &json!("failover"))
    );
    assert_eq!(
        (&third["provider"], &third["outcome"], &third["next"]),
        (&json!("sandbox"), &json!("sent"), &json!("done"))
    );
    assert_eq!(third["receipt"], Value::Null);
    assert_eq!(sent.body["delivery"], "sent");
    assert_eq!(sent.body["dropped"], 0);

    // The receipt lands on the entry that sent the message, and is timed in the metric.
    let delivered_before = delivered_count(&app).await;
    let receipt = send(
        app.request(Method::POST, "/v1/providers/sandbox/receipts")
            .json(&json!({"message_id": format!("{id}.1"), "status": "delivered"})),
    )
    .await;
    receipt.expect_status(200);
    let delivered = timeline(&app, &id).await;
    let receipt = &entry(&delivered, 2)["receipt"];
    assert_eq!(receipt["status"], "delivered", "{}", delivered.text);
    assert!(receipt["time_to_deliver_ms"].is_u64());
    assert_eq!(delivered.body["delivery"], "delivered");
    assert!(
        delivered_count(&app).await > delivered_before,
        "otpd_time_to_delivered_seconds observed the receipt"
    );

    // Another tenant's key finds nothing; an id of no verification is a 404.
    let other = app.add_tenant("other");
    let hidden = send(app.request_as(
        &other,
        Method::GET,
        &format!("/v1/verifications/{id}/attempts"),
    ))
    .await;
    described.expect_described("get", ATTEMPTS, &hidden);
    hidden.expect_error(404, "not_found");
    timeline(&app, "ver_00000000000000000000000000000000")
        .await
        .expect_error(404, "not_found");

    for reply in [&sent, &delivered] {
        assert!(!contains_code(&reply.text, &code), "{}", reply.text);
    }
}

#[tokio::test]
async fn an_admin_finds_a_number_s_recent_verifications_with_their_timelines() {
    let (app, acme, ops) = app_with_acme(TenantSettings::default(), |s| {
        s.verification.resend_cooldown_seconds = 0;
    });
    let described = Description::of(&app).await;
    let sms = json!({"to": DE_MOBILE, "channel": "sms"});

    let first = app.create_as(&acme, &sms).await;
    first.expect_status(201);
    let first_id = first.str("id").to_string();
    let code = app.code_for(&first_id).await;
    let canceled = send(app.request_as(
        &acme,
        Method::POST,
        &format!("/v1/verifications/{first_id}/cancel"),
    ))
    .await;
    canceled.expect_status(200);
    let second = app.create_as(&acme, &sms).await;
    second.expect_status(201);
    let second_id = second.str("id").to_string();
    app.code_for(&second_id).await;
    let email = app
        .create_as(&acme, &json!({"to": EMAIL, "channel": "email"}))
        .await;
    email.expect_status(201);

    let lookup = |key: &str, query: &str| {
        send(app.request_as(key, Method::GET, &format!("{LOOKUP}{query}")))
    };
    // Written as a person would type it: the number with its +, percent-encoded.
    let found = lookup(&ops, "?to=%2B4915112345678").await;
    described.expect_described("get", LOOKUP, &found);
    found.expect_status(200);
    assert_eq!(found.body["to"], DE_MOBILE_MASKED);
    let listed = found.body["verifications"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second_id.as_str(), first_id.as_str()], "newest first");
    assert_eq!(listed[0]["tenant"], "acme");
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[1]["status"], "canceled");
    for verification in listed {
        assert_eq!(verification["to"], DE_MOBILE_MASKED);
        assert_eq!(
            verification["attempts"][0]["outcome"], "sent",
            "{}",
            found.text
        );
    }
    assert!(!contains_code(&found.text, &code), "{}", found.text);

    // An address finds the email verification only.
    let by_address = lookup(&ops, &format!("?to={EMAIL}")).await;
    by_address.expect_status(200);
    assert_eq!(
        by_address.body["verifications"][0]["id"],
        email.str("id"),
        "{}",
        by_address.text
    );
    assert_eq!(
        by_address.body["verifications"].as_array().unwrap().len(),
        1
    );

    // A number otpd never saw: an empty list.
    let unseen = lookup(&ops, "?to=%2B33612345678").await;
    unseen.expect_status(200);
    assert_eq!(unseen.body["verifications"], json!([]));

    // Only an admin's key; `to` must be given and be a number or an address.
    let refused = lookup(&acme, "?to=%2B4915112345678").await;
    described.expect_described("get", LOOKUP, &refused);
    refused.expect_error(403, "forbidden");
    for query in ["", "?to=12", "?to=%2B4915112345678&tenant=acme"] {
        let bad = lookup(&ops, query).await;
        described.expect_described("get", LOOKUP, &bad);
        bad.expect_error(400, "invalid_request");
        assert!(
            bad.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("to"),
            "{}",
            bad.text
        );
    }
}
