//! The health board: per provider lane, its admission layers (quota standing, pacing, circuit
//! breaker), its counts and its send latency. Routers ask it for leave to send; lanes report
//! each call to it.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::breaker::{Breaker, BreakerConfig, Outcome, Permit, Transition, Unavailable};
use super::last_hour::{CallCounts, LastHour};
use crate::delivery::quota::{Period, QuotaLimits, QuotaUsage};
use crate::domain::rate_limit::TokenBucket;
use crate::domain::{AttemptOutcome, Timestamp};
use crate::providers::{ProviderError, SendReceipt};
use crate::sync::LockUnpoisoned;
use crate::telemetry::events::BreakerChanged;

struct ProviderHealth {
    kind: &'static str,
    /// The provider's messages-per-second limit, if it has one.
    pace: Option<Pacing>,
    breaker: Breaker,
    limits: QuotaLimits,
    quota: QuotaUsage,
    sent: u64,
    failed: u64,
    /// Send latency in microseconds.
    latency: Histogram<u64>,
    last_hour: LastHour,
}

/// What `GET /v1/providers` shows of one provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub kind: &'static str,
    pub breaker: &'static str,
    pub paused_until: Option<String>,
    pub quota: QuotaView,
    pub sent: u64,
    pub failed: u64,
    pub latency_ms: LatencyView,
    /// Calls of the last hour, by how they ended.
    pub last_hour: CallCounts,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    pub day: PeriodView,
    pub month: PeriodView,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeriodView {
    pub used: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatencyView {
    pub p50: f64,
    pub p99: f64,
}

pub struct HealthBoard {
    providers: BTreeMap<String, Mutex<ProviderHealth>>,
}

/// Why a provider may not be used now, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotNow {
    /// `QuotaExhausted`, `Paused` (its pace, or it asked for a pause) or `BreakerOpen` (open,
    /// or its trial calls are in flight; or an unknown provider).
    pub why: AttemptOutcome,
    /// `None`: until calls in flight end.
    pub until: Option<Timestamp>,
}

impl NotNow {
    fn because(why: AttemptOutcome, until: Option<Timestamp>) -> Self {
        NotNow { why, until }
    }
}

impl HealthBoard {
    /// `providers` lists each provider id with its kind.
    pub fn new(
        providers: &[(String, &'static str)],
        breaker: BreakerConfig,
        quotas: &BTreeMap<String, QuotaLimits>,
        rates: &BTreeMap<String, f64>,
    ) -> Self {
        let providers = providers
            .iter()
            .map(|(id, kind)| {
                let health = ProviderHealth {
                    kind,
                    pace: rates.get(id).map(|rate| Pacing::new(*rate)),
                    breaker: Breaker::new(breaker),
                    limits: quotas.get(id).copied().unwrap_or_default(),
                    quota: QuotaUsage::new(),
                    sent: 0,
                    failed: 0,
                    latency: Histogram::new_with_bounds(1, 120_000_000, 2)
                        .expect("the latency histogram bounds are valid"),
                    last_hour: LastHour::default(),
                };
                (id.clone(), Mutex::new(health))
            })
            .collect();
        HealthBoard { providers }
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut ProviderHealth) -> T) -> Option<T> {
        let entry = self.providers.get(id)?;
        let mut health = entry.lock_unpoisoned();
        Some(f(&mut health))
    }

    /// Leave to make one call to `id` at `now`, from its admission layers in order: refused
    /// while its quota is exhausted, while its pace allows no call, or while its breaker is
    /// open or it asked to pause.
    pub fn acquire(&self, id: &str, now: Timestamp) -> Result<Permit, NotNow> {
        self.with(id, |health| {
            if let Some(until) = health.quota.exhausted_until(&health.limits, now) {
                return Err(NotNow::because(AttemptOutcome::QuotaExhausted, Some(until)));
            }
            if let Some(pace) = &mut health.pace {
                pace.admit(now)
                    .map_err(|until| NotNow::because(AttemptOutcome::Paused, Some(until)))?;
            }
            let transition = health.breaker.poll(now);
            announce(id, transition);
            health.breaker.allow(now).map_err(|refusal| {
                let why = match refusal {
                    Unavailable::Paused { .. } => AttemptOutcome::Paused,
                    Unavailable::Open { .. } | Unavailable::TrialsInFlight => {
                        AttemptOutcome::BreakerOpen
                    }
                };
                NotNow::because(why, refusal.until())
            })
        })
        .unwrap_or(Err(NotNow::because(AttemptOutcome::BreakerOpen, None)))
    }

    /// Reports how a call made with `permit` went.
    pub fn record(
        &self,
        id: &str,
        permit: Permit,
        result: &Result<SendReceipt, ProviderError>,
        took: Duration,
        now: Timestamp,
    ) {
        let transition = self.with(id, |health| {
            match result {
                Ok(_) => health.sent += 1,
                Err(_) => health.failed += 1,
            }
            health.last_hour.record(result.as_ref().err(), now);
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
            health.latency.saturating_record(micros);
            health.breaker.record(permit, Outcome::of(result), now)
        });
        announce(id, transition.flatten());
    }

    /// Gives back a permit that was not used for a call.
    pub fn give_back(&self, id: &str, permit: Permit, now: Timestamp) {
        let transition = self.with(id, |health| {
            health.breaker.record(permit, Outcome::Abandoned, now)
        });
        announce(id, transition.flatten());
    }

    pub fn quota_limits(&self, id: &str) -> QuotaLimits {
        self.with(id, |health| health.limits).unwrap_or_default()
    }

    /// Takes the quota usage the QuotaActor keeps.
    pub fn set_quota(&self, id: &str, usage: QuotaUsage) {
        self.with(id, |health| health.quota = usage);
    }

    pub fn provider_ids(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    pub fn views(&self, now: Timestamp) -> Vec<ProviderView> {
        self.providers
            .iter()
            .map(|(id, entry)| {
                let health = entry.lock_unpoisoned();
                let period = |period: Period, limit: Option<u64>| PeriodView {
                    used: health.quota.used(period, now),
                    limit,
                };
                let millis = |quantile: f64| {
                    if health.latency.is_empty() {
                        0.0
                    } else {
                        health.latency.value_at_quantile(quantile) as f64 / 1000.0
                    }
                };
                ProviderView {
                    id: id.clone(),
                    kind: health.kind,
                    breaker: health.breaker.state().as_str(),
                    paused_until: health.breaker.paused_until(now).map(Timestamp::to_rfc3339),
                    quota: QuotaView {
                        day: period(Period::Day, health.limits.daily),
                        month: period(Period::Month, health.limits.monthly),
                    },
                    sent: health.sent,
                    failed: health.failed,
                    latency_ms: LatencyView {
                        p50: millis(0.5),
                        p99: millis(0.99),
                    },
                    last_hour: health.last_hour.total(now),
                }
            })
            .collect()
    }
}

/// A provider's messages-per-second limit: a token bucket that holds a second's worth.
struct Pacing {
    rate: f64,
    bucket: TokenBucket,
}

impl Pacing {
    fn new(rate: f64) -> Self {
        Pacing {
            rate,
            bucket: TokenBucket::full(Self::burst(rate), Timestamp(0)),
        }
    }

    /// A paced provider may take up to a second's worth of messages at once.
    fn burst(rate: f64) -> u32 {
        rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// Takes a token for a call at `now`, or says when the next one is due.
    fn admit(&mut self, now: Timestamp) -> Result<(), Timestamp> {
        self.bucket
            .try_take(self.rate, Self::burst(self.rate), now)
            .map_err(|wait| now.plus(wait))
    }
}

fn announce(provider: &str, transition: Option<Transition>) {
    if let Some(transition) = transition {
        let (state, level, open_until) = match transition {
            Transition::Opened { until } => ("open", 2, Some(until)),
            Transition::HalfOpened => ("half_open", 1, None),
            Transition::Closed => ("closed", 0, None),
        };
        BreakerChanged {
            provider,
            state,
            level,
            open_until,
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn board(limits: QuotaLimits) -> HealthBoard {
        HealthBoard::new(
            &[("a".to_string(), "http")],
            BreakerConfig::default(),
            &BTreeMap::from([("a".to_string(), limits)]),
            &BTreeMap::new(),
        )
    }

    #[test]
    fn a_paced_provider_refuses_past_its_rate_until_a_token_is_back() {
        let board = HealthBoard::new(
            &[("p".to_string(), "http")],
            BreakerConfig::default(),
            &BTreeMap::new(),
            &BTreeMap::from([("p".to_string(), 2.0)]),
        );
        for _ in 0..2 {
            let permit = board.acquire("p", NOW).unwrap();
            board.give_back("p", permit, NOW);
        }
        assert_eq!(
            board.acquire("p", NOW),
            Err(NotNow::because(
                AttemptOutcome::Paused,
                Some(NOW.plus(Duration::from_millis(500)))
            ))
        );
    }

    #[test]
    fn counts_calls_and_latency() {
        let board = board(QuotaLimits::default());
        let permit = board.acquire("a", NOW).unwrap();
        let ok = Ok(SendReceipt {
            provider_message_id: None,
        });
        board.record("a", permit, &ok, Duration::from_millis(12), NOW);
        let view = &board.views(NOW)[0];
        assert_eq!((view.sent, view.failed), (1, 0));
        assert!((11.0..13.0).contains(&view.latency_ms.p50), "{view:?}");
        assert_eq!(view.breaker, "closed");
    }

    #[test]
    fn an_exhausted_quota_refuses_until_the_period_ends() {
        let board = board(QuotaLimits {
            daily: Some(1),
            monthly: None,
        });
        let mut usage = QuotaUsage::new();
        usage.record(&board.quota_limits("a"), 1, NOW);
        board.set_quota("a", usage);
        assert!(matches!(
            board.acquire("a", NOW),
            Err(NotNow {
                why: AttemptOutcome::QuotaExhausted,
                until: Some(_)
            })
        ));
    }

    #[test]
    fn unknown_providers_are_never_available() {
        assert_eq!(
            board(QuotaLimits::default()).acquire("zzz", NOW),
            Err(NotNow::because(AttemptOutcome::BreakerOpen, None))
        );
    }
}
