//! Token buckets, one per key (tenant, client IP, provider), that refill at a steady rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use super::Timestamp;

/// A bucket of `burst` tokens refilled at `per_second`; each request takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Timestamp,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Timestamp) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn try_take(
        &mut self,
        per_second: f64,
        burst: u32,
        now: Timestamp,
    ) -> Result<(), Duration> {
        self.refill(per_second, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }

    fn refill(&mut self, per_second: f64, burst: u32, now: Timestamp) {
        let elapsed = self.updated.until(now).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(burst));
        if now > self.updated {
            self.updated = now;
        }
    }

    /// Whether the bucket has refilled completely by `now` (and so can be forgotten).
    fn is_full_at(&self, per_second: f64, burst: u32, now: Timestamp) -> bool {
        let elapsed = self.updated.until(now).as_secs_f64();
        self.tokens + elapsed * per_second >= f64::from(burst)
    }
}

/// Token buckets per key. Buckets that have refilled are forgotten, so memory follows the
/// number of keys active within one refill time, not every key ever seen.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    per_second: f64,
    burst: u32,
    buckets: HashMap<K, TokenBucket>,
    next_prune: Timestamp,
}

const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl<K: Eq + Hash> KeyedLimiter<K> {
    pub fn new(per_second: f64, burst: u32) -> Self {
        KeyedLimiter {
            per_second,
            burst,
            buckets: HashMap::new(),
            next_prune: Timestamp(0),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long to wait.
    pub fn check(&mut self, key: K, now: Timestamp) -> Result<(), Duration> {
        self.prune(now);
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(burst, now))
            .try_take(per_second, burst, now)
    }

    pub fn tracked_keys(&self) -> usize {
        self.buckets.len()
    }

    fn prune(&mut self, now: Timestamp) {
        if now < self.next_prune {
            return;
        }
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets
            .retain(|_, bucket| !bucket.is_full_at(per_second, burst, now));
        self.next_prune = now.plus(PRUNE_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_with_the_wait() {
        let now = Timestamp(1_000_000);
        let mut limiter = KeyedLimiter::new(2.0, 3);
        for _ in 0..3 {
            limiter.check("ip", now).unwrap();
        }
        let wait = limiter.check("ip", now).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.check("other", now).unwrap();
    }

    #[test]
    fn refills_over_time() {
        let start = Timestamp(1_000_000);
        let mut limiter = KeyedLimiter::new(2.0, 1);
        limiter.check("t", start).unwrap();
        assert!(limiter
            .check("t", start.plus(Duration::from_millis(499)))
            .is_err());
        limiter
            .check("t", start.plus(Duration::from_millis(1_000)))
            .unwrap();
    }

    #[test]
    fn forgets_idle_keys() {
        let start = Timestamp(1_000_000);
        let mut limiter = KeyedLimiter::new(1.0, 1);
        for ip in 0..100 {
            limiter.check(ip, start).unwrap();
        }
        assert_eq!(limiter.tracked_keys(), 100);
        limiter.check(1000, start.plus_secs(30)).unwrap();
        assert_eq!(limiter.tracked_keys(), 1);
    }
}
