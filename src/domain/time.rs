//! Wall-clock instants as unix milliseconds, so logic can take `now` as a plain value.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the unix epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time; only I/O code calls this, logic takes `now` as an argument.
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(since_epoch.as_millis() as u64)
    }

    pub fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    pub fn plus(self, duration: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration.as_millis() as u64))
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        self.plus(Duration::from_secs(secs))
    }

    /// How long from `self` until `later`; zero when `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// RFC 3339 in UTC with second precision, e.g. `2026-11-27T12:05:00Z`.
    pub fn to_rfc3339(self) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_seconds(time).to_string()
    }

    /// The last whole second at or before this instant.
    pub fn floor_secs(self) -> Self {
        Timestamp(self.0 - self.0 % 1000)
    }

    /// The first whole second at or after this instant.
    pub fn ceil_secs(self) -> Self {
        Timestamp(self.0.div_ceil(1000).saturating_mul(1000))
    }

    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

/// Whole seconds to wait, rounded up, at least one: what a `Retry-After` header carries.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let millis = wait.as_millis() as u64;
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_in_utc_seconds() {
        assert_eq!(
            Timestamp::from_secs(1_795_780_800).to_rfc3339(),
            "2026-11-27T12:00:00Z"
        );
    }

    #[test]
    fn rounds_to_whole_seconds() {
        assert_eq!(Timestamp(12_345).floor_secs(), Timestamp(12_000));
        assert_eq!(Timestamp(12_345).ceil_secs(), Timestamp(13_000));
        assert_eq!(Timestamp(12_000).ceil_secs(), Timestamp(12_000));
    }

    #[test]
    fn until_never_goes_negative() {
        let t = Timestamp(5_000);
        assert_eq!(t.until(Timestamp(4_000)), Duration::ZERO);
        assert_eq!(t.until(Timestamp(6_500)), Duration::from_millis(1_500));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
