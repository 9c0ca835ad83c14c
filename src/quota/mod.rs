//! Quota arithmetic of one provider, pure and taking `now`: daily and monthly caps over UTC
//! calendar days and months, usage counting, and the 80/95/100 % alerts, each fired once per
//! period.

pub mod actor;

use serde::{Deserialize, Serialize};

pub use crate::domain::records::{PeriodUsage, QuotaUsage};
use crate::domain::Timestamp;

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

/// A UTC calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CivilDate {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

/// The UTC date of `now` (Howard Hinnant's `civil_from_days`).
pub fn civil_date(now: Timestamp) -> CivilDate {
    let days = (now.0 / MILLIS_PER_DAY) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    CivilDate { year, month, day }
}

/// Days since the epoch of a UTC date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn day_index(now: Timestamp) -> u64 {
    now.0 / MILLIS_PER_DAY
}

fn month_index(now: Timestamp) -> u64 {
    let date = civil_date(now);
    (date.year.max(0) as u64) * 12 + u64::from(date.month - 1)
}

/// When the period holding `now` ends: the next UTC midnight or first of the month.
pub fn period_end(period: Period, now: Timestamp) -> Timestamp {
    match period {
        Period::Day => Timestamp((day_index(now) + 1) * MILLIS_PER_DAY),
        Period::Month => {
            let date = civil_date(now);
            let (year, month) = if date.month == 12 {
                (date.year + 1, 1)
            } else {
                (date.year, date.month + 1)
            };
            Timestamp(days_from_civil(year, month, 1).max(0) as u64 * MILLIS_PER_DAY)
        }
    }
}

impl PeriodUsage {
    fn at(&self, index: u64) -> PeriodUsage {
        if self.index == index {
            *self
        } else {
            PeriodUsage {
                index,
                used: 0,
                fired: 0,
            }
        }
    }
}

impl QuotaUsage {
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self, now: Timestamp) -> (PeriodUsage, PeriodUsage) {
        (self.day.at(day_index(now)), self.month.at(month_index(now)))
    }

    /// Messages used in the period of `now`.
    pub fn used(&self, period: Period, now: Timestamp) -> u64 {
        let (day, month) = self.current(now);
        match period {
            Period::Day => day.used,
            Period::Month => month.used,
        }
    }

    /// Counts `count` messages sent at `now`; returns the alerts that fired, each at most
    /// once per period (several at once when one count crosses several thresholds).
    pub fn record(&mut self, limits: &QuotaLimits, count: u64, now: Timestamp) -> Vec<QuotaAlert> {
        let (mut day, mut month) = self.current(now);
        let mut alerts = Vec::new();
        for (period, usage, limit) in [
            (Period::Day, &mut day, limits.daily),
            (Period::Month, &mut month, limits.monthly),
        ] {
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

    /// Whether a cap is reached at `now`, so the router must pick another provider.
    pub fn is_exhausted(&self, limits: &QuotaLimits, now: Timestamp) -> bool {
        self.exhausted_until(limits, now).is_some()
    }

    /// When sending may resume, if a cap is reached at `now`: the end of the latest period
    /// whose cap is reached.
    pub fn exhausted_until(&self, limits: &QuotaLimits, now: Timestamp) -> Option<Timestamp> {
        let (day, month) = self.current(now);
        let day_end = limits
            .daily
            .filter(|limit| day.used >= *limit)
            .map(|_| period_end(Period::Day, now));
        let month_end = limits
            .monthly
            .filter(|limit| month.used >= *limit)
            .map(|_| period_end(Period::Month, now));
        day_end.max(month_end)
    }

    /// Messages left before the tighter cap, `None` without caps.
    pub fn remaining(&self, limits: &QuotaLimits, now: Timestamp) -> Option<u64> {
        let (day, month) = self.current(now);
        let day_left = limits.daily.map(|limit| limit.saturating_sub(day.used));
        let month_left = limits.monthly.map(|limit| limit.saturating_sub(month.used));
        match (day_left, month_left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T12:00:00Z.
    const NOV_27_NOON: Timestamp = Timestamp(1_795_780_800_000);

    fn at(year: i64, month: u32, day: u32, hour: u64) -> Timestamp {
        Timestamp(days_from_civil(year, month, day) as u64 * MILLIS_PER_DAY + hour * 3_600_000)
    }

    #[test]
    fn calendar_arithmetic_is_right() {
        assert_eq!(
            civil_date(NOV_27_NOON),
            CivilDate {
                year: 2026,
                month: 11,
                day: 27
            }
        );
        assert_eq!(at(2026, 11, 27, 12), NOV_27_NOON);
        assert_eq!(
            civil_date(at(2024, 2, 29, 23)),
            CivilDate {
                year: 2024,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            civil_date(Timestamp(0)),
            CivilDate {
                year: 1970,
                month: 1,
                day: 1
            }
        );
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
