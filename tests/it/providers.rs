//! Provider flows through the whole engine, against fake providers on loopback: failover,
//! breaker open and half-open, Retry-After pauses, quotas across a restart, no send after
//! expiry, and a vendor adapter end to end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use futures_util::future::join_all;
use otpd::config::Settings;
use otpd::delivery::breaker::BreakerConfig;
use otpd::delivery::settings::ChannelRoutes;
use otpd::domain::Channel;
use otpd::providers::{HttpConfig, ProviderSettings, TwilioConfig};
use otpd::testing::fakes::{FakeProviderServer, RecordedMessage, WireFormat};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const BODY_TEMPLATE: &str = r#"{"to": "{to}", "text": "{body}", "ref": "{verification_id}"}"#;
/// How long one message may take to reach a fake.
const SEND_DEADLINE: Duration = Duration::from_secs(10);

/// A distinct valid German mobile number per test `block` and `n`.
fn number(block: u32, n: u32) -> String {
    format!("+4915{:09}", 100_000_000 + block * 10_000 + n)
}

pub(crate) fn http_provider(fake: &FakeProviderServer) -> ProviderSettings {
    ProviderSettings::Http(HttpConfig {
        url: fake.generic_url(),
        method: "POST".into(),
        headers: BTreeMap::new(),
        body_template: BODY_TEMPLATE.into(),
        message_id_pointer: Some("/id".into()),
        timeout_ms: 2_000,
    })
}

/// Only `providers` (sandbox off), routed in the order of `route` for every channel they
/// serve (the sandbox takes a channel none of them serves), a small breaker, one try per
/// provider.
pub(crate) fn configure(
    settings: &mut Settings,
    providers: Vec<(&str, ProviderSettings)>,
    route: &[&str],
) {
    settings.sandbox.enabled = false;
    settings.providers = providers
        .into_iter()
        .map(|(id, provider)| (id.to_string(), provider))
        .collect();
    let mut routes = ChannelRoutes::new();
    for channel in Channel::all() {
        let serving: Vec<String> = route
            .iter()
            .filter(|id| settings.providers[**id].channels().contains(&channel))
            .map(|id| id.to_string())
            .collect();
        if serving.is_empty() {
            settings.sandbox.enabled = true;
            routes.insert(channel, vec![otpd::providers::SANDBOX.to_string()]);
        } else {
            routes.insert(channel, serving);
        }
    }
    settings.routing.regions = BTreeMap::from([("default".to_string(), routes)]);
    settings.breaker = BreakerConfig {
        window_seconds: 5,
        min_calls: 4,
        failure_percent: 50,
        open_seconds: 2,
        half_open_trials: 2,
    };
    settings.delivery.attempts_per_provider = 1;
}

fn payload(message: &RecordedMessage) -> Value {
    serde_json::from_str(&message.raw_body).unwrap_or(Value::Null)
}

/// The message `fake` accepted for verification `id`, if any.
fn sent_by(fake: &FakeProviderServer, id: &str) -> Option<RecordedMessage> {
    fake.control()
        .messages()
        .into_iter()
        .find(|message| payload(message)["ref"] == id)
}

/// How many messages of verification `id` `fake` accepted.
fn sends_by(fake: &FakeProviderServer, id: &str) -> usize {
    fake.control()
        .messages()
        .iter()
        .filter(|message| payload(message)["ref"] == id)
        .count()
}

/// Waits until `fake` accepted the message of `id`.
async fn wait_sent(fake: &FakeProviderServer, id: &str) -> RecordedMessage {
    let deadline = Instant::now() + SEND_DEADLINE;
    loop {
        if let Some(message) = sent_by(fake, id) {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "{id} did not reach the fake within {SEND_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until one of `fakes` accepted the message of `id`; returns its index and the message.
async fn wait_sent_any(fakes: &[&FakeProviderServer], id: &str) -> (usize, RecordedMessage) {
    let deadline = Instant::now() + SEND_DEADLINE;
    loop {
        for (index, fake) in fakes.iter().enumerate() {
            if let Some(message) = sent_by(fake, id) {
                return (index, message);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{id} reached no fake within {SEND_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The code in a generic-format message.
fn code_in(message: &RecordedMessage) -> String {
    let text = payload(message)["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {}", message.raw_body))
        .to_string();
    extract_code(&text, 6)
}

async fn create_id(app: &TestApp, to: &str) -> String {
    app.sms_id(to).await
}

async fn provider_view(app: &TestApp, provider: &str) -> Value {
    let reply = send(app.request(Method::GET, "/v1/providers")).await;
    reply.expect_status(200);
    reply.body["providers"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["id"] == provider).cloned())
        .unwrap_or_else(|| panic!("no provider {provider} in {}", reply.text))
}

async fn assert_verifies(app: &TestApp, id: &str, code: &str) {
    let reply = app.check_code(id, code).await;
    reply.expect_status(200);
    assert_eq!(reply.body["valid"], true, "{}", reply.text);
    assert_eq!(reply.body["status"], "approved", "{}", reply.text);
}

/// The verification's record once its delivery outcome is recorded (the fake records a
/// message before it answers, so the engine may not know yet).
pub(crate) async fn wait_recorded(app: &TestApp, id: &str) -> Reply {
    let deadline = Instant::now() + SEND_DEADLINE;
    loop {
        let record = app.get(id).await;
        record.expect_status(200);
        if record.str("delivery") != "queued" {
            return record;
        }
        assert!(Instant::now() < deadline, "never recorded: {}", record.text);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the breaker of `provider` shows `state`.
async fn wait_breaker(app: &TestApp, provider: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let view = provider_view(app, provider).await;
        if view["breaker"] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker of {provider} is not {state}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[tokio::test]
async fn failover_delivers_everything_through_the_secondary_and_spares_an_open_primary() {
    // Baseline: the same path through one healthy provider.
    let healthy = FakeProviderServer::start().await.unwrap();
    let base =
        spawn_app_with(|s| configure(s, vec![("base", http_provider(&healthy))], &["base"])).await;
    let mut baseline = Vec::new();
    for n in 0..30 {
        let started = Instant::now();
        let id = create_id(&base, &number(1, n)).await;
        wait_sent(&healthy, &id).await;
        baseline.push(started.elapsed());
    }

    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    primary.control().fail_share(1.0);
    // Stays open through both batches.
    let app = two_provider_app_with(&primary, &secondary, |s| s.breaker.open_seconds = 120).await;
    let mut failover = Vec::new();
    for n in 0..30 {
        let started = Instant::now();
        let id = create_id(&app, &number(2, n)).await;
        let message = wait_sent(&secondary, &id).await;
        failover.push(started.elapsed());
        assert_verifies(&app, &id, &code_in(&message)).await;
        let record = wait_recorded(&app, &id).await;
        assert_eq!(record.str("provider"), "secondary", "{}", record.text);
        assert_eq!(record.str("delivery"), "sent", "{}", record.text);
    }
    assert!(
        primary.control().messages().is_empty(),
        "the failing primary accepted nothing"
    );
    let failed_calls = primary.control().request_count();
    assert!(
        (4..30).contains(&failed_calls),
        "the primary saw {failed_calls} calls: at least min_calls before opening, then none"
    );
    assert_eq!(provider_view(&app, "primary").await["breaker"], "open");

    // Second batch while open: not one call reaches the primary, and each timeline says
    // why the primary was passed over.
    let before = primary.control().request_count();
    for n in 30..50 {
        let id = create_id(&app, &number(2, n)).await;
        let message = wait_sent(&secondary, &id).await;
        assert_verifies(&app, &id, &code_in(&message)).await;
        wait_recorded(&app, &id).await;
        let timeline =
            send(app.request(Method::GET, &format!("/v1/verifications/{id}/attempts"))).await;
        let seen: Vec<(&str, &str, &str)> = timeline.body["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["provider"].as_str().unwrap(),
                    a["outcome"].as_str().unwrap(),
                    a["next"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("primary", "breaker_open", "failover"),
                ("secondary", "sent", "done")
            ],
            "{}",
            timeline.text
        );
    }
    assert_eq!(
        primary.control().request_count(),
        before,
        "an open breaker let calls through"
    );
    let view = provider_view(&app, "primary").await;
    assert_eq!(view["breaker"], "open", "{view}");
    assert_eq!(provider_view(&app, "secondary").await["sent"], 50);

    baseline.sort();
    failover.sort();
    eprintln!(
        "failover latency create→fake: baseline p50={:.1}ms p99={:.1}ms; failover p50={:.1}ms p99={:.1}ms; primary calls before opening={failed_calls}",
        millis(percentile(&baseline, 0.5)),
        millis(percentile(&baseline, 0.99)),
        millis(percentile(&failover, 0.5)),
        millis(percentile(&failover, 0.99)),
    );
    assert!(
        percentile(&failover, 0.99) < Duration::from_secs(3),
        "failover p99 {:?}",
        percentile(&failover, 0.99)
    );
}

/// Opens the primary's breaker of `app` with `calls` sequential messages, all failing over.
async fn open_primary(
    app: &TestApp,
    primary: &FakeProviderServer,
    secondary: &FakeProviderServer,
    block: u32,
) {
    primary.control().fail_share(1.0);
    for n in 0..6 {
        let id = create_id(app, &number(block, n)).await;
        wait_sent(secondary, &id).await;
    }
    wait_breaker(app, "primary", "open").await;
}

async fn two_provider_app(primary: &FakeProviderServer, secondary: &FakeProviderServer) -> TestApp {
    two_provider_app_with(primary, secondary, |_| {}).await
}

/// `two_provider_app`, with `tweak` applied to its settings last.
async fn two_provider_app_with(
    primary: &FakeProviderServer,
    secondary: &FakeProviderServer,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_with(|s| {
        configure(
            s,
            vec![
                ("primary", http_provider(primary)),
                ("secondary", http_provider(secondary)),
            ],
            &["primary", "secondary"],
        );
        tweak(s);
    })
    .await
}

/// Creates `count` verifications at once; waits until each reached one of the fakes.
async fn burst(app: &TestApp, fakes: &[&FakeProviderServer], block: u32, count: u32) -> Vec<usize> {
    let numbers: Vec<String> = (0..count).map(|n| number(block, 100 + n)).collect();
    let ids = join_all(numbers.iter().map(|to| create_id(app, to))).await;
    let mut by = Vec::new();
    for id in &ids {
        by.push(wait_sent_any(fakes, id).await.0);
    }
    by
}

#[tokio::test]
async fn half_open_lets_exactly_the_trials_through_then_closes() {
    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    let app = two_provider_app(&primary, &secondary).await;
    open_primary(&app, &primary, &secondary, 3).await;

    // The primary recovers; slow answers keep the trials in flight while the burst routes.
    primary.control().fail_share(0.0);
    primary.control().set_latency(Duration::from_millis(700));
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let before = primary.control().request_count();
    let by = burst(&app, &[&primary, &secondary], 3, 10).await;
    let trials = primary.control().request_count() - before;
    assert_eq!(trials, 2, "half_open_trials is 2");
    assert_eq!(by.iter().filter(|&&i| i == 0).count(), 2, "{by:?}");
    wait_breaker(&app, "primary", "closed").await;

    // Closed again: the primary takes traffic.
    primary.control().set_latency(Duration::ZERO);
    let id = create_id(&app, &number(3, 500)).await;
    wait_sent(&primary, &id).await;
}

#[tokio::test]
async fn failed_trials_reopen_the_breaker() {
    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    let app = two_provider_app(&primary, &secondary).await;
    open_primary(&app, &primary, &secondary, 4).await;

    primary.control().set_latency(Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let before = primary.control().request_count();
    let by = burst(&app, &[&primary, &secondary], 4, 10).await;
    assert!(by.iter().all(|&i| i == 1), "all by the secondary: {by:?}");
    let trials = primary.control().request_count() - before;
    assert_eq!(trials, 2, "the two trials, then nothing");
    wait_breaker(&app, "primary", "open").await;
    // Open again: no further call for a while.
    let before = primary.control().request_count();
    for n in 0..5 {
        let id = create_id(&app, &number(4, 600 + n)).await;
        wait_sent(&secondary, &id).await;
    }
    assert_eq!(primary.control().request_count(), before);
}

#[tokio::test]
async fn retry_after_pauses_the_provider_without_opening_its_breaker() {
    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    primary.control().rate_limit(Some(Duration::from_secs(2)));
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![
                ("primary", http_provider(&primary)),
                ("secondary", http_provider(&secondary)),
            ],
            &["primary", "secondary"],
        );
        // Two 429s in the window would open it, were they counted as failures.
        s.breaker.min_calls = 2;
    })
    .await;

    let id = create_id(&app, &number(5, 0)).await;
    let message = wait_sent(&secondary, &id).await;
    assert_verifies(&app, &id, &code_in(&message)).await;
    let view = provider_view(&app, "primary").await;
    let paused = view["paused_until"]
        .as_str()
        .unwrap_or_else(|| panic!("no paused_until after a 429: {view}"));
    let ahead = seconds_from_now(paused);
    assert!(
        (0.0..=2.5).contains(&ahead),
        "paused {ahead}s ahead: {view}"
    );
    assert_eq!(view["breaker"], "closed", "{view}");

    // Keep sending for 9 s: everything fails over; the primary is asked about once per pause.
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(9) {
        let id = create_id(&app, &number(5, n)).await;
        wait_sent(&secondary, &id).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = primary.control().request_count();
    assert!(
        (4..=7).contains(&calls),
        "{calls} calls to a provider pausing 2 s at a time over ~9 s"
    );
    let view = provider_view(&app, "primary").await;
    assert_eq!(
        view["breaker"], "closed",
        "429s tripped the breaker: {view}"
    );
    assert!(primary.control().messages().is_empty());

    // Once it stops asking for pauses, it is first choice again.
    primary.control().rate_limit(None);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let id = create_id(&app, &number(5, 900)).await;
    let message = wait_sent(&primary, &id).await;
    assert_verifies(&app, &id, &code_in(&message)).await;
}

#[tokio::test]
async fn a_429_fails_over_at_once_instead_of_holding_the_message_for_retry_after() {
    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    primary.control().rate_limit(Some(Duration::from_secs(10)));
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![
                ("primary", http_provider(&primary)),
                ("secondary", http_provider(&secondary)),
            ],
            &["primary", "secondary"],
        );
        s.delivery.attempts_per_provider = 3;
    })
    .await;
    let started = Instant::now();
    let id = create_id(&app, &number(6, 0)).await;
    while sent_by(&secondary, &id).is_none() && started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the message waited {took:?} (primary calls: {}) on a provider that asked for a 10 s pause, with another one free",
        primary.control().request_count()
    );
}

#[tokio::test]
async fn a_quota_alerts_at_80_95_100_fails_over_when_spent_and_survives_a_restart() {
    quota_flow(false).await;
}

#[tokio::test]
async fn quota_usage_survives_kill_9() {
    quota_flow(true).await;
}

/// Spends provider qa's daily cap of 10, checks the alerts and the failover to qb, then
/// restarts otpd (SIGTERM, or SIGKILL when `crash`) and checks the usage is still 10.
async fn quota_flow(crash: bool) {
    let first = FakeProviderServer::start().await.unwrap();
    let second = FakeProviderServer::start().await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let config = store.path().join("quota.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[sandbox]
enabled = false
delay_ms = 0

[delivery]
concurrency = 8
mailbox_capacity = 64
attempts_per_provider = 1

[providers.qa]
kind = "http"
url = "{}"
body_template = '{BODY_TEMPLATE}'

[providers.qb]
kind = "http"
url = "{}"
body_template = '{BODY_TEMPLATE}'

[routing.default]
sms = ["qa", "qb"]
email = ["qa", "qb"]

[quotas.qa]
daily = 10
"#,
            first.generic_url(),
            second.generic_url()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let args = ["--config", config_arg.as_str()];
    let env = [
        ("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", "10000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "10000"),
    ];
    let http = http_client();
    let process = OtpdProcess::start_with_args(store.path(), &args, &env);
    let key = wait_for_dev_key(store.path()).await;

    let create = |process: &OtpdProcess, to: String| {
        authed(&http, Method::POST, process.url("/v1/verifications"), &key)
            .json(&json!({"to": to, "channel": "sms"}))
    };
    for n in 0..10 {
        let reply = send(create(&process, number(7, n))).await;
        reply.expect_status(201);
        wait_sent(&first, reply.str("id")).await;
    }
    // The QuotaActor counts after the send: let it catch up.
    let providers = |process: &OtpdProcess| {
        send(authed(
            &http,
            Method::GET,
            process.url("/v1/providers"),
            &key,
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = providers(&process).await;
        let qa = reply.body["providers"]
            .as_array()
            .and_then(|list| list.iter().find(|p| p["id"] == "qa").cloned())
            .unwrap();
        if qa["quota"]["day"]["used"] == 10 {
            assert_eq!(qa["quota"]["day"]["limit"], 10);
            break;
        }
        assert!(Instant::now() < deadline, "usage never reached 10: {qa}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut process = process;
    if crash {
        // Right after the 10th count, before anything else could flush the store.
        process.stop();
    } else {
        check_quota_alerts_and_failover(&http, &process, &create, &first, &second).await;
        let (clean, output) = process.terminate(Duration::from_secs(10));
        assert!(clean, "otpd did not stop on SIGTERM:\n{output}");
    }
    let process = OtpdProcess::start_with_args(store.path(), &args, &env);
    let reply = providers(&process).await;
    let qa = reply.body["providers"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["id"] == "qa").cloned())
        .unwrap();
    assert_eq!(qa["quota"]["day"]["used"], 10, "usage after restart: {qa}");
    // Still spent after the restart: the next message goes to qb.
    let reply = send(create(&process, number(7, 11))).await;
    reply.expect_status(201);
    wait_sent(&second, reply.str("id")).await;
    assert_eq!(first.control().request_count(), 10);
}

async fn check_quota_alerts_and_failover(
    http: &reqwest::Client,
    process: &OtpdProcess,
    create: &impl Fn(&OtpdProcess, String) -> reqwest::RequestBuilder,
    first: &FakeProviderServer,
    second: &FakeProviderServer,
) {
    let metrics = send(http.get(process.url("/metrics"))).await.text;
    for percent in ["80", "95", "100"] {
        let line = format!(
            "otpd_provider_quota_alerts_total{{percent=\"{percent}\",period=\"day\",provider=\"qa\"}} 1"
        );
        assert!(
            metrics.contains(&line),
            "missing {line} in:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("quota"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("otpd_provider_quota_alerts_total") && l.contains("\"qb\"")),
        "an alert for the uncapped qb"
    );

    // The 11th goes to the next provider.
    let reply = send(create(process, number(7, 10))).await;
    reply.expect_status(201);
    wait_sent(second, reply.str("id")).await;
    assert_eq!(first.control().request_count(), 10, "nothing past the cap");
}

#[tokio::test]
async fn nothing_is_sent_after_expiry_when_every_provider_is_down() {
    let a = FakeProviderServer::start().await.unwrap();
    let b = FakeProviderServer::start().await.unwrap();
    a.control().fail_share(1.0);
    b.control().fail_share(1.0);
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![("a", http_provider(&a)), ("b", http_provider(&b))],
            &["a", "b"],
        );
        s.delivery.attempts_per_provider = 2;
    })
    .await;

    // Note when each fake last saw a request.
    let last_request = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (last_request, stop) = (Arc::clone(&last_request), Arc::clone(&stop));
        let (a, b) = (a.control().clone(), b.control().clone());
        tokio::spawn(async move {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = a.request_count() + b.request_count();
                if now != seen {
                    seen = now;
                    *last_request.lock().unwrap() = SystemTime::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut ids = Vec::new();
    let mut expires_at = String::new();
    for n in 0..3 {
        let reply = app
            .create(&json!({"to": number(8, n), "channel": "sms", "ttl_seconds": 30}))
            .await;
        reply.expect_status(201);
        ids.push(reply.str("id").to_string());
        expires_at = reply.str("expires_at").to_string();
    }
    sleep_until(&expires_at).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();

    let calls = a.control().request_count() + b.control().request_count();
    assert!(calls >= 6, "the engine kept trying: {calls} calls");
    let last = *last_request.lock().unwrap();
    let expiry = timestamp(&expires_at);
    let late = last.duration_since(expiry).ok();
    assert!(
        late.is_none_or(|late| late < Duration::from_millis(50)),
        "a provider got a request {late:?} after the code expired"
    );
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let record = app.get(id).await;
            if record.str("delivery") == "failed" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "delivery never turned failed: {}",
                record.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Its timeline: both providers failing, bounded, and the expiry last.
        let timeline =
            send(app.request(Method::GET, &format!("/v1/verifications/{id}/attempts"))).await;
        timeline.expect_status(200);
        let attempts = timeline.body["attempts"].as_array().unwrap();
        assert!(attempts.len() <= 32, "{}", timeline.text);
        for provider in ["a", "b"] {
            assert!(
                attempts
                    .iter()
                    .any(|a| a["provider"] == provider && a["outcome"] == "transient"),
                "{provider}'s failures are on the timeline: {}",
                timeline.text
            );
        }
        let last = attempts.last().unwrap();
        assert_eq!(last["outcome"], "expired_before_send", "{}", timeline.text);
        assert_eq!(last["next"], "done");
    }
    eprintln!(
        "expiry: {calls} failing calls in 30 s, last one {:?} before expiry",
        expiry.duration_since(last).ok()
    );
}

#[tokio::test]
async fn a_twilio_provider_delivers_end_to_end() {
    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "twilio-token-1";
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![(
                "tw",
                ProviderSettings::Twilio(TwilioConfig {
                    base_url: fake.base_url(),
                    account_sid: SID.into(),
                    auth_token: TOKEN.to_string().into(),
                    from: Some("+15005550006".into()),
                    messaging_service_sid: None,
                    status_callback: None,
                    timeout_ms: 2_000,
                }),
            )],
            &["tw"],
        )
    })
    .await;
    let to = number(9, 0);
    let id = create_id(&app, &to).await;
    let deadline = Instant::now() + SEND_DEADLINE;
    let message = loop {
        if let Some(message) = fake.control().messages().pop() {
            break message;
        }
        assert!(Instant::now() < deadline, "nothing reached the fake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(message.format, WireFormat::Twilio);
    assert_eq!(message.method, "POST");
    assert_eq!(
        message.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    assert_eq!(message.header("authorization"), Some(expected.as_str()));
    assert_eq!(message.field("To"), Some(to.as_str()));
    assert_eq!(message.field("From"), Some("+15005550006"));
    let code = extract_code(message.field("Body").expect("a Body"), 6);
    assert_verifies(&app, &id, &code).await;
    let record = wait_recorded(&app, &id).await;
    assert_eq!(record.str("provider"), "tw", "{}", record.text);
    assert_eq!(record.str("delivery"), "sent", "{}", record.text);
}

#[tokio::test]
async fn a_country_override_sets_the_sender_id_and_the_template() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![(
                "tw",
                ProviderSettings::Twilio(TwilioConfig {
                    base_url: fake.base_url(),
                    account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                    auth_token: "token".to_string().into(),
                    from: Some("+15005550006".into()),
                    messaging_service_sid: None,
                    status_callback: None,
                    timeout_ms: 2_000,
                }),
            )],
            &["tw"],
        );
        s.countries.insert(
            "DE".into(),
            otpd::delivery::settings::CountryOverrides {
                sender_id: Some("ACME".into()),
                template: Some("login".into()),
                ..Default::default()
            },
        );
    })
    .await;
    let german = create_id(&app, &number(11, 0)).await;
    let american = create_id(&app, US_NUMBER).await;
    let deadline = Instant::now() + SEND_DEADLINE;
    while fake.control().messages().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "both messages should reach the fake"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let messages = fake.control().messages();
    let to_germany = messages.iter().find(|m| m.to == number(11, 0)).unwrap();
    let to_us = messages.iter().find(|m| m.to == US_NUMBER).unwrap();
    assert_eq!(to_germany.field("From"), Some("ACME"));
    assert!(to_germany.field("Body").unwrap().contains("login code"));
    assert_eq!(to_us.field("From"), Some("+15005550006"));
    assert!(to_us.field("Body").unwrap().contains("verification code"));
    let _ = (german, american);
}

#[tokio::test]
async fn an_sms_to_india_carries_the_dlt_ids_of_its_template_and_others_none() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_with(|s| {
        let mut gateway = http_provider(&fake);
        if let ProviderSettings::Http(config) = &mut gateway {
            config.body_template = r#"{"to": "{to}", "text": "{body}", "ref": "{verification_id}", "pe_id": "{entity_id}", "dlt_template_id": "{template_id}"}"#.into();
        }
        configure(s, vec![("gateway", gateway)], &["gateway"]);
        s.countries.insert(
            "IN".into(),
            otpd::delivery::settings::CountryOverrides {
                entity_id: Some("1101234567890123456".into()),
                template_ids: BTreeMap::from([
                    ("default".into(), "1107160000000000001".into()),
                    ("login".into(), "1107160000000000002".into()),
                ]),
                ..Default::default()
            },
        );
    })
    .await;
    let indian = "+919812345678";
    let india = app
        .create(&json!({"to": indian, "channel": "sms", "template": "login"}))
        .await;
    india.expect_status(201);
    let to_india = payload(&wait_sent(&fake, india.str("id")).await);
    assert_eq!(to_india["pe_id"], "1101234567890123456");
    assert_eq!(to_india["dlt_template_id"], "1107160000000000002");
    let german = create_id(&app, &number(12, 0)).await;
    let to_germany = payload(&wait_sent(&fake, &german).await);
    assert_eq!(
        (&to_germany["pe_id"], &to_germany["dlt_template_id"]),
        (&json!(""), &json!(""))
    );
}

#[tokio::test]
async fn a_provider_rate_limit_paces_its_messages() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_with(|s| {
        configure(s, vec![("paced", http_provider(&fake))], &["paced"]);
        s.provider_limits.insert(
            "paced".into(),
            otpd::delivery::settings::ProviderLimits {
                messages_per_second: Some(5.0),
                concurrency: None,
            },
        );
    })
    .await;
    let started = Instant::now();
    for n in 0..15 {
        create_id(&app, &number(12, n)).await;
    }
    let deadline = Instant::now() + SEND_DEADLINE;
    while fake.control().messages().len() < 15 {
        assert!(Instant::now() < deadline, "all 15 should arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A burst of 5, then 5 per second: the last of 15 cannot arrive before 2 s have passed.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_800),
        "15 messages at 5/s took only {took:?}"
    );
}

#[tokio::test]
async fn a_primary_that_takes_the_request_and_stalls_costs_at_most_one_extra_send() {
    let primary = FakeProviderServer::start().await.unwrap();
    let secondary = FakeProviderServer::start().await.unwrap();
    primary.control().accept_then_hang(true);
    // Three tries per provider, as by default, and a breaker that stays closed: only the
    // rule for a call that may have been taken keeps the primary from a second send.
    let app = two_provider_app_with(&primary, &secondary, |s| {
        s.delivery.attempts_per_provider = 3;
        s.breaker.min_calls = 1_000;
    })
    .await;

    let count = 8;
    let numbers: Vec<String> = (0..count).map(|n| number(14, n)).collect();
    let ids = join_all(numbers.iter().map(|to| create_id(&app, to))).await;
    for id in &ids {
        let message = wait_sent(&secondary, id).await;
        assert_verifies(&app, id, &code_in(&message)).await;
    }
    // Time for a retry to the primary, had there been one (its timeout is 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The primary took each message once, then stalled: one extra send per verification,
    // no more.
    for id in &ids {
        let taken = sends_by(&primary, id);
        assert!(
            taken <= 1,
            "{id} was taken {taken} times by the stalling primary"
        );
        let sends = sends_by(&secondary, id);
        assert_eq!(sends, 1, "{id} was sent {sends} times by the secondary");
    }
}

#[tokio::test]
async fn an_smpp_provider_delivers_end_to_end_and_its_receipt_comes_back_on_the_bind() {
    let smsc = otpd::testing::FakeSmsc::start("otpd", "pw-1")
        .await
        .unwrap();
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![("smsc", ProviderSettings::Smpp(smpp_to(smsc.port())))],
            &["smsc"],
        )
    })
    .await;
    let to = number(9, 1);
    let id = create_id(&app, &to).await;
    let deadline = Instant::now() + SEND_DEADLINE;
    let submitted = loop {
        if let Some(submitted) = smsc.control().submitted().pop() {
            break submitted;
        }
        assert!(Instant::now() < deadline, "nothing reached the SMSC");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(submitted.to, to.trim_start_matches('+'));
    let code = extract_code(&submitted.text, 6);
    // The SMSC's receipt comes back on the bind: the verification is delivered.
    let deadline = Instant::now() + SEND_DEADLINE;
    loop {
        let record = app.get(&id).await;
        if record.str("delivery") == "delivered" {
            assert_eq!(record.str("provider"), "smsc", "{}", record.text);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no receipt recorded: {}",
            record.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_verifies(&app, &id, &code).await;
}

/// An SMPP provider's settings for the fake SMSC on `port` (account `otpd`, password
/// `pw-1`), over plain TCP.
pub(crate) fn smpp_to(port: u16) -> otpd::providers::SmppConfig {
    otpd::providers::SmppConfig {
        host: "127.0.0.1".into(),
        port,
        system_id: "otpd".into(),
        password: "pw-1".to_string().into(),
        system_type: String::new(),
        source_addr: "Acme".into(),
        source_ton: None,
        source_npi: None,
        bind: "transceiver".into(),
        window: 10,
        binds: 1,
        enquire_link_seconds: 30,
        tls: false,
        ca_file: None,
        timeout_ms: 2_000,
    }
}
