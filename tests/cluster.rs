//! Several otpd nodes on one RabbitMQ (127.0.0.1:5672) as one cluster: the broker assigns
//! every partition to one node, spreads them, hands a dead node's partitions to the others,
//! and a node configured with another partition count refuses to start. Each test runs
//! otpd processes on a namespace of its own and deletes it afterwards, failed or not.

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "it/helpers.rs"]
mod helpers;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use rand::RngCore;
use serde_json::Value;

use helpers::{http_client, wait_for_dev_key, OtpdProcess};

const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const PARTITIONS: u16 = 8;

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A namespace on the broker, deleted (queues, streams, exchanges) when dropped, so a
/// failed test leaves nothing behind either.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let namespace = self.0.clone();
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(delete_namespace(&namespace));
            }
        });
        let _ = cleaner.join();
    }
}

async fn delete_namespace(namespace: &str) {
    let Ok(Ok(connection)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(BROKER_URL, ConnectionProperties::default()),
    )
    .await
    else {
        eprintln!("could not connect to delete namespace {namespace}");
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let mut settings = otpd::config::Settings::load(None).expect("default settings");
    settings.amqp.namespace = namespace.to_owned();
    let topology = otpd::bus::amqp::topology::Topology::from_settings(&settings.amqp, PARTITIONS);
    for queue in topology.all_queue_names() {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in topology.exchange_names() {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "test done".into()).await;
}

/// A cluster's namespace and the secrets every node shares.
struct Cluster {
    namespace: Namespace,
    pepper: String,
    sealing_key: String,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            namespace: Namespace(format!("c{}", random_hex(6))),
            pepper: random_hex(32),
            sealing_key: random_hex(32),
        }
    }

    /// The environment of node `node` with `partitions`.
    fn env(&self, node: &str, partitions: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OTPD__AMQP__URL", BROKER_URL.to_owned()),
            ("OTPD__AMQP__NAMESPACE", self.namespace.0.clone()),
            ("OTPD__AMQP__RECONNECT_DELAY_MS", "200".to_owned()),
            ("OTPD__CLUSTER__PARTITIONS", partitions.to_owned()),
            ("OTPD__CLUSTER__NODE_ID", node.to_owned()),
            ("OTPD__CLUSTER__TICK_MS", "200".to_owned()),
            ("OTPD__SECRETS__PEPPER", self.pepper.clone()),
            ("OTPD__SECRETS__SEALING_KEY", self.sealing_key.clone()),
        ]
    }

    async fn start(&self, node: &str) -> Node {
        let store = tempfile::tempdir().expect("a temp store");
        let env = self.env(node, &PARTITIONS.to_string());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let process = OtpdProcess::start(store.path(), &env);
        let key = wait_for_dev_key(store.path()).await;
        let node = Node {
            process,
            key,
            _store: store,
        };
        node.wait_ready().await;
        node
    }
}

struct Node {
    process: OtpdProcess,
    key: String,
    _store: tempfile::TempDir,
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

    /// The owner of each partition as this node sees it (`None`: nobody answered).
    async fn owners(&self) -> Vec<Option<String>> {
        let reply = http_client()
            .get(self.process.url("/v1/cluster"))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET /v1/cluster");
        assert_eq!(reply.status(), 200, "GET /v1/cluster");
        let view: Value = reply.json().await.expect("a JSON view");
        view["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["owner"].as_str().map(str::to_owned))
            .collect()
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
        let owners = node.owners().await;
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
async fn a_node_with_another_partition_count_refuses_to_start_and_names_both() {
    let cluster = Cluster::new();
    let first = cluster.start("node-a").await;
    let store = tempfile::tempdir().expect("a temp store");
    let env = cluster.env("node-b", &(PARTITIONS * 2).to_string());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, output) = OtpdProcess::run_to_exit(store.path(), &env, Duration::from_secs(30));
    assert!(
        status.is_some_and(|status| !status.success()),
        "the node with 16 partitions did not fail ({status:?}):\n{output}"
    );
    assert!(
        output.contains("cluster.partitions is 16 on this node")
            && output.contains("was started with 8 partitions")
            && output.contains("OTPD__CLUSTER__PARTITIONS=8"),
        "{output}"
    );
    // The cluster itself is unharmed.
    let (owners, _) = wait_for_owners(&first, &["node-a"], 1, Duration::from_secs(5)).await;
    assert_eq!(owners.len(), usize::from(PARTITIONS));
}
