//! The circuit breaker of one provider, a pure state machine taking `now`: it stops sends to a
//! provider whose transient failures pass a share of recent calls, lets a few trial calls
//! through after a pause, and honours a provider's `Retry-After` as a separate pause.

use serde::Deserialize;
use std::collections::VecDeque;
use std::time::Duration;

use crate::domain::Timestamp;
use crate::providers::{ProviderError, SendReceipt};

fn default_window_seconds() -> u64 {
    30
}
fn default_min_calls() -> u32 {
    20
}
fn default_failure_percent() -> u32 {
    50
}
fn default_open_seconds() -> u64 {
    30
}
fn default_half_open_trials() -> u32 {
    5
}

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Seconds of calls the failure share is computed over (sliding, by whole seconds).
    /// Default 30.
    #[serde(default = "default_window_seconds")]
    pub window_seconds: u64,
    /// Calls the window must hold before the breaker may open. Default 20.
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// Share of failed calls, in percent, that opens the breaker. Default 50.
    #[serde(default = "default_failure_percent")]
    pub failure_percent: u32,
    /// Seconds the breaker stays open before trial calls. Default 30.
    #[serde(default = "default_open_seconds")]
    pub open_seconds: u64,
    /// Trial calls let through when half-open; all must succeed to close. Default 5.
    #[serde(default = "default_half_open_trials")]
    pub half_open_trials: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window_seconds: default_window_seconds(),
            min_calls: default_min_calls(),
            failure_percent: default_failure_percent(),
            open_seconds: default_open_seconds(),
            half_open_trials: default_half_open_trials(),
        }
    }
}

impl BreakerConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.window_seconds == 0 {
            problems.push(format!("{prefix}.window_seconds must be at least 1"));
        }
        if self.min_calls == 0 {
            problems.push(format!("{prefix}.min_calls must be at least 1"));
        }
        if !(1..=100).contains(&self.failure_percent) {
            problems.push(format!(
                "{prefix}.failure_percent is {}; allowed: 1 to 100",
                self.failure_percent
            ));
        }
        if self.open_seconds == 0 {
            problems.push(format!("{prefix}.open_seconds must be at least 1"));
        }
        if self.half_open_trials == 0 {
            problems.push(format!("{prefix}.half_open_trials must be at least 1"));
        }
        problems
    }
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed,
    /// No calls until `until`.
    Open { until: Timestamp },
    /// Trial calls: `issued` of the allowed trials handed out, `succeeded` of them back well.
    HalfOpen { issued: u32, succeeded: u32 },
}

impl BreakerState {
    /// `closed`, `open` or `half_open`, for metrics and `GET /v1/providers`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// How a call ended, as far as the provider's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Success,
    /// Permanently rejected (bad number, …): the provider is healthy, so it counts as success.
    Rejected,
    /// A transient provider-side failure: timeout, connection error, 5xx.
    Failure,
    /// Back-pressure (429, throttled): not a failure; pauses the provider for `retry_after`.
    RateLimited { retry_after: Duration },
    /// The call was abandoned before an answer (e.g. the job expired): frees its permit,
    /// counts for nothing.
    Abandoned,
}

impl Outcome {
    /// The outcome of a `Provider::send`. A transient error that carries `retry_after` is
    /// back-pressure: the adapters set it only for 429 and vendor "throttled" answers.
    pub fn of(result: &Result<SendReceipt, ProviderError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(ProviderError::Permanent { .. }) => Outcome::Rejected,
            Err(ProviderError::Transient {
                retry_after: Some(wait),
                ..
            }) => Outcome::RateLimited { retry_after: *wait },
            Err(ProviderError::Transient {
                retry_after: None, ..
            })
            | Err(ProviderError::Unanswered { .. }) => Outcome::Failure,
        }
    }
}

/// Leave to make one call; give it back to `record`. A permit from before the breaker last
/// changed state is still accepted but no longer counts toward trials.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "every permit must be given back to Breaker::record"]
pub struct Permit {
    generation: u64,
    trial: bool,
}

/// Why no call may be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the provider's breaker is open until {until:?}")]
    Open { until: Timestamp },
    #[error("the provider asked to pause until {until:?}")]
    Paused { until: Timestamp },
    #[error("the provider's trial calls are in flight")]
    TrialsInFlight,
}

impl Unavailable {
    /// When to ask again; `None` when that depends on trial calls in flight.
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            Unavailable::Open { until } | Unavailable::Paused { until } => Some(*until),
            Unavailable::TrialsInFlight => None,
        }
    }
}

/// A state change worth an event and a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened { until: Timestamp },
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    second: u64,
    calls: u32,
    failures: u32,
}

/// The breaker of one provider.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    /// Per-second call and failure counts of the last `window_seconds` (closed state only).
    window: VecDeque<Bucket>,
    paused_until: Option<Timestamp>,
    generation: u64,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed,
            window: VecDeque::new(),
            paused_until: None,
            generation: 0,
        }
    }

    /// The state as last changed; an open breaker whose time is up shows as open until the
    /// next `allow` or `poll`.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When the provider's own pause (from a 429) ends, if it is still paused at `now`.
    pub fn paused_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.paused_until.filter(|until| *until > now)
    }

    /// Moves an open breaker whose time is up to half-open.
    pub fn poll(&mut self, now: Timestamp) -> Option<Transition> {
        match self.state {
            BreakerState::Open { until } if now >= until => {
                self.enter(BreakerState::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                });
                Some(Transition::HalfOpened)
            }
            _ => None,
        }
    }

    /// Asks to make one call at `now`.
    pub fn allow(&mut self, now: Timestamp) -> Result<Permit, Unavailable> {
        if let Some(until) = self.paused_until(now) {
            return Err(Unavailable::Paused { until });
        }
        self.paused_until = None;
        self.poll(now);
        match &mut self.state {
            BreakerState::Closed => Ok(Permit {
                generation: self.generation,
                trial: false,
            }),
            BreakerState::Open { until } => Err(Unavailable::Open { until: *until }),
            BreakerState::HalfOpen { issued, .. } => {
                if *issued < self.config.half_open_trials {
                    *issued += 1;
                    Ok(Permit {
                        generation: self.generation,
                        trial: true,
                    })
                } else {
                    Err(Unavailable::TrialsInFlight)
                }
            }
        }
    }

    /// Records how the call made with `permit` ended, at `now`.
    pub fn record(
        &mut self,
        permit: Permit,
        outcome: Outcome,
        now: Timestamp,
    ) -> Option<Transition> {
        if let Outcome::RateLimited { retry_after } = outcome {
            let until = now.plus(retry_after);
            self.paused_until = Some(self.paused_until.map_or(until, |old| old.max(until)));
        }
        let current = permit.generation == self.generation;
        match self.state {
            BreakerState::Closed => {
                if !current {
                    return None;
                }
                let failed = match outcome {
                    Outcome::Success | Outcome::Rejected => false,
                    Outcome::Failure => true,
                    Outcome::RateLimited { .. } | Outcome::Abandoned => return None,
                };
                self.count(failed, now);
                if failed && self.tripped() {
                    return Some(self.open(now));
                }
                None
            }
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen { issued, succeeded } => {
                if !(current && permit.trial) {
                    return None;
                }
                match outcome {
                    Outcome::Failure => Some(self.open(now)),
                    Outcome::Success | Outcome::Rejected => {
                        let succeeded = succeeded + 1;
                        if succeeded >= self.config.half_open_trials {
                            self.enter(BreakerState::Closed);
                            Some(Transition::Closed)
                        } else {
                            self.state = BreakerState::HalfOpen { issued, succeeded };
                            None
                        }
                    }
                    // The trial told nothing: hand its slot out again.
                    Outcome::RateLimited { .. } | Outcome::Abandoned => {
                        self.state = BreakerState::HalfOpen {
                            issued: issued.saturating_sub(1),
                            succeeded,
                        };
                        None
                    }
                }
            }
        }
    }

    /// Calls and failures in the window at `now`.
    pub fn window_counts(&self, now: Timestamp) -> (u32, u32) {
        let oldest = self.oldest_second(now);
        self.window
            .iter()
            .filter(|bucket| bucket.second >= oldest)
            .fold((0, 0), |(calls, failures), bucket| {
                (calls + bucket.calls, failures + bucket.failures)
            })
    }

    fn oldest_second(&self, now: Timestamp) -> u64 {
        (now.0 / 1000).saturating_sub(self.config.window_seconds.saturating_sub(1))
    }

    fn count(&mut self, failed: bool, now: Timestamp) {
        let second = now.0 / 1000;
        let oldest = self.oldest_second(now);
        while self
            .window
            .front()
            .is_some_and(|bucket| bucket.second < oldest)
        {
            self.window.pop_front();
        }
        match self.window.back_mut() {
            Some(bucket) if bucket.second >= second => {
                bucket.calls += 1;
                bucket.failures += u32::from(failed);
            }
            _ => self.window.push_back(Bucket {
                second,
                calls: 1,
                failures: u32::from(failed),
            }),
        }
    }

    fn tripped(&self) -> bool {
        let (calls, failures) =
            self.window
                .iter()
                .fold((0u64, 0u64), |(calls, failures), bucket| {
                    (
                        calls + u64::from(bucket.calls),
                        failures + u64::from(bucket.failures),
                    )
                });
        calls >= u64::from(self.config.min_calls)
            && failures * 100 >= calls * u64::from(self.config.failure_percent)
    }

    fn open(&mut self, now: Timestamp) -> Transition {
        let until = now.plus_secs(self.config.open_seconds);
        self.enter(BreakerState::Open { until });
        Transition::Opened { until }
    }

    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.window.clear();
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    fn call(breaker: &mut Breaker, outcome: Outcome, now: Timestamp) -> Option<Transition> {
        let permit = breaker.allow(now).expect("allowed");
        breaker.record(permit, outcome, now)
    }

    /// Opens a default breaker at `T0` with 20 failures.
    fn opened() -> Breaker {
        let mut b = breaker();
        for i in 0..19 {
            assert_eq!(call(&mut b, Outcome::Failure, T0), None, "call {i}");
        }
        assert_eq!(
            call(&mut b, Outcome::Failure, T0),
            Some(Transition::Opened {
                until: T0.plus_secs(30)
            })
        );
        b
    }

    #[test]
    fn stays_closed_below_min_calls() {
        let mut b = breaker();
        for _ in 0..19 {
            call(&mut b, Outcome::Failure, T0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_at_half_failures_over_min_calls() {
        let mut b = breaker();
        for _ in 0..10 {
            call(&mut b, Outcome::Success, T0);
        }
        for _ in 0..9 {
            call(&mut b, Outcome::Failure, T0);
        }
        assert_eq!(b.state(), BreakerState::Closed, "19 calls: below min_calls");
        assert!(matches!(
            call(&mut b, Outcome::Failure, T0),
            Some(Transition::Opened { .. })
        ));
        assert_eq!(
            b.allow(T0),
            Err(Unavailable::Open {
                until: T0.plus_secs(30)
            })
        );
    }

    #[test]
    fn stays_closed_just_under_the_failure_share() {
        let mut b = breaker();
        for _ in 0..11 {
            call(&mut b, Outcome::Success, T0);
        }
        for _ in 0..10 {
            call(&mut b, Outcome::Failure, T0);
        }
        assert_eq!(b.window_counts(T0), (21, 10));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn permanent_rejections_and_rate_limits_are_not_failures() {
        let mut b = breaker();
        for _ in 0..40 {
            call(&mut b, Outcome::Rejected, T0);
        }
        for _ in 0..39 {
            call(&mut b, Outcome::Failure, T0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let mut b = breaker();
        for i in 0..30 {
            let now = T0.plus_secs(i * 2);
            let permit = b.allow(now).unwrap();
            b.record(
                permit,
                Outcome::RateLimited {
                    retry_after: Duration::from_secs(1),
                },
                now,
            );
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.window_counts(T0.plus_secs(60)), (0, 0));
    }

    #[test]
    fn the_window_slides() {
        let mut b = breaker();
        // 15 failures long ago, then 10 successes and 10 failures within the window.
        for _ in 0..15 {
            call(&mut b, Outcome::Failure, T0);
        }
        let later = T0.plus_secs(30);
        assert_eq!(
            b.window_counts(later),
            (0, 0),
            "the old second left the window"
        );
        for _ in 0..10 {
            call(&mut b, Outcome::Success, later);
        }
        for _ in 0..9 {
            call(&mut b, Outcome::Failure, later);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.window_counts(later), (19, 9));
        // Within the window the failures of second 29 still count.
        let mut b = breaker();
        for _ in 0..15 {
            call(&mut b, Outcome::Failure, T0);
        }
        let edge = T0.plus_secs(29);
        for _ in 0..5 {
            call(&mut b, Outcome::Success, edge);
        }
        assert_eq!(b.window_counts(edge), (20, 15));
        assert!(matches!(
            call(&mut b, Outcome::Failure, edge),
            Some(Transition::Opened { .. })
        ));
    }

    #[test]
    fn half_open_lets_exactly_n_trials_through_then_closes() {
        let mut b = opened();
        assert!(b.allow(T0.plus_secs(29)).is_err());
        let after = T0.plus_secs(30);
        let permits: Vec<_> = (0..5).map(|_| b.allow(after).expect("trial")).collect();
        assert_eq!(b.allow(after), Err(Unavailable::TrialsInFlight));
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                issued: 5,
                succeeded: 0
            }
        );
        let mut transitions = Vec::new();
        for (i, permit) in permits.into_iter().enumerate() {
            let outcome = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Rejected
            };
            transitions.push(b.record(permit, outcome, after));
        }
        assert_eq!(
            transitions,
            vec![None, None, None, None, Some(Transition::Closed)]
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            b.window_counts(after),
            (0, 0),
            "closing starts a fresh window"
        );
        assert!(b.allow(after).is_ok());
    }

    #[test]
    fn a_failed_trial_reopens() {
        let mut b = opened();
        let after = T0.plus_secs(30);
        let first = b.allow(after).unwrap();
        let second = b.allow(after).unwrap();
        assert_eq!(b.record(first, Outcome::Success, after), None);
        assert_eq!(
            b.record(second, Outcome::Failure, after.plus_secs(1)),
            Some(Transition::Opened {
                until: after.plus_secs(31)
            })
        );
        assert_eq!(
            b.allow(after.plus_secs(30)),
            Err(Unavailable::Open {
                until: after.plus_secs(31)
            })
        );
        assert!(b.allow(after.plus_secs(31)).is_ok(), "half-open again");
    }

    #[test]
    fn stale_permits_do_not_count_as_trials() {
        let mut b = breaker();
        let old = b.allow(T0).unwrap();
        for _ in 0..20 {
            call(&mut b, Outcome::Failure, T0);
        }
        let after = T0.plus_secs(30);
        assert_eq!(b.poll(after), Some(Transition::HalfOpened));
        assert_eq!(b.record(old, Outcome::Failure, after), None);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                issued: 0,
                succeeded: 0
            }
        );
    }

    #[test]
    fn abandoned_trials_free_their_slot() {
        let mut b = opened();
        let after = T0.plus_secs(30);
        let permits: Vec<_> = (0..5).map(|_| b.allow(after).unwrap()).collect();
        let mut permits = permits.into_iter();
        b.record(permits.next().unwrap(), Outcome::Abandoned, after);
        let again = b.allow(after).expect("the slot came back");
        assert_eq!(b.allow(after), Err(Unavailable::TrialsInFlight));
        for permit in permits.chain(std::iter::once(again)) {
            b.record(permit, Outcome::Success, after);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_429_pauses_without_opening() {
        let mut b = breaker();
        let permit = b.allow(T0).unwrap();
        let outcome = Outcome::of(&Err(ProviderError::Transient {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(7)),
        }));
        assert_eq!(
            outcome,
            Outcome::RateLimited {
                retry_after: Duration::from_secs(7)
            }
        );
        assert_eq!(b.record(permit, outcome, T0), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            b.allow(T0.plus_secs(6)),
            Err(Unavailable::Paused {
                until: T0.plus_secs(7)
            })
        );
        assert_eq!(b.paused_until(T0), Some(T0.plus_secs(7)));
        assert!(b.allow(T0.plus_secs(7)).is_ok());
        assert_eq!(b.paused_until(T0.plus_secs(7)), None);
    }

    #[test]
    fn a_shorter_pause_does_not_cut_a_longer_one() {
        let mut b = breaker();
        let first = b.allow(T0).unwrap();
        let second = b.allow(T0).unwrap();
        b.record(
            first,
            Outcome::RateLimited {
                retry_after: Duration::from_secs(10),
            },
            T0,
        );
        b.record(
            second,
            Outcome::RateLimited {
                retry_after: Duration::from_secs(2),
            },
            T0,
        );
        assert_eq!(b.paused_until(T0), Some(T0.plus_secs(10)));
    }

    #[test]
    fn outcomes_follow_provider_errors() {
        let ok = Ok(SendReceipt {
            provider_message_id: None,
        });
        assert_eq!(Outcome::of(&ok), Outcome::Success);
        let permanent = Err(ProviderError::Permanent {
            reason: "400".into(),
        });
        assert_eq!(Outcome::of(&permanent), Outcome::Rejected);
        let transient = Err(ProviderError::Transient {
            reason: "503".into(),
            retry_after: None,
        });
        assert_eq!(Outcome::of(&transient), Outcome::Failure);
    }

    #[test]
    fn config_validation_names_each_setting() {
        let config = BreakerConfig {
            window_seconds: 0,
            min_calls: 0,
            failure_percent: 101,
            open_seconds: 0,
            half_open_trials: 0,
        };
        assert_eq!(config.validate("providers.tw.breaker").len(), 5);
        assert!(BreakerConfig::default().validate("b").is_empty());
    }
}
