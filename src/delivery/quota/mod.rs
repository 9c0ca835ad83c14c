//! Quota arithmetic of one provider, pure and taking `now`: daily and monthly caps over UTC
//! calendar days and months, usage counting, and the 80/95/100 % alerts, each fired once per
//! period.

pub mod actor;
pub mod shared;

use serde::{Deserialize, Serialize};

use crate::domain::period::utc_midnight;
pub use crate::domain::records::{QuotaCount, QuotaUsage};
use crate::domain::{PeriodCounter, PeriodKind, Timestamp};

const MILLIS_PER_DAY: u64 = 86_400_000;

/// The alert thresholds, in percent of a cap.
pub const THRESHOLDS: [u8; 3] = [80, 95, 100];

/// A provider's caps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimits {
    /// Messages per UTC calendar day. Default unset (no daily cap).
    #[serde(default)]
    pub daily: Option<u64>,
    /// Messages per UTC calendar month. Default unset (no monthly cap).
    #[serde(default)]
    pub monthly: Option<u64>,
}

impl QuotaLimits {
    /// Whether any cap is set (a provider without one is counted by each node for itself).
    pub fn any(&self) -> bool {
        self.daily.is_some() || self.monthly.is_some()
    }

    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.daily == Some(0) {
            problems.push(format!(
                "{prefix}.daily must be at least 1, or unset for no cap"
            ));
        }
        if self.monthly == Some(0) {
            problems.push(format!(
                "{prefix}.monthly must be at least 1, or unset for no cap"
            ));
        }
        if let (Some(daily), Some(monthly)) = (self.daily, self.monthly) {
            if daily > monthly {
                problems.push(format!(
                    "{prefix}.daily ({daily}) is above {prefix}.monthly ({monthly})"
                ));
            }
        }
        problems
    }
}

/// Which cap a number is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// A threshold crossed for the first time in its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAlert {
    pub period: Period,
    /// 80, 95 or 100.
    pub percent: u8,
    pub used: u64,
    pub limit: u64,
}

impl Period {
    /// How this cap's periods are cut: UTC calendar days or months.
    pub fn kind(self) -> PeriodKind {
        match self {
            Period::Day => PeriodKind::UtcDay,
            Period::Month => PeriodKind::UtcMonth,
        }
    }
}

/// When the period holding `now` ends: the next UTC midnight or first of the month.
pub fn period_end(period: Period, now: Timestamp) -> Timestamp {
    period.kind().end(now)
}

/// Usage as saved, read right also when an earlier otpd saved it. Earlier counters held the
/// day's or month's number since the epoch where they now hold the period's start, in the
/// same bytes; no period after the epoch's first day starts that early, so a start below one
/// day is such a number and is read as the period it named.
pub fn from_saved(saved: QuotaUsage) -> QuotaUsage {
    fn day_start(counter: PeriodCounter<QuotaCount>) -> PeriodCounter<QuotaCount> {
        if counter.start.0 < MILLIS_PER_DAY {
            PeriodCounter {
                start: Timestamp(counter.start.0.saturating_mul(MILLIS_PER_DAY)),
                ..counter
            }
        } else {
            counter
        }
    }
    fn month_start(counter: PeriodCounter<QuotaCount>) -> PeriodCounter<QuotaCount> {
        if counter.start.0 < MILLIS_PER_DAY {
            let index = counter.start.0;
            let (year, month) = ((index / 12) as i64, (index % 12) as u32 + 1);
            PeriodCounter {
                start: utc_midnight(year, month, 1),
                ..counter
            }
        } else {
            counter
        }
    }
    QuotaUsage {
        day: day_start(saved.day),
        month: month_start(saved.month),
    }
}

impl QuotaUsage {
    pub fn new() -> Self {
        Self::default()
    }

    fn counter(&self, period: Period) -> PeriodCounter<QuotaCount> {
        match period {
            Period::Day => self.day,
            Period::Month => self.month,
        }
    }

    fn counts(&self, period: Period, now: Timestamp) -> QuotaCount {
        self.counter(period).counts_at(period.kind(), now)
    }

    /// Messages used in the period of `now`.
    pub fn used(&self, period: Period, now: Timestamp) -> u64 {
        self.counts(period, now).used
    }

    /// Counts `count` messages sent at `now`; returns the alerts that fired, each at most
    /// once per period (several at once when one count crosses several thresholds).
    pub fn record(&mut self, limits: &QuotaLimits, count: u64, now: Timestamp) -> Vec<QuotaAlert> {
        let mut day = self.day.at(Period::Day.kind(), now);
        let mut month = self.month.at(Period::Month.kind(), now);
        let mut alerts = Vec::new();
        for (period, counter, limit) in [
            (Period::Day, &mut day, limits.daily),
            (Period::Month, &mut month, limits.monthly),
        ] {
            let usage = &mut counter.counts;
            usage.used = usage.used.saturating_add(count);
            let Some(limit) = limit else { continue };
            for (bit, percent) in THRESHOLDS.iter().enumerate() {
                let mask = 1u8 << bit;
                let crossed =
                    u128::from(usage.used) * 100 >= u128::from(limit) * u128::from(*percent);
                if crossed && usage.fired & mask == 0 {
                    usage.fired |= mask;
                    alerts.push(QuotaAlert {
                        period,
                        percent: *percent,
                        used: usage.used,
                        limit,
                    });
                }
            }
        }
        self.day = day;
        self.month = month;
        alerts
    }

    /// Takes back `count` messages counted at `taken_at` that were not sent after all; a
    /// period that has ended since keeps its count, and alerts once fired stay fired.
    pub fn give_back(&mut self, count: u64, taken_at: Timestamp) {
        for (period, counter) in [
            (Period::Day, &mut self.day),
            (Period::Month, &mut self.month),
        ] {
            if counter.start == period.kind().start(taken_at) {
                counter.counts.used = counter.counts.used.saturating_sub(count);
            }
        }
    }

    /// Whether a cap is reached at `now`, so the router must pick another provider.
    pub fn is_exhausted(&self, limits: &QuotaLimits, now: Timestamp) -> bool {
        self.exhausted_until(limits, now).is_some()
    }

    /// When sending may resume, if a cap is reached at `now`: the end of the latest period
    /// whose cap is reached.
    pub fn exhausted_until(&self, limits: &QuotaLimits, now: Timestamp) -> Option<Timestamp> {
        let reached = |period: Period, limit: Option<u64>| {
            limit
                .filter(|limit| self.used(period, now) >= *limit)
                .map(|_| period_end(period, now))
        };
        reached(Period::Day, limits.daily).max(reached(Period::Month, limits.monthly))
    }

    /// Messages left before the tighter cap, `None` without caps.
    pub fn remaining(&self, limits: &QuotaLimits, now: Timestamp) -> Option<u64> {
        let day_left = limits
            .daily
            .map(|limit| limit.saturating_sub(self.used(Period::Day, now)));
        let month_left = limits
            .monthly
            .map(|limit| limit.saturating_sub(self.used(Period::Month, now)));
        match (day_left, month_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::civil_date;

    /// 2026-11-27T12:00:00Z.
    const NOV_27_NOON: Timestamp = Timestamp(1_795_780_800_000);

    fn at(year: i64, month: u32, day: u32, hour: u64) -> Timestamp {
        utc_midnight(year, month, day).plus_secs(hour * 3600)
    }

    #[test]
    fn periods_end_at_utc_midnight_and_the_first_of_the_month() {
        assert_eq!(period_end(Period::Day, NOV_27_NOON), at(2026, 11, 28, 0));
        assert_eq!(period_end(Period::Month, NOV_27_NOON), at(2026, 12, 1, 0));
        assert_eq!(
            period_end(Period::Month, at(2026, 12, 31, 23)),
            at(2027, 1, 1, 0)
        );
        assert_eq!(
            period_end(Period::Month, at(2024, 2, 10, 0)),
            at(2024, 3, 1, 0)
        );
    }

    #[test]
    fn a_message_given_back_frees_its_place_in_its_own_periods_only() {
        let limits = QuotaLimits {
            daily: Some(2),
            monthly: Some(100),
        };
        let mut usage = QuotaUsage::new();
        usage.record(&limits, 2, NOV_27_NOON);
        assert!(usage.is_exhausted(&limits, NOV_27_NOON));
        usage.give_back(1, NOV_27_NOON);
        assert!(!usage.is_exhausted(&limits, NOV_27_NOON));
        assert_eq!(usage.used(Period::Month, NOV_27_NOON), 1);
        // Counted yesterday: today's count and alerts stay as they are.
        let tomorrow = at(2026, 11, 28, 9);
        usage.record(&limits, 1, tomorrow);
        usage.give_back(1, NOV_27_NOON);
        assert_eq!(usage.used(Period::Day, tomorrow), 1);
        assert_eq!(usage.used(Period::Month, tomorrow), 1);
    }

    #[test]
    fn thresholds_fire_once_each() {
        let limits = QuotaLimits {
            daily: Some(100),
            monthly: None,
        };
        let mut usage = QuotaUsage::new();
        assert!(usage.record(&limits, 79, NOV_27_NOON).is_empty());
        let alerts = usage.record(&limits, 1, NOV_27_NOON);
        assert_eq!(
            alerts,
            vec![QuotaAlert {
                period: Period::Day,
                percent: 80,
                used: 80,
                limit: 100
            }]
        );
        assert!(usage.record(&limits, 14, NOV_27_NOON).is_empty());
        assert_eq!(usage.record(&limits, 1, NOV_27_NOON)[0].percent, 95);
        assert!(!usage.is_exhausted(&limits, NOV_27_NOON));
        assert_eq!(usage.remaining(&limits, NOV_27_NOON), Some(5));
        assert_eq!(usage.record(&limits, 5, NOV_27_NOON)[0].percent, 100);
        assert!(usage.is_exhausted(&limits, NOV_27_NOON));
        assert_eq!(
            usage.exhausted_until(&limits, NOV_27_NOON),
            Some(at(2026, 11, 28, 0))
        );
        assert!(
            usage.record(&limits, 1, NOV_27_NOON).is_empty(),
            "100 % fires once"
        );
        assert_eq!(usage.used(Period::Day, NOV_27_NOON), 101);
    }

    #[test]
    fn one_jump_fires_every_threshold_it_crosses() {
        let limits = QuotaLimits {
            daily: Some(10),
            monthly: Some(1_000),
        };
        let mut usage = QuotaUsage::new();
        let alerts = usage.record(&limits, 10, NOV_27_NOON);
        let percents: Vec<_> = alerts
            .iter()
            .map(|alert| (alert.period, alert.percent))
            .collect();
        assert_eq!(
            percents,
            vec![(Period::Day, 80), (Period::Day, 95), (Period::Day, 100)]
        );
    }

    #[test]
    fn days_roll_over_at_utc_midnight() {
        let limits = QuotaLimits {
            daily: Some(10),
            monthly: Some(25),
        };
        let mut usage = QuotaUsage::new();
        let late = at(2026, 11, 27, 23);
        usage.record(&limits, 10, late);
        assert!(usage.is_exhausted(&limits, late));
        let next_day = at(2026, 11, 28, 0);
        assert!(!usage.is_exhausted(&limits, next_day), "new day, cap reset");
        assert_eq!(usage.used(Period::Day, next_day), 0);
        assert_eq!(usage.used(Period::Month, next_day), 10);
        assert_eq!(usage.remaining(&limits, next_day), Some(10));
        let alerts = usage.record(&limits, 8, next_day);
        assert_eq!(
            alerts
                .iter()
                .map(|a| (a.period, a.percent))
                .collect::<Vec<_>>(),
            vec![(Period::Day, 80)],
            "the day's 80 % fires again in the new day"
        );
        let alerts = usage.record(&limits, 2, next_day);
        assert_eq!(
            alerts
                .iter()
                .map(|a| (a.period, a.percent))
                .collect::<Vec<_>>(),
            vec![(Period::Day, 95), (Period::Day, 100), (Period::Month, 80)]
        );
    }

    #[test]
    fn months_roll_over_and_the_later_end_wins() {
        let limits = QuotaLimits {
            daily: Some(10),
            monthly: Some(10),
        };
        let mut usage = QuotaUsage::new();
        let last_day = at(2026, 11, 30, 22);
        usage.record(&limits, 10, last_day);
        assert_eq!(
            usage.exhausted_until(&limits, last_day),
            Some(at(2026, 12, 1, 0))
        );
        let mut usage = QuotaUsage::new();
        let mid = at(2026, 11, 15, 10);
        usage.record(&limits, 10, mid);
        assert_eq!(
            usage.exhausted_until(&limits, at(2026, 11, 16, 1)),
            Some(at(2026, 12, 1, 0)),
            "the month cap holds after the day rolled"
        );
        let december = at(2026, 12, 1, 0);
        assert!(!usage.is_exhausted(&limits, december));
        assert_eq!(
            usage.record(&limits, 8, december).len(),
            2,
            "day and month 80 %"
        );
    }

    #[test]
    fn usage_saved_with_period_numbers_is_read_as_those_periods() {
        let limits = QuotaLimits {
            daily: Some(100),
            monthly: Some(1_000),
        };
        // As an earlier otpd saved it on 2026-11-27: day number 20_784 since the epoch,
        // month number 2026 × 12 + 10 (November), with the 80 % alert of the day fired.
        let saved = QuotaUsage {
            day: PeriodCounter {
                start: Timestamp(20_784),
                counts: QuotaCount { used: 85, fired: 1 },
            },
            month: PeriodCounter {
                start: Timestamp(2026 * 12 + 10),
                counts: QuotaCount {
                    used: 400,
                    fired: 0,
                },
            },
        };
        assert_eq!(civil_date(Timestamp(20_784 * MILLIS_PER_DAY)).day, 27);
        let mut usage = from_saved(saved);
        assert_eq!(usage.day.start, at(2026, 11, 27, 0));
        assert_eq!(usage.month.start, at(2026, 11, 1, 0));
        assert_eq!(usage.used(Period::Day, NOV_27_NOON), 85);
        assert_eq!(usage.used(Period::Month, NOV_27_NOON), 400);
        assert_eq!(usage.remaining(&limits, NOV_27_NOON), Some(15));
        // The day's 80 % does not fire again; its 95 % does.
        let alerts = usage.record(&limits, 10, NOV_27_NOON);
        assert_eq!(
            alerts.iter().map(|a| a.percent).collect::<Vec<_>>(),
            vec![95]
        );
        // Usage saved with period starts is left as it is.
        assert_eq!(from_saved(usage), usage);
        assert_eq!(from_saved(QuotaUsage::new()), QuotaUsage::new());
    }

    #[test]
    fn no_caps_never_exhaust() {
        let limits = QuotaLimits::default();
        let mut usage = QuotaUsage::new();
        assert!(usage.record(&limits, 1_000_000, NOV_27_NOON).is_empty());
        assert!(!usage.is_exhausted(&limits, NOV_27_NOON));
        assert_eq!(usage.remaining(&limits, NOV_27_NOON), None);
    }

    #[test]
    fn limits_validation() {
        let limits = QuotaLimits {
            daily: Some(0),
            monthly: Some(0),
        };
        assert_eq!(limits.validate("providers.tw.quota").len(), 2);
        let limits = QuotaLimits {
            daily: Some(10),
            monthly: Some(5),
        };
        assert_eq!(limits.validate("q").len(), 1);
    }
}
