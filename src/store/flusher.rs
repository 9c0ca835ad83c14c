//! Group commit: every caller waits for an fsync that started after its writes, and one
//! fsync serves every caller that was waiting when it started.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::watch;

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Progress {
    /// Every ticket up to this one is covered by a finished flush.
    completed: u64,
    /// Whether that flush succeeded.
    ok: bool,
}

struct Shared {
    requested: AtomicU64,
    wanted: Mutex<bool>,
    wake: Condvar,
    stopping: AtomicBool,
}

/// Runs flushes on a thread of its own so async callers never block on fsync.
pub struct GroupFlusher {
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
}

impl GroupFlusher {
    /// Starts the flusher thread; `flush` makes everything written so far durable.
    pub fn start<F>(flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<(), String> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            requested: AtomicU64::new(0),
            wanted: Mutex::new(false),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let (sender, progress) = watch::channel(Progress {
            completed: 0,
            ok: true,
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("otpd-flusher".into())
            .spawn(move || run(&thread_shared, &sender, flush))?;
        Ok(GroupFlusher { shared, progress })
    }

    /// A future that resolves once a flush that began after this call has finished.
    pub fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let ticket = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut wanted = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
            *wanted = true;
        }
        self.shared.wake.notify_one();
        let mut progress = self.progress.clone();
        async move {
            let reached = progress
                .wait_for(|p| p.completed >= ticket)
                .await
                .map(|p| *p)
                .map_err(|_| StoreError::Flush("the flusher stopped".into()))?;
            if reached.ok {
                Ok(())
            } else {
                Err(StoreError::Flush("fsync failed; see the log".into()))
            }
        }
    }
}

impl Drop for GroupFlusher {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let mut wanted = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
        *wanted = true;
        drop(wanted);
        self.shared.wake.notify_one();
    }
}

fn run<F>(shared: &Shared, progress: &watch::Sender<Progress>, flush: F)
where
    F: Fn() -> Result<(), String>,
{
    loop {
        {
            let mut wanted = shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
            while !*wanted {
                wanted = shared.wake.wait(wanted).unwrap_or_else(|p| p.into_inner());
            }
            *wanted = false;
        }
        let target = shared.requested.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let result = flush();
        crate::telemetry::events::StoreFlushed {
            took: started.elapsed(),
        }
        .emit();
        if let Err(error) = &result {
            tracing::error!(%error, "Store flush failed.");
        }
        progress.send_replace(Progress {
            completed: target,
            ok: result.is_ok(),
        });
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_flushes() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let flusher = GroupFlusher::start(move || {
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
        let flusher = GroupFlusher::start(|| Err("disk gone".into())).unwrap();
        assert!(flusher.flush().await.is_err());
    }
}
