//! Paces operations: open loop at a rate (each operation timed from its intended start, so
//! a stalled system cannot hide its queueing), or closed loop as fast as `concurrency` in
//! flight allows; bounded by a count and a duration either way.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Most operations to start.
    pub requests: u64,
    /// Longest time to keep starting operations.
    pub duration: Duration,
    /// Operations per second; 0 means as fast as `concurrency` allows.
    pub rate: f64,
    /// Most operations in flight.
    pub concurrency: usize,
}

/// When sending started and ended, and how many operations were started.
#[derive(Debug, Clone, Copy)]
pub struct Driven {
    pub started: u64,
    pub first: Instant,
    pub last: Instant,
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(length: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} {msg} ({per_sec})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Starts `operation(n, since)` for n = 0, 1, … and waits until every one has finished.
pub async fn drive<F, Fut>(plan: &Plan, operation: F) -> Driven
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let concurrency = plan.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let first = Instant::now();
    let deadline = first + plan.duration;
    let mut last = first;
    let mut started = 0;
    while started < plan.requests {
        let since = if plan.rate > 0.0 {
            let intended = first + Duration::from_secs_f64(started as f64 / plan.rate);
            if intended >= deadline {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
            intended
        } else {
            Instant::now()
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let since = if plan.rate > 0.0 { since } else { now };
        let work = operation(started, since);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
        last = now;
        started += 1;
    }
    let _ = permits.acquire_many(concurrency as u32).await;
    Driven {
        started,
        first,
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn stops_at_the_count_and_waits_for_every_operation() {
        let done = Arc::new(AtomicU64::new(0));
        let plan = Plan {
            requests: 50,
            duration: Duration::from_secs(10),
            rate: 0.0,
            concurrency: 4,
        };
        let driven = drive(&plan, |_, _| {
            let done = Arc::clone(&done);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
        assert_eq!(driven.started, 50);
        assert_eq!(done.load(Ordering::SeqCst), 50);
    }

    #[tokio::test]
    async fn an_open_loop_keeps_its_rate_and_stops_at_the_duration() {
        let plan = Plan {
            requests: 1_000_000,
            duration: Duration::from_millis(300),
            rate: 100.0,
            concurrency: 8,
        };
        let driven = drive(&plan, |_, _| async {}).await;
        assert!((25..=31).contains(&driven.started), "{}", driven.started);
    }
}
