//! The SMS-pumping guard end to end: a synthetic pump is blocked (enforce) or only recorded
//! (monitor), normal traffic is not, and a block outlives a restart.

use reqwest::Method;
use serde_json::{json, Value};

use otpd::config::Settings;
use otpd::fraud::FraudMode;

use crate::access::app_with_acme;
use crate::helpers::*;
use otpd::access::TenantSettings;

/// The prefix the synthetic pump walks through.
pub const PUMPED_PREFIX: &str = "+2348031";

/// The `n`th number of the pumped range, sequential: +2348031000000, +2348031000001, …
fn pumped(n: u32) -> String {
    format!("{PUMPED_PREFIX}{n:06}")
}

/// The guard with its default thresholds, on a 20 s window (1 s slices) and no grace
/// period, so a pump is judged within seconds instead of minutes.
pub fn quick_guard(settings: &mut Settings, mode: FraudMode) {
    settings.fraud.mode = mode;
    settings.fraud.window_seconds = 20;
    settings.fraud.conversion_grace_seconds = 0;
}

async fn blocks(app: &TestApp) -> Vec<Value> {
    let reply = send(app.request(Method::GET, "/v1/fraud/blocks")).await;
    reply.expect_status(200);
    reply.body["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("no blocks array in {}", reply.text))
        .clone()
}

/// Outbox messages to numbers of `prefix`.
fn messages_to_prefix(app: &TestApp, prefix: &str) -> usize {
    read_outbox(app.store_dir())
        .iter()
        .filter(|message| {
            message["to"]
                .as_str()
                .is_some_and(|to| to.starts_with(prefix))
        })
        .count()
}

#[tokio::test]
async fn a_sequential_pump_with_no_verifications_is_blocked_and_refused() {
    let app = spawn_app_with(|s| quick_guard(s, FraudMode::Enforce)).await;

    let mut accepted = Vec::new();
    let mut first_refusal = None;
    for n in 0..1000 {
        let reply = app
            .create(&json!({"to": pumped(n), "channel": "sms"}))
            .await;
        match reply.status.as_u16() {
            201 => {
                assert!(
                    first_refusal.is_none(),
                    "create {n} went through after the prefix was blocked"
                );
                accepted.push(reply.str("id").to_string());
            }
            429 => {
                reply.expect_error(429, "rate_limited");
                assert_eq!(
                    reply.body["error"]["reason"], "fraud_suspected",
                    "{}",
                    reply.text
                );
                let wait = reply.retry_after();
                assert!((3500..=3600).contains(&wait), "retry after {wait} s");
                let message = reply.body["error"]["message"].as_str().unwrap();
                assert!(message.contains(PUMPED_PREFIX), "{message}");
                assert!(!message.contains(&pumped(n)), "a full number in {message}");
                first_refusal.get_or_insert(n);
            }
            _ => panic!("create {n}: unexpected {}", reply.text),
        }
    }

    let first_refusal = first_refusal.expect("the pump was never refused");
    assert!(
        (20..900).contains(&first_refusal),
        "first refusal at create {first_refusal}"
    );
    let listed = blocks(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let block = &listed[0];
    assert_eq!(block["prefix"], PUMPED_PREFIX);
    assert_eq!(block["country"], "NG");
    assert_eq!(block["rule"], "sequential_numbers");
    assert_eq!(block["mode"], "enforce");
    let figures = &block["figures"];
    assert_eq!(figures["verified"], 0, "{block}");
    assert_eq!(figures["conversion"], 0.0, "{block}");
    assert!(figures["judged_sends"].as_u64().unwrap() >= 20, "{block}");
    assert!(figures["longest_run"].as_u64().unwrap() >= 20, "{block}");
    assert!(
        block["explanation"]
            .as_str()
            .unwrap()
            .contains("near-consecutive"),
        "{block}"
    );
    let lasts = timestamp(block["until"].as_str().unwrap())
        .duration_since(timestamp(block["started_at"].as_str().unwrap()))
        .unwrap();
    assert_eq!(lasts.as_secs(), 3600);

    // Another prefix is not affected.
    app.create_sms(DE_MOBILE).await;
    // Refused creates sent nothing: only the accepted ones reached the outbox.
    app.messages_for(accepted.last().unwrap(), 1).await;
    assert_eq!(messages_to_prefix(&app, PUMPED_PREFIX), accepted.len());
    let metrics = send(app.anonymous(Method::GET, "/metrics")).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|line| line.starts_with("otpd_fraud_blocks_total")
                && line.contains("rule=\"sequential_numbers\"")
                && line.contains("mode=\"enforce\"")),
        "no otpd_fraud_blocks_total series"
    );
}

/// A random-looking (but valid) number of one of four prefixes, from `i`.
fn normal_number(i: u32) -> String {
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    let six = x % 1_000_000;
    match i % 4 {
        0 => format!("+4915112{six:06}"),
        1 => format!("+4915223{six:06}"),
        2 => format!("+336123{:05}", six % 100_000),
        _ => format!("+2348031{six:06}"),
    }
}

#[tokio::test]
async fn normal_traffic_over_many_prefixes_that_verifies_is_never_blocked() {
    let app = spawn_app_with(|s| quick_guard(s, FraudMode::Enforce)).await;

    // 60 sends per prefix, over the surge minimum of 50 for a prefix with no history: only
    // the high conversion keeps the guard quiet. Nine in ten are verified right away.
    for i in 0..240 {
        let to = normal_number(i);
        let reply = app.create(&json!({"to": to, "channel": "sms"})).await;
        assert_eq!(
            reply.status.as_u16(),
            201,
            "create {i} to {} refused: {}",
            &to[..8],
            reply.text
        );
        if i % 10 != 9 {
            let id = reply.str("id");
            let code = app.code_for(id).await;
            let check = app.check_code(id, &code).await;
            assert_eq!(check.body["valid"], true, "{}", check.text);
        }
    }

    assert_eq!(blocks(&app).await, Vec::<Value>::new());
}

#[tokio::test]
async fn monitor_mode_records_the_pump_but_lets_every_create_through() {
    let app = spawn_app_with(|s| quick_guard(s, FraudMode::Monitor)).await;

    let started = std::time::Instant::now();
    let mut n = 0;
    let listed = loop {
        let reply = app
            .create(&json!({"to": pumped(n), "channel": "sms"}))
            .await;
        assert_eq!(
            reply.status.as_u16(),
            201,
            "monitor refused: {}",
            reply.text
        );
        n += 1;
        if n % 20 == 0 {
            let listed = blocks(&app).await;
            if !listed.is_empty() {
                break listed;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no block recorded after {n} creates"
        );
    };

    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["prefix"], PUMPED_PREFIX);
    assert_eq!(listed[0]["mode"], "monitor");
    assert_eq!(listed[0]["rule"], "sequential_numbers");
    for more in n..n + 20 {
        app.create_sms(&pumped(more)).await;
    }
}

#[tokio::test]
async fn a_block_outlives_a_kill_9_and_restart() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let env = [
        ("OTPD__FRAUD__WINDOW_SECONDS", "20"),
        ("OTPD__FRAUD__CONVERSION_GRACE_SECONDS", "0"),
        ("OTPD__RATE_LIMITS__TENANT_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__TENANT_BURST", "100000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "100000"),
    ];
    let mut first = OtpdProcess::start(store.path(), &env);
    let key = wait_for_dev_key(store.path()).await;
    let create = |process: &OtpdProcess, to: String| {
        send(
            authed(
                &client,
                Method::POST,
                process.url("/v1/verifications"),
                &key,
            )
            .json(&json!({"to": to, "channel": "sms"})),
        )
    };
    let mut refused = false;
    for n in 0..1000 {
        let reply = create(&first, pumped(n)).await;
        if reply.status.as_u16() == 429 {
            assert_eq!(reply.body["error"]["reason"], "fraud_suspected");
            refused = true;
            break;
        }
        reply.expect_status(201);
    }
    assert!(refused, "the pump was never refused");
    let before = send(authed(
        &client,
        Method::GET,
        first.url("/v1/fraud/blocks"),
        &key,
    ))
    .await;

    first.stop();
    let second = OtpdProcess::start(store.path(), &env);

    let after = send(authed(
        &client,
        Method::GET,
        second.url("/v1/fraud/blocks"),
        &key,
    ))
    .await;
    after.expect_status(200);
    assert_eq!(after.body["blocks"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        after.body, before.body,
        "the block changed across the restart"
    );
    let again = create(&second, pumped(5000)).await;
    again.expect_error(429, "rate_limited");
    assert_eq!(again.body["error"]["reason"], "fraud_suspected");
    create(&second, DE_MOBILE.to_string())
        .await
        .expect_status(201);
}

#[tokio::test]
async fn in_broker_mode_a_block_is_published_and_pumped_requests_are_rejected() {
    let broker = crate::amqp::Broker::connect().await;
    let app = spawn_app_with(|s| {
        broker.configure(s);
        quick_guard(s, FraudMode::Enforce);
    })
    .await;
    let deadline = std::time::Instant::now() + START_DEADLINE;
    while send(app.anonymous(Method::GET, "/readyz")).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "broker mode never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let blocked = broker.listen("events", "fraud.blocked.ng").await;
    let rejected = broker.listen("events", "verification.rejected.dev").await;

    // One request every 10 ms: the guard judges whole seconds, so the pump must last a few.
    for n in 0..400 {
        broker
            .publish(&json!({"request_id": format!("pump-{n}"), "tenant": "dev",
                             "to": pumped(n), "channel": "sms"}))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let (event, _) = blocked.receive(1).await.remove(0);
    assert_eq!(event["type"], "fraud.blocked");
    assert_eq!(event["prefix"], PUMPED_PREFIX);
    assert_eq!(event["country"], "NG");
    assert_eq!(event["rule"], "sequential_numbers");
    assert_eq!(event["mode"], "enforce");
    assert_eq!(event["figures"]["verified"], 0);
    assert!(event["explanation"].as_str().is_some(), "{event}");
    let text = event.to_string();
    assert!(
        (0..400).all(|n| !text.contains(&pumped(n))),
        "a full number in {text}"
    );
    let (rejection, _) = rejected.receive(1).await.remove(0);
    assert_eq!(rejection["error"]["code"], "rate_limited", "{rejection}");
    assert_eq!(
        rejection["error"]["reason"], "fraud_suspected",
        "{rejection}"
    );
    assert!(rejection["error"]["retry_after_seconds"].as_u64().unwrap() > 3000);
    assert_eq!(blocks(&app).await.len(), 1);

    blocked.delete().await;
    rejected.delete().await;
    drop(app);
    broker.clean_up().await;
}

async fn create_pumped(app: &TestApp, key: &str, n: u32) -> Reply {
    app.create_as(key, &json!({"to": pumped(n), "channel": "sms"}))
        .await
}

/// Creates for the pumped range as tenant `key` until the guard blocks it; the number of
/// creates it took.
pub async fn pump_until_blocked(app: &TestApp, key: &str) -> u32 {
    let mut n = 0;
    loop {
        let reply = create_pumped(app, key, n).await;
        n += 1;
        if reply.status.as_u16() == 429 {
            return n;
        }
        reply.expect_status(201);
        assert!(n < 1000, "the pump was never blocked");
    }
}

#[tokio::test]
async fn an_admin_lifts_a_block_and_the_prefix_is_judged_afresh() {
    let (app, acme, ops) = app_with_acme(TenantSettings::default(), |settings| {
        quick_guard(settings, FraudMode::Enforce)
    });
    let n = pump_until_blocked(&app, &acme).await;
    let path = format!("/v1/admin/fraud/blocks/%2B{}", &PUMPED_PREFIX[1..]);
    let listed = |key: &str| send(app.request_as(key, Method::GET, "/v1/fraud/blocks"));

    send(app.request_as(&acme, Method::DELETE, &path))
        .await
        .expect_error(403, "forbidden");
    create_pumped(&app, &acme, n)
        .await
        .expect_error(429, "rate_limited");
    let lifted = send(app.request_as(&ops, Method::DELETE, &path)).await;

    lifted.expect_status(200);
    assert_eq!(
        lifted.body["lifted"]["prefix"], PUMPED_PREFIX,
        "{}",
        lifted.text
    );
    assert_eq!(listed(&acme).await.body["blocks"], json!([]));
    create_pumped(&app, &acme, n + 1).await.expect_status(201);
    send(app.request_as(&ops, Method::DELETE, &path))
        .await
        .expect_error(404, "not_found");
}
