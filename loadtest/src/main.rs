//! otpd-loadtest: drives otpd over AMQP or HTTP on loopback, follows every OTP to a fake
//! provider, and reports throughput, latency percentiles and Jepsen-style counts.
#![forbid(unsafe_code)]

mod amqp;
mod arrivals;
mod cpu;
mod driver;
mod footprint;
mod http;
mod report;
mod spawn;
mod tracker;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use otpd::sync::LockUnpoisoned;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use arrivals::Arrival;
use driver::Plan;
use otpd::issuance::settings::{MAX_TTL_SECONDS, MIN_TTL_SECONDS};
use report::{ClusterMessages, Report, Series};
use spawn::{ProviderMode, SpawnOptions, Spawned};
use tracker::Percentiles;

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Parser)]
#[command(
    name = "otpd-loadtest",
    version,
    about = "Load harness for otpd (loopback only)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// OTP requests over AMQP with publisher confirms, each followed to the provider.
    Amqp {
        #[command(flatten)]
        common: Common,
        /// Measure the broker's own hop first and report end-to-end / ceiling.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        with_ceiling: bool,
        /// How long the ceiling measurement runs.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        ceiling_duration: Duration,
        /// Most requests published and not yet at the provider; the publisher waits
        /// beyond it (in an open loop the wait counts in the latency).
        #[arg(long, default_value_t = 4096)]
        window: usize,
        /// The `ttl_seconds` of every request: how long its code lives (otpd takes 30 to 900).
        #[arg(long, default_value_t = amqp::DEFAULT_TTL_SECONDS, value_parser = clap::value_parser!(u32).range(MIN_TTL_SECONDS as i64..=MAX_TTL_SECONDS as i64))]
        ttl_seconds: u32,
    },
    /// Create-then-check flows against the HTTP API.
    Http {
        #[command(flatten)]
        common: Common,
    },
    /// Checks per second on verifications issued beforehand (`--requests` of them).
    Verify {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = http::CheckMode::WrongThenRight)]
        check_mode: http::CheckMode,
    },
    /// The broker's single hop alone: publish with confirms → consume → ack.
    Ceiling {
        #[command(flatten)]
        common: Common,
        /// Deliveries each ack settles: 1 (the ceiling `amqp` measures its ratio against)
        /// acks each alone; more acks runs of that many at once, as otpd's consumers do.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=amqp::CEILING_PREFETCH as u64))]
        ack_run: u64,
    },
    /// The broker's delivery of a changelog backlog alone: `--requests` records appended
    /// to a temporary stream (`--concurrency` unconfirmed at most; 1 makes each record a
    /// chunk of its own, as a node's appends mostly are), then read from its start as a
    /// node catching up reads it, by a consumer that does nothing else.
    Replay {
        #[command(flatten)]
        common: Common,
        /// The bytes of each record (a node's records are about 2,600 at full load).
        #[arg(long, default_value_t = 2_600)]
        record_bytes: usize,
    },
    /// Deletes every queue, stream and exchange of an otpd namespace (after a run against
    /// nodes started by hand, e.g. `loadtest/away.sh`).
    Clean {
        #[arg(long, default_value = DEFAULT_AMQP_URL)]
        amqp_url: String,
        #[arg(long)]
        namespace: String,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Longest time to keep sending (e.g. 60s, 500ms, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Operations per second, open loop; 0 = as fast as confirms / answers allow.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Most operations to send.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Most operations in flight (unconfirmed publishes, open HTTP requests).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// The `locale` of every request.
    #[arg(long, default_value = "de")]
    payload_locale: String,
    #[arg(long, default_value = DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// `quorum` or `classic`: the queue type of otpd's queues and of the ceiling queue.
    #[arg(long, default_value = "quorum")]
    queue_type: String,
    /// Write the report as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the latency percentile distribution here (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Start an otpd (and a fake provider) of our own for the run.
    #[arg(long, conflicts_with = "target")]
    spawn: bool,
    /// With --spawn: otpd processes to start as one cluster (same broker namespace, same
    /// secrets); HTTP requests go to each in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    nodes: u16,
    /// The otpd binary for --spawn; default: `otpd` beside this executable.
    #[arg(long)]
    otpd_bin: Option<PathBuf>,
    /// How the spawned otpd reaches the fake provider.
    #[arg(long, value_enum, default_value_t = ProviderMode::Auto)]
    provider: ProviderMode,
    /// With --provider smpp: the binds the SMPP provider keeps to the fake SMSC.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    smpp_binds: u8,
    /// With --spawn: leave each node's store directory in place after the run (its path
    /// is printed), to look at what it holds.
    #[arg(long, requires = "spawn")]
    keep_store: bool,
    /// A running otpd's HTTP address (loopback), instead of --spawn.
    #[arg(long)]
    target: Option<String>,
    /// The running otpd's AMQP namespace.
    #[arg(long, default_value = "otp")]
    namespace: String,
    /// The running otpd's API key (or OTPD_API_KEY).
    #[arg(long, env = "OTPD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The tenant named in AMQP requests.
    #[arg(long, default_value = "dev")]
    tenant: String,
    /// With --target: the sandbox outbox file the running otpd writes.
    #[arg(long)]
    outbox: Option<PathBuf>,
    /// With --target: run the fake provider on this loopback port (the running otpd's
    /// generic HTTP provider points at http://127.0.0.1:PORT/send).
    #[arg(long)]
    fake_port: Option<u16>,
    /// Longest wait after the last send for messages still on their way.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

impl Common {
    /// What the run's AMQP requests say besides their number.
    fn request_shape(&self, ttl_seconds: u32) -> amqp::RequestShape {
        amqp::RequestShape {
            tenant: self.tenant.clone(),
            locale: self.payload_locale.clone(),
            ttl_seconds,
        }
    }

    fn plan(&self) -> Plan {
        Plan {
            requests: self.requests.min(tracker::MAX_REQUESTS),
            duration: self.duration,
            rate: self.rate.max(0.0),
            concurrency: self.concurrency.max(1),
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else if let Some(m) = text.strip_suffix('m') {
        (m, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 60s, 500ms or 2m"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Refuses anything but loopback: this harness never loads a machine it does not own.
fn ensure_loopback(what: &str, url: &str) -> anyhow::Result<()> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    match host {
        "127.0.0.1" | "localhost" | "::1" => Ok(()),
        _ => bail!("{what} {url} is not on loopback; otpd-loadtest only runs against this machine"),
    }
}

/// The system under test and where its messages are seen.
struct Sut {
    address: String,
    /// Every node's address (one for --target).
    addresses: Vec<String>,
    /// The CPU otpd, the broker and the harness use over the measured interval.
    cpu: cpu::CpuMeter,
    /// The cluster's broker messages (every node's) when the measured interval began.
    messages_at_start: ClusterMessages,
    api_key: String,
    namespace: String,
    provider: Option<String>,
    arrivals: Option<mpsc::Receiver<Arrival>>,
    /// The spawned store's size over the run.
    store_watch: Option<footprint::StoreWatch>,
    spawned: Option<Spawned>,
    /// A fake provider of our own for --target --fake-port.
    _fake: Option<otpd::testing::FakeProviderServer>,
}

impl Sut {
    async fn start(common: &Common) -> anyhow::Result<Sut> {
        ensure_loopback("--amqp-url", &common.amqp_url)?;
        if common.spawn {
            let spawned = Spawned::start(&SpawnOptions {
                otpd_bin: common.otpd_bin.as_deref(),
                amqp_url: &common.amqp_url,
                provider: common.provider,
                queue_type: &common.queue_type,
                nodes: usize::from(common.nodes),
                smpp_binds: common.smpp_binds,
                keep_store: common.keep_store,
            })
            .await?;
            let arrivals = match (&spawned.provider, &spawned.smsc) {
                (ProviderMode::Sandbox, _) => arrivals::from_outbox(spawned.outbox()),
                (_, Some(smsc)) => arrivals::from_smsc(smsc.control().subscribe(65_536)),
                _ => arrivals::from_fake(spawned.fake.control().subscribe(65_536)),
            };
            let mut sut = Sut {
                address: spawned.address.clone(),
                addresses: spawned.addresses(),
                cpu: cpu::CpuMeter::start(spawned.nodes().iter().map(spawn::Node::pid).collect()),
                api_key: spawned.api_key.clone(),
                namespace: spawned.namespace.clone(),
                provider: Some(format!("{:?}", spawned.provider).to_lowercase()),
                arrivals: Some(arrivals),
                store_watch: Some(footprint::StoreWatch::start(spawned.store_dirs())),
                messages_at_start: ClusterMessages::default(),
                spawned: Some(spawned),
                _fake: None,
            };
            sut.begin_measuring().await;
            return Ok(sut);
        }
        let Some(target) = &common.target else {
            bail!("say --spawn (start an otpd of our own) or --target http://127.0.0.1:PORT");
        };
        ensure_loopback("--target", target)?;
        let api_key = common
            .api_key
            .clone()
            .context("--target needs --api-key (or OTPD_API_KEY)")?;
        let (arrivals, fake, provider) = match (&common.outbox, common.fake_port) {
            (Some(path), _) => (arrivals::from_outbox(path.clone()), None, "sandbox"),
            (None, Some(port)) => {
                let fake =
                    otpd::testing::FakeProviderServer::start_on(([127, 0, 0, 1], port).into())
                        .await
                        .with_context(|| {
                            format!("listen on 127.0.0.1:{port} for the fake provider")
                        })?;
                fake.control().set_record_cap(0);
                let arrivals = arrivals::from_fake(fake.control().subscribe(65_536));
                (arrivals, Some(fake), "http")
            }
            (None, None) => {
                bail!("--target needs --outbox FILE or --fake-port PORT to see messages arrive")
            }
        };
        Ok(Sut {
            address: target.trim_end_matches('/').to_owned(),
            addresses: vec![target.trim_end_matches('/').to_owned()],
            cpu: cpu::CpuMeter::start(Vec::new()),
            messages_at_start: ClusterMessages::default(),
            api_key,
            namespace: common.namespace.clone(),
            provider: Some(provider.into()),
            arrivals: Some(arrivals),
            store_watch: None,
            spawned: None,
            _fake: fake,
        })
    }

    /// otpd's own view of where time went (the mean of each of its latency histograms,
    /// Prometheus `_sum` / `_count` over all label sets) and of its memory, from `/metrics`.
    async fn self_report(&self) -> Vec<String> {
        let Some(text) = metrics_page(&self.address).await else {
            return Vec::new();
        };
        let mut notes = metric_means(&text);
        notes.extend(allocator_note(&text));
        notes
    }

    /// The measured interval begins now (after a run's preparation): the CPU and the
    /// cluster's messages count from here.
    async fn begin_measuring(&mut self) {
        self.cpu.restart();
        self.messages_at_start = cluster_messages(&self.node_pages().await);
    }

    /// The `/metrics` page of each spawned node (`None` for one that did not answer).
    async fn node_pages(&self) -> Vec<Option<String>> {
        let mut pages = Vec::new();
        for node in self.spawned.iter().flat_map(|spawned| spawned.nodes()) {
            pages.push(metrics_page(&node.address).await);
        }
        pages
    }

    /// Each node's share of the verifications issued (from its `/metrics` page in `pages`)
    /// and the CPU it used over the measured interval.
    fn cluster_report(&self, pages: &[Option<String>], cpu_by_node: &[Option<f64>]) -> Vec<String> {
        let Some(spawned) = &self.spawned else {
            return Vec::new();
        };
        let issued: Vec<f64> = pages
            .iter()
            .map(|page| metric_sum(page.as_deref(), "otpd_verifications_issued_total"))
            .collect();
        let total: f64 = issued.iter().sum::<f64>().max(1.0);
        spawned
            .nodes()
            .iter()
            .zip(&issued)
            .zip(cpu_by_node)
            .map(|((node, issued), cpu)| {
                let cpu = cpu.map_or("CPU unknown".into(), |s| format!("{s:.1} s CPU"));
                format!(
                    "node {}: issued {issued:.0} ({:.0}%), {cpu} over the measured interval, RSS {:.0} MiB",
                    node.id,
                    100.0 * issued / total,
                    node.rss_bytes().unwrap_or(0) as f64 / 1_048_576.0
                )
            })
            .collect()
    }

    /// A `mode` run's report of what this otpd says of itself and of where it ran; the
    /// run's own figures are the caller's to add.
    async fn report(&mut self, mode: &str, common: &Common) -> Report {
        let mut report = base_report(mode, common);
        let (cpu, cpu_by_node) = self.cpu.used_by_each();
        report.cpu_seconds = Some(cpu);
        let pages = self.node_pages().await;
        if self.spawned.is_some() {
            report.cluster_messages = Some(cluster_messages(&pages).since(&self.messages_at_start));
        }
        self.record_footprint(&mut report);
        report.notes.extend(self.self_report().await);
        report
            .notes
            .extend(self.cluster_report(&pages, &cpu_by_node));
        report.target = self.address.clone();
        report.namespace = Some(self.namespace.clone());
        report.provider = self.provider.clone();
        report
    }

    /// What the spawned otpd takes now, memory and disk, and its store's size over the
    /// run (whose sampling stops), into `report`.
    fn record_footprint(&mut self, report: &mut Report) {
        report.otpd_rss_bytes = self.spawned.as_ref().and_then(Spawned::rss_bytes);
        report.store_bytes = self.spawned.as_ref().and_then(Spawned::store_bytes);
        report.store_samples = self
            .store_watch
            .take()
            .map(footprint::StoreWatch::finish)
            .unwrap_or_default();
    }

    async fn stop(self, amqp_url: &str) -> anyhow::Result<()> {
        match self.spawned {
            Some(spawned) => spawned.stop(amqp_url).await,
            None => Ok(()),
        }
    }
}

/// The `/metrics` page of the otpd at `address`, if it answers.
async fn metrics_page(address: &str) -> Option<String> {
    reqwest::get(format!("{address}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The sum of every sample of a `/metrics` page whose series starts with `series`; 0 for
/// a page not read.
fn metric_sum(page: Option<&str>, series: &str) -> f64 {
    page.map_or(0.0, |text| {
        samples(text)
            .filter(|(name, _)| name.starts_with(series))
            .map(|(_, value)| value)
            .sum::<f64>()
            .max(0.0)
    })
}

/// The cluster's broker messages by kind, summed over the nodes' `/metrics` `pages`.
fn cluster_messages(pages: &[Option<String>]) -> ClusterMessages {
    let mut total = ClusterMessages::default();
    for (kind, sum) in total.by_kind_mut() {
        let series = format!("otpd_cluster_messages_total{{kind=\"{kind}\"}}");
        *sum = pages
            .iter()
            .map(|page| metric_sum(page.as_deref(), &series))
            .sum();
    }
    total
}

/// "name: mean X ms over N" for every `*_seconds` histogram in a Prometheus text page.
fn metric_means(text: &str) -> Vec<String> {
    let mut sums: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (series, value) in samples(text) {
        let name = series.split('{').next().unwrap_or_default();
        if let Some(base) = name.strip_suffix("_seconds_sum") {
            sums.entry(base.to_owned()).or_default().0 += value;
        } else if let Some(base) = name.strip_suffix("_seconds_count") {
            sums.entry(base.to_owned()).or_default().1 += value;
        }
    }
    sums.into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(name, (sum, count))| {
            format!(
                "otpd {name}: mean {:.2} ms over {count}",
                1000.0 * sum / count
            )
        })
        .collect()
}

/// "allocator: allocated X MiB, active Y MiB, resident Z MiB" from `otpd_allocator_bytes`,
/// when otpd reports it: how much of the resident set is live data.
fn allocator_note(text: &str) -> Option<String> {
    let figures: Vec<String> = samples(text)
        .filter_map(|(series, bytes)| {
            let kind = series
                .strip_prefix("otpd_allocator_bytes{kind=\"")?
                .strip_suffix("\"}")?;
            Some(format!("{kind} {:.1} MiB", bytes / 1_048_576.0))
        })
        .collect();
    (!figures.is_empty()).then(|| format!("otpd allocator: {}", figures.join(", ")))
}

/// Each sample of a Prometheus text page as (series, value); comments and unparsable lines
/// are skipped.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.trim().parse().ok()?))
        })
}

/// A report for `mode` with what the spawned otpd tells of itself (where its time went, its
/// RSS); then stops it and cleans up its namespace.
impl Sut {
    /// What the HTTP subcommands drive with: a progress bar counting `what`, the mailroom
    /// that follows each code to the provider, and the API client.
    fn http_driving(
        &mut self,
        common: &Common,
        plan: &Plan,
        what: &str,
    ) -> anyhow::Result<(indicatif::ProgressBar, http::Mailroom, http::Api)> {
        let bar = driver::progress(plan.requests, what);
        let mailroom = http::Mailroom::start(
            self.arrivals.take().context("arrivals are watched")?,
            bar.clone(),
        );
        let api = http::Api::new(
            &self.addresses,
            &self.api_key,
            &common.payload_locale,
            plan.concurrency,
        )?;
        Ok((bar, mailroom, api))
    }
}

async fn finish_sut(mut sut: Sut, mode: &str, common: &Common) -> anyhow::Result<Report> {
    let report = sut.report(mode, common).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sut.stop(&common.amqp_url).await?;
    Ok(report)
}

/// Sending time (first to last request) and run time (first request to `end`).
fn time_run(report: &mut Report, driven: &driver::Driven, end: Instant) {
    report.send_seconds = driven.last.duration_since(driven.first).as_secs_f64();
    report.seconds = end.duration_since(driven.first).as_secs_f64().max(1e-6);
}

fn base_report(mode: &str, common: &Common) -> Report {
    Report {
        mode: mode.into(),
        target: String::new(),
        namespace: None,
        provider: None,
        rate: common.rate,
        concurrency: common.concurrency,
        send_seconds: 0.0,
        seconds: 0.0,
        per_second: 0.0,
        latency: Percentiles::default(),
        series: Vec::new(),
        counts: tracker::Counts::default(),
        errors: 0,
        ceiling: None,
        ratio_to_ceiling: None,
        otpd_rss_bytes: None,
        store_bytes: None,
        store_samples: Vec::new(),
        cpu_seconds: None,
        cpu_us_per_op: None,
        cluster_messages: None,
        cluster_messages_per_op: None,
        notes: Vec::new(),
    }
}

/// The report of a run against the broker alone: `messages` sent over `send_seconds`, each
/// of them delivered, in `seconds` in all.
fn broker_report(
    mode: &str,
    common: &Common,
    messages: u64,
    send_seconds: f64,
    seconds: f64,
) -> Report {
    let mut report = base_report(mode, common);
    report.target = "broker".into();
    report.counts.published = messages;
    report.counts.delivered = messages;
    report.send_seconds = send_seconds;
    report.seconds = seconds;
    report.count_operations(messages);
    report
}

/// A run that measures throughput alone says so when a latency plot was asked for.
fn note_no_plot(report: &mut Report, common: &Common) {
    if common.plot.is_some() {
        let note = format!("{} measures throughput only: no latency plot", report.mode);
        report.notes.push(note);
    }
}

fn queue_type(common: &Common) -> anyhow::Result<&'static str> {
    match common.queue_type.as_str() {
        "quorum" => Ok("quorum"),
        "classic" => Ok("classic"),
        other => bail!("--queue-type {other}: say quorum or classic"),
    }
}

/// The broker's own hop, with messages the size of the run's requests (`shape`), each ack
/// settling `ack_run` deliveries.
async fn ceiling_report(
    common: &Common,
    plan: &Plan,
    shape: &amqp::RequestShape,
    ack_run: u64,
) -> anyhow::Result<report::Ceiling> {
    let payload = amqp::request_body("lt000000000000", shape, 0).len();
    amqp::ceiling(
        &common.amqp_url,
        queue_type(common)?,
        payload,
        ack_run,
        plan,
    )
    .await
}

async fn run(command: Command) -> anyhow::Result<Report> {
    match command {
        Command::Clean { .. } => bail!("clean runs no load and makes no report"),
        Command::Ceiling { common, ack_run } => {
            ensure_loopback("--amqp-url", &common.amqp_url)?;
            let plan = common.plan();
            let shape = common.request_shape(amqp::DEFAULT_TTL_SECONDS);
            let ceiling = ceiling_report(&common, &plan, &shape, ack_run).await?;
            let mut report = broker_report(
                "ceiling",
                &common,
                ceiling.messages,
                ceiling.seconds,
                ceiling.seconds,
            );
            report.ceiling = Some(ceiling);
            note_no_plot(&mut report, &common);
            Ok(report)
        }
        Command::Replay {
            common,
            record_bytes,
        } => {
            ensure_loopback("--amqp-url", &common.amqp_url)?;
            let replayed = amqp::replay(
                &common.amqp_url,
                record_bytes,
                &common.plan(),
                common.drain_timeout,
            )
            .await?;
            let mut report = broker_report(
                "replay",
                &common,
                replayed.appended,
                replayed.append_seconds,
                replayed.read_seconds,
            );
            report.cpu_seconds = Some(replayed.read_cpu);
            report.count_operations(replayed.appended);
            report.notes.push(format!(
                "{} records of {record_bytes} bytes appended to a stream ({} unconfirmed at most) in {:.2} s; per_second and CPU per operation count their reading from the stream's start",
                replayed.appended, common.concurrency, replayed.append_seconds
            ));
            note_no_plot(&mut report, &common);
            Ok(report)
        }
        Command::Amqp {
            common,
            with_ceiling,
            ceiling_duration,
            window,
            ttl_seconds,
        } => {
            ensure_loopback("--amqp-url", &common.amqp_url)?;
            let plan = common.plan();
            let shape = common.request_shape(ttl_seconds);
            let ceiling = if with_ceiling {
                let short = Plan {
                    duration: ceiling_duration.min(common.duration),
                    rate: 0.0,
                    ..plan
                };
                Some(ceiling_report(&common, &short, &shape, 1).await?)
            } else {
                None
            };
            let mut sut = Sut::start(&common).await?;
            let arrivals = sut.arrivals.take().context("arrivals are watched")?;
            let run = amqp::end_to_end(
                &common.amqp_url,
                &sut.namespace,
                &shape,
                &plan,
                window,
                arrivals,
                common.drain_timeout,
            )
            .await;
            let mut report = sut.report("amqp", &common).await;
            let stopped = sut.stop(&common.amqp_url).await;
            let run = run?;
            stopped?;
            let tracker = run.tracker.lock_unpoisoned();
            report.counts = tracker.counts();
            report.latency = Percentiles::of(tracker.latency());
            report.errors = run.errors;
            report.send_seconds = run.last_send.duration_since(run.first_send).as_secs_f64();
            report.seconds = run
                .last_arrival
                .duration_since(run.first_send)
                .as_secs_f64()
                .max(1e-6);
            report.count_operations(report.counts.delivered);
            if let Some(ceiling) = ceiling {
                report.ratio_to_ceiling =
                    Some(report.per_second / ceiling.messages_per_second.max(1e-9));
                report.ceiling = Some(ceiling);
            }
            report.notes.push("latency: from the intended publish time (open loop) or the publish call (closed loop) to the message's arrival at the provider".into());
            if report.provider.as_deref() == Some("sandbox") {
                report
                    .notes
                    .push("arrivals read from the sandbox outbox file (polled every 2 ms)".into());
            }
            if let Some(path) = &common.plot {
                report::plot(
                    path,
                    "otpd AMQP end to end: publish → provider",
                    &[("end to end", tracker.latency())],
                )?;
            }
            Ok(report)
        }
        Command::Http { common } => {
            let plan = common.plan();
            let mut sut = Sut::start(&common).await?;
            let (bar, mailroom, api) = sut.http_driving(&common, &plan, "flows")?;
            let run = http::flows(&api, &mailroom, &plan, common.drain_timeout).await;
            bar.finish_and_clear();
            let mut report = finish_sut(sut, "http", &common).await?;
            let tracker = mailroom.tracker.lock_unpoisoned();
            report.counts = tracker.counts();
            report.errors = run.errors;
            time_run(&mut report, &run.driven, run.end);
            report.count_operations(run.completed);
            let latencies = &run.latencies;
            let mut plotted = Vec::new();
            for (name, histogram) in [
                ("flow", &latencies.flow),
                ("create", &latencies.create),
                ("check", &latencies.check),
            ] {
                if let Some(histogram) = histogram {
                    report.series.push(Series {
                        name: name.into(),
                        latency: Percentiles::of(histogram),
                    });
                    plotted.push((name, histogram));
                }
            }
            report.series.push(Series {
                name: "create→provider".into(),
                latency: Percentiles::of(tracker.latency()),
            });
            if let Some(flow) = &latencies.flow {
                report.latency = Percentiles::of(flow);
            }
            report.notes.push("per_second counts whole flows: create, code at the provider, right check answered valid".into());
            if let Some(path) = &common.plot {
                report::plot(path, "otpd HTTP create → check flows", &plotted)?;
            }
            Ok(report)
        }
        Command::Verify { common, check_mode } => {
            let plan = common.plan();
            let mut sut = Sut::start(&common).await?;
            let issue_plan = Plan {
                rate: 0.0,
                duration: Duration::from_secs(3600),
                ..plan
            };
            let (bar, mailroom, api) = sut.http_driving(&common, &plan, "verifications issued")?;
            let issuing = Instant::now();
            let issued = http::issue_all(&api, &mailroom, &issue_plan, common.drain_timeout).await;
            bar.finish_and_clear();
            let issue_seconds = issuing.elapsed().as_secs_f64();
            sut.begin_measuring().await;
            let run = http::checks(&api, &issued.verifications, check_mode, &plan).await;
            let mut report = finish_sut(sut, "verify", &common).await?;
            let tracker = mailroom.tracker.lock_unpoisoned();
            report.counts = tracker.counts();
            report.errors = issued.errors + run.errors;
            time_run(&mut report, &run.driven, run.end);
            report.count_operations(run.checks);
            report.latency = Percentiles::of(&run.latency);
            report.series.push(Series {
                name: "issue→provider".into(),
                latency: Percentiles::of(tracker.latency()),
            });
            report.notes.push(format!(
                "{} verifications issued in {issue_seconds:.2} s beforehand; per_second counts checks ({:?}), {} in all",
                issued.verifications.len(), check_mode, run.checks
            ));
            if let Some(path) = &common.plot {
                report::plot(path, "otpd verification checks", &[("check", &run.latency)])?;
            }
            Ok(report)
        }
    }
}

fn out_path(command: &Command) -> Option<PathBuf> {
    match command {
        Command::Amqp { common, .. }
        | Command::Http { common }
        | Command::Verify { common, .. }
        | Command::Ceiling { common, .. }
        | Command::Replay { common, .. } => common.out.clone(),
        Command::Clean { .. } => None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = out_path(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("otpd-loadtest: could not start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    if let Command::Clean {
        amqp_url,
        namespace,
    } = &cli.command
    {
        let cleaned = ensure_loopback("--amqp-url", amqp_url)
            .and_then(|()| runtime.block_on(spawn::delete_namespace(amqp_url, namespace)));
        return match cleaned {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("otpd-loadtest: {error:#}");
                ExitCode::from(1)
            }
        };
    }
    let result = runtime.block_on(async {
        // Ctrl-C drops the run: a spawned otpd is killed with it (its queues stay).
        let report = tokio::select! {
            report = run(cli.command) => report?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the run was abandoned"),
        };
        report.print();
        if let Some(path) = &out {
            report.write_json(path)?;
        }
        anyhow::Ok(report)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) if report.counts.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(error) => {
            eprintln!("otpd-loadtest: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cluster_messages_over_the_pages_that_were_read() {
        let page = |appended: u32, applied: u32| {
            Some(format!(
                "# TYPE otpd_cluster_messages_total counter\n\
                 otpd_cluster_messages_total{{kind=\"appended\"}} {appended}\n\
                 otpd_cluster_messages_total{{kind=\"applied\"}} {applied}\n"
            ))
        };
        let messages = cluster_messages(&[page(10, 4), None, page(5, 20)]);
        assert_eq!(messages.appended, 15.0);
        assert_eq!(messages.applied, 24.0);
        assert_eq!(messages.forwarded, 0.0);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn only_loopback_is_a_target() {
        assert!(ensure_loopback("t", "http://127.0.0.1:8080").is_ok());
        assert!(ensure_loopback("t", "amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(ensure_loopback("t", "http://localhost:1/x").is_ok());
        assert!(ensure_loopback("t", "http://[::1]:80").is_ok());
        assert!(ensure_loopback("t", "http://10.0.0.1:8080").is_err());
        assert!(ensure_loopback("t", "amqp://guest:guest@broker.example:5672/%2f").is_err());
    }

    #[test]
    fn allocator_figures_in_mebibytes() {
        let page = "otpd_allocator_bytes{kind=\"active\"} 2097152\notpd_allocator_bytes{kind=\"allocated\"} 1048576\notpd_checks_total 4\n";
        assert_eq!(
            allocator_note(page).as_deref(),
            Some("otpd allocator: active 2.0 MiB, allocated 1.0 MiB")
        );
        assert_eq!(allocator_note("otpd_checks_total 4\n"), None);
    }

    #[test]
    fn means_of_prometheus_histograms() {
        let page = "# HELP x\notpd_time_to_send_seconds_sum{provider=\"a\"} 1.5\notpd_time_to_send_seconds_count{provider=\"a\"} 3\notpd_time_to_send_seconds_sum{provider=\"b\"} 0.5\notpd_time_to_send_seconds_count{provider=\"b\"} 1\notpd_checks_total 4\n";
        assert_eq!(
            metric_means(page),
            vec!["otpd otpd_time_to_send: mean 500.00 ms over 4".to_string()]
        );
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
