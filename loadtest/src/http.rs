//! `http`: create-then-check flows against the HTTP API, the code read from what reached the
//! provider; `verify`: checks per second on verifications issued beforehand.

use anyhow::Context;
use hdrhistogram::Histogram;
use otpd::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use crate::arrivals::{code_in, Arrival};
use crate::driver::{self, Driven, Plan};
use crate::tracker::{self, Tracker};

/// Digits in the codes otpd sends by default.
const CODE_LENGTH: usize = 6;

/// An HTTP client of the API under test.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    /// Every node's address; each request goes to the next.
    bases: Arc<Vec<String>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    bearer: Arc<String>,
    locale: Arc<String>,
}

impl Api {
    pub fn new(
        bases: &[String],
        api_key: &str,
        locale: &str,
        concurrency: usize,
    ) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency.max(1))
            .pool_idle_timeout(otpd::api::server::CLIENT_POOL_IDLE)
            .timeout(Duration::from_secs(30))
            .build()
            .context("build the HTTP client")?;
        Ok(Api {
            client,
            bases: Arc::new(
                bases
                    .iter()
                    .map(|base| base.trim_end_matches('/').to_owned())
                    .collect(),
            ),
            next: Arc::default(),
            bearer: Arc::new(format!("Bearer {api_key}")),
            locale: Arc::new(locale.to_owned()),
        })
    }

    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(u16, serde_json::Value), reqwest::Error> {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = &self.bases[turn % self.bases.len().max(1)];
        let response = self
            .client
            .post(format!("{base}{path}"))
            .header(reqwest::header::AUTHORIZATION, self.bearer.as_str())
            .json(&body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    /// Creates an SMS verification for request `n`; its id on 201. It lives the longest
    /// time the API allows, so every verification of a long run is still live at its end.
    async fn create(&self, n: u64) -> Option<String> {
        let body = serde_json::json!({
            "to": tracker::destination(n), "channel": "sms",
            "locale": self.locale.as_str(), "template": "login",
            "ttl_seconds": otpd::issuance::settings::MAX_TTL_SECONDS,
        });
        match self.post("/v1/verifications", body).await {
            Ok((201, body)) => body["id"].as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// Checks `code` against verification `id`.
    async fn check(&self, id: &str, code: &str) -> Checked {
        let body = serde_json::json!({ "code": code });
        match self
            .post(&format!("/v1/verifications/{id}/check"), body)
            .await
        {
            Ok((200, body)) => body["valid"]
                .as_bool()
                .map_or(Checked::Failed, Checked::Valid),
            Ok((404, _)) => Checked::NotFound,
            _ => Checked::Failed,
        }
    }
}

/// Matches arrivals to the flows waiting for them, and keeps the Jepsen counts.
#[derive(Clone)]
pub struct Mailroom {
    pub tracker: Arc<Mutex<Tracker>>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Arrival>>>>,
}

impl Mailroom {
    pub fn start(mut arrivals: mpsc::Receiver<Arrival>, bar: indicatif::ProgressBar) -> Mailroom {
        let mailroom = Mailroom {
            tracker: Arc::new(Mutex::new(Tracker::default())),
            waiting: Arc::new(Mutex::new(HashMap::new())),
        };
        let room = mailroom.clone();
        tokio::spawn(async move {
            while let Some(arrival) = arrivals.recv().await {
                let first = room
                    .tracker
                    .lock_unpoisoned()
                    .arrived(&arrival.to, arrival.at);
                let Some(n) = first.or_else(|| tracker::request_index(&arrival.to)) else {
                    continue;
                };
                let waiter = room.waiting.lock_unpoisoned().remove(&n);
                if let Some(waiter) = waiter {
                    bar.inc(1);
                    let _ = waiter.send(arrival);
                }
            }
        });
        mailroom
    }

    /// Registers interest in request `n`'s message before it is requested.
    fn expect(&self, n: u64, since: Instant) -> oneshot::Receiver<Arrival> {
        let (sender, receiver) = oneshot::channel();
        self.waiting.lock_unpoisoned().insert(n, sender);
        self.tracker.lock_unpoisoned().sent(n, since);
        receiver
    }

    fn accepted(&self, n: u64, accepted: bool) {
        let mut tracker = self.tracker.lock_unpoisoned();
        if accepted {
            tracker.published(n);
        } else {
            tracker.refused(n);
        }
        if !accepted {
            self.waiting.lock_unpoisoned().remove(&n);
        }
    }
}

/// Creates verification `n` and waits for its code at the provider.
async fn issue(
    api: &Api,
    mailroom: &Mailroom,
    n: u64,
    since: Instant,
    wait: Duration,
) -> Result<(String, String, Instant), Instant> {
    let arrival = mailroom.expect(n, since);
    let id = api.create(n).await;
    let created_at = Instant::now();
    mailroom.accepted(n, id.is_some());
    let id = id.ok_or(created_at)?;
    let arrival = match tokio::time::timeout(wait, arrival).await {
        Ok(Ok(arrival)) => arrival,
        _ => return Err(created_at),
    };
    let code = code_in(&arrival.text, CODE_LENGTH).ok_or(created_at)?;
    Ok((id, code, created_at))
}

#[derive(Default)]
pub struct Latencies {
    pub create: Option<Histogram<u64>>,
    pub check: Option<Histogram<u64>>,
    pub flow: Option<Histogram<u64>>,
}

fn shared_histogram() -> Arc<Mutex<Histogram<u64>>> {
    Arc::new(Mutex::new(tracker::histogram()))
}

fn take(histogram: Arc<Mutex<Histogram<u64>>>) -> Histogram<u64> {
    histogram.lock_unpoisoned().clone()
}

fn record(histogram: &Mutex<Histogram<u64>>, elapsed: Duration) {
    tracker::record(&mut histogram.lock_unpoisoned(), elapsed);
}

pub struct FlowRun {
    pub driven: Driven,
    pub completed: u64,
    pub errors: u64,
    pub latencies: Latencies,
    pub end: Instant,
}

/// `http`: create, wait for the code at the provider, check it; each step timed.
pub async fn flows(api: &Api, mailroom: &Mailroom, plan: &Plan, wait: Duration) -> FlowRun {
    let (create, check, flow) = (shared_histogram(), shared_histogram(), shared_histogram());
    let completed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Arc::new(Mutex::new(Instant::now()));
    let driven = driver::drive(plan, |n, since| {
        let (api, mailroom) = (api.clone(), mailroom.clone());
        let (create, check, flow) = (Arc::clone(&create), Arc::clone(&check), Arc::clone(&flow));
        let (completed, errors, end) = (
            Arc::clone(&completed),
            Arc::clone(&errors),
            Arc::clone(&end),
        );
        async move {
            let (id, code, created_at) = match issue(&api, &mailroom, n, since, wait).await {
                Ok(issued) => issued,
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            record(&create, created_at.duration_since(since));
            let checking = Instant::now();
            let checked = api.check(&id, &code).await;
            let done = Instant::now();
            record(&check, done.duration_since(checking));
            record(&flow, done.duration_since(since));
            if checked == Checked::Valid(true) {
                completed.fetch_add(1, Ordering::Relaxed);
                *end.lock_unpoisoned() = done;
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    let end = *end.lock_unpoisoned();
    FlowRun {
        driven,
        completed: completed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        latencies: Latencies {
            create: Some(take(create)),
            check: Some(take(check)),
            flow: Some(take(flow)),
        },
        end,
    }
}

/// What a check was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// 200, with `valid`.
    Valid(bool),
    /// 404: no such verification.
    NotFound,
    /// Anything else: an error.
    Failed,
}

/// Which checks `verify` makes on each verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckMode {
    /// A wrong code (answered `valid: false`), then the right one: two checks each.
    WrongThenRight,
    /// Only the right code: one check each.
    Right,
    /// The right code against an id of the same form that no verification has (answered
    /// 404): one check each. The HTTP request, the API key and a lookup, with nothing
    /// written and nothing told: the floor every check stands on.
    Unknown,
}

impl CheckMode {
    /// The checks made on verification `id` whose code is `code`: the id, the code, and
    /// the answer each must get.
    fn attempts(self, id: &str, code: &str) -> Vec<(String, String, Checked)> {
        match self {
            CheckMode::WrongThenRight => vec![
                (id.to_owned(), wrong_code(code), Checked::Valid(false)),
                (id.to_owned(), code.to_owned(), Checked::Valid(true)),
            ],
            CheckMode::Right => vec![(id.to_owned(), code.to_owned(), Checked::Valid(true))],
            CheckMode::Unknown => vec![(unknown_id(id), code.to_owned(), Checked::NotFound)],
        }
    }
}

/// An id of the same form as `id` that no verification has: its last hex digit changed.
/// otpd's ids end in sixteen random hex digits; the one that differs in the last of them
/// is issued by chance once in 2^64.
pub fn unknown_id(id: &str) -> String {
    let mut unknown = id.to_owned();
    if let Some(last) = unknown.pop() {
        unknown.push(if last == '0' { '1' } else { '0' });
    }
    unknown
}

/// A code of the same length that is not `code`.
pub fn wrong_code(code: &str) -> String {
    code.bytes()
        .enumerate()
        .map(|(i, b)| {
            let digit = b - b'0';
            let digit = if i == 0 { (digit + 1) % 10 } else { digit };
            char::from(b'0' + digit)
        })
        .collect()
}

pub struct Issued {
    pub verifications: Vec<(String, String)>,
    pub errors: u64,
}

/// Issues `plan.requests` verifications as fast as `plan.concurrency` allows; returns each
/// one's id and code.
pub async fn issue_all(api: &Api, mailroom: &Mailroom, plan: &Plan, wait: Duration) -> Issued {
    let issued = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    driver::drive(plan, |n, since| {
        let (api, mailroom) = (api.clone(), mailroom.clone());
        let (issued, errors) = (Arc::clone(&issued), Arc::clone(&errors));
        async move {
            match issue(&api, &mailroom, n, since, wait).await {
                Ok((id, code, _)) => issued.lock_unpoisoned().push((id, code)),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    let verifications = std::mem::take(&mut *issued.lock_unpoisoned());
    Issued {
        verifications,
        errors: errors.load(Ordering::Relaxed),
    }
}

pub struct CheckRun {
    pub driven: Driven,
    pub checks: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
    pub end: Instant,
}

/// Checks the issued verifications at `plan.concurrency` (and `plan.rate`, if set).
pub async fn checks(
    api: &Api,
    issued: &[(String, String)],
    mode: CheckMode,
    plan: &Plan,
) -> CheckRun {
    let latency = shared_histogram();
    let checks = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(issued.to_vec());
    let plan = Plan {
        requests: plan.requests.min(issued.len() as u64),
        ..*plan
    };
    let bar = driver::progress(plan.requests, "verifications checked");
    let driven = driver::drive(&plan, |n, since| {
        let api = api.clone();
        let (latency, checks, errors) = (
            Arc::clone(&latency),
            Arc::clone(&checks),
            Arc::clone(&errors),
        );
        let issued = Arc::clone(&issued);
        let bar = bar.clone();
        async move {
            let (id, code) = &issued[n as usize];
            let mut start = since;
            for (id, candidate, expected) in mode.attempts(id, code) {
                let answer = api.check(&id, &candidate).await;
                let done = Instant::now();
                record(&latency, done.duration_since(start));
                checks.fetch_add(1, Ordering::Relaxed);
                if answer != expected {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                start = done;
            }
            bar.inc(1);
        }
    })
    .await;
    bar.finish_and_clear();
    CheckRun {
        driven,
        checks: checks.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        latency: take(latency),
        end: Instant::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrong_code_differs_in_one_digit() {
        assert_eq!(wrong_code("123456"), "223456");
        assert_eq!(wrong_code("999999"), "099999");
        assert_ne!(wrong_code("000000"), "000000");
    }

    #[test]
    fn an_unknown_id_differs_from_the_issued_one_in_its_last_digit_only() {
        assert_eq!(unknown_id("v_abc123"), "v_abc120");
        assert_eq!(unknown_id("v_abc120"), "v_abc121");
    }

    #[test]
    fn each_mode_checks_what_it_says() {
        let expected = |mode: CheckMode| -> Vec<Checked> {
            mode.attempts("v_ab12", "123456")
                .into_iter()
                .map(|(_, _, expected)| expected)
                .collect()
        };
        assert_eq!(
            expected(CheckMode::WrongThenRight),
            [Checked::Valid(false), Checked::Valid(true)]
        );
        assert_eq!(expected(CheckMode::Right), [Checked::Valid(true)]);
        assert_eq!(
            CheckMode::Unknown.attempts("v_ab12", "123456"),
            [("v_ab10".to_owned(), "123456".to_owned(), Checked::NotFound)]
        );
    }
}
