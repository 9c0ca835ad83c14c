//! A provider's sends and failures by class over the last hour, in one-minute buckets: what
//! an operator looks at first when a provider's users get no code.

use serde::Serialize;

use crate::domain::Timestamp;
use crate::providers::ProviderError;

const MINUTE_MS: u64 = 60_000;
const MINUTES: usize = 60;

/// Calls by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CallCounts {
    pub sent: u64,
    pub transient: u64,
    pub permanent: u64,
    pub timeout: u64,
}

impl CallCounts {
    fn add(&mut self, other: &CallCounts) {
        self.sent += other.sent;
        self.transient += other.transient;
        self.permanent += other.permanent;
        self.timeout += other.timeout;
    }

    fn count(&mut self, error: Option<&ProviderError>) {
        let counter = match error {
            None => &mut self.sent,
            Some(ProviderError::Transient { .. }) => &mut self.transient,
            Some(ProviderError::Permanent { .. }) => &mut self.permanent,
            Some(ProviderError::Unanswered { .. }) => &mut self.timeout,
        };
        *counter += 1;
    }
}

/// The last hour's calls, a bucket per minute.
#[derive(Debug, Clone)]
pub struct LastHour {
    /// Each bucket with the minute (since the epoch) it counts.
    buckets: [(u64, CallCounts); MINUTES],
}

impl Default for LastHour {
    fn default() -> Self {
        LastHour {
            buckets: [(u64::MAX, CallCounts::default()); MINUTES],
        }
    }
}

impl LastHour {
    /// Counts a call that ended at `now`: sent when `error` is `None`.
    pub fn record(&mut self, error: Option<&ProviderError>, now: Timestamp) {
        let minute = now.0 / MINUTE_MS;
        let bucket = &mut self.buckets[(minute % MINUTES as u64) as usize];
        if bucket.0 != minute {
            *bucket = (minute, CallCounts::default());
        }
        bucket.1.count(error);
    }

    /// The calls of the 60 minutes up to `now`.
    pub fn total(&self, now: Timestamp) -> CallCounts {
        let minute = now.0 / MINUTE_MS;
        let mut total = CallCounts::default();
        for (at, counts) in &self.buckets {
            if *at <= minute && minute - at < MINUTES as u64 {
                total.add(counts);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn counts_each_class_and_forgets_what_is_over_an_hour_old() {
        let mut hour = LastHour::default();
        let transient = ProviderError::Transient {
            reason: "HTTP 503".into(),
            retry_after: None,
        };
        let timeout = ProviderError::Unanswered {
            reason: "timed out".into(),
        };
        hour.record(None, NOW);
        hour.record(Some(&transient), NOW);
        hour.record(Some(&timeout), NOW.plus_secs(30 * 60));
        hour.record(None, NOW.plus_secs(59 * 60));
        assert_eq!(
            hour.total(NOW.plus_secs(59 * 60)),
            CallCounts {
                sent: 2,
                transient: 1,
                permanent: 0,
                timeout: 1
            }
        );
        // An hour on, the first minute's calls are gone; its bucket is reused.
        let later = NOW.plus_secs(60 * 60);
        hour.record(None, later);
        assert_eq!(
            hour.total(later),
            CallCounts {
                sent: 2,
                transient: 0,
                permanent: 0,
                timeout: 1
            }
        );
        assert_eq!(hour.total(NOW.plus_secs(3 * 3600)), CallCounts::default());
    }
}
