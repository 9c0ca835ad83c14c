//! Jepsen-style accounting of one run: every request gets a unique destination number, each
//! arrival at the provider is matched to its request by that number, and the run ends with
//! counts of published, delivered, lost, duplicated and unexpected messages.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Offset of the generated numbers: `+4915` followed by nine digits from here.
const NUMBER_BASE: u64 = 100_000_000;
/// The largest request index a nine-digit suffix can hold.
pub const MAX_REQUESTS: u64 = 999_999_999 - NUMBER_BASE;
/// Latencies are recorded in microseconds, up to one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The unique destination of request `n`: a valid German mobile number (`+49151…`).
pub fn destination(n: u64) -> String {
    format!("+4915{:09}", NUMBER_BASE + n)
}

/// The request index of a destination made by [`destination`], if it is one.
pub fn request_index(to: &str) -> Option<u64> {
    let digits = to.trim().trim_start_matches('+').strip_prefix("4915")?;
    if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_sub(NUMBER_BASE)
}

/// A new latency histogram (microseconds, three significant figures).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The final counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Requests the broker confirmed (AMQP) or the API accepted (HTTP).
    pub published: u64,
    /// Published requests whose message reached the provider at least once.
    pub delivered: u64,
    /// Published requests whose message never reached the provider.
    pub lost: u64,
    /// Arrivals beyond the first for one request.
    pub duplicated: u64,
    /// Arrivals for no published request (unknown or refused destination).
    pub unexpected: u64,
    /// Requests the broker refused (nack) or the API refused; not counted as published.
    pub refused: u64,
}

impl Counts {
    /// True when nothing was lost and nothing arrived twice.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Sent, not yet confirmed; the latency clock started at `since`.
    Sent {
        since: Instant,
    },
    Published {
        since: Instant,
        arrivals: u32,
    },
    Refused,
}

/// Matches arrivals to requests and times each one from its start to its first arrival.
#[derive(Debug)]
pub struct Tracker {
    slots: Vec<Option<Slot>>,
    early: Vec<(u64, Instant)>,
    latency: Histogram<u64>,
    unexpected: u64,
    duplicated: u64,
    delivered: u64,
    published: u64,
    refused: u64,
    last_arrival: Option<Instant>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            slots: Vec::new(),
            early: Vec::new(),
            latency: histogram(),
            unexpected: 0,
            duplicated: 0,
            delivered: 0,
            published: 0,
            refused: 0,
            last_arrival: None,
        }
    }
}

impl Tracker {
    fn slot(&mut self, n: u64) -> &mut Option<Slot> {
        let index = n as usize;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        &mut self.slots[index]
    }

    /// Request `n` is about to be sent; its latency counts from `since` (the intended send
    /// time in an open-loop run, so a stalled sender does not hide the wait).
    pub fn sent(&mut self, n: u64, since: Instant) {
        *self.slot(n) = Some(Slot::Sent { since });
    }

    /// The broker (or API) accepted request `n`. An arrival seen before the
    /// confirmation is credited now.
    pub fn published(&mut self, n: u64) {
        let Some(Slot::Sent { since }) = *self.slot(n) else {
            return;
        };
        self.published += 1;
        *self.slot(n) = Some(Slot::Published { since, arrivals: 0 });
        let early: Vec<Instant> = self
            .early
            .iter()
            .filter(|(index, _)| *index == n)
            .map(|(_, at)| *at)
            .collect();
        if !early.is_empty() {
            self.early.retain(|(index, _)| *index != n);
            for at in early {
                self.arrived_index(n, at);
            }
        }
    }

    /// The broker (or API) refused request `n`: it is not expected to arrive.
    pub fn refused(&mut self, n: u64) {
        if matches!(*self.slot(n), Some(Slot::Sent { .. })) {
            self.refused += 1;
            *self.slot(n) = Some(Slot::Refused);
        }
    }

    /// A message for destination `to` reached the provider at `at`. Returns the request
    /// index when it is the first arrival of a published request.
    pub fn arrived(&mut self, to: &str, at: Instant) -> Option<u64> {
        match request_index(to) {
            Some(n) => self.arrived_index(n, at).then_some(n),
            None => {
                self.unexpected += 1;
                None
            }
        }
    }

    fn arrived_index(&mut self, n: u64, at: Instant) -> bool {
        let slot = if (n as usize) < self.slots.len() {
            &mut self.slots[n as usize]
        } else {
            self.unexpected += 1;
            return false;
        };
        match slot {
            Some(Slot::Published { since, arrivals }) => {
                *arrivals += 1;
                if *arrivals == 1 {
                    let micros = at.saturating_duration_since(*since).as_micros() as u64;
                    self.latency.saturating_record(micros.max(1));
                    self.delivered += 1;
                    self.last_arrival = Some(self.last_arrival.map_or(at, |last| last.max(at)));
                    true
                } else {
                    self.duplicated += 1;
                    false
                }
            }
            // Confirmations can trail the arrival; hold it until the confirmation comes.
            Some(Slot::Sent { .. }) => {
                self.early.push((n, at));
                false
            }
            Some(Slot::Refused) | None => {
                self.unexpected += 1;
                false
            }
        }
    }

    /// Whether every published request has arrived.
    pub fn is_complete(&self) -> bool {
        self.delivered >= self.published
    }

    /// When the latest first arrival happened.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// The counts now; requests still in flight count as lost.
    pub fn counts(&self) -> Counts {
        Counts {
            published: self.published,
            delivered: self.delivered,
            lost: self.published.saturating_sub(self.delivered),
            duplicated: self.duplicated,
            // Arrivals held for a confirmation that never came did not belong to a
            // published request.
            unexpected: self.unexpected + self.early.len() as u64,
            refused: self.refused,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Records `elapsed` into a microsecond histogram.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_valid_german_mobiles_and_map_back() {
        for n in [0, 1, 42, 9_999_999, MAX_REQUESTS] {
            let to = destination(n);
            let parsed = otpd::domain::Destination::parse(otpd::domain::Channel::Sms, &to)
                .unwrap_or_else(|e| panic!("{to} is not accepted by otpd: {e}"));
            assert_eq!(parsed.as_str(), to, "otpd keeps the number as generated");
            assert_eq!(parsed.country(), Some("DE"));
            assert_eq!(request_index(&to), Some(n));
        }
        assert_eq!(request_index("+4915112345678"), Some(12_345_678));
        assert_eq!(request_index("+33612345678"), None);
        assert_eq!(request_index("user@example.com"), None);
    }

    #[test]
    fn counts_lost_duplicated_unexpected_and_refused() {
        let start = Instant::now();
        let later = start + Duration::from_millis(7);
        let mut tracker = Tracker::default();
        for n in 0..5 {
            tracker.sent(n, start);
        }
        for n in 0..4 {
            tracker.published(n);
        }
        tracker.refused(4);
        assert_eq!(tracker.arrived(&destination(0), later), Some(0));
        assert_eq!(tracker.arrived(&destination(1), later), Some(1));
        assert_eq!(tracker.arrived(&destination(1), later), None);
        assert_eq!(tracker.arrived(&destination(4), later), None);
        assert_eq!(tracker.arrived(&destination(99), later), None);
        assert_eq!(tracker.arrived("+33612345678", later), None);
        let counts = tracker.counts();
        assert_eq!(
            counts,
            Counts {
                published: 4,
                delivered: 2,
                lost: 2,
                duplicated: 1,
                unexpected: 3,
                refused: 1,
            }
        );
        assert!(!counts.is_clean());
        let latency = Percentiles::of(tracker.latency());
        assert_eq!(latency.count, 2);
        assert!((latency.p50_ms - 7.0).abs() < 0.1, "{latency:?}");
    }

    #[test]
    fn an_arrival_before_its_confirmation_is_credited_once_confirmed() {
        let start = Instant::now();
        let mut tracker = Tracker::default();
        tracker.sent(3, start);
        assert_eq!(tracker.arrived(&destination(3), start), None);
        assert_eq!(tracker.counts().delivered, 0);
        tracker.published(3);
        let counts = tracker.counts();
        assert_eq!((counts.published, counts.delivered, counts.lost), (1, 1, 0));
        assert!(counts.is_clean());
        assert!(tracker.is_complete());
    }
}
