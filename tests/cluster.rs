//! Several otpd nodes on one RabbitMQ (127.0.0.1:5672) as one cluster: the broker assigns
//! every partition to one node, spreads them, hands a dead node's partitions to the others,
//! and a node configured with another partition count refuses to start. Each test runs
//! otpd processes on a namespace of its own and deletes it afterwards, failed or not.

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "it/helpers.rs"]
mod helpers;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::Value;

use helpers::{
    authed, http_client, message_code, read_outbox, send, NamespaceGuard, OtpdProcess, Reply,
};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PARTITIONS: u16 = 8;
/// The nodes of the tests' three-node clusters.
const NAMES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A cluster's namespace, the secrets every node shares, its tenant's API key, and the
/// settings its nodes get besides.
struct Cluster {
    namespace: NamespaceGuard,
    pepper: String,
    sealing_key: String,
    api_key: String,
    extra: Vec<(&'static str, String)>,
}

impl Cluster {
    fn new() -> Self {
        Self::with(&[])
    }

    fn with(extra: &[(&'static str, &str)]) -> Self {
        Cluster {
            namespace: NamespaceGuard {
                name: format!("c{}", random_hex(6)),
                partitions: PARTITIONS,
            },
            pepper: random_hex(32),
            sealing_key: random_hex(32),
            api_key: format!("otpk_{}", random_hex(16)),
            extra: extra.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    /// The environment of node `node` with `partitions`.
    fn env(&self, node: &str, partitions: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OTPD__AMQP__URL", BROKER_URL.to_owned()),
            ("OTPD__AMQP__NAMESPACE", self.namespace.name.clone()),
            ("OTPD__AMQP__RECONNECT_DELAY_MS", "200".to_owned()),
            ("OTPD__CLUSTER__PARTITIONS", partitions.to_owned()),
            ("OTPD__CLUSTER__NODE_ID", node.to_owned()),
            ("OTPD__CLUSTER__TICK_MS", "200".to_owned()),
            ("OTPD__SECRETS__PEPPER", self.pepper.clone()),
            ("OTPD__SECRETS__SEALING_KEY", self.sealing_key.clone()),
            (
                "OTPD__TENANTS__ACME__API_KEY_SHA256",
                hex::encode(Sha256::digest(self.api_key.as_bytes())),
            ),
            ("OTPD__FRAUD__MODE", "monitor".to_owned()),
            ("OTPD__RATE_LIMITS__TENANT_PER_SECOND", "100000".to_owned()),
            ("OTPD__RATE_LIMITS__TENANT_BURST", "100000".to_owned()),
            (
                "OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND",
                "100000".to_owned(),
            ),
            ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "100000".to_owned()),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        .collect()
    }

    /// Starts `NAMES` and waits until the broker has spread the partitions over all three.
    async fn start_three(&self) -> Vec<Node> {
        let mut nodes = Vec::new();
        for name in NAMES {
            nodes.push(self.start(name).await);
        }
        wait_for_owners(&nodes[0], &NAMES, 3, Duration::from_secs(15)).await;
        nodes
    }

    async fn start(&self, node: &str) -> Node {
        let store = tempfile::tempdir().expect("a temp store");
        let process = self.run(node, &store);
        let node = Node {
            process,
            key: self.api_key.clone(),
            store,
        };
        node.wait_ready().await;
        node
    }

    /// Runs node `node` on `store` (a new one, or the one it had before).
    fn run(&self, node: &str, store: &tempfile::TempDir) -> OtpdProcess {
        let env = self.env(node, &PARTITIONS.to_string());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        OtpdProcess::start(store.path(), &env)
    }

    /// Stops `node` (SIGTERM, SIGKILL after 10 s) and starts it again on its store.
    async fn restart(&self, node: &mut Node, name: &str) {
        node.process.terminate(Duration::from_secs(10));
        node.process = self.run(name, &node.store);
        node.wait_ready().await;
    }
}

struct Node {
    process: OtpdProcess,
    key: String,
    store: tempfile::TempDir,
}

impl Node {
    async fn wait_ready(&self) {
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(reply) = http.get(self.process.url("/readyz")).send().await {
                if reply.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the node never became ready:\n{}",
                self.process.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The owner of each partition as this node sees it (`None`: nobody answered), or
    /// what the node said when it could not ask (a 503 while its connection is renewed).
    async fn owners(&self) -> Result<Vec<Option<String>>, String> {
        let reply = http_client()
            .get(self.process.url("/v1/cluster"))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET /v1/cluster");
        let status = reply.status();
        let view: Value = reply.json().await.expect("a JSON view");
        if status == 503 {
            return Err(view.to_string());
        }
        assert_eq!(status, 200, "GET /v1/cluster: {view}");
        Ok(view["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["owner"].as_str().map(str::to_owned))
            .collect())
    }
}

/// Asks `node` until every partition has an owner in `allowed` and at least `spread` nodes
/// own some; returns the owners and how long that took.
async fn wait_for_owners(
    node: &Node,
    allowed: &[&str],
    spread: usize,
    within: Duration,
) -> (Vec<String>, Duration) {
    let started = Instant::now();
    loop {
        let owners = match node.owners().await {
            Ok(owners) => owners,
            Err(said) => {
                assert!(
                    started.elapsed() < within,
                    "GET /v1/cluster still answered 503 after {within:?}: {said}\n{}",
                    node.process.output()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        assert_eq!(owners.len(), usize::from(PARTITIONS));
        let settled: Option<Vec<String>> = owners
            .iter()
            .map(|owner| owner.clone().filter(|o| allowed.contains(&o.as_str())))
            .collect();
        if let Some(settled) = settled {
            let distinct: BTreeSet<&String> = settled.iter().collect();
            if distinct.len() >= spread {
                return (settled, started.elapsed());
            }
        }
        assert!(
            started.elapsed() < within,
            "the partitions did not settle on {allowed:?} within {within:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_spreads_the_partitions_and_hands_a_dead_nodes_to_the_others() {
    let cluster = Cluster::new();
    let a = cluster.start("node-a").await;
    let b = cluster.start("node-b").await;
    let mut c = cluster.start("node-c").await;
    let all = ["node-a", "node-b", "node-c"];

    // Every node sees the same owners, and every node owns some partitions.
    let (owners, _) = wait_for_owners(&a, &all, 3, Duration::from_secs(15)).await;
    for node in [&b, &c] {
        let (seen, _) = wait_for_owners(node, &all, 3, Duration::from_secs(5)).await;
        assert_eq!(seen, owners, "two nodes disagree on the owners");
    }

    // kill -9 of a node: within a few seconds its partitions belong to the others.
    c.process.stop();
    let (owners, took) = wait_for_owners(&a, &all[..2], 2, Duration::from_secs(5)).await;
    assert!(owners.iter().all(|owner| owner != "node-c"));
    eprintln!("the partitions of a killed node had new owners after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_partition_or_stream_count_refuses_to_start_and_names_both() {
    let cluster = Cluster::new();
    let first = cluster.start("node-a").await;
    let store = tempfile::tempdir().expect("a temp store");
    let env = cluster.env("node-b", &(PARTITIONS * 2).to_string());
    assert_refused(
        store.path(),
        &env,
        &[
            "cluster.partitions is 16 on this node",
            "was started with 8 partitions",
            "OTPD__CLUSTER__PARTITIONS=8",
        ],
    );
    // So is one whose partitions share another count of changelog streams.
    let mut env = cluster.env("node-c", &PARTITIONS.to_string());
    env.push(("OTPD__CLUSTER__CHANGELOG_STREAMS", "4".to_owned()));
    assert_refused(
        store.path(),
        &env,
        &[
            "cluster.changelog_streams is 4 on this node",
            "was started with 2 changelog streams",
            "OTPD__CLUSTER__CHANGELOG_STREAMS=2",
        ],
    );
    // The cluster itself is unharmed.
    let (owners, _) = wait_for_owners(&first, &["node-a"], 1, Duration::from_secs(5)).await;
    assert_eq!(owners.len(), usize::from(PARTITIONS));
}

/// Runs a node with `env` on `store` and asserts that it stops at start, saying each of
/// `said`.
fn assert_refused(store: &std::path::Path, env: &[(&'static str, String)], said: &[&str]) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, output) = OtpdProcess::run_to_exit(store, &env, Duration::from_secs(30));
    assert!(
        status.is_some_and(|status| !status.success()),
        "the node did not fail ({status:?}):\n{output}"
    );
    for said in said {
        assert!(output.contains(said), "no '{said}' in:\n{output}");
    }
}

/// Requests spread over the nodes: each goes to the node after the one before.
struct Rotation<'a> {
    nodes: Vec<&'a Node>,
    next: std::cell::Cell<usize>,
    http: reqwest::Client,
}

impl<'a> Rotation<'a> {
    fn new(nodes: Vec<&'a Node>) -> Self {
        Rotation {
            nodes,
            next: std::cell::Cell::new(0),
            http: http_client(),
        }
    }

    fn node(&self) -> &'a Node {
        let n = self.next.get();
        self.next.set(n + 1);
        self.nodes[n % self.nodes.len()]
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let node = self.node();
        authed(&self.http, method, node.process.url(path), &node.key)
    }

    async fn create(&self, body: &Value) -> Reply {
        send(self.request(Method::POST, "/v1/verifications").json(body)).await
    }

    async fn create_sms(&self, to: &str) -> String {
        let reply = self.create(&json!({"channel": "sms", "to": to})).await;
        reply.expect_status(201);
        reply.str("id").to_owned()
    }

    async fn check(&self, id: &str, code: &str) -> Reply {
        send(
            self.request(Method::POST, &format!("/v1/verifications/{id}/check"))
                .json(&json!({ "code": code })),
        )
        .await
    }

    /// The `count`-th message for `id`, whichever node's sandbox sent it.
    async fn code(&self, id: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let messages: Vec<Value> = self
                .nodes
                .iter()
                .flat_map(|node| read_outbox(node.store.path()))
                .filter(|message| message["verification_id"] == id)
                .collect();
            if messages.len() >= count {
                return message_code(&messages[count - 1], 6);
            }
            assert!(
                Instant::now() < deadline,
                "message {count} for {id} never arrived (found {})",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A distinct valid German mobile number per `n`.
fn mobile(n: u32) -> String {
    format!("+4915113{n:06}")
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_flows_pass_with_every_request_on_another_node() {
    let cluster = Cluster::with(&[("OTPD__VERIFICATION__RESEND_COOLDOWN_SECONDS", "2")]);
    let a = cluster.start("node-a").await;
    let b = cluster.start("node-b").await;
    let c = cluster.start("node-c").await;
    wait_for_owners(
        &a,
        &["node-a", "node-b", "node-c"],
        3,
        Duration::from_secs(15),
    )
    .await;
    let nodes = Rotation::new(vec![&a, &b, &c]);

    // Expiry: a code with the shortest life, checked once it is over.
    let expiring = nodes
        .create(&json!({"channel": "sms", "to": mobile(900), "ttl_seconds": 30}))
        .await;
    expiring.expect_status(201);
    let expiring_id = expiring.str("id").to_owned();
    let expiring_at = Instant::now() + Duration::from_secs(31);

    // Create, wrong code, resend (within the cooldown: refused), the old code dies, the new
    // one verifies once.
    let to = mobile(901);
    let id = nodes.create_sms(&to).await;
    let first = nodes.code(&id, 1).await;
    let reply = nodes.check(&id, wrong(&first)).await;
    reply.expect_status(200);
    assert_eq!(reply.body["valid"], false);
    assert_eq!(reply.body["attempts_remaining"], 4);
    nodes
        .create(&json!({"channel": "sms", "to": to}))
        .await
        .expect_error(429, "resend_cooldown");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resent = nodes.create(&json!({"channel": "sms", "to": to})).await;
    resent.expect_status(200);
    assert_eq!(resent.str("id"), id);
    let second = nodes.code(&id, 2).await;
    if second != first {
        assert_eq!(nodes.check(&id, &first).await.body["valid"], false);
    }
    let approved = nodes.check(&id, &second).await;
    approved.expect_status(200);
    assert_eq!(approved.body["valid"], true);
    nodes
        .check(&id, &second)
        .await
        .expect_error(409, "already_approved");
    let read = send(nodes.request(Method::GET, &format!("/v1/verifications/{id}"))).await;
    read.expect_status(200);
    assert_eq!(read.str("status"), "approved");
    // Both sends are on its delivery timeline, whichever node answers (it travels with the
    // verification through the changelog).
    let timeline =
        send(nodes.request(Method::GET, &format!("/v1/verifications/{id}/attempts"))).await;
    timeline.expect_status(200);
    let sends: Vec<(u64, &str)> = timeline.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["send"].as_u64().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(sends, [(1, "sent"), (2, "sent")], "{}", timeline.text);

    // Check by destination.
    let to = mobile(902);
    let id = nodes.create_sms(&to).await;
    let code = nodes.code(&id, 1).await;
    let by_destination = send(
        nodes
            .request(Method::POST, "/v1/verifications/check")
            .json(&json!({"channel": "sms", "to": to, "code": code})),
    )
    .await;
    by_destination.expect_status(200);
    assert_eq!(by_destination.body["valid"], true);

    // Cancel: the code then no longer works.
    let id = nodes.create_sms(&mobile(903)).await;
    let code = nodes.code(&id, 1).await;
    let canceled =
        send(nodes.request(Method::POST, &format!("/v1/verifications/{id}/cancel"))).await;
    canceled.expect_status(200);
    assert_eq!(canceled.str("status"), "canceled");
    nodes.check(&id, &code).await.expect_error(409, "canceled");

    // Attempts: five wrong codes, each through another node, then even the right one is
    // refused.
    let id = nodes.create_sms(&mobile(904)).await;
    let code = nodes.code(&id, 1).await;
    for left in (0..5).rev() {
        let reply = nodes.check(&id, wrong(&code)).await;
        reply.expect_status(200);
        assert_eq!(reply.body["attempts_remaining"], left);
    }
    nodes
        .check(&id, &code)
        .await
        .expect_error(409, "max_attempts_reached");

    // Idempotency: the same key through two nodes is one verification; another body under
    // it is refused.
    let key = format!("k-{}", random_hex(8));
    let body = json!({"channel": "sms", "to": mobile(905)});
    let once = send(
        nodes
            .request(Method::POST, "/v1/verifications")
            .header("Idempotency-Key", &key)
            .json(&body),
    )
    .await;
    once.expect_status(201);
    let again = send(
        nodes
            .request(Method::POST, "/v1/verifications")
            .header("Idempotency-Key", &key)
            .json(&body),
    )
    .await;
    assert_eq!(again.str("id"), once.str("id"));
    send(
        nodes
            .request(Method::POST, "/v1/verifications")
            .header("Idempotency-Key", &key)
            .json(&json!({"channel": "sms", "to": mobile(906)})),
    )
    .await
    .expect_error(422, "idempotency_key_reused");

    // The code that expired meanwhile.
    let code = nodes.code(&expiring_id, 1).await;
    tokio::time::sleep(expiring_at.saturating_duration_since(Instant::now())).await;
    nodes
        .check(&expiring_id, &code)
        .await
        .expect_error(410, "expired");
}

/// The partition a verification id belongs to (its slot is the 8 hex digits after `ver_`).
fn partition_of(id: &str) -> usize {
    let slot = u32::from_str_radix(&id[4..12], 16).expect("an id with a slot");
    (slot % u32::from(PARTITIONS)) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_resets_no_counter_and_loses_no_code() {
    let cluster = Cluster::new();
    let mut nodes = vec![
        cluster.start("node-a").await,
        cluster.start("node-b").await,
        cluster.start("node-c").await,
    ];
    let (owners, _) = wait_for_owners(&nodes[0], &NAMES, 3, Duration::from_secs(15)).await;

    // Verifications answered 201 by the node about to die, one of them guessed wrong four
    // times (each guess through another node).
    let victim_index = 0;
    let victim = Rotation::new(vec![&nodes[victim_index]]);
    let mut created = Vec::new();
    for n in 0..20 {
        created.push(victim.create_sms(&mobile(950 + n)).await);
    }
    let everyone = Rotation::new(nodes.iter().collect());
    // A verification whose partition the victim owns.
    let guessed = created
        .iter()
        .find(|id| owners[partition_of(id)] == NAMES[victim_index])
        .cloned()
        .unwrap_or_else(|| created[0].clone());
    let code = everyone.code(&guessed, 1).await;
    for _ in 0..4 {
        everyone
            .check(&guessed, wrong(&code))
            .await
            .expect_status(200);
    }

    let killed_at = Instant::now();
    nodes[victim_index].process.stop();
    let survivors: Vec<&Node> = nodes.iter().skip(1).collect();
    let others = Rotation::new(survivors.clone());

    // The fifth wrong guess after the kill uses the last attempt: the takeover kept the
    // count. Checks may fail with 503 while the partition moves, for a few seconds at most.
    let last_refusal = loop {
        let reply = others.check(&guessed, wrong(&code)).await;
        if reply.status == 503 {
            assert!(
                killed_at.elapsed() < Duration::from_secs(5),
                "checks still failed {:?} after the kill",
                killed_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        break reply;
    };
    last_refusal.expect_status(200);
    assert_eq!(last_refusal.body["attempts_remaining"], 0);
    others
        .check(&guessed, &code)
        .await
        .expect_error(409, "max_attempts_reached");
    eprintln!(
        "checks answered again {:?} after the kill",
        killed_at.elapsed()
    );

    // Every other verification the dead node answered 201 is delivered and verifies.
    let all = Rotation::new(nodes.iter().collect());
    for id in created.iter().filter(|id| **id != guessed) {
        let code = all.code(id, 1).await;
        let reply = others.check(id, &code).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], true, "{id}");
    }
    drop(survivors);
    nodes.clear();
}

/// Creates verifications through the nodes of `addresses` in turn until stopped, one at a
/// time, retrying on the next node a create that got no answer or a refusal; counts what it
/// made as it goes.
struct CreateLoad {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    /// The latest failed creates, each with when it failed, for a test that fails on too few.
    failures: Arc<Mutex<RecentFailures>>,
    task: tokio::task::JoinHandle<CreatedUnderLoad>,
}

/// What a `CreateLoad` made: the ids answered 201, how many creates failed, and the longest
/// a create that succeeded took.
struct CreatedUnderLoad {
    ids: Vec<String>,
    failed: u32,
    slowest: Duration,
}

impl CreateLoad {
    /// Starts the load; its destinations are numbered from `first`.
    fn start(addresses: Arc<Mutex<Vec<String>>>, key: String, first: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(RecentFailures::default()));
        let task = tokio::spawn(create_until_stopped(
            addresses,
            key,
            Arc::clone(&stop),
            Arc::clone(&made),
            Arc::clone(&failures),
            first,
        ));
        CreateLoad {
            stop,
            made,
            failures,
            task,
        }
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// Waits until `more` creates have succeeded from now on; fails the test after `within`.
    async fn wait_for_more(&self, more: usize, within: Duration) {
        let target = self.made() + more;
        let deadline = Instant::now() + within;
        while self.made() < target {
            if Instant::now() >= deadline {
                let failures = self.failures.lock().expect("the failures").to_string();
                panic!(
                    "the cluster answered only {} of {more} creates 201 within {within:?}; the latest failures:\n{failures}",
                    more + self.made() - target,
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> CreatedUnderLoad {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the load")
    }
}

/// The latest failed creates of a load, oldest first.
#[derive(Default)]
struct RecentFailures(std::collections::VecDeque<String>);

impl RecentFailures {
    const KEPT: usize = 30;

    fn push(&mut self, at: Duration, address: String, failure: String) {
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0
            .push_back(format!("{:>7.2}s {address}: {failure}", at.as_secs_f64()));
    }
}

impl std::fmt::Display for RecentFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for failure in &self.0 {
            writeln!(f, "  {failure}")?;
        }
        Ok(())
    }
}

async fn create_until_stopped(
    addresses: Arc<Mutex<Vec<String>>>,
    key: String,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    failures: Arc<Mutex<RecentFailures>>,
    first: u32,
) -> CreatedUnderLoad {
    let started = Instant::now();
    let http = http_client();
    let mut created = CreatedUnderLoad {
        ids: Vec::new(),
        failed: 0,
        slowest: Duration::ZERO,
    };
    let mut n = first;
    let mut turn = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let address = {
            let addresses = addresses.lock().expect("the addresses");
            addresses[turn % addresses.len()].clone()
        };
        turn += 1;
        let request = authed(
            &http,
            Method::POST,
            format!("{address}/v1/verifications"),
            &key,
        )
        // A create that got no answer may have been made: its retry, under the same key,
        // gets the first answer rather than a cooldown.
        .header("Idempotency-Key", format!("load-{n}"))
        .json(&json!({"channel": "sms", "to": mobile(n)}))
        .timeout(Duration::from_secs(10));
        let sent = Instant::now();
        match request.send().await {
            Ok(reply) if reply.status() == 201 => {
                let body: Value = reply.json().await.expect("a JSON answer");
                created
                    .ids
                    .push(body["id"].as_str().expect("an id").to_owned());
                created.slowest = created.slowest.max(sent.elapsed());
                made.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
            answered => {
                let failure = match answered {
                    Ok(reply) => format!(
                        "a create was refused: {} {}",
                        reply.status(),
                        reply.text().await.unwrap_or_default()
                    ),
                    Err(error) => format!("a create was not answered: {error:?}"),
                };
                failures
                    .lock()
                    .expect("the failures")
                    .push(started.elapsed(), address, failure);
                created.failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let cluster = Cluster::new();
    let mut nodes = cluster.start_three().await;
    let addresses = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|node| node.process.address.clone())
            .collect::<Vec<_>>(),
    ));
    let load = CreateLoad::start(Arc::clone(&addresses), cluster.api_key.clone(), 10_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (index, (node, name)) in nodes.iter_mut().zip(NAMES).enumerate() {
        // A restarted node listens on a new port; the load finds it there once it is ready.
        cluster.restart(node, name).await;
        addresses.lock().expect("the addresses")[index] = node.process.address.clone();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Some load on the cluster as it stands after the last restart.
    load.wait_for_more(20, Duration::from_secs(60)).await;
    let created = load.stop().await;
    eprintln!(
        "rolling restart: {} created, the slowest in {:?}; {} creates refused or unanswered",
        created.ids.len(),
        created.slowest,
        created.failed
    );
    let created = created.ids;

    // Every verification answered 201 is delivered, and verifies.
    let all = Rotation::new(nodes.iter().collect());
    for id in &created {
        let code = all.code(id, 1).await;
        let reply = all.check(id, &code).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], true, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moved_to_the_other_engine_applies_the_changelogs_into_its_new_store() {
    let cluster = Cluster::new();
    let mut nodes = cluster.start_three().await;
    let rotation = Rotation::new(nodes.iter().collect());
    let mut made = Vec::new();
    for n in 0..12 {
        let id = rotation.create_sms(&mobile(n)).await;
        let code = rotation.code(&id, 1).await;
        made.push((id, code));
    }
    drop(rotation);

    // Node a goes to sled as README says: its state (an LSM tree, what a new store is)
    // moved aside, it starts on an empty store and applies the changelogs into it.
    let moved = &mut nodes[0];
    moved.process.terminate(Duration::from_secs(10));
    let aside = tempfile::tempdir().expect("a place aside");
    for name in ["state", "state.id"] {
        std::fs::rename(moved.store.path().join(name), aside.path().join(name))
            .expect("the state moved aside");
    }
    let mut env = cluster.env(NAMES[0], &PARTITIONS.to_string());
    env.push(("OTPD__STORE__ENGINE", "sled".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    moved.process = OtpdProcess::start(moved.store.path(), &env);
    moved.wait_ready().await;
    assert!(
        aside.path().join("state").join("journals").is_dir(),
        "node-a's first store was not an LSM tree"
    );
    assert!(
        moved.store.path().join("state").join("conf").is_file(),
        "node-a's new store is not sled's"
    );

    // The other two go: node a alone answers every check, from what it applied.
    for node in &mut nodes[1..] {
        node.process.terminate(Duration::from_secs(10));
    }
    wait_for_owners(&nodes[0], &NAMES[..1], 1, Duration::from_secs(15)).await;
    let alone = Rotation::new(vec![&nodes[0]]);
    for (id, code) in &made {
        let reply = alone.check(id, code).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], true, "{id}");
    }
}

/// Waits out the last two minutes of a UTC day, so a test's daily caps count in one day.
async fn not_near_utc_midnight() {
    const DAY: u64 = 86_400;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let left = DAY - now % DAY;
    if left < 120 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

/// Creates one verification per number in `numbers` with `key`, eight at a time, each
/// through the next node of `addresses`; returns the statuses with the refusals' bodies.
async fn create_many(addresses: &[String], key: &str, numbers: Vec<u32>) -> Vec<Reply> {
    use futures_util::stream::{self, StreamExt};
    let http = http_client();
    stream::iter(numbers.into_iter().enumerate())
        .map(|(turn, n)| {
            let request = authed(
                &http,
                Method::POST,
                format!("{}/v1/verifications", addresses[turn % addresses.len()]),
                key,
            )
            .json(&json!({"channel": "sms", "to": mobile(n)}));
            send(request)
        })
        .buffer_unordered(8)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cap_and_a_provider_quota_hold_across_three_nodes() {
    not_near_utc_midnight().await;
    let bulk_key = format!("otpk_{}", random_hex(16));
    let cluster = Cluster::with(&[
        ("OTPD__TENANTS__ACME__SENDS_PER_DAY", "100"),
        (
            "OTPD__TENANTS__BULK__API_KEY_SHA256",
            &hex::encode(Sha256::digest(bulk_key.as_bytes())),
        ),
        ("OTPD__QUOTAS__SANDBOX__DAILY", "100"),
    ]);
    let nodes = cluster.start_three().await;
    let addresses: Vec<String> = nodes
        .iter()
        .map(|node| node.process.address.clone())
        .collect();

    // The tenant's cap of 100 a day: 130 creates through three nodes, 100 pass.
    let capped = create_many(&addresses, &cluster.api_key, (0..130).collect()).await;
    let created = capped.iter().filter(|reply| reply.status == 201).count();
    let refused: Vec<&Reply> = capped.iter().filter(|reply| reply.status != 201).collect();
    assert_eq!(created, 100, "creates answered 201 under a cap of 100");
    for reply in &refused {
        reply.expect_error(429, "rate_limited");
        assert!(
            reply.text.contains("tenants.acme.sends_per_day"),
            "{}",
            reply.text
        );
    }

    // The provider's quota of 100 a day: the tenant without caps adds 40 more sends, and
    // the provider still takes 100 messages in all.
    let uncapped = create_many(&addresses, &bulk_key, (1_000..1_040).collect()).await;
    for reply in &uncapped {
        reply.expect_status(201);
    }
    let sent = || -> usize {
        nodes
            .iter()
            .map(|node| read_outbox(node.store.path()).len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent() < 100 {
        assert!(
            Instant::now() < deadline,
            "only {} messages were sent under a quota of 100",
            sent()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The 40 over the quota wait for it to free up; none of them goes out meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sent(), 100, "messages sent under a quota of 100");
    let providers = send(authed(
        &http_client(),
        Method::GET,
        format!("{}/v1/providers", addresses[1]),
        &cluster.api_key,
    ))
    .await;
    providers.expect_status(200);
    eprintln!("providers as node-b sees them: {}", providers.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocklist_edit_on_one_node_holds_on_every_node() {
    let cluster = Cluster::with(&[("OTPD__TENANTS__ACME__ADMIN", "true")]);
    let nodes = cluster.start_three().await;
    let http = http_client();
    let on = |node: &Node, method: Method, path: &str| {
        authed(&http, method, node.process.url(path), &cluster.api_key)
    };
    let create = |node: &Node, n: u32| {
        on(node, Method::POST, "/v1/verifications")
            .json(&json!({"channel": "sms", "to": mobile(n)}))
    };

    // A prefix blocked through node-a: every node refuses numbers under it.
    send(on(&nodes[0], Method::POST, "/v1/admin/blocklist").json(&json!({"entry": "+4915113"})))
        .await
        .expect_status(201);
    for (n, node) in nodes.iter().enumerate() {
        send(create(node, n as u32))
            .await
            .expect_error(403, "destination_blocked");
    }
    let listed = send(on(&nodes[1], Method::GET, "/v1/admin/blocklist")).await;
    listed.expect_status(200);
    assert_eq!(
        listed.body["entries"][0]["entry"], "+4915113",
        "{}",
        listed.text
    );

    // Removed through node-c: every node sends to them again.
    send(on(
        &nodes[2],
        Method::DELETE,
        "/v1/admin/blocklist/%2B4915113",
    ))
    .await
    .expect_status(204);
    // Each node hears of the removal through the lists' changelog, moments later: until
    // then a create is refused (and creates nothing), so it may be sent again.
    for (n, node) in nodes.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply = loop {
            let reply = send(create(node, 10 + n as u32)).await;
            let refused = reply.status.as_u16() == 403;
            if !refused || Instant::now() > deadline {
                break reply;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        reply.expect_status(201);
    }
}

/// The `took_ms` of each line of `log` that has `message`.
fn took_ms(log: &str, message: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains(message))
        .filter_map(|line| {
            let rest = &line[line.find("took_ms=")? + "took_ms=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_load_applies_the_backlog_before_it_takes_partitions() {
    let cluster = Cluster::new();
    let mut nodes = cluster.start_three().await;
    // node-c is away while the other two take creates.
    nodes[2].process.terminate(Duration::from_secs(10));
    let addresses = Arc::new(Mutex::new(vec![
        nodes[0].process.address.clone(),
        nodes[1].process.address.clone(),
    ]));
    let load = CreateLoad::start(Arc::clone(&addresses), cluster.api_key.clone(), 20_000);
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Back on its store, under the same load: it applies what it missed, then takes its
    // share, each partition served moments after it is handed over.
    let back = Instant::now();
    nodes[2].process = cluster.run("node-c", &nodes[2].store);
    nodes[2].wait_ready().await;
    let ready_after = back.elapsed();
    wait_for_owners(&nodes[0], &NAMES, 3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let CreatedUnderLoad {
        ids: created,
        failed,
        ..
    } = load.stop().await;

    let log = nodes[2].process.output();
    let backlog = took_ms(&log, "Applied the changelogs' backlog.");
    let takeovers = took_ms(&log, "Now the owner of a partition, caught up");
    eprintln!(
        "node back: ready after {ready_after:?}; backlog applied in {backlog:?} ms; {} takeovers, the longest {:?} ms; {} creates, {failed} failed",
        takeovers.len(),
        takeovers.iter().max(),
        created.len()
    );
    assert_eq!(backlog.len(), 1, "the backlog was applied once:\n{log}");
    assert!(!takeovers.is_empty(), "node-c took partitions:\n{log}");
    assert!(
        takeovers.iter().all(|took| *took <= 5_000),
        "a takeover took more than 5 s: {takeovers:?}"
    );
    // Every node owns partitions and says how far behind it is: nothing, once the load
    // has stopped and its next look at the changelogs' tails has come.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let view = send(authed(
            &http_client(),
            Method::GET,
            nodes[0].process.url("/v1/cluster"),
            &cluster.api_key,
        ))
        .await;
        let lags: Vec<Option<u64>> = view.body["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().map(|n| n["changelog_lag"].as_u64()).collect())
            .unwrap_or_default();
        if lags.len() == 3 && lags.iter().all(|lag| *lag == Some(0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' lag did not come to 0: {}",
            view.text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What was created while node-c was away verifies through it.
    let through_c = Rotation::new(vec![&nodes[2]]);
    let all = Rotation::new(nodes.iter().collect());
    for id in created.iter().step_by(25) {
        let code = all.code(id, 1).await;
        let reply = through_c.check(id, &code).await;
        reply.expect_status(200);
        assert_eq!(reply.body["valid"], true, "{id}");
    }
}

/// Asks `node` until every partition has an owner and none owns more than its share (the
/// partitions over three nodes, rounded up); returns the owners.
async fn wait_for_even_owners(node: &Node, within: Duration) -> Vec<String> {
    let share = usize::from(PARTITIONS).div_ceil(NAMES.len());
    let started = Instant::now();
    loop {
        let owners = node
            .owners()
            .await
            .ok()
            .and_then(|owners| owners.into_iter().collect::<Option<Vec<String>>>());
        if let Some(owners) = owners {
            let most = NAMES
                .iter()
                .map(|name| owners.iter().filter(|owner| owner == name).count())
                .max()
                .unwrap_or(0);
            if most <= share {
                return owners;
            }
        }
        assert!(
            started.elapsed() < within,
            "the partitions were not spread evenly within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_spread_over_three_nodes_is_judged_on_all_its_sends() {
    let cluster = Cluster::with(&[
        ("OTPD__FRAUD__MODE", "enforce"),
        ("OTPD__FRAUD__WINDOW_SECONDS", "20"),
        ("OTPD__FRAUD__CONVERSION_GRACE_SECONDS", "0"),
    ]);
    let nodes = cluster.start_three().await;
    let owners = wait_for_even_owners(&nodes[0], Duration::from_secs(20)).await;
    let addresses: Vec<String> = nodes
        .iter()
        .map(|node| node.process.address.clone())
        .collect();
    const FIRST: u32 = 500_000;
    let refused_as_pumping =
        |reply: &Reply| reply.status == 429 && reply.body["error"]["reason"] == "fraud_suspected";
    // Sends to 21 consecutive numbers of one prefix, never verified: by the defaults
    // (`min_judged_sends` and `sequential_run` 20) a pump, once judged on all of them. Each
    // is counted by the node owning its number's partition, and no node owns 20 of them.
    // (The last may be refused already: the nodes tell each other every second.)
    let pumped = create_many(&addresses, &cluster.api_key, (FIRST..FIRST + 21).collect()).await;
    let mut served = std::collections::BTreeMap::<&str, usize>::new();
    for reply in pumped.iter().filter(|reply| !refused_as_pumping(reply)) {
        reply.expect_status(201);
        let id = reply.body["id"].as_str().expect("an id");
        *served.entry(owners[partition_of(id)].as_str()).or_default() += 1;
    }
    assert!(
        served.values().all(|&sends| sends < 20),
        "a node served enough of the pump to judge it alone: {served:?}"
    );
    eprintln!("the pump's sends by the node that counted them: {served:?}");
    // A window slice (one second) for the sends to be judged, and a tell between nodes.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // The next send to the prefix is judged on all of them, on whichever node counts it:
    // the prefix is blocked, the block kept for every node, and every node refuses it.
    // Without the counts told between nodes, a node would need a dozen more sends of its
    // own to judge the pump.
    let http = http_client();
    let create = |address: &str, n: u32| {
        authed(
            &http,
            Method::POST,
            format!("{address}/v1/verifications"),
            &cluster.api_key,
        )
        .json(&json!({"channel": "sms", "to": mobile(n)}))
    };
    let mut next = FIRST + 21;
    let mut sent_after = 0;
    for address in &addresses {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            next += 1;
            let reply = send(create(address, next)).await;
            if refused_as_pumping(&reply) {
                break;
            }
            reply.expect_status(201);
            sent_after += 1;
            assert!(
                sent_after <= 5,
                "{sent_after} more sends to the pumped prefix went out once it was judged"
            );
            assert!(
                Instant::now() < deadline,
                "{address} still sends to the pumped prefix 3 s after it was judged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_while_its_code_is_on_its_way_sends_it_once() {
    // Every send takes 1.5 s, so the retries come while the first send is under way.
    let cluster = Cluster::with(&[("OTPD__SANDBOX__DELAY_MS", "1500")]);
    let nodes = cluster.start_three().await;
    let http = http_client();
    let create = |node: &Node| {
        send(
            authed(
                &http,
                Method::POST,
                node.process.url("/v1/verifications"),
                &cluster.api_key,
            )
            .header("Idempotency-Key", "retried-1")
            .json(&json!({"channel": "sms", "to": mobile(4242)})),
        )
    };
    let first = create(&nodes[0]).await;
    first.expect_status(201);
    let id = first.str("id").to_owned();
    // A caller whose answers were lost retries through every node, again and again: each
    // retry reaches the owner, which knows the job is on its way and does not hand it on
    // again (another node taking a second copy would not know of the first send yet).
    for round in 0..6 {
        let retry = create(&nodes[round % nodes.len()]).await;
        assert!(retry.status.is_success(), "retry {round}: {}", retry.text);
        assert_eq!(
            retry.str("id"),
            id,
            "retry {round} replays the first answer"
        );
    }
    let sent = || -> usize {
        nodes
            .iter()
            .map(|node| helpers::outbox_messages(node.store.path(), &id).len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while sent() == 0 {
        assert!(Instant::now() < deadline, "the code was never sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for every copy handed on to have been sent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sent(), 1, "the code went out once");
}

/// Every message each node's sandbox sent for `id`.
fn messages_for(nodes: &[Node], id: &str) -> Vec<Value> {
    nodes
        .iter()
        .flat_map(|node| read_outbox(node.store.path()))
        .filter(|message| message["verification_id"] == id)
        .collect()
}

/// Waits up to `within` for `count` messages for `id` from any node's sandbox.
async fn wait_for_sends(nodes: &[Node], id: &str, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let messages = messages_for(nodes, id);
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{count} messages for {id} never went out: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_step_due_after_its_owner_died_goes_out_once_from_the_next_owner() {
    let cluster = Cluster::with(&[
        ("OTPD__ROUTING__DEFAULT__WHATSAPP", "sandbox"),
        ("OTPD__VERIFICATION__RESEND_COOLDOWN_SECONDS", "1"),
    ]);
    let mut nodes = cluster.start_three().await;
    let (owners, _) = wait_for_owners(&nodes[0], &NAMES, 3, Duration::from_secs(15)).await;
    let everyone = Rotation::new(nodes.iter().collect());
    let created = everyone
        .create(&json!({
            "to": mobile(990),
            "workflow": [
                {"channel": "sms", "channel_timeout_seconds": 15},
                {"channel": "whatsapp", "channel_timeout_seconds": 900},
                {"channel": "sms"},
            ],
        }))
        .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    let code = everyone.code(&id, 1).await;
    // Its send recorded, so no send is in flight when the owner dies (one that is may go
    // out once more, as the cluster allows). The owner shows the outcome before the
    // changelog has it, up to 5 ms with no other write to ride along with; the job is
    // acknowledged once it has.
    let recorded = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(everyone.request(Method::GET, &format!("/v1/verifications/{id}"))).await;
        if reply.status == 200 && reply.str("delivery") == "sent" {
            break;
        }
        assert!(
            Instant::now() < recorded,
            "the first send was never recorded: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(everyone);

    // The owner of the verification's partition dies before the step is due.
    let owner = &owners[partition_of(&id)];
    let victim = NAMES.iter().position(|name| name == owner).unwrap();
    nodes[victim].process.stop();
    let survivors = Rotation::new(
        nodes
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != victim)
            .map(|(_, node)| node)
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !messages_for(&nodes, &id)
        .iter()
        .any(|message| message["channel"] == "whatsapp")
    {
        assert!(
            Instant::now() < deadline,
            "the workflow's second step never went out: {:?}",
            messages_for(&nodes, &id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Any second send of the step would come within moments.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = messages_for(&nodes, &id);
    let mut channels: Vec<&str> = messages
        .iter()
        .map(|message| message["channel"].as_str().unwrap())
        .collect();
    channels.sort_unstable();
    assert_eq!(
        channels,
        ["sms", "whatsapp"],
        "each step once: {messages:?}"
    );
    let step = messages
        .iter()
        .find(|message| message["channel"] == "whatsapp")
        .unwrap();
    assert_eq!(message_code(step, 6), code, "the step sends the same code");

    // The last step, asked for through a node that does not own the partition: forwarded
    // to its owner, sent once.
    let living: Vec<&str> = NAMES
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != victim)
        .map(|(_, name)| *name)
        .collect();
    let (owners, _) =
        wait_for_owners(survivors.nodes[0], &living, 2, Duration::from_secs(15)).await;
    let forwarder = NAMES
        .iter()
        .position(|name| living.contains(name) && *name != owners[partition_of(&id)])
        .unwrap();
    let moved = send(authed(
        &http_client(),
        Method::POST,
        nodes[forwarder]
            .process
            .url(&format!("/v1/verifications/{id}/next")),
        &nodes[forwarder].key,
    ))
    .await;
    moved.expect_status(200);
    assert_eq!(moved.str("channel"), "sms");
    let messages = wait_for_sends(&nodes, &id, 3, Duration::from_secs(10)).await;
    assert!(
        messages
            .iter()
            .all(|message| message_code(message, 6) == code),
        "{messages:?}"
    );
    let checked = survivors.check(&id, &code).await;
    checked.expect_status(200);
    assert_eq!(checked.body["valid"], true, "{}", checked.text);
    drop(survivors);
    nodes.clear();
}
