//! Access control: geo permissions (countries, number types, channels), per-tenant send caps
//! that survive a restart, and the operator's blocklist behind admin keys.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use otpd::access::TenantSettings;
use otpd::config::Settings;
use reqwest::Method;
use serde_json::{json, Value};

use crate::amqp::Broker;
use crate::helpers::*;

/// A Berlin landline: libphonenumber classifies it `fixed_line`.
const DE_LANDLINE: &str = "+493012345678";

/// An app whose only tenants are `acme` (with `settings`) and `ops` (an admin); returns the
/// app and the keys of acme and ops.
pub fn app_with_acme(
    settings: TenantSettings,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, String, String) {
    let store = tempfile::tempdir().unwrap();
    let acme = add_tenant(store.path(), "acme");
    let ops = add_tenant(store.path(), "ops");
    let app = start_app(store, |s| {
        s.tenants.insert("acme".into(), settings);
        s.tenants.insert(
            "ops".into(),
            TenantSettings {
                admin: true,
                ..TenantSettings::default()
            },
        );
        configure(s);
    });
    (app, acme, ops)
}

#[track_caller]
fn expect_blocked_naming(reply: &Reply, setting: &str) {
    reply.expect_error(403, "destination_blocked");
    reply.expect_no_retry_after();
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(setting),
        "the message does not name {setting}: {message}"
    );
}

#[tokio::test]
async fn a_country_not_allowed_is_refused_with_the_setting_named() {
    let (app, acme, _) = app_with_acme(
        TenantSettings {
            countries: vec!["FR".into()],
            ..TenantSettings::default()
        },
        |_| {},
    );

    let refused = app.create_as(&acme, &sms(DE_MOBILE)).await;
    let allowed = app.create_as(&acme, &sms(FR_MOBILE)).await;

    expect_blocked_naming(&refused, "add \"DE\" to tenants.acme.countries");
    allowed.expect_status(201);
    app.code_for(allowed.str("id")).await;
    assert!(
        read_outbox(app.store_dir())
            .iter()
            .all(|m| m["to"] != DE_MOBILE),
        "a refused destination was sent a code"
    );
}

#[tokio::test]
async fn mobile_only_refuses_a_landline_and_allows_a_mobile() {
    let (app, acme, _) = app_with_acme(
        TenantSettings {
            number_types: vec![phonenumber::Type::Mobile],
            ..TenantSettings::default()
        },
        |_| {},
    );

    let landline = app.create_as(&acme, &sms(DE_LANDLINE)).await;
    let mobile = app.create_as(&acme, &sms(DE_MOBILE)).await;

    expect_blocked_naming(&landline, "tenants.acme.number_types");
    assert!(landline.text.contains("fixed_line"), "{}", landline.text);
    assert!(!landline.text.contains("12345678"), "{}", landline.text);
    mobile.expect_status(201);
}

#[tokio::test]
async fn a_channel_not_allowed_is_refused() {
    let (app, acme, _) = app_with_acme(
        TenantSettings {
            channels: vec![otpd::domain::Channel::Sms],
            ..TenantSettings::default()
        },
        |_| {},
    );

    let email = app
        .create_as(&acme, &json!({"to": EMAIL, "channel": "email"}))
        .await;

    expect_blocked_naming(&email, "add \"email\" to tenants.acme.channels");
    app.create_as(&acme, &sms(DE_MOBILE))
        .await
        .expect_status(201);
}

#[tokio::test]
async fn a_broker_request_to_a_refused_country_gets_a_rejected_event() {
    let broker = Broker::connect().await;
    let (app, _, _) = app_with_acme(
        TenantSettings {
            countries: vec!["FR".into()],
            ..TenantSettings::default()
        },
        |s| broker.configure(s),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while send(app.anonymous(Method::GET, "/readyz")).await.status != 200 {
        assert!(Instant::now() < deadline, "broker mode never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = broker.listen("events", "verification.rejected.acme").await;

    let request =
        json!({"request_id": "r-geo", "tenant": "acme", "to": DE_MOBILE, "channel": "sms"});
    broker
        .publish_raw(
            &serde_json::to_vec(&request).unwrap(),
            BasicProperties::default(),
        )
        .await;
    let rejected = events.receive(1).await;

    let event = &rejected[0].0;
    assert_eq!(event["request_id"], "r-geo");
    assert_eq!(event["error"]["code"], "destination_blocked", "{event}");
    assert!(
        event["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenants.acme.countries"),
        "{event}"
    );
    assert!(app.outbox_is_empty());
    events.delete().await;
    drop(app);
    broker.clean_up().await;
}

/// Sleeps past the next hour boundary when fewer than `margin` remain in this hour, so an
/// hourly cap is not reset in the middle of a test.
async fn not_near_the_end_of_an_hour(margin: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = Duration::from_secs(3600 - now.as_secs() % 3600);
    if left < margin {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
}

/// Writes a settings file for `otpd serve --config` and returns its path.
fn settings_file(dir: &Path, toml: &str) -> String {
    let path = dir.join("access-test.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_hourly_send_cap_refuses_the_fourth_send_even_after_a_restart() {
    let client = http_client();
    not_near_the_end_of_an_hour(Duration::from_secs(120)).await;
    let store = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = settings_file(config_dir.path(), "[tenants.acme]\nsends_per_hour = 3\n");
    let acme = add_tenant(store.path(), "acme");
    let mut first = OtpdProcess::start_with_args(store.path(), &["--config", &config], &[]);
    for n in 1..=3 {
        first
            .create_sms(&client, &acme, &de_mobile(n))
            .await
            .expect_status(201);
    }

    let fourth = first.create_sms(&client, &acme, &de_mobile(4)).await;

    fourth.expect_error(429, "rate_limited");
    let wait = fourth.retry_after();
    assert!((1..=3600).contains(&wait), "retry after {wait} s");
    assert!(
        fourth.text.contains("tenants.acme.sends_per_hour"),
        "{}",
        fourth.text
    );

    first.stop();
    let second = OtpdProcess::start_with_args(store.path(), &["--config", &config], &[]);
    let after_restart = second.create_sms(&client, &acme, &de_mobile(5)).await;

    after_restart.expect_error(429, "rate_limited");
    assert!(
        read_outbox(store.path())
            .iter()
            .all(|m| m["to"] != de_mobile(4) && m["to"] != de_mobile(5)),
        "a capped send went out"
    );
}

async fn blocklist(
    server: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let client = http_client();
    let request = authed(&client, method, format!("{server}{path}"), key);
    match body {
        Some(body) => send(request.json(&body)).await,
        None => send(request).await,
    }
}

#[tokio::test]
async fn a_blocked_prefix_is_refused_until_removed_and_survives_a_restart() {
    let client = http_client();
    let store = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = settings_file(config_dir.path(), "[tenants.ops]\nadmin = true\n");
    let acme = add_tenant(store.path(), "acme");
    let ops = add_tenant(store.path(), "ops");
    let mut first = OtpdProcess::start_with_args(store.path(), &["--config", &config], &[]);

    let added = blocklist(
        &first.address,
        &ops,
        Method::POST,
        "/v1/admin/blocklist",
        Some(json!({"entry": "+4915112", "note": "pumping from this range"})),
    )
    .await;
    added.expect_status(201);
    assert_eq!(added.str("entry"), "+4915112");
    assert_eq!(added.str("added_by"), "ops");
    let blocked = first.create_sms(&client, &acme, DE_MOBILE).await;
    blocked.expect_error(403, "destination_blocked");
    assert!(blocked.text.contains("blocklist"), "{}", blocked.text);
    assert!(
        !blocked.text.contains("+4915112"),
        "the message reveals the entry: {}",
        blocked.text
    );
    first
        .create_sms(&client, &acme, FR_MOBILE)
        .await
        .expect_status(201);

    first.stop();
    let second = OtpdProcess::start_with_args(store.path(), &["--config", &config], &[]);
    second
        .create_sms(&client, &acme, DE_MOBILE)
        .await
        .expect_error(403, "destination_blocked");
    let listed = blocklist(
        &second.address,
        &ops,
        Method::GET,
        "/v1/admin/blocklist",
        None,
    )
    .await;
    listed.expect_status(200);
    assert_eq!(
        listed.body["entries"][0]["entry"], "+4915112",
        "{}",
        listed.text
    );
    assert_eq!(listed.body["entries"][0]["note"], "pumping from this range");

    blocklist(
        &second.address,
        &ops,
        Method::DELETE,
        "/v1/admin/blocklist/%2B4915112",
        None,
    )
    .await
    .expect_status(204);

    second
        .create_sms(&client, &acme, DE_MOBILE)
        .await
        .expect_status(201);
    let empty = blocklist(
        &second.address,
        &ops,
        Method::GET,
        "/v1/admin/blocklist",
        None,
    )
    .await;
    assert_eq!(empty.body["entries"], json!([]), "{}", empty.text);
}

#[tokio::test]
async fn an_exact_number_is_blocked_and_others_are_not() {
    let (app, acme, ops) = app_with_acme(TenantSettings::default(), |_| {});
    send(
        app.request_as(&ops, Method::POST, "/v1/admin/blocklist")
            .json(&json!({"entry": DE_MOBILE})),
    )
    .await
    .expect_status(201);

    app.create_as(&acme, &sms(DE_MOBILE))
        .await
        .expect_error(403, "destination_blocked");
    app.create_as(&acme, &sms(&de_mobile(1)))
        .await
        .expect_status(201);
    app.create_as(&acme, &json!({"to": EMAIL, "channel": "email"}))
        .await
        .expect_status(201);
}

#[tokio::test]
async fn only_admin_keys_may_use_the_blocklist_routes() {
    let (app, acme, ops) = app_with_acme(TenantSettings::default(), |_| {});
    let body = json!({"entry": "+2348"});

    let by_acme = send(
        app.request_as(&acme, Method::POST, "/v1/admin/blocklist")
            .json(&body),
    )
    .await;
    let list_by_acme = send(app.request_as(&acme, Method::GET, "/v1/admin/blocklist")).await;
    let anonymous = send(app.anonymous(Method::GET, "/v1/admin/blocklist")).await;
    let bad_entry = send(
        app.request_as(&ops, Method::POST, "/v1/admin/blocklist")
            .json(&json!({"entry": "2348"})),
    )
    .await;
    let unknown = send(app.request_as(&ops, Method::DELETE, "/v1/admin/blocklist/%2B2349")).await;

    by_acme.expect_error(403, "forbidden");
    assert!(
        by_acme.text.contains("tenants.acme.admin"),
        "{}",
        by_acme.text
    );
    list_by_acme.expect_error(403, "forbidden");
    anonymous.expect_error(401, "unauthorized");
    bad_entry.expect_error(400, "invalid_request");
    unknown.expect_error(404, "not_found");
    let listed = send(app.request_as(&ops, Method::GET, "/v1/admin/blocklist")).await;
    assert_eq!(listed.body["entries"], json!([]), "{}", listed.text);
}

#[tokio::test]
async fn the_hourly_spend_cap_counts_each_country_at_its_price() {
    not_near_the_end_of_an_hour(Duration::from_secs(60)).await;
    let store = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = settings_file(
        config_dir.path(),
        "[pricing.sms]\nFR = 3\n\n[tenants.acme]\nspend_per_hour = 5\n",
    );
    let acme = add_tenant(store.path(), "acme");
    let server = OtpdProcess::start_with_args(store.path(), &["--config", &config], &[]);
    let client = http_client();
    let email = |to: &str| {
        authed(
            &client,
            Method::POST,
            server.url("/v1/verifications"),
            &acme,
        )
        .json(&json!({"to": to, "channel": "email"}))
    };

    // 1 (DE, the default price) + 3 (FR) = 4 of 5.
    server
        .create_sms(&client, &acme, &de_mobile(1))
        .await
        .expect_status(201);
    server
        .create_sms(&client, &acme, FR_MOBILE)
        .await
        .expect_status(201);
    // Another 3 would make 7.
    let over = server.create_sms(&client, &acme, "+33612345679").await;
    over.expect_error(429, "rate_limited");
    assert!(
        over.text.contains("tenants.acme.spend_per_hour"),
        "{}",
        over.text
    );
    assert!((1..=3600).contains(&over.retry_after()));
    // 1 more makes exactly 5, which the cap allows; email costs 0.
    server
        .create_sms(&client, &acme, &de_mobile(2))
        .await
        .expect_status(201);
    send(email(EMAIL)).await.expect_status(201);
    server
        .create_sms(&client, &acme, &de_mobile(3))
        .await
        .expect_error(429, "rate_limited");
}
