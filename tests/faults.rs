//! Broker faults under load, against the real RabbitMQ on 127.0.0.1:5672 (node
//! rabbit@localhost): the broker stopped and started mid-run, otpd killed -9 and restarted
//! ten times, a node of three killed, the broker's memory alarm raised for 30 s, and the
//! network to the broker gone silent for 60 s (a proxy of the test's own that stops
//! forwarding), and the broker deaf to a node as it takes partitions over (the proxy holds
//! what the node says). otpd runs as a subprocess in broker mode with the sandbox provider; what was
//! delivered is read from its outbox. A binary of its own, so no other broker test runs
//! beside it; its tests run one at a time.

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "it/helpers.rs"]
mod helpers;

use otpd::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rand::{Rng, RngCore};
use serde_json::{json, Value};

use helpers::{http_client, outbox_path, send, NamespaceGuard, OtpdProcess};

const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const NODE: &str = "rabbit@localhost";

/// One test at a time: they stop the broker and load the machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn destination(n: u64) -> String {
    format!("+4915{:09}", 100_000_000 + n)
}

/// Runs `rabbitmqctl -n rabbit@localhost <args>`, for at most a minute; returns what it
/// printed.
fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let command = args.join(" ");
    let mut child = Command::new("rabbitmqctl")
        .args(["-n", NODE])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("rabbitmqctl {command}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                let mut printed = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    std::io::Read::read_to_string(&mut stdout, &mut printed)
                        .map_err(|e| format!("rabbitmqctl {command}: {e}"))?;
                }
                return Ok(printed);
            }
            Ok(Some(status)) => return Err(format!("rabbitmqctl {command}: {status}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("rabbitmqctl {command} took over a minute"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("rabbitmqctl {command}: {e}")),
        }
    }
}

/// Starts the broker's app again when dropped, if the test stopped it.
struct BrokerGuard {
    stopped: Arc<AtomicBool>,
}

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::SeqCst) {
            if let Err(error) = rabbitmqctl(&["start_app"]) {
                eprintln!("could not start the broker again: {error}");
            }
        }
    }
}

/// Publishes with confirms, reconnecting after the broker went away.
struct Publisher {
    queue: String,
    link: Option<(Connection, Channel)>,
    /// Publishes not confirmed (and so tried again).
    failed: u64,
}

impl Publisher {
    fn new(namespace: &str) -> Self {
        Publisher {
            queue: format!("{namespace}.requests"),
            link: None,
            failed: 0,
        }
    }

    async fn channel(&mut self) -> Option<Channel> {
        if let Some((_, channel)) = &self.link {
            if channel.status().connected() {
                return Some(channel.clone());
            }
        }
        self.link = None;
        let connect = async {
            let connection =
                Connection::connect(BROKER_URL, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>((connection, channel))
        };
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok((connection, channel))) => {
                self.link = Some((connection, channel.clone()));
                Some(channel)
            }
            _ => None,
        }
    }

    /// Publishes once, persistent; true only when the broker confirmed it.
    async fn try_publish(&mut self, body: &[u8]) -> bool {
        let Some(channel) = self.channel().await else {
            return false;
        };
        let publish = async {
            channel
                .basic_publish(
                    "".into(),
                    self.queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?
                .await
        };
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(confirm)) if confirm.is_ack() => true,
            _ => {
                self.link = None;
                false
            }
        }
    }

    /// Publishes until confirmed (a retried request keeps its request_id, so otpd issues one
    /// code however many copies arrive), for at most `patience`.
    async fn publish(&mut self, body: &[u8], patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if self.try_publish(body).await {
                return true;
            }
            self.failed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Deletes a test's namespace (default partition count) when dropped, failed or not.
fn clean_up_on_drop(namespace: &str) -> NamespaceGuard {
    NamespaceGuard {
        name: namespace.to_owned(),
        partitions: otpd::cluster::ClusterSettings::default().partitions,
    }
}

/// A test's otpd in broker mode: its namespace, secrets and store.
struct Node {
    namespace: String,
    pepper: String,
    sealing_key: String,
    store: tempfile::TempDir,
}

impl Node {
    /// Another node of the same cluster: same namespace and secrets, a store of its own.
    fn sibling(&self) -> Self {
        Node {
            namespace: self.namespace.clone(),
            pepper: self.pepper.clone(),
            sealing_key: self.sealing_key.clone(),
            store: tempfile::tempdir().expect("a temp store"),
        }
    }

    fn new() -> Self {
        Node {
            namespace: format!("f{}", random_hex(6)),
            pepper: random_hex(32),
            sealing_key: random_hex(32),
            store: tempfile::tempdir().expect("a temp store"),
        }
    }

    /// Starts otpd and waits until it is ready; returns it and how long that took.
    async fn start(&self, extra: &[(&str, &str)]) -> (OtpdProcess, Duration) {
        let started = Instant::now();
        let mut env = vec![
            ("OTPD__AMQP__URL", BROKER_URL),
            ("OTPD__AMQP__NAMESPACE", self.namespace.as_str()),
            ("OTPD__AMQP__RECONNECT_DELAY_MS", "200"),
            ("OTPD__SECRETS__PEPPER", self.pepper.as_str()),
            ("OTPD__SECRETS__SEALING_KEY", self.sealing_key.as_str()),
            // Sequential numbers that are never verified are a pump by design here.
            ("OTPD__FRAUD__MODE", "monitor"),
            ("OTPD__RATE_LIMITS__TENANT_PER_SECOND", "100000"),
            ("OTPD__RATE_LIMITS__TENANT_BURST", "100000"),
        ];
        env.extend_from_slice(extra);
        let process = OtpdProcess::start(self.store.path(), &env);
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(reply) = http.get(process.url("/readyz")).send().await {
                if reply.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "otpd never became ready:\n{}",
                process.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (process, started.elapsed())
    }
}

/// Once half the load is published, stops the broker for three seconds (`stopped` says so
/// to the guard that starts it again should the test fail); returns when it started again.
async fn restart_broker_midway(published: &AtomicU64, stopped: &AtomicBool) -> Instant {
    while published.load(Ordering::SeqCst) < 1_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stopped.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap()
        .expect("stop the broker");
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["start_app"]))
        .await
        .unwrap()
        .expect("start the broker");
    stopped.store(false, Ordering::SeqCst);
    Instant::now()
}

/// Messages in the outboxes of `stores` by destination. A line cut short by kill -9 and then
/// continued by the next write is read from its last complete JSON object.
fn delivered(stores: &[&Path]) -> HashMap<String, u64> {
    let text: String = stores
        .iter()
        .map(|store| std::fs::read_to_string(outbox_path(store)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut counts = HashMap::new();
    for line in text.lines() {
        let message = serde_json::from_str::<Value>(line).ok().or_else(|| {
            line.match_indices('{')
                .filter_map(|(at, _)| serde_json::from_str::<Value>(&line[at..]).ok())
                .next()
        });
        if let Some(to) = message.as_ref().and_then(|m| m["to"].as_str()) {
            *counts.entry(to.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Every complete message of the outboxes of `stores`, store by store, in the order sent.
fn read_all_outboxes(stores: &[&Path]) -> Vec<Value> {
    stores
        .iter()
        .flat_map(|store| {
            std::fs::read_to_string(outbox_path(store))
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn lines(stores: &[&Path]) -> usize {
    stores
        .iter()
        .map(|store| {
            std::fs::read_to_string(outbox_path(store))
                .map(|text| text.lines().count())
                .unwrap_or(0)
        })
        .sum()
}

/// Publishes `total` requests of `tenant` at `per_second`, each retried until confirmed;
/// counts them.
fn spawn_load(
    namespace: &str,
    tenant: &str,
    total: u64,
    per_second: u64,
    published: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<(Vec<u64>, u64)> {
    let mut publisher = Publisher::new(namespace);
    let namespace = namespace.to_string();
    let tenant = tenant.to_string();
    tokio::spawn(async move {
        let mut confirmed = Vec::new();
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0..total {
            ticks.tick().await;
            let body = serde_json::to_vec(&json!({
                "request_id": format!("{namespace}-{n}"),
                "tenant": tenant,
                "to": destination(n),
                "channel": "sms",
            }))
            .expect("JSON");
            if publisher.publish(&body, Duration::from_secs(30)).await {
                confirmed.push(n);
                published.fetch_add(1, Ordering::SeqCst);
            }
        }
        (confirmed, publisher.failed)
    })
}

/// Waits until every confirmed request is in the outbox, or it stopped growing for `quiet`.
async fn settle(stores: &[&Path], confirmed: &[u64], quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = (lines(stores), Instant::now());
    loop {
        let counts = delivered(stores);
        if confirmed
            .iter()
            .all(|n| counts.contains_key(&destination(*n)))
        {
            // Give late duplicates a moment to show.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        let now = lines(stores);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > quiet || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Tally {
    published: usize,
    delivered: usize,
    lost: Vec<u64>,
    duplicated: u64,
    /// The most messages any one destination received.
    most_sends: u64,
}

fn tally(stores: &[&Path], confirmed: &[u64]) -> Tally {
    let counts = delivered(stores);
    let lost: Vec<u64> = confirmed
        .iter()
        .copied()
        .filter(|n| !counts.contains_key(&destination(*n)))
        .collect();
    Tally {
        published: confirmed.len(),
        delivered: confirmed.len() - lost.len(),
        lost,
        duplicated: counts.values().map(|count| count - 1).sum(),
        most_sends: counts.values().copied().max().unwrap_or(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopped_and_started_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let node = Node::new();
    let _clean_up = clean_up_on_drop(&node.namespace);
    let stopped = Arc::new(AtomicBool::new(false));
    let _guard = BrokerGuard {
        stopped: Arc::clone(&stopped),
    };
    let (mut process, _) = node.start(&[]).await;
    let published = Arc::new(AtomicU64::new(0));
    let load = spawn_load(&node.namespace, "dev", 2_000, 150, Arc::clone(&published));

    let restarted = restart_broker_midway(&published, &stopped).await;
    let before = lines(&[node.store.path()]);
    let resume = loop {
        if lines(&[node.store.path()]) > before {
            break restarted.elapsed();
        }
        if restarted.elapsed() > Duration::from_secs(30) {
            break restarted.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let (confirmed, failed_publishes) = load.await.expect("the load task");
    settle(
        &[node.store.path()],
        &confirmed,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;
    let tally = tally(&[node.store.path()], &confirmed);
    println!(
        "faults: published={} delivered={} lost={} duplicated={} resume_ms={}",
        tally.published,
        tally.delivered,
        tally.lost.len(),
        tally.duplicated,
        resume.as_millis()
    );
    println!("faults: failed_publishes={failed_publishes} (retried while the broker was down)");
    assert!(
        failed_publishes > 0,
        "no publish failed: was the broker stopped?"
    );
    let output = process.stop();
    assert_nothing_lost(&tally, &[] as &[String], std::slice::from_ref(&output));
    assert!(
        resume < Duration::from_secs(10),
        "the first delivery after start_app took {resume:?}"
    );
    assert!(
        tally.published >= 1_990,
        "only {} of 2000 publishes confirmed",
        tally.published
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_kill_9_restarts_under_load_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let node = Node::new();
    let _clean_up = clean_up_on_drop(&node.namespace);
    // A slow stand-in phone keeps sends in flight when the kill comes.
    let slow = [("OTPD__SANDBOX__DELAY_MS", "50")];
    let (mut process, _) = node.start(&slow).await;
    let published = Arc::new(AtomicU64::new(0));
    let load = spawn_load(&node.namespace, "dev", 3_000, 100, Arc::clone(&published));

    let mut restarts = Vec::new();
    for _ in 0..10 {
        let pause = rand::thread_rng().gen_range(1_000..2_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        process.stop();
        let (next, took) = node.start(&slow).await;
        process = next;
        restarts.push(took.as_millis());
    }
    let (confirmed, failed_publishes) = load.await.expect("the load task");
    settle(
        &[node.store.path()],
        &confirmed,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;
    let tally = tally(&[node.store.path()], &confirmed);
    println!(
        "faults: published={} delivered={} lost={} duplicated={} resume_ms={}",
        tally.published,
        tally.delivered,
        tally.lost.len(),
        tally.duplicated,
        restarts.iter().max().copied().unwrap_or(0)
    );
    println!("faults: restart_to_ready_ms={restarts:?} failed_publishes={failed_publishes}");
    let output = process.stop();
    assert_nothing_lost(&tally, &[] as &[String], std::slice::from_ref(&output));
    // A send in flight at a kill may go out once more after the restart (its outcome was
    // not recorded yet); a recorded one never does. So no code goes out more than twice
    // (three times only if the same send was in flight at two kills), and duplicates are
    // bounded by what was in flight: at most the senders' concurrency per kill.
    assert!(
        tally.most_sends <= 2,
        "a destination received {} messages",
        tally.most_sends
    );
    assert!(
        tally.duplicated <= 10 * 256,
        "{} duplicate sends over 10 kills",
        tally.duplicated
    );
    assert_eq!(tally.published, 3_000, "every publish was confirmed");
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Nodes of one cluster (same namespace and secrets, a store each) and a key for tenant
/// `acme`; their namespace is deleted when this is dropped, failed or not.
struct Siblings {
    nodes: Vec<Node>,
    key: String,
    _clean_up: NamespaceGuard,
}

impl Siblings {
    fn new(count: usize) -> Self {
        let first = Node::new();
        let clean_up = clean_up_on_drop(&first.namespace);
        let mut nodes: Vec<Node> = (1..count).map(|_| first.sibling()).collect();
        nodes.push(first);
        Siblings {
            nodes,
            key: format!("otpk_{}", random_hex(16)),
            _clean_up: clean_up,
        }
    }

    fn namespace(&self) -> &str {
        &self.nodes[0].namespace
    }

    fn stores(&self) -> Vec<&Path> {
        self.nodes.iter().map(|node| node.store.path()).collect()
    }

    /// The setting that gives tenant `acme` the key (without it, nodes keep their built-in
    /// `dev` tenant only).
    fn tenant_key(&self) -> (&'static str, String) {
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(self.key.as_bytes()));
        ("OTPD__TENANTS__ACME__API_KEY_SHA256", hash)
    }

    /// Starts the nodes one after another, node `n` with the settings `extra(n)`, each once
    /// it is ready.
    async fn start(
        &self,
        extra: impl Fn(usize) -> Vec<(&'static str, String)>,
    ) -> Vec<OtpdProcess> {
        let mut processes = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let settings = extra(n);
            let settings: Vec<(&str, &str)> = settings
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            processes.push(node.start(&settings).await.0);
        }
        processes
    }
}

/// Fails the test, with the tail of the nodes' logs, if a confirmed broker request or an
/// HTTP create answered 201 reached no outbox.
fn assert_nothing_lost(tally: &Tally, http_lost: &[impl std::fmt::Debug], output: &[String]) {
    assert!(
        tally.lost.is_empty() && http_lost.is_empty(),
        "lost {} broker requests, e.g. {:?}, and {} HTTP creates, e.g. {:?}\n{}",
        tally.lost.len(),
        &tally.lost[..tally.lost.len().min(10)],
        http_lost.len(),
        &http_lost[..http_lost.len().min(10)],
        tail(&output.join("\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_restarted_under_load_with_three_nodes_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = Siblings::new(3);
    let stopped = Arc::new(AtomicBool::new(false));
    let _guard = BrokerGuard {
        stopped: Arc::clone(&stopped),
    };
    let mut processes = cluster.start(|_| Vec::new()).await;
    let stores = cluster.stores();
    let namespace = cluster.namespace();
    let published = Arc::new(AtomicU64::new(0));
    let load = spawn_load(namespace, "dev", 2_000, 150, Arc::clone(&published));
    let restarted = restart_broker_midway(&published, &stopped).await;
    let before = lines(&stores);
    while lines(&stores) <= before && restarted.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resume = restarted.elapsed();

    let (confirmed, failed_publishes) = load.await.expect("the load task");
    settle(
        &stores,
        &confirmed,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;
    let tally = tally(&stores, &confirmed);
    println!(
        "faults, three nodes: published={} delivered={} lost={} duplicated={} resume_ms={} failed_publishes={failed_publishes}",
        tally.published,
        tally.delivered,
        tally.lost.len(),
        tally.duplicated,
        resume.as_millis()
    );
    let output: Vec<String> = processes.iter_mut().map(OtpdProcess::stop).collect();
    assert_nothing_lost(&tally, &[] as &[String], &output);
    assert!(
        resume < Duration::from_secs(10),
        "the first delivery after start_app took {resume:?}"
    );
    assert!(
        tally.published >= 1_990,
        "only {} of 2000 publishes confirmed",
        tally.published
    );
}

/// An HTTP destination of the kill test, apart from the broker requests' `destination`s.
fn http_destination(n: u64) -> String {
    format!("+4917{:09}", 100_000_000 + n)
}

/// How many creates answered 201 the kill test wants before it judges them, however slow
/// the host (tests running beside it), and how long after `stop` it goes on for them.
const HTTP_CREATES_WANTED: usize = 50;
const HTTP_CREATES_GRACE: Duration = Duration::from_secs(30);

/// Creates verifications over HTTP through `addresses` in turn until `stop`, and past it
/// until `HTTP_CREATES_WANTED` are answered (for at most `HTTP_CREATES_GRACE`); returns the
/// ids answered 201 with their destinations.
async fn create_over_http(
    addresses: Vec<String>,
    key: String,
    stop: Arc<AtomicBool>,
) -> Vec<(String, String)> {
    let http = http_client();
    let mut created = Vec::new();
    let mut n = 0u64;
    let mut stopped_at = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if created.len() >= HTTP_CREATES_WANTED || since.elapsed() >= HTTP_CREATES_GRACE {
                break;
            }
        }
        let address = &addresses[n as usize % addresses.len()];
        let to = http_destination(n);
        n += 1;
        let reply = http
            .post(format!("{address}/v1/verifications"))
            .bearer_auth(&key)
            .json(&json!({"channel": "sms", "to": to}))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match reply {
            Ok(reply) if reply.status() == 201 => {
                let body: Value = reply.json().await.expect("a JSON answer");
                created.push((body["id"].as_str().expect("an id").to_owned(), to));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    created
}

/// Reads verification `id` through `address` every 20 ms until `stop`; returns when each
/// read failed (anything but 200).
async fn read_until(
    address: String,
    key: String,
    id: String,
    stop: Arc<AtomicBool>,
) -> Vec<Instant> {
    let http = http_client();
    let mut failures = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let reply = http
            .get(format!("{address}/v1/verifications/{id}"))
            .bearer_auth(&key)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if !matches!(&reply, Ok(reply) if reply.status() == 200) {
            failures.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_broker_and_http_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let cluster = Siblings::new(3);
    let key = cluster.key.clone();
    let mut processes = cluster
        .start(|n| {
            vec![
                ("OTPD__CLUSTER__NODE_ID", format!("node-{n}")),
                ("OTPD__CLUSTER__TICK_MS", "200".into()),
                ("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", "100000".into()),
                ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "100000".into()),
                // A slow stand-in phone keeps sends in flight when the kill comes.
                ("OTPD__SANDBOX__DELAY_MS", "50".into()),
                cluster.tenant_key(),
            ]
        })
        .await;
    let stores = cluster.stores();
    let addresses: Vec<String> = processes.iter().map(|p| p.address.clone()).collect();
    let namespace = cluster.namespace();

    // The victim, node-2, must own partitions, and the spread must have settled: a
    // partition moving under load may send a code twice, and only the kill may here.
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let victims_partitions: Vec<u64> = loop {
        let view: Value = match http
            .get(format!("{}/v1/cluster", addresses[0]))
            .bearer_auth(&key)
            .send()
            .await
        {
            Ok(reply) if reply.status() == 200 => reply.json().await.expect("a JSON view"),
            _ => Value::Null,
        };
        let partitions = view["partitions"].as_array().cloned().unwrap_or_default();
        let owned_by = |node: &str| -> Vec<u64> {
            partitions
                .iter()
                .filter(|p| p["owner"] == node)
                .filter_map(|p| p["partition"].as_u64())
                .collect()
        };
        // 32 partitions over three nodes: 11, 11 and 10 once even.
        let shares: Vec<usize> = (0..3)
            .map(|n| owned_by(&format!("node-{n}")).len())
            .collect();
        if shares.iter().all(|share| (10..=11).contains(share)) {
            break owned_by("node-2");
        }
        assert!(
            Instant::now() < deadline,
            "the partitions were not spread evenly: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Broker requests, and creates over HTTP through all three nodes.
    let published = Arc::new(AtomicU64::new(0));
    let load = spawn_load(namespace, "acme", 1_500, 100, Arc::clone(&published));
    let stop = Arc::new(AtomicBool::new(false));
    let creates = tokio::spawn(create_over_http(
        addresses.clone(),
        key.clone(),
        Arc::clone(&stop),
    ));
    // A verification in one of node-2's partitions, read through node-0 all along.
    let mut watched_tries = 900_000..901_000;
    let watched = loop {
        let n = watched_tries
            .next()
            .expect("a verification in node-2's partitions within 1,000 creates");
        let reply = send(
            http.post(format!("{}/v1/verifications", addresses[0]))
                .bearer_auth(&key)
                .json(&json!({"channel": "sms", "to": http_destination(n)})),
        )
        .await;
        let Some(id) = reply.body["id"].as_str().map(str::to_owned) else {
            eprintln!(
                "a create for the watched verification was refused: {}",
                reply.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let slot = u32::from_str_radix(&id[4..12], 16).expect("an id with a slot");
        if victims_partitions.contains(&u64::from(slot % 32)) {
            break id;
        }
    };
    let reads = tokio::spawn(read_until(
        addresses[0].clone(),
        key.clone(),
        watched,
        Arc::clone(&stop),
    ));

    while published.load(Ordering::SeqCst) < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published_at_kill = published.load(Ordering::SeqCst);
    processes[2].stop();
    let killed = Instant::now();

    let (confirmed, failed_publishes) = load.await.expect("the load task");
    stop.store(true, Ordering::SeqCst);
    let created = creates.await.expect("the creates");
    let failures = reads.await.expect("the reads");
    settle(
        &stores,
        &confirmed,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )
    .await;

    let counts = delivered(&stores);
    let broker_tally = tally(&stores, &confirmed);
    let http_lost: Vec<&(String, String)> = created
        .iter()
        .filter(|(_, to)| !counts.contains_key(to))
        .collect();
    let outage = failures
        .iter()
        .filter(|at| **at >= killed)
        .map(|at| at.duration_since(killed))
        .max()
        .unwrap_or_default();
    // A message sent twice was in flight at the kill: sent, its outcome not yet recorded
    // (node-2 made the send, or kept its partition), or its request taken by node-2 and
    // not yet acknowledged, so another node took it again while the first send was under
    // way. Such broker requests were published about when the kill came.
    let duplicated: Vec<&String> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(to, _)| to)
        .collect();
    eprintln!(
        "kill under load: broker published={} lost={}; http created={} lost={}; duplicated={} (most sends {}); reads failing for {outage:?} after the kill; failed publishes {failed_publishes}",
        broker_tally.published,
        broker_tally.lost.len(),
        created.len(),
        http_lost.len(),
        duplicated.len(),
        broker_tally.most_sends,
    );
    // What was answered 201 verifies through the nodes still running.
    let mut verified = 0;
    let sent = read_all_outboxes(&stores);
    for (turn, (id, _)) in created.iter().enumerate().step_by(20) {
        let message = sent
            .iter()
            .rfind(|message| message["verification_id"] == id.as_str());
        let Some(message) = message else { continue };
        let check = send(
            http.post(format!(
                "{}/v1/verifications/{id}/check",
                addresses[turn % 2]
            ))
            .bearer_auth(&key)
            .json(&json!({"code": helpers::message_code(message, 6)})),
        )
        .await;
        assert!(
            check.status == 200 && check.body["valid"] == true,
            "{id} did not verify through node-{}: {}",
            turn % 2,
            check.text
        );
        verified += 1;
    }
    let output: Vec<String> = processes.iter_mut().map(OtpdProcess::stop).collect();
    assert_nothing_lost(&broker_tally, &http_lost, &output);
    assert!(
        created.len() >= HTTP_CREATES_WANTED,
        "only {} HTTP creates",
        created.len()
    );
    assert!(verified > 0, "no HTTP create was checked");
    assert!(
        outage <= Duration::from_secs(5),
        "reads through node-0 failed until {outage:?} after the kill"
    );
    assert!(
        broker_tally.most_sends <= 2,
        "a destination got {} messages",
        broker_tally.most_sends
    );
    assert!(
        duplicated.len() <= 32,
        "{} destinations got two messages",
        duplicated.len()
    );
    for to in &duplicated {
        let Some(n) = (0..1_500).find(|n| destination(*n) == **to) else {
            continue; // an HTTP create's, sent by node-2 as it was killed
        };
        assert!(
            (published_at_kill.saturating_sub(200)..published_at_kill + 50).contains(&n),
            "request {n} was sent twice, though {published_at_kill} were published at the kill"
        );
    }
}

/// The broker's memory high watermark as `rabbitmqctl set_vm_memory_high_watermark` takes
/// it: a fraction (`0.4`) or `absolute <bytes>`.
fn memory_watermark() -> Vec<String> {
    let printed = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
        .expect("read the broker's memory watermark");
    let printed = printed.trim();
    match printed
        .strip_prefix("{absolute,")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(bytes) => vec!["absolute".to_owned(), bytes.trim().to_owned()],
        None => vec![printed.to_owned()],
    }
}

/// Raises the broker's memory alarm (a watermark of 0 blocks every publisher) and puts the
/// watermark back as it was when dropped, failed test or not.
struct MemoryAlarm {
    previous: Vec<String>,
}

impl MemoryAlarm {
    fn raise() -> Self {
        let previous = memory_watermark();
        let alarm = MemoryAlarm { previous };
        rabbitmqctl(&["set_vm_memory_high_watermark", "0"]).expect("raise the memory alarm");
        alarm
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let mut args = vec!["set_vm_memory_high_watermark"];
        args.extend(self.previous.iter().map(String::as_str));
        if let Err(error) = rabbitmqctl(&args) {
            eprintln!("could not put the broker's memory watermark back: {error}");
        }
    }
}

/// One HTTP create: when it was sent, what it got (or why it got no answer within 15 s),
/// and how long that took.
struct Attempt {
    to: String,
    sent: Instant,
    reply: Result<helpers::Reply, String>,
    took: Duration,
}

/// Creates a verification over HTTP every 200 ms, through `addresses` in turn, until `stop`;
/// each is waited on for 15 s.
async fn create_steadily(
    addresses: Vec<String>,
    key: String,
    stop: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let http = http_client();
    let mut attempts = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let to = http_destination(n);
        let address = &addresses[n as usize % addresses.len()];
        let request = http
            .post(format!("{address}/v1/verifications"))
            .bearer_auth(&key)
            .timeout(Duration::from_secs(15))
            .json(&json!({"channel": "sms", "to": to}));
        n += 1;
        let sent = Instant::now();
        let reply = match request.send().await {
            Ok(response) => Ok(helpers::Reply::read(response).await),
            Err(error) => Err(error.to_string()),
        };
        attempts.push(Attempt {
            to,
            sent,
            reply,
            took: sent.elapsed(),
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    attempts
}

/// Traffic of tenant `acme` while a fault comes and goes: `total` broker requests at
/// `per_second`, and an HTTP create every 200 ms through `addresses` in turn.
struct Traffic {
    published: Arc<AtomicU64>,
    load: tokio::task::JoinHandle<(Vec<u64>, u64)>,
    stop: Arc<AtomicBool>,
    creates: tokio::task::JoinHandle<Vec<Attempt>>,
}

impl Traffic {
    fn start(
        namespace: &str,
        total: u64,
        per_second: u64,
        addresses: Vec<String>,
        key: &str,
    ) -> Self {
        let published = Arc::new(AtomicU64::new(0));
        let load = spawn_load(namespace, "acme", total, per_second, Arc::clone(&published));
        let stop = Arc::new(AtomicBool::new(false));
        let creates = tokio::spawn(create_steadily(
            addresses,
            key.to_owned(),
            Arc::clone(&stop),
        ));
        Traffic {
            published,
            load,
            stop,
            creates,
        }
    }

    /// Broker requests confirmed so far.
    fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Stops the creates and waits for the last broker request: every create's attempt, and
    /// the broker requests the broker confirmed.
    async fn finish(self) -> (Vec<Attempt>, Vec<u64>) {
        self.stop.store(true, Ordering::SeqCst);
        let attempts = self.creates.await.expect("the creates");
        let (confirmed, _) = self.load.await.expect("the load");
        (attempts, confirmed)
    }
}

/// Waits (up to `limit`) until the confirmed broker requests and the HTTP creates answered
/// 201 are delivered, stops the nodes, prints the tally under `label` and fails the test if
/// any is lost; returns the messages per destination and the broker requests' tally.
async fn check_nothing_lost(
    label: &str,
    attempts: &[Attempt],
    confirmed_broker: &[u64],
    processes: &mut [OtpdProcess],
    stores: &[&Path],
    limit: Duration,
) -> (HashMap<String, u64>, Tally) {
    let created: Vec<&String> = attempts
        .iter()
        .filter(|a| a.reply.as_ref().is_ok_and(|r| r.status == 201))
        .map(|a| &a.to)
        .collect();
    settle(stores, confirmed_broker, Duration::from_secs(10), limit).await;
    let counts = delivered(stores);
    let broker_tally = tally(stores, confirmed_broker);
    let http_lost: Vec<&&String> = created
        .iter()
        .filter(|to| !counts.contains_key(**to))
        .collect();
    let output: Vec<String> = processes.iter_mut().map(OtpdProcess::stop).collect();
    eprintln!(
        "{label}: broker confirmed={} lost={} duplicated={}; http created={} lost={}",
        broker_tally.published,
        broker_tally.lost.len(),
        broker_tally.duplicated,
        created.len(),
        http_lost.len()
    );
    assert_nothing_lost(&broker_tally, &http_lost, &output);
    (counts, broker_tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_blocks_publishes_creates_get_503_and_nothing_is_lost() {
    let _serial = SERIAL.lock().await;
    let cluster = Siblings::new(2);
    let key = cluster.key.clone();
    let mut processes = cluster.start(|_| vec![cluster.tenant_key()]).await;
    let stores = cluster.stores();

    // Broker requests at 50/s (1,000, the last after the alarm) and HTTP creates through
    // both nodes (half of them forwarded to the other), before, during and after a 30 s
    // alarm.
    let traffic = Traffic::start(
        cluster.namespace(),
        1_000,
        50,
        processes.iter().map(|p| p.address.clone()).collect(),
        &key,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let published_before_alarm = traffic.published();
    let alarm = tokio::task::spawn_blocking(MemoryAlarm::raise)
        .await
        .expect("the alarm");
    let raised = Instant::now();
    let published_at_alarm = traffic.published();
    tokio::time::sleep(Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || drop(alarm))
        .await
        .expect("the watermark back");
    let cleared = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (attempts, confirmed_broker) = traffic.finish().await;

    // During the alarm every create is answered 503 within 5 s; none hangs.
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            a.sent > raised + Duration::from_secs(1) && a.sent + Duration::from_secs(5) < cleared
        })
        .collect();
    let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
    let statuses: Vec<u16> = during
        .iter()
        .map(|a| a.reply.as_ref().map_or(0, |reply| reply.status.as_u16()))
        .collect();
    eprintln!(
        "memory alarm: {} creates during it, statuses {:?}, the slowest answered in {slowest:?}; the first said {}",
        during.len(),
        statuses.iter().collect::<std::collections::BTreeSet<_>>(),
        during
            .first()
            .and_then(|a| a.reply.as_ref().ok())
            .map_or("nothing", |reply| reply.text.as_str())
    );
    assert!(
        during.len() >= 20,
        "only {} creates during the alarm",
        during.len()
    );
    for attempt in &during {
        let reply = attempt
            .reply
            .as_ref()
            .unwrap_or_else(|_| panic!("a create during the alarm got no answer within 15 s"));
        reply.expect_status(503);
        assert!(
            attempt.took <= Duration::from_secs(5),
            "a 503 took {:?}",
            attempt.took
        );
        assert!(
            reply.body["error"]["message"].as_str().is_some(),
            "a 503 in the API's error shape: {}",
            reply.text
        );
    }
    // Once the watermark is back, creates succeed again, unaided.
    let resumed = attempts
        .iter()
        .find(|a| a.sent > cleared && a.reply.as_ref().is_ok_and(|r| r.status == 201))
        .map(|a| a.sent.duration_since(cleared));
    eprintln!("memory alarm: creates answered 201 again {resumed:?} after it cleared");
    assert!(
        resumed.is_some_and(|after| after <= Duration::from_secs(10)),
        "no create succeeded within 10 s of the alarm's end"
    );

    let (counts, broker_tally) = check_nothing_lost(
        "memory alarm",
        &attempts,
        &confirmed_broker,
        &mut processes,
        &stores,
        Duration::from_secs(60),
    )
    .await;
    // A request taken as the alarm came may be sent twice: its job published, the publish
    // blocked past its timeout, the create undone (or, its undo blocked too, left to be
    // replayed) and the request taken again afterwards. Its copies that come together once
    // the alarm clears (delivered again, forwarded by the other node) hand the job on once
    // between them. Any other would be a defect.
    let twice: Vec<u64> = confirmed_broker
        .iter()
        .copied()
        .filter(|n| counts.get(&destination(*n)).is_some_and(|sends| *sends > 1))
        .collect();
    assert!(
        broker_tally.most_sends <= 2,
        "a destination got {} messages",
        broker_tally.most_sends
    );
    assert!(
        twice
            .iter()
            .all(|n| (published_before_alarm.saturating_sub(5)..=published_at_alarm + 1).contains(n)),
        "requests {twice:?} were sent twice, though {published_before_alarm}-{published_at_alarm} were published as the alarm was raised"
    );
}

/// A TCP proxy to the broker that can go silent: silent, it forwards nothing either way and
/// closes nothing, as a network that drops every packet; heard again, it forwards what
/// waited. Everything it holds is closed when it is dropped.
struct SilentProxy {
    port: u16,
    silent: Arc<AtomicBool>,
    /// Deaf, it forwards what the broker says but holds what the node says: the broker
    /// hears nothing, and the node hears it still.
    deaf: Arc<AtomicBool>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl SilentProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's port").port();
        let silent = Arc::new(AtomicBool::new(false));
        let deaf = Arc::new(AtomicBool::new(false));
        let tasks: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
        let accepting = {
            let (silent, deaf) = (Arc::clone(&silent), Arc::clone(&deaf));
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (silent, deaf) = (Arc::clone(&silent), Arc::clone(&deaf));
                    let pipe = tokio::spawn(async move {
                        let Ok(broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                        else {
                            return;
                        };
                        let (from_client, to_client) = client.into_split();
                        let (from_broker, to_broker) = broker.into_split();
                        let upstream_held =
                            || silent.load(Ordering::SeqCst) || deaf.load(Ordering::SeqCst);
                        let downstream_held = || silent.load(Ordering::SeqCst);
                        tokio::join!(
                            forward(from_client, to_broker, &upstream_held),
                            forward(from_broker, to_client, &downstream_held)
                        );
                    });
                    tasks.lock_unpoisoned().push(pipe);
                }
            })
        };
        tasks.lock_unpoisoned().push(accepting);
        SilentProxy {
            port,
            silent,
            deaf,
            tasks,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::SeqCst);
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock_unpoisoned().drain(..) {
            task.abort();
        }
    }
}

/// Copies `from` to `to` unless `held`; bytes read as it became held wait.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    held: &impl Fn() -> bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wait_while_held = || async {
        while held() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        wait_while_held().await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        wait_while_held().await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The lines of a node's log that warn or tell of an error.
fn warnings(output: &str) -> String {
    let lines = output.lines();
    let warned = lines.filter(|line| line.contains("WARN") || line.contains("ERROR"));
    warned.collect::<Vec<_>>().join("\n")
}

/// When `at` came, said from `start`: "1.2s into the silence" or "0.1s before it".
fn since(start: Instant, at: Instant) -> String {
    match at.checked_duration_since(start) {
        Some(after) => format!("{after:.1?} into the silence"),
        None => format!("{:.1?} before it", start - at),
    }
}

/// Polls `/readyz` of `address` until its status is `wanted` (true: 200), for at most
/// `limit`; returns how long that took.
async fn until_ready_is(address: &str, wanted: bool, limit: Duration) -> Option<Duration> {
    let http = http_client();
    let started = Instant::now();
    while started.elapsed() < limit {
        let ready = http
            .get(format!("{address}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|reply| reply.status() == 200);
        if ready == wanted {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_gone_silent_for_60_s_is_noticed_creates_get_503_and_nothing_is_lost() {
    let _serial = SERIAL.lock().await;
    let proxy = SilentProxy::start().await;
    let cluster = Siblings::new(1);
    let key = cluster.key.clone();
    let mut processes = cluster
        .start(|_| vec![cluster.tenant_key(), ("OTPD__AMQP__URL", proxy.url())])
        .await;
    let stores = cluster.stores();
    let address = processes[0].address.clone();

    // Broker requests at 20/s (published straight to the broker, 1,600 in all: the last
    // after the silence) and an HTTP create every 200 ms, before, during and after it.
    let traffic = Traffic::start(cluster.namespace(), 1_600, 20, vec![address.clone()], &key);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_silent(true);
    let silenced = Instant::now();
    let noticed = until_ready_is(&address, false, Duration::from_secs(60)).await;
    eprintln!("silent broker: /readyz answered 503 {noticed:?} after the silence began");
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(silenced.elapsed())).await;
    proxy.set_silent(false);
    let heard = Instant::now();
    let resumed = until_ready_is(&address, true, Duration::from_secs(60)).await;
    eprintln!("silent broker: ready again {resumed:?} after the broker was heard again");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (attempts, confirmed_broker) = traffic.finish().await;

    assert!(
        noticed.is_some_and(|after| after <= Duration::from_secs(30)),
        "the silence was not noticed within 30 s ({noticed:?})"
    );
    assert!(resumed.is_some(), "the node never became ready again");

    // No create hangs: each is answered within 15 s, and once the silence is noticed, each
    // is a 503 within 5 s until the broker is heard again. Before it is noticed, a create
    // waits for one changelog append, bounded by `amqp.timeout_ms` (5 s) from its publish
    // on: the one in flight (its writes fail with it when it gets no confirm), or its own.
    // One whose changes were confirmed just before the silence and whose job's publish
    // then timed out waits that too before its changes are taken back: 10 s (12 s with room
    // for a slow host), where one left to the heartbeats would wait until they give up,
    // about 20 s into the silence.
    let noticed_at = silenced + noticed.unwrap_or_default();
    let slow = attempts.iter().filter(|a| a.took > Duration::from_secs(4));
    for attempt in slow {
        eprintln!(
            "silent broker: a create sent {} took {:?}: {:?}",
            since(silenced, attempt.sent),
            attempt.took,
            attempt.reply.as_ref().map(|r| r.status)
        );
    }
    for attempt in &attempts {
        let into_silence = since(silenced, attempt.sent);
        assert!(
            attempt.reply.is_ok(),
            "a create sent {into_silence} got no answer after {:?}: {:?}\n{}",
            attempt.took,
            attempt.reply.as_ref().err(),
            tail(&warnings(&processes[0].output()))
        );
        assert!(
            attempt.took <= Duration::from_secs(12),
            "a create sent {into_silence} took {:?}",
            attempt.took
        );
    }
    let during: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            a.sent > noticed_at + Duration::from_secs(1) && a.sent + Duration::from_secs(5) < heard
        })
        .collect();
    let before_noticed: Vec<Duration> = attempts
        .iter()
        .filter(|a| a.sent > silenced && a.sent < noticed_at)
        .map(|a| a.took)
        .collect();
    eprintln!(
        "silent broker: {} creates before it was noticed (slowest {:?}), {} after",
        before_noticed.len(),
        before_noticed.iter().max(),
        during.len()
    );
    assert!(
        during.len() >= 20,
        "only {} creates during the silence",
        during.len()
    );
    // Sent into the silence, a create's changes never reach the changelog: it fails with the
    // append in flight, or with its own, 5 s on (7 s with room for a slow host).
    for took in &before_noticed {
        assert!(
            *took <= Duration::from_secs(7),
            "a create sent into the silence took {took:?}"
        );
    }
    for attempt in &during {
        let reply = attempt.reply.as_ref().expect("an answer");
        reply.expect_status(503);
        assert!(
            attempt.took <= Duration::from_secs(5),
            "a 503 took {:?}",
            attempt.took
        );
    }

    let (_, broker_tally) = check_nothing_lost(
        "silent broker",
        &attempts,
        &confirmed_broker,
        &mut processes,
        &stores,
        Duration::from_secs(90),
    )
    .await;
    assert!(
        broker_tally.most_sends <= 2,
        "a destination got {} messages",
        broker_tally.most_sends
    );
}

/// A node that takes partitions over while the broker hears nothing from it cannot mark
/// their changelogs: each fence's confirm times out, and the connection stays up (the node
/// still hears the broker, and the broker closes nothing before its heartbeats give up).
/// As with a memory alarm that comes as partitions move, nothing restarts the connection;
/// once the broker hears the node again, the node marks them, catches up and serves them,
/// unaided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_taken_over_while_the_broker_cannot_hear_the_node_are_served_once_it_can() {
    let _serial = SERIAL.lock().await;
    let proxy = SilentProxy::start().await;
    let cluster = Siblings::new(2);
    let key = cluster.key.clone();
    // The first node owns every partition; the second waits in line behind it, through the
    // proxy, with a 2 s bound on a confirm and heartbeats far longer than the deafness.
    let mut processes = cluster
        .start(|n| {
            let mut settings = vec![cluster.tenant_key()];
            if n == 1 {
                settings.extend([
                    ("OTPD__AMQP__URL", proxy.url()),
                    ("OTPD__AMQP__TIMEOUT_MS", "2000".to_owned()),
                    ("OTPD__AMQP__HEARTBEAT_SECONDS", "60".to_owned()),
                ]);
            }
            settings
        })
        .await;
    let heir = processes[1].address.clone();

    proxy.set_deaf(true);
    processes[0].stop();
    // Messages in every partition queue make the heir their owner, which then appends its
    // fences; what it appends waits in the proxy past the confirms' 2 s.
    let connection = Connection::connect(BROKER_URL, ConnectionProperties::default())
        .await
        .expect("a connection to the broker");
    let channel = connection.create_channel().await.expect("a channel");
    for _ in 0..3 {
        for partition in 0..otpd::cluster::ClusterSettings::default().partitions {
            let queue = otpd::bus::amqp::topology::partition_queue(cluster.namespace(), partition);
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"",
                    BasicProperties::default().with_expiration("10000".into()),
                )
                .await
                .expect("a message to a partition queue");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = connection.close(200, "done".into()).await;
    proxy.set_deaf(false);

    let ready = until_ready_is(&heir, true, Duration::from_secs(30)).await;
    eprintln!("deaf broker: the heir was ready {ready:?} after the broker heard it again");
    let output = processes[1].output();
    assert!(
        output.contains("Could not mark a partition's changelog"),
        "the heir took no partition while the broker could not hear it, so this test shows \
         nothing:\n{}",
        tail(&output)
    );
    assert!(
        ready.is_some(),
        "the heir never became ready: partitions it owns were never caught up on\n{}",
        tail(&output)
    );
    // Every partition is served: creates through the heir for destinations all over them.
    let http = http_client();
    for n in 0..64 {
        let reply = send(
            http.post(format!("{heir}/v1/verifications"))
                .bearer_auth(&key)
                .json(&json!({"channel": "sms", "to": http_destination(n)})),
        )
        .await;
        reply.expect_status(201);
    }
}
