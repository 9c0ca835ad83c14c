//! Group commit: every caller waits for an fsync that started after its writes, and one
//! fsync serves every caller that was waiting when it started.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

use super::StoreError;
use crate::sync::LockUnpoisoned;

/// A caller waiting for the flush that covers its ticket; told whether it succeeded.
type Waiter = (u64, oneshot::Sender<bool>);

#[derive(Default)]
struct State {
    /// The last ticket handed out.
    requested: u64,
    /// A flush is wanted (a ticket was handed out since the last one started).
    wanted: bool,
    stopping: bool,
    waiters: Vec<Waiter>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }
}

/// Runs flushes on a thread of its own so async callers never block on fsync. Each caller
/// is woken once, by the flush that covers it (no broadcast to every waiter).
pub struct GroupFlusher {
    shared: Arc<Shared>,
}

impl GroupFlusher {
    /// Starts the flusher thread of the `engine`'s store (`sled`, `lsm`: its flushes'
    /// metrics label); `flush` makes everything written so far durable.
    pub fn start<F>(engine: &'static str, flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<(), String> + Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("otpd-flusher".into())
            .spawn(move || run(&thread_shared, engine, flush))?;
        Ok(GroupFlusher { shared })
    }

    /// A future that resolves once a flush that began after this call has finished.
    pub fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let (done, outcome) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            state.requested += 1;
            let ticket = state.requested;
            state.waiters.push((ticket, done));
            state.wanted = true;
        }
        self.shared.wake.notify_one();
        async move {
            match outcome.await {
                Ok(true) => Ok(()),
                Ok(false) => Err(StoreError::Flush("fsync failed; see the log".into())),
                Err(_) => Err(StoreError::Flush("the flusher stopped".into())),
            }
        }
    }
}

impl Drop for GroupFlusher {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
    }
}

fn run<F>(shared: &Shared, engine: &'static str, flush: F)
where
    F: Fn() -> Result<(), String>,
{
    loop {
        let (target, stopping) = {
            let mut state = shared.lock();
            while !state.wanted && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.wanted = false;
            (state.requested, state.stopping)
        };
        let started = std::time::Instant::now();
        let result = flush();
        crate::telemetry::events::StoreFlushed {
            engine,
            took: started.elapsed(),
        }
        .emit();
        if let Err(error) = &result {
            tracing::error!(%error, "Store flush failed.");
        }
        let covered: Vec<Waiter> = {
            let mut state = shared.lock();
            let (covered, rest) = std::mem::take(&mut state.waiters)
                .into_iter()
                .partition(|(ticket, _)| *ticket <= target);
            state.waiters = rest;
            covered
        };
        for (_, done) in covered {
            let _ = done.send(result.is_ok());
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_flushes() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let flusher = GroupFlusher::start("memory", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })
        .unwrap();
        let waits: Vec<_> = (0..50).map(|_| flusher.flush()).collect();
        for result in futures_util::future::join_all(waits).await {
            result.unwrap();
        }
        let flushes = calls.load(Ordering::SeqCst);
        assert!(
            (1..=3).contains(&flushes),
            "{flushes} flushes for 50 callers"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_is_reported() {
        let flusher = GroupFlusher::start("memory", || Err("disk gone".into())).unwrap();
        assert!(flusher.flush().await.is_err());
    }
}
