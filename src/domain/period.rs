//! Counters that start afresh with each period: fixed-length windows back to back from the
//! unix epoch (a clock hour), and UTC calendar days and months. Pure: every answer takes `now`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::Timestamp;

const MILLIS_PER_DAY: u64 = 86_400_000;

/// How time is cut into periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    /// Windows of this length (at least a millisecond), back to back from the unix epoch.
    Fixed(Duration),
    /// UTC calendar days, from midnight to midnight.
    UtcDay,
    /// UTC calendar months, from the first of the month at midnight.
    UtcMonth,
}

impl PeriodKind {
    /// The UTC clock hour.
    pub const CLOCK_HOUR: PeriodKind = PeriodKind::Fixed(Duration::from_secs(3600));

    /// When the period holding `now` started.
    pub fn start(self, now: Timestamp) -> Timestamp {
        match self {
            PeriodKind::Fixed(length) => Timestamp(now.0 - now.0 % fixed_millis(length)),
            PeriodKind::UtcDay => Timestamp(now.0 - now.0 % MILLIS_PER_DAY),
            PeriodKind::UtcMonth => {
                let date = civil_date(now);
                utc_midnight(date.year, date.month, 1)
            }
        }
    }

    /// When the period holding `now` ends: the start of the next one.
    pub fn end(self, now: Timestamp) -> Timestamp {
        let start = self.start(now);
        match self {
            PeriodKind::Fixed(length) => Timestamp(start.0.saturating_add(fixed_millis(length))),
            PeriodKind::UtcDay => Timestamp(start.0.saturating_add(MILLIS_PER_DAY)),
            PeriodKind::UtcMonth => {
                let date = civil_date(now);
                if date.month == 12 {
                    utc_midnight(date.year + 1, 1, 1)
                } else {
                    utc_midnight(date.year, date.month + 1, 1)
                }
            }
        }
    }
}

fn fixed_millis(length: Duration) -> u64 {
    (length.as_millis() as u64).max(1)
}

/// What was counted within one period; read at an instant of another period, it is empty.
///
/// `counts` is what the owner counts (sends and spend, messages and alerts fired); it is
/// stored as the period's start followed by the counts' own fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodCounter<C> {
    /// When the period counted in started.
    pub start: Timestamp,
    pub counts: C,
}

impl<C: Copy + Default> PeriodCounter<C> {
    /// The counter as it stands at `now`: itself if `now` is in its period, otherwise empty
    /// counts for the period holding `now` (a clock set back starts afresh too).
    pub fn at(self, kind: PeriodKind, now: Timestamp) -> Self {
        let start = kind.start(now);
        if self.start == start {
            self
        } else {
            PeriodCounter {
                start,
                counts: C::default(),
            }
        }
    }

    /// The counts of the period holding `now`.
    pub fn counts_at(self, kind: PeriodKind, now: Timestamp) -> C {
        self.at(kind, now).counts
    }

    /// When this counter's period ends.
    pub fn ends(&self, kind: PeriodKind) -> Timestamp {
        kind.end(self.start)
    }
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

/// Midnight UTC at the start of a date; dates before the epoch give the epoch.
pub fn utc_midnight(year: i64, month: u32, day: u32) -> Timestamp {
    Timestamp(days_from_civil(year, month, day).max(0) as u64 * MILLIS_PER_DAY)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T12:00:00Z.
    const NOV_27_NOON: Timestamp = Timestamp(1_795_780_800_000);

    fn at(year: i64, month: u32, day: u32, hour: u64) -> Timestamp {
        utc_midnight(year, month, day).plus_secs(hour * 3600)
    }

    /// A counter of one number, as its owners count theirs.
    type Count = PeriodCounter<u64>;

    fn add(counter: Count, kind: PeriodKind, now: Timestamp, n: u64) -> Count {
        let current = counter.at(kind, now);
        PeriodCounter {
            counts: current.counts + n,
            ..current
        }
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
        assert_eq!(utc_midnight(1969, 12, 31), Timestamp(0));
    }

    #[test]
    fn days_and_months_start_and_end_at_utc_midnight() {
        assert_eq!(PeriodKind::UtcDay.start(NOV_27_NOON), at(2026, 11, 27, 0));
        assert_eq!(PeriodKind::UtcDay.end(NOV_27_NOON), at(2026, 11, 28, 0));
        assert_eq!(PeriodKind::UtcMonth.start(NOV_27_NOON), at(2026, 11, 1, 0));
        assert_eq!(PeriodKind::UtcMonth.end(NOV_27_NOON), at(2026, 12, 1, 0));
        assert_eq!(
            PeriodKind::UtcMonth.end(at(2026, 12, 31, 23)),
            at(2027, 1, 1, 0)
        );
        assert_eq!(
            PeriodKind::UtcMonth.end(at(2024, 2, 10, 0)),
            at(2024, 3, 1, 0)
        );
        // The last millisecond of a month is still in it; the next one is not.
        let new_year = at(2027, 1, 1, 0);
        let last = Timestamp(new_year.0 - 1);
        assert_eq!(PeriodKind::UtcMonth.start(last), at(2026, 12, 1, 0));
        assert_eq!(PeriodKind::UtcMonth.start(new_year), new_year);
    }

    #[test]
    fn fixed_windows_are_aligned_to_the_epoch() {
        let hour = PeriodKind::CLOCK_HOUR;
        let ten_past = at(2026, 11, 27, 12).plus_secs(600);
        assert_eq!(hour.start(ten_past), NOV_27_NOON);
        assert_eq!(hour.end(ten_past), at(2026, 11, 27, 13));
        assert_eq!(hour.start(NOV_27_NOON), NOV_27_NOON);
        let odd = PeriodKind::Fixed(Duration::from_millis(7));
        assert_eq!(odd.start(Timestamp(20)), Timestamp(14));
        assert_eq!(odd.end(Timestamp(20)), Timestamp(21));
        // A zero length is taken as one millisecond rather than dividing by zero.
        assert_eq!(
            PeriodKind::Fixed(Duration::ZERO).end(Timestamp(5)),
            Timestamp(6)
        );
    }

    #[test]
    fn counts_hold_within_a_period_and_start_afresh_in_the_next() {
        let hour = PeriodKind::CLOCK_HOUR;
        let mut counter = Count::default();
        counter = add(counter, hour, NOV_27_NOON.plus_secs(10), 2);
        counter = add(counter, hour, NOV_27_NOON.plus_secs(3599), 3);
        assert_eq!(counter.start, NOV_27_NOON);
        assert_eq!(counter.counts_at(hour, NOV_27_NOON.plus_secs(1800)), 5);
        assert_eq!(counter.ends(hour), NOV_27_NOON.plus_secs(3600));

        let next = NOV_27_NOON.plus_secs(3600);
        assert_eq!(counter.counts_at(hour, next), 0);
        let counter = add(counter, hour, next, 1);
        assert_eq!((counter.start, counter.counts), (next, 1));
        // A clock set back into an earlier period does not see the later counts.
        assert_eq!(counter.counts_at(hour, NOV_27_NOON), 0);
    }

    #[test]
    fn a_month_counter_outlives_its_days() {
        let mut month = Count::default();
        month = add(month, PeriodKind::UtcMonth, at(2026, 11, 2, 5), 4);
        month = add(month, PeriodKind::UtcMonth, at(2026, 11, 30, 23), 1);
        assert_eq!(
            month.counts_at(PeriodKind::UtcMonth, at(2026, 11, 30, 23)),
            5
        );
        assert_eq!(month.counts_at(PeriodKind::UtcMonth, at(2026, 12, 1, 0)), 0);
        assert_eq!(month.ends(PeriodKind::UtcMonth), at(2026, 12, 1, 0));
    }
}
