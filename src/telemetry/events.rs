//! Observable events: past-tense structs whose `emit()` writes the log line and the metric.

use std::time::Duration;
use tracing::{debug, info, warn};

use super::metrics::metrics;
use crate::domain::Channel;

pub struct OtpIssued<'a> {
    pub tenant: &'a str,
    pub channel: Channel,
    pub resend: bool,
}

impl OtpIssued<'_> {
    pub fn emit(&self) {
        let kind = if self.resend { "resend" } else { "new" };
        debug!(tenant = self.tenant, channel = %self.channel, kind, "Code issued.");
        metrics()
            .issued
            .with_label_values(&[self.tenant, self.channel.as_str(), kind])
            .inc();
    }
}

pub struct IssueRefused<'a> {
    pub tenant: &'a str,
    pub reason: &'static str,
}

impl IssueRefused<'_> {
    pub fn emit(&self) {
        debug!(
            tenant = self.tenant,
            reason = self.reason,
            "Create request refused."
        );
        metrics()
            .issue_refused
            .with_label_values(&[self.tenant, self.reason])
            .inc();
    }
}

pub struct CodeChecked<'a> {
    pub tenant: &'a str,
    /// approved, wrong, max_attempts_reached, already_approved, canceled, expired, not_found
    pub outcome: &'static str,
}

impl CodeChecked<'_> {
    pub fn emit(&self) {
        debug!(
            tenant = self.tenant,
            outcome = self.outcome,
            "Code checked."
        );
        metrics()
            .checks
            .with_label_values(&[self.tenant, self.outcome])
            .inc();
    }
}

pub struct MessageSent<'a> {
    pub provider: &'a str,
    pub channel: Channel,
    pub call_took: Duration,
    pub since_issue: Duration,
}

impl MessageSent<'_> {
    pub fn emit(&self) {
        debug!(
            provider = self.provider,
            channel = %self.channel,
            call_ms = self.call_took.as_millis() as u64,
            "Message sent."
        );
        let m = metrics();
        m.deliveries
            .with_label_values(&[self.provider, self.channel.as_str(), "sent"])
            .inc();
        m.provider_latency
            .with_label_values(&[self.provider])
            .observe(self.call_took.as_secs_f64());
        m.time_to_send
            .with_label_values(&[self.provider, self.channel.as_str()])
            .observe(self.since_issue.as_secs_f64());
    }
}

pub struct SendFailed<'a> {
    pub provider: &'a str,
    pub channel: Channel,
    pub error: &'a str,
    pub will_retry: bool,
}

impl SendFailed<'_> {
    pub fn emit(&self) {
        warn!(
            provider = self.provider,
            channel = %self.channel,
            error = self.error,
            will_retry = self.will_retry,
            "Provider send failed."
        );
        let outcome = if self.will_retry { "retried" } else { "failed" };
        metrics()
            .deliveries
            .with_label_values(&[self.provider, self.channel.as_str(), outcome])
            .inc();
    }
}

pub struct JobDropped<'a> {
    pub provider: &'a str,
    pub channel: Channel,
    /// stale (a newer code was sent), expired, finished (approved or canceled), gone
    pub reason: &'static str,
}

impl JobDropped<'_> {
    pub fn emit(&self) {
        debug!(
            provider = self.provider,
            reason = self.reason,
            "Delivery job dropped."
        );
        metrics()
            .deliveries
            .with_label_values(&[self.provider, self.channel.as_str(), self.reason])
            .inc();
    }
}

pub struct OutboxRecovered {
    pub jobs: usize,
}

impl OutboxRecovered {
    pub fn emit(&self) {
        if self.jobs > 0 {
            info!(
                jobs = self.jobs,
                "Resumed unfinished deliveries from the outbox."
            );
        }
        metrics().outbox_recovered.set(self.jobs as i64);
    }
}

pub struct StoreFlushed {
    /// The store's engine: `sled` or `lsm`.
    pub engine: &'static str,
    pub took: Duration,
}

impl StoreFlushed {
    pub fn emit(&self) {
        metrics()
            .store_flush
            .with_label_values(&[self.engine])
            .observe(self.took.as_secs_f64());
    }
}

/// The LSM tree was compacted whole: `before` and `after` are its files' bytes.
pub struct StoreCompactedWhole {
    pub before: u64,
    pub after: u64,
    pub took: Duration,
}

impl StoreCompactedWhole {
    pub fn emit(&self) {
        debug!(
            before = self.before,
            after = self.after,
            took_ms = self.took.as_millis() as u64,
            "Compacted the store whole, dropping what was removed."
        );
        metrics()
            .full_compactions
            .with_label_values(&["done"])
            .inc();
    }
}

/// A full compaction of the LSM tree failed (it needs free disk of about the tree's size).
pub struct StoreCompactionFailed<'a> {
    pub error: &'a str,
}

impl StoreCompactionFailed<'_> {
    pub fn emit(&self) {
        warn!(
            error = self.error,
            "Could not compact the store whole; it is tried again once it has grown further."
        );
        metrics()
            .full_compactions
            .with_label_values(&["failed"])
            .inc();
    }
}

pub struct StoreSwept {
    pub removed: usize,
}

impl StoreSwept {
    pub fn emit(&self) {
        if self.removed > 0 {
            debug!(removed = self.removed, "Swept expired records.");
        }
        metrics()
            .swept
            .with_label_values(&["all"])
            .inc_by(self.removed as u64);
    }
}

pub struct HttpRequestServed<'a> {
    pub route: &'a str,
    pub status: u16,
    pub took: Duration,
}

impl HttpRequestServed<'_> {
    pub fn emit(&self) {
        let m = metrics();
        m.http_requests
            .with_label_values(&[self.route, &self.status.to_string()])
            .inc();
        m.http_duration
            .with_label_values(&[self.route])
            .observe(self.took.as_secs_f64());
    }
}

pub struct BreakerChanged<'a> {
    pub provider: &'a str,
    /// `open` (until when), `half_open` or `closed`.
    pub state: &'static str,
    /// The gauge's value: 2 open, 1 half open, 0 closed.
    pub level: i64,
    pub open_until: Option<crate::domain::Timestamp>,
}

impl BreakerChanged<'_> {
    pub fn emit(&self) {
        match self.open_until {
            Some(until) => {
                warn!(provider = self.provider, until = %until.to_rfc3339(), "Breaker opened.")
            }
            None => info!(
                provider = self.provider,
                state = self.state,
                "Breaker changed state."
            ),
        }
        metrics()
            .breaker_state
            .with_label_values(&[self.provider])
            .set(self.level);
    }
}

pub struct QuotaThresholdCrossed<'a> {
    pub provider: &'a str,
    /// `day` or `month`.
    pub period: &'static str,
    pub percent: u8,
    pub used: u64,
    pub limit: u64,
}

impl QuotaThresholdCrossed<'_> {
    pub fn emit(&self) {
        let period = self.period;
        warn!(
            provider = self.provider,
            period,
            percent = self.percent,
            used = self.used,
            limit = self.limit,
            "Provider quota threshold crossed."
        );
        metrics()
            .quota_alerts
            .with_label_values(&[self.provider, period, &self.percent.to_string()])
            .inc();
        metrics()
            .quota_used
            .with_label_values(&[self.provider, period])
            .set(self.used as i64);
    }
}

/// An admin tenant changed the blocklist (the entry itself is not logged: it may be a number).
pub struct BlocklistEdited<'a> {
    pub by: &'a str,
    /// added, removed
    pub action: &'static str,
}

impl BlocklistEdited<'_> {
    pub fn emit(&self) {
        info!(tenant = self.by, action = self.action, "Blocklist edited.");
    }
}

pub struct FraudBlocked<'a> {
    pub block: &'a crate::domain::fraud::Block,
}

impl FraudBlocked<'_> {
    /// A prefix, never a full number, goes into the log line.
    pub fn emit(&self) {
        let block = self.block;
        warn!(
            prefix = %block.prefix,
            country = %block.country,
            rule = block.rule.as_str(),
            mode = block.mode.as_str(),
            until = %block.until.to_rfc3339(),
            explanation = %block.explanation,
            "SMS pumping suspected: prefix blocked."
        );
        metrics()
            .fraud_blocks
            .with_label_values(&[block.rule.as_str(), block.mode.as_str()])
            .inc();
    }
}

/// An admin tenant lifted a fraud block by hand.
pub struct FraudBlockLifted<'a> {
    pub block: &'a crate::domain::fraud::Block,
    pub by: &'a str,
}

impl FraudBlockLifted<'_> {
    pub fn emit(&self) {
        warn!(
            prefix = %self.block.prefix,
            rule = self.block.rule.as_str(),
            tenant = self.by,
            "Fraud block lifted by an operator."
        );
    }
}
