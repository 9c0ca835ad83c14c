//! No enumeration, no oracle: guesses beyond the allowed attempts are never evaluated, and
//! answers (and their timing) for unknown ids, wrong sessions and wrong codes tell an
//! attacker nothing beyond what the API promises.

use rand::RngCore;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A tenant of its own, so this test's figures in the process-wide metrics are its own.
fn unique_tenant(app: &TestApp, prefix: &str) -> (String, String) {
    let name = format!("{prefix}-{:08x}", rand::thread_rng().next_u32());
    let key = app.add_tenant(&name);
    (name, key)
}

/// `otpd_checks_total{tenant, outcome}` as `/metrics` reports it now (0 if absent).
async fn checks_counted(app: &TestApp, tenant: &str, outcome: &str) -> u64 {
    let text = send(app.anonymous(Method::GET, "/metrics")).await.text;
    let wanted_tenant = format!("tenant=\"{tenant}\"");
    let wanted_outcome = format!("outcome=\"{outcome}\"");
    text.lines()
        .filter(|line| line.starts_with("otpd_checks_total{"))
        .filter(|line| line.contains(&wanted_tenant) && line.contains(&wanted_outcome))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Creates an SMS verification as the tenant of `key`; returns its id.
async fn create_as(app: &TestApp, key: &str, to: &str) -> String {
    let reply = app
        .create_as(key, &json!({"to": to, "channel": "sms"}))
        .await;
    reply.expect_status(201);
    reply.str("id").to_owned()
}

async fn check_as(app: &TestApp, key: &str, id: &str, body: &Value) -> Reply {
    send(
        app.request_as(key, Method::POST, &format!("/v1/verifications/{id}/check"))
            .json(body),
    )
    .await
}

#[tokio::test]
async fn ten_thousand_sequential_guesses_evaluate_only_the_allowed_attempts() {
    let app = spawn_app().await;
    let (tenant, key) = unique_tenant(&app, "guess");
    let id = create_as(&app, &key, DE_MOBILE).await;
    let code: u32 = app.code_for(&id).await.parse().unwrap();

    let mut evaluated = 0;
    for n in 1..=10_000u32 {
        // The right code comes once, half-way, long after the attempts ran out.
        let guess = if n == 5_000 {
            code
        } else {
            (code + n) % 1_000_000
        };
        let reply = check_as(&app, &key, &id, &json!({ "code": format!("{guess:06}") })).await;
        match reply.status.as_u16() {
            200 => {
                assert_eq!(reply.body["valid"], false, "guess {n}: {}", reply.text);
                evaluated += 1;
            }
            _ => {
                reply.expect_error(409, "max_attempts_reached");
            }
        }
    }

    assert_eq!(evaluated, 5, "guesses answered with an evaluation");
    assert_eq!(checks_counted(&app, &tenant, "wrong").await, 5);
    assert_eq!(checks_counted(&app, &tenant, "approved").await, 0);
    let record = send(app.request_as(&key, Method::GET, &format!("/v1/verifications/{id}"))).await;
    assert_eq!(
        record.body["status"], "max_attempts_reached",
        "{}",
        record.text
    );
}

#[tokio::test]
async fn unknown_and_foreign_ids_get_the_same_answer() {
    let app = spawn_app().await;
    let (_, other_key) = unique_tenant(&app, "other");
    let foreign_id = create_as(&app, &other_key, DE_MOBILE).await;
    let unknown_id = "ver_00000000000000000000000000000000";
    let body = json!({"code": "123456"});

    let unknown = app.check(unknown_id, &body).await;
    let foreign = app.check(&foreign_id, &body).await;
    let unknown_get = app.get(unknown_id).await;
    let foreign_get = app.get(&foreign_id).await;
    let unknown_cancel = app.cancel(unknown_id).await;
    let foreign_cancel = app.cancel(&foreign_id).await;

    unknown.expect_error(404, "not_found");
    assert_eq!(unknown.text, foreign.text, "check");
    assert_eq!(unknown_get.status, foreign_get.status);
    assert_eq!(unknown_get.text, foreign_get.text, "get");
    assert_eq!(unknown_cancel.status, foreign_cancel.status);
    assert_eq!(unknown_cancel.text, foreign_cancel.text, "cancel");
    // The foreign verification was not touched by any of it.
    let untouched = check_as(&app, &other_key, &foreign_id, &json!({"code": "000000"})).await;
    assert_eq!(untouched.u64("attempts_remaining"), 4, "{}", untouched.text);
}

#[tokio::test]
async fn a_wrong_session_and_a_wrong_code_get_the_same_answer() {
    let app = spawn_app().await;
    let reply = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms", "session_id": "s-1"}))
        .await;
    reply.expect_status(201);
    let id = reply.str("id").to_owned();
    let code = app.code_for(&id).await;
    let wrong_code = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);

    let by_code = app
        .check(&id, &json!({"code": wrong_code, "session_id": "s-1"}))
        .await;
    let by_session = app
        .check(&id, &json!({"code": code, "session_id": "s-2"}))
        .await;
    let without_session = app.check(&id, &json!({ "code": code })).await;

    let shape = |reply: &Reply| {
        let mut body = reply.body.clone();
        body["attempts_remaining"] = Value::Null;
        (reply.status, body)
    };
    assert_eq!(shape(&by_code), shape(&by_session));
    assert_eq!(shape(&by_code), shape(&without_session));
    assert_eq!(by_code.body["valid"], false);
    assert_eq!(
        [&by_code, &by_session, &without_session].map(|r| r.u64("attempts_remaining")),
        [4, 3, 2],
        "each one used an attempt"
    );
}

/// Medians of `a` and `b`, sampled alternately `rounds` times so that load on the machine
/// falls on both alike.
async fn interleaved_medians<A, B>(rounds: usize, mut a: A, mut b: B) -> (Duration, Duration)
where
    A: AsyncFnMut(usize),
    B: AsyncFnMut(usize),
{
    let mut times_a = Vec::with_capacity(rounds);
    let mut times_b = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        a(round).await;
        times_a.push(started.elapsed());
        let started = Instant::now();
        b(round).await;
        times_b.push(started.elapsed());
    }
    times_a.sort_unstable();
    times_b.sort_unstable();
    (times_a[rounds / 2], times_b[rounds / 2])
}

/// Whether two medians are alike: within half of the larger one, or 2 ms (scheduling noise
/// on a loaded 2-core machine). Skipping the durable write on one path (what would make an
/// oracle) costs a flush, which this still tells apart.
#[track_caller]
fn assert_alike(what: &str, a: Duration, b: Duration) {
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    let allowed = (high / 2).max(Duration::from_millis(2));
    eprintln!("{what}: medians {a:?} and {b:?}");
    assert!(
        high - low <= allowed,
        "{what}: medians {a:?} and {b:?} differ by more than {allowed:?}"
    );
}

#[tokio::test]
async fn checks_take_as_long_for_a_wrong_session_as_for_a_wrong_code() {
    let app = spawn_app_with(|settings| settings.verification.max_attempts = 10).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        let reply = app
            .create(&json!({"to": de_mobile(n), "channel": "sms", "session_id": "s-1"}))
            .await;
        reply.expect_status(201);
        ids.push(reply.str("id").to_owned());
    }
    let ids = &ids;
    let (wrong_code, wrong_session) = interleaved_medians(
        ids.len() * 2,
        async |round| {
            let reply = app
                .check(
                    &ids[round / 2],
                    &json!({"code": "000000", "session_id": "s-1"}),
                )
                .await;
            assert_eq!(reply.body["valid"], false, "{}", reply.text);
        },
        async |round| {
            let reply = app
                .check(
                    &ids[round / 2],
                    &json!({"code": "000001", "session_id": "s-2"}),
                )
                .await;
            assert_eq!(reply.body["valid"], false, "{}", reply.text);
        },
    )
    .await;
    assert_alike("wrong code vs wrong session", wrong_code, wrong_session);
}

#[tokio::test]
async fn creates_take_as_long_with_a_pending_verification_as_without() {
    let app = spawn_app_with(|settings| {
        settings.verification.resend_cooldown_seconds = 0;
        settings.verification.sends_per_destination = 1_000;
    })
    .await;
    let pending: Vec<String> = (0..60)
        .map(|n| format!("+49151{:08}", 20_000_000 + n))
        .collect();
    for to in &pending {
        app.create_sms(to).await;
    }
    let pending = &pending;
    let (fresh, resent) = interleaved_medians(
        pending.len(),
        async |round| {
            let to = format!("+49176{:08}", 30_000_000 + round);
            app.create(&json!({"to": to, "channel": "sms"}))
                .await
                .expect_status(201);
        },
        async |round| {
            app.create(&json!({"to": pending[round], "channel": "sms"}))
                .await
                .expect_status(200);
        },
    )
    .await;
    assert_alike(
        "create without vs with a pending verification",
        fresh,
        resent,
    );
}
