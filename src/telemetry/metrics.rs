//! The Prometheus registry and otpd's metrics.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    registry: Registry,
    pub issued: IntCounterVec,
    pub issue_refused: IntCounterVec,
    pub checks: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub time_to_send: HistogramVec,
    pub provider_latency: HistogramVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub swept: IntCounterVec,
    pub outbox_recovered: IntGauge,
    pub breaker_state: IntGaugeVec,
    pub time_to_delivered: HistogramVec,
    /// Segments each code-bearing SMS takes, by provider and encoding.
    pub sms_segments: HistogramVec,
    pub store_flush: HistogramVec,
    /// Full compactions of the LSM tree, by outcome.
    pub full_compactions: IntCounterVec,
    pub quota_alerts: IntCounterVec,
    pub quota_used: IntGaugeVec,
    pub fraud_blocks: IntCounterVec,
    /// Cluster traffic through the broker: changelog records and forwarded commands.
    pub cluster_messages: IntCounterVec,
    pub cluster_lag: IntGauge,
    /// Acks and requeues sent for consumed deliveries, by kind (an ack of a run settles
    /// many).
    pub broker_settles: IntCounterVec,
    /// 1 while this node's broker connection is up, 0 while it is away, by namespace; no
    /// series at all in embedded mode.
    pub broker_connected: IntGaugeVec,
    allocator: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let histogram_in = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            histogram_in(name, help, labels, LATENCY_BUCKETS)
        };
        let issued = counter(
            "otpd_verifications_issued_total",
            "Codes issued, by tenant, channel and kind (new or resend).",
            &["tenant", "channel", "kind"],
        );
        let issue_refused = counter(
            "otpd_issue_refused_total",
            "Create requests refused, by tenant and reason.",
            &["tenant", "reason"],
        );
        let checks = counter(
            "otpd_checks_total",
            "Code checks, by tenant and outcome.",
            &["tenant", "outcome"],
        );
        let deliveries = counter(
            "otpd_deliveries_total",
            "Delivery attempts' outcomes, by provider, channel and outcome.",
            &["provider", "channel", "outcome"],
        );
        let time_to_send = histogram(
            "otpd_time_to_send_seconds",
            "From issue to the provider accepting the message.",
            &["provider", "channel"],
        );
        let provider_latency = histogram(
            "otpd_provider_send_seconds",
            "How long one provider call took.",
            &["provider"],
        );
        let http_requests = counter(
            "otpd_http_requests_total",
            "HTTP requests, by route and status.",
            &["route", "status"],
        );
        let http_duration = histogram(
            "otpd_http_request_duration_seconds",
            "HTTP request handling time, by route.",
            &["route"],
        );
        let swept = counter(
            "otpd_store_swept_total",
            "Expired records removed from the store, by sweep.",
            &["kind"],
        );
        let outbox_recovered = IntGauge::new(
            "otpd_outbox_recovered",
            "Delivery jobs found unfinished in the outbox at the last start.",
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(outbox_recovered.clone()))
            .expect("metric names are unique");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
            metric
        };
        let breaker_state = gauge(
            "otpd_provider_breaker_state",
            "Breaker of each provider: 0 closed, 1 half-open, 2 open.",
            &["provider"],
        );
        let quota_alerts = counter(
            "otpd_provider_quota_alerts_total",
            "Quota thresholds crossed, by provider, period and percent.",
            &["provider", "period", "percent"],
        );
        let quota_used = gauge(
            "otpd_provider_quota_used",
            "Messages counted against each provider's quota in the current period.",
            &["provider", "period"],
        );
        let time_to_delivered = histogram(
            "otpd_time_to_delivered_seconds",
            "From the provider accepting a message to its delivery receipt, by provider.",
            &["provider"],
        );
        let sms_segments = histogram_in(
            "otpd_sms_segments",
            "Segments each code-bearing SMS takes, by provider and encoding (gsm7, ucs2).",
            &["provider", "encoding"],
            &[1.0, 2.0, 3.0, 4.0, 6.0],
        );
        let store_flush = histogram(
            "otpd_store_flush_seconds",
            "How long one group flush (fsync) of the store took.",
            &["store"],
        );
        let full_compactions = counter(
            "otpd_store_full_compactions_total",
            "Full compactions of the LSM tree, which drop what the sweep removed, by outcome (done, failed).",
            &["outcome"],
        );
        let fraud_blocks = counter(
            "otpd_fraud_blocks_total",
            "Number prefixes blocked as suspected SMS pumping, by rule and mode.",
            &["rule", "mode"],
        );
        let cluster_messages = counter(
            "otpd_cluster_messages_total",
            "Broker messages of the cluster, by kind: changelog records appended and applied, commands forwarded and served.",
            &["kind"],
        );
        let cluster_lag = IntGauge::new(
            "otpd_cluster_changelog_lag_records",
            "Records appended to the changelog streams this node follows that it has not applied yet, as last measured.",
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(cluster_lag.clone()))
            .expect("metric names are unique");
        let broker_settles = counter(
            "otpd_broker_settles_total",
            "Acks and requeues sent to the broker for consumed requests and jobs, by kind: run (one ack for every delivery up to it), alone, requeue.",
            &["kind"],
        );
        let broker_connected = gauge(
            "otpd_broker_connected",
            "1 while the broker connection is up, 0 while otpd reconnects (broker mode only).",
            &["namespace"],
        );
        let allocator = gauge(
            "otpd_allocator_bytes",
            "The allocator's figures: allocated (live data), active (its pages), resident.",
            &["kind"],
        );
        Metrics {
            broker_settles,
            broker_connected,
            allocator,
            fraud_blocks,
            cluster_messages,
            cluster_lag,
            store_flush,
            breaker_state,
            time_to_delivered,
            sms_segments,
            quota_alerts,
            quota_used,
            registry,
            issued,
            issue_refused,
            checks,
            deliveries,
            time_to_send,
            provider_latency,
            http_requests,
            http_duration,
            swept,
            outbox_recovered,
            full_compactions,
        }
    }

    /// The name of every metric otpd defines, with or without a series yet (a labelled metric
    /// shows in the exposition only once it has one): what dashboards and alert rules may
    /// name.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: [&dyn Collector; 22] = [
            &self.issued,
            &self.issue_refused,
            &self.checks,
            &self.deliveries,
            &self.time_to_send,
            &self.provider_latency,
            &self.http_requests,
            &self.http_duration,
            &self.swept,
            &self.outbox_recovered,
            &self.breaker_state,
            &self.time_to_delivered,
            &self.sms_segments,
            &self.store_flush,
            &self.full_compactions,
            &self.quota_alerts,
            &self.quota_used,
            &self.fraud_blocks,
            &self.cluster_messages,
            &self.cluster_lag,
            &self.broker_connected,
            &self.allocator,
        ];
        collectors
            .iter()
            .flat_map(|collector| collector.desc())
            .map(|desc| desc.fq_name.clone())
            .collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(figures) = super::memory::read() {
            for (kind, bytes) in [
                ("allocated", figures.allocated),
                ("active", figures.active),
                ("resident", figures.resident),
            ] {
                self.allocator
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "Could not encode metrics.");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
