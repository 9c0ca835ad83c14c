//! Runs the system under test: `otpd serve` subprocesses (one, or a cluster of several) in
//! broker mode on a namespace of their own, a fake provider they deliver to, and the
//! clean-up of their broker topology.

use anyhow::{bail, Context};
use lapin::{Connection, ConnectionProperties};
use otpd::sync::LockUnpoisoned;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use otpd::testing::{FakeProviderServer, FakeSmsc};
use sha2::{Digest, Sha256};

/// How long otpd may take to listen and become ready.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of otpd's output kept for error messages.
const KEPT_LINES: usize = 200;

/// How the spawned otpd reaches the fake provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderMode {
    /// A generic HTTP provider (`[providers.load] kind = "http"`) pointing at the fake server.
    Http,
    /// The sandbox provider; arrivals are read by tailing its outbox file.
    Sandbox,
    /// `http`, falling back to `sandbox` when this otpd does not know provider settings yet.
    Auto,
    /// An SMPP provider (`kind = "smpp"`) bound to a fake SMSC of the harness.
    Smpp,
}

pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// The otpd binary: `explicit`, or `otpd` beside this executable (or one folder up, for a
/// test binary in `target/<profile>/deps`).
pub fn otpd_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let me = std::env::current_exe().context("where is this executable?")?;
    let mut dir = me.parent();
    for _ in 0..2 {
        let Some(here) = dir else { break };
        let candidate = here.join("otpd");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = here.parent();
    }
    bail!(
        "no otpd binary next to {} (build it with `cargo build --release --bin otpd`, or pass --otpd-bin PATH)",
        me.display()
    )
}

/// The settings file that sends every message through the generic HTTP provider.
pub fn http_provider_settings(url: &str) -> String {
    format!(
        r#"[sandbox]
enabled = false

[providers.load]
kind = "http"
url = "{url}"
body_template = '{{"to": "{{to}}", "text": "{{body}}", "ref": "{{verification_id}}"}}'

[routing.default]
sms = ["load"]
email = ["load"]
"#
    )
}

/// The settings file that sends every SMS through an SMPP provider of `binds` binds to the
/// fake SMSC on `port` (its password random, for this run); email stays with the sandbox.
pub fn smpp_provider_settings(port: u16, password: &str, binds: u8) -> String {
    format!(
        r#"[providers.load]
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "loadtest"
password = "{password}"
source_addr = "otpd"
binds = {binds}

[routing.default]
sms = ["load"]
"#
    )
}

/// The running otpd nodes (one cluster on one namespace) with their store, and the fake
/// provider they deliver to.
pub struct Spawned {
    nodes: Vec<Node>,
    /// The first node's HTTP address.
    pub address: String,
    pub api_key: String,
    pub namespace: String,
    pub provider: ProviderMode,
    pub fake: FakeProviderServer,
    /// The fake SMSC, with `--provider smpp`.
    pub smsc: Option<FakeSmsc>,
    pub store: tempfile::TempDir,
    keep_store: bool,
}

/// One `otpd serve` process.
pub struct Node {
    child: Child,
    pub id: String,
    pub address: String,
    output: Arc<Mutex<Vec<String>>>,
}

pub struct SpawnOptions<'a> {
    pub otpd_bin: Option<&'a Path>,
    pub amqp_url: &'a str,
    pub provider: ProviderMode,
    pub queue_type: &'a str,
    /// otpd processes in the cluster.
    pub nodes: usize,
    /// With `--provider smpp`: the binds the SMPP provider keeps.
    pub smpp_binds: u8,
    /// Leave the store directories in place after the run, for inspection.
    pub keep_store: bool,
}

/// What every node of the cluster shares.
struct Shared<'a> {
    binary: &'a Path,
    options: &'a SpawnOptions<'a>,
    namespace: &'a str,
    settings_file: Option<PathBuf>,
    pepper: String,
    sealing_key: String,
    api_key_sha256: String,
}

impl Spawned {
    pub async fn start(options: &SpawnOptions<'_>) -> anyhow::Result<Spawned> {
        let binary = otpd_binary(options.otpd_bin)?;
        let fake = FakeProviderServer::start()
            .await
            .context("start the fake provider")?;
        fake.control().set_record_cap(0);
        let first = match options.provider {
            ProviderMode::Sandbox => ProviderMode::Sandbox,
            ProviderMode::Smpp => ProviderMode::Smpp,
            ProviderMode::Http | ProviderMode::Auto => ProviderMode::Http,
        };
        if options.nodes > 1 && first == ProviderMode::Sandbox {
            bail!("--nodes needs --provider http: each node's sandbox writes an outbox of its own");
        }
        match Self::start_with(&binary, options, first, fake).await {
            Ok(spawned) => Ok(spawned),
            Err((error, fake)) if options.provider == ProviderMode::Auto && options.nodes == 1 => {
                eprintln!(
                    "otpd did not start with an HTTP provider ({}); falling back to the sandbox provider.",
                    first_line(&error.to_string())
                );
                Self::start_with(&binary, options, ProviderMode::Sandbox, fake)
                    .await
                    .map_err(|(error, _)| error)
            }
            Err((error, _)) => Err(error),
        }
    }

    async fn start_with(
        binary: &Path,
        options: &SpawnOptions<'_>,
        provider: ProviderMode,
        fake: FakeProviderServer,
    ) -> Result<Spawned, (anyhow::Error, FakeProviderServer)> {
        // Kept from the start when asked, so a run that fails leaves them too.
        let store = match tempfile::Builder::new()
            .prefix("otpd-loadtest-")
            .disable_cleanup(options.keep_store)
            .tempdir()
        {
            Ok(store) => store,
            Err(error) => return Err((error.into(), fake)),
        };
        let namespace = format!("lt{}", random_hex(6));
        let smsc_password = random_hex(4);
        let smsc = if provider == ProviderMode::Smpp {
            match FakeSmsc::start("loadtest", &smsc_password).await {
                Ok(smsc) => {
                    smsc.control().set_record_cap(0);
                    Some(smsc)
                }
                Err(error) => return Err((error.into(), fake)),
            }
        } else {
            None
        };
        let settings = match (provider, &smsc) {
            (ProviderMode::Http, _) => Some(http_provider_settings(&fake.generic_url())),
            (ProviderMode::Smpp, Some(smsc)) => Some(smpp_provider_settings(
                smsc.port(),
                &smsc_password,
                options.smpp_binds,
            )),
            _ => None,
        };
        let settings_file = match settings {
            Some(settings) => {
                let path = store.path().join("loadtest.toml");
                if let Err(error) = std::fs::write(&path, settings) {
                    return Err((error.into(), fake));
                }
                Some(path)
            }
            None => None,
        };
        let api_key = format!("otpk_{}", random_hex(16));
        let shared = Shared {
            binary,
            options,
            namespace: &namespace,
            settings_file,
            pepper: random_hex(32),
            sealing_key: random_hex(32),
            api_key_sha256: hex::encode(Sha256::digest(api_key.as_bytes())),
        };
        let deadline = Instant::now() + START_DEADLINE;
        let mut nodes = Vec::new();
        for index in 0..options.nodes.max(1) {
            match Node::start(&shared, &node_store(store.path(), index), index, deadline).await {
                Ok(node) => nodes.push(node),
                Err(error) => {
                    abandon(nodes, options.amqp_url, &namespace).await;
                    return Err((error, fake));
                }
            }
        }
        for node in &nodes {
            if let Err(error) = node.wait_ready(deadline).await {
                abandon(nodes, options.amqp_url, &namespace).await;
                return Err((error, fake));
            }
        }
        Ok(Spawned {
            address: nodes[0].address.clone(),
            nodes,
            api_key,
            namespace,
            provider,
            fake,
            smsc,
            store,
            keep_store: options.keep_store,
        })
    }

    /// Every node, in the order they started.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The HTTP address of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.address.clone()).collect()
    }

    /// The sandbox outbox file of the first node.
    pub fn outbox(&self) -> PathBuf {
        node_store(self.store.path(), 0)
            .join("sandbox")
            .join("outbox.jsonl")
    }

    /// The resident set size of every node together now, in bytes (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        self.nodes.iter().map(Node::rss_bytes).sum()
    }

    /// Bytes one node's store takes on disk now, the mean over the nodes.
    pub fn store_bytes(&self) -> Option<u64> {
        mean_store_bytes(&self.store_dirs())
    }

    /// The store directory of every node.
    pub fn store_dirs(&self) -> Vec<PathBuf> {
        (0..self.nodes.len())
            .map(|index| node_store(self.store.path(), index))
            .collect()
    }

    /// Stops every node (SIGKILL: the run is over) and deletes their queues and exchanges;
    /// the store directories too, unless they are to be kept.
    pub async fn stop(mut self, amqp_url: &str) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            let _ = node.child.kill().await;
        }
        if self.keep_store {
            eprintln!("store directories kept in {}", self.store.path().display());
        }
        delete_namespace(amqp_url, &self.namespace).await
    }
}

impl Node {
    async fn start(
        shared: &Shared<'_>,
        data: &Path,
        index: usize,
        deadline: Instant,
    ) -> anyhow::Result<Node> {
        let options = shared.options;
        let id = format!("n{index}");
        let mut command = Command::new(shared.binary);
        command.arg("serve");
        if let Some(path) = &shared.settings_file {
            command.arg("--config").arg(path);
        }
        let tenant_rate = "1000000";
        command
            .env("OTPD__STORE__DIR", data)
            .env("OTPD__HTTP__LISTEN", "127.0.0.1:0")
            .env("OTPD__AMQP__URL", options.amqp_url)
            .env("OTPD__AMQP__NAMESPACE", shared.namespace)
            .env("OTPD__AMQP__REQUESTS_QUEUE_TYPE", options.queue_type)
            .env("OTPD__SECRETS__PEPPER", &shared.pepper)
            .env("OTPD__SECRETS__SEALING_KEY", &shared.sealing_key)
            .env("OTPD__TENANTS__DEV__API_KEY_SHA256", &shared.api_key_sha256)
            .env("OTPD__RATE_LIMITS__TENANT_PER_SECOND", tenant_rate)
            .env("OTPD__RATE_LIMITS__TENANT_BURST", tenant_rate)
            .env("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", tenant_rate)
            .env("OTPD__RATE_LIMITS__CLIENT_IP_BURST", tenant_rate)
            // Every request goes to the next number and none is verified: exactly SMS
            // pumping. Monitor mode keeps the guard's cost in the measurement, refusing nothing.
            .env("OTPD__FRAUD__MODE", "monitor")
            .env(
                "RUST_LOG",
                std::env::var("OTPD_LOG").unwrap_or_else(|_| "warn,otpd=info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if options.nodes > 1 {
            command.env("OTPD__CLUSTER__NODE_ID", &id);
        }
        let mut child = command.spawn().map_err(|error| {
            anyhow::anyhow!("could not run {}: {error}", shared.binary.display())
        })?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, mut port_rx) = tokio::sync::mpsc::channel::<u16>(2);
        if let Some(stdout) = child.stdout.take() {
            pump(stdout, Arc::clone(&output), port_tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            pump(stderr, Arc::clone(&output), port_tx);
        }
        let port = loop {
            if let Ok(Some(port)) =
                tokio::time::timeout(Duration::from_millis(50), port_rx.recv()).await
            {
                break port;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let _ = child.kill().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let said = lines(&output);
                let why = if exited {
                    "exited"
                } else {
                    "did not listen in time"
                };
                bail!("otpd {id} {why}:\n{said}");
            }
        };
        Ok(Node {
            child,
            id,
            address: format!("http://127.0.0.1:{port}"),
            output,
        })
    }

    async fn wait_ready(&self, deadline: Instant) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("{}/readyz", self.address))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "otpd {} never became ready:\n{}",
                    self.id,
                    lines(&self.output)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's resident set size now, in bytes (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The store directory of node `index` under the run's temporary directory `root`.
fn node_store(root: &Path, index: usize) -> PathBuf {
    root.join(format!("data-{index}"))
}

/// Bytes one store of `dirs` takes on disk now, the mean over them (each node's holds the
/// whole state): the blocks of every file under each directory.
pub fn mean_store_bytes(dirs: &[PathBuf]) -> Option<u64> {
    let total = dirs
        .iter()
        .map(|dir| directory_bytes(dir))
        .sum::<std::io::Result<u64>>()
        .ok()?;
    Some(total / (dirs.len() as u64).max(1))
}

/// The bytes the files under `dir` take on disk (their blocks), its subdirectories
/// included. A file removed while it is walked (the store cleans up as it runs) counts 0.
fn directory_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let bytes = match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_bytes(&entry.path()),
            Ok(metadata) => Ok(metadata.blocks() * 512),
            Err(error) => Err(error),
        };
        total += match bytes {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            other => other?,
        };
    }
    Ok(total)
}

/// CPU time process `pid` has used so far, user and system, from `/proc/<pid>/stat` (Linux,
/// 100 ticks a second).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The broker's process (`beam.smp`), read from /proc, to measure its CPU beside otpd's.
pub fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "beam.smp").then_some(pid)
        })
}

fn first_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| line.contains("problem") || line.contains("unknown field"))
        .or_else(|| text.lines().next())
        .unwrap_or(text)
}

fn lines(output: &Arc<Mutex<Vec<String>>>) -> String {
    output.lock_unpoisoned().join("\n")
}

fn pump(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    port_tx: tokio::sync::mpsc::Sender<u16>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(port) = announced_port(&line) {
                let _ = port_tx.try_send(port);
            }
            let mut kept = output.lock_unpoisoned();
            if kept.len() >= KEPT_LINES {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
}

/// The port in a log line containing `address=http://127.0.0.1:PORT` (quoted or not).
fn announced_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("address=")?..];
    let host = "http://127.0.0.1:";
    let at = rest.find(host)?;
    let digits: String = rest[at + host.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// A start that failed: the nodes started are stopped and what they declared on the broker
/// is deleted, so a run whose otpd never became ready leaves no queues behind.
async fn abandon(nodes: Vec<Node>, amqp_url: &str, namespace: &str) {
    for mut node in nodes {
        let _ = node.child.kill().await;
    }
    if let Err(error) = delete_namespace(amqp_url, namespace).await {
        eprintln!("could not delete namespace {namespace} after the failed start: {error:#}");
    }
}

/// Deletes every queue and exchange otpd declares under `namespace`.
pub async fn delete_namespace(amqp_url: &str, namespace: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("connect to the broker to clean up")?;
    let channel = connection.create_channel().await?;
    let mut settings = otpd::config::Settings::load(None).context("otpd's default settings")?;
    settings.amqp.namespace = namespace.to_string();
    // The otpd under test (an older build, say) may share its streams otherwise than these
    // settings say.
    let topology = otpd::bus::amqp::topology::Topology::from_settings(
        &settings.amqp,
        &settings.cluster.with_every_stream(),
    );
    otpd::bus::amqp::declare::delete(&channel, &topology)
        .await
        .with_context(|| format!("delete the queues and exchanges of {namespace}"))?;
    let _ = connection.close(200, "clean-up done".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_time_of_a_process() {
        let spent: f64 = (0..2_000_000u64).map(|n| (n as f64).sqrt()).sum();
        assert!(spent > 0.0);
        let cpu = process_cpu_seconds(std::process::id()).expect("this process's CPU time");
        assert!((0.0..1_000_000.0).contains(&cpu), "{cpu}");
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn finds_the_announced_port() {
        assert_eq!(
            announced_port(
                r#"2026-01-01T00:00:00Z  INFO otpd::app: Listening. address="http://127.0.0.1:41234""#
            ),
            Some(41234)
        );
        assert_eq!(announced_port("address=http://127.0.0.1:8080"), Some(8080));
        assert_eq!(announced_port("nothing here"), None);
    }

    #[test]
    fn the_http_settings_have_the_agreed_shape() {
        let text = http_provider_settings("http://127.0.0.1:9/generic");
        assert!(
            text.contains(
                r#"body_template = '{"to": "{to}", "text": "{body}", "ref": "{verification_id}"}'"#
            ),
            "{text}"
        );
        assert!(text.contains("[routing.default]\nsms = [\"load\"]"));
    }
}
