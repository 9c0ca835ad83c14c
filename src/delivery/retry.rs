//! When to try a failed send again: exponential backoff with full jitter, never past expiry.

use std::time::Duration;

use crate::domain::Timestamp;
use crate::providers::ProviderError;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

/// The wait before retry number `attempt` (0 for the first retry), or `None` when the error
/// is permanent or the retry would not happen before the code expires. `jitter` is a
/// uniform draw in [0, 1); the provider's own `Retry-After` wins over the backoff.
pub fn next_retry(
    backoff: &Backoff,
    attempt: u32,
    error: &ProviderError,
    jitter: f64,
    now: Timestamp,
    expires_at: Timestamp,
) -> Option<Duration> {
    if !error.is_transient() {
        return None;
    }
    let wait = error.retry_after().unwrap_or_else(|| {
        let ceiling = backoff
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(backoff.cap);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    });
    (now.plus(wait) < expires_at).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_000_000);

    fn transient() -> ProviderError {
        ProviderError::Transient {
            reason: "503".into(),
            retry_after: None,
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff::default();
        let far = NOW.plus_secs(3600);
        let waits: Vec<_> = (0..8)
            .map(|attempt| {
                next_retry(&backoff, attempt, &transient(), 0.999_999, NOW, far).unwrap()
            })
            .collect();
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(waits[0] < Duration::from_millis(201));
        assert!(*waits.last().unwrap() <= Duration::from_secs(10));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let permanent = ProviderError::Permanent {
            reason: "400".into(),
        };
        assert_eq!(
            next_retry(
                &Backoff::default(),
                0,
                &permanent,
                0.5,
                NOW,
                NOW.plus_secs(60)
            ),
            None
        );
    }

    #[test]
    fn never_schedules_past_expiry() {
        let limited = ProviderError::Transient {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            next_retry(
                &Backoff::default(),
                0,
                &limited,
                0.5,
                NOW,
                NOW.plus_secs(30)
            ),
            None
        );
        assert_eq!(
            next_retry(
                &Backoff::default(),
                0,
                &limited,
                0.5,
                NOW,
                NOW.plus_secs(31)
            ),
            Some(Duration::from_secs(30))
        );
    }
}
