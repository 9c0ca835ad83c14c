//! A store's handle, opened again in place once a failed write (a full disk) has left the
//! engine unable to go on: sled refuses every operation for good after one I/O error, and
//! so does fjall once writing out a table failed. Without this the store would answer 503
//! long after space came back.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use super::engine::{ensure_made_by, EngineKind};
use super::flusher::GroupFlusher;
use super::StoreError;
use crate::sync::{LockUnpoisoned, ReadWriteUnpoisoned};

/// An engine's open handle on its directory.
pub(super) trait Handle: Send + Sync + Sized + 'static {
    type Options: Copy + Send + Sync + 'static;
    type Error: Display;
    /// The engine the handle is of: a directory another engine made is refused before
    /// `open` is called.
    const ENGINE: EngineKind;

    /// Opens the handle in `dir`, which is new or this engine's.
    fn open(dir: &Path, options: Self::Options) -> Result<Self, StoreError>;

    /// Whether `error` leaves the store failing until it works again (an I/O error), not
    /// only this operation.
    fn fails_the_store(error: &Self::Error) -> bool;

    /// `error` as a person reads it.
    fn describe(error: &Self::Error) -> String;

    /// Makes every write made so far durable (an fsync).
    fn make_durable(&self) -> Result<(), Self::Error>;

    /// Whether the handle, after a failure, takes writes again as it is (a flush works);
    /// `false` has it opened again.
    fn works_again(&self) -> bool;
}

pub(super) struct Reopening<H: Handle> {
    dir: PathBuf,
    options: H::Options,
    /// `None` while it is being opened again.
    current: RwLock<Option<H>>,
    /// Why the store last failed, until a flush or a reopen shows it works again.
    failing: Mutex<Option<String>>,
    reopens: AtomicU64,
}

/// How often a failing store is looked at, and opened again if it must be.
const REPAIR_EVERY: Duration = Duration::from_secs(1);

impl<H: Handle> Reopening<H> {
    /// Opens the handle in `dir` and starts the thread that repairs it while it is open.
    pub fn open(dir: &Path, options: H::Options) -> Result<Arc<Self>, StoreError> {
        let reopening = Arc::new(Reopening {
            dir: dir.to_path_buf(),
            options,
            current: RwLock::new(Some(open_handle(dir, options)?)),
            failing: Mutex::new(None),
            reopens: AtomicU64::new(0),
        });
        every_while_open(&reopening, "repair", REPAIR_EVERY, Reopening::repair)?;
        Ok(reopening)
    }

    /// Starts a thread (`otpd-store-<name>`) that runs `upkeep` on the handle every `every`
    /// for as long as the store is open; not while the handle is being opened again, and
    /// the handle is not opened again while it runs. What `upkeep` meets marks nothing
    /// failing: it reports its own errors.
    pub fn start_upkeep(
        self: &Arc<Self>,
        name: &str,
        every: Duration,
        mut upkeep: impl FnMut(&H) + Send + 'static,
    ) -> Result<(), StoreError> {
        every_while_open(self, name, every, move |store| {
            store.maintain(&mut upkeep);
        })
    }

    /// Starts a thread (`otpd-store-<name>`) that runs `write` on the handle every `every`
    /// for as long as the store is open; an error that fails the store marks it failing, as
    /// a write's would.
    pub fn start_periodic_write(
        self: &Arc<Self>,
        name: &str,
        every: Duration,
        write: impl Fn(&H) -> Result<(), H::Error> + Send + 'static,
    ) -> Result<(), StoreError> {
        every_while_open(self, name, every, move |store| {
            // A failure is kept as the store's own (`failing`), where it is reported.
            let _ = store.with(&write);
        })
    }

    /// Starts the thread that group-commits the handle's flushes, whichever handle is
    /// current when each runs.
    pub fn start_flusher(self: &Arc<Self>) -> Result<GroupFlusher, StoreError> {
        let flushed = Arc::downgrade(self);
        GroupFlusher::start(H::ENGINE.name(), move || match flushed.upgrade() {
            Some(reopening) => reopening
                .with(H::make_durable)
                .map_err(|error| error.to_string()),
            None => Ok(()),
        })
        .map_err(|error| StoreError::Io(format!("could not start the flusher thread: {error}")))
    }

    /// Why the store is failing, if it is.
    /// How many times the handle was opened again.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Acquire)
    }

    /// Fails while the store is failing (a write or flush failed and it has not worked, or
    /// been opened again, since), though reads may still answer; then runs `read`.
    pub fn health(&self, read: impl FnOnce(&H) -> Result<(), H::Error>) -> Result<(), StoreError> {
        if let Some(reason) = self.failing.lock_unpoisoned().clone() {
            return Err(StoreError::Io(reason));
        }
        self.with(read)
    }

    /// Runs `operation` on the handle; an error that fails the store marks it failing.
    pub fn with<T>(
        &self,
        operation: impl FnOnce(&H) -> Result<T, H::Error>,
    ) -> Result<T, StoreError> {
        let current = self.current.read_unpoisoned();
        let Some(handle) = current.as_ref() else {
            return Err(StoreError::Io(
                "the store is being opened again after a failed write".into(),
            ));
        };
        operation(handle).map_err(|error| {
            let said = H::describe(&error);
            if H::fails_the_store(&error) {
                // The first failure says why; the refusals that follow it only repeat it.
                self.failing
                    .lock_unpoisoned()
                    .get_or_insert_with(|| said.clone());
            }
            StoreError::Io(said)
        })
    }

    /// Runs `work` on the handle, which is not opened again while it runs; `None` while it
    /// is being opened again. Unlike [`Reopening::with`], what `work` meets marks nothing
    /// failing: the engine's own upkeep reports its errors itself.
    pub fn maintain<T>(&self, work: impl FnOnce(&H) -> T) -> Option<T> {
        let current = self.current.read_unpoisoned();
        current.as_ref().map(work)
    }

    /// If the store failed, sees whether it takes writes again, and opens it again from
    /// disk if not. What was not flushed before the failure was never confirmed to anyone,
    /// and is gone with the old handle.
    fn repair(&self) {
        let Some(reason) = self.failing.lock_unpoisoned().clone() else {
            return;
        };
        let works = self
            .current
            .read_unpoisoned()
            .as_ref()
            .is_some_and(H::works_again);
        if works {
            self.failing.lock_unpoisoned().take();
            return;
        }
        let mut current = self.current.write_unpoisoned();
        // An engine lets go of its files once its handle is gone.
        drop(current.take());
        // A panic in the engine while it reads its files back is one more failed try, not
        // the end of this thread (the store would then wait for good).
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open_handle::<H>(&self.dir, self.options)
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Io(
                "the engine panicked opening its files".into(),
            ))
        });
        match opened {
            Ok(handle) => {
                *current = Some(handle);
                self.failing.lock_unpoisoned().take();
                self.reopens.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(dir = %self.dir.display(), %reason, "The store was opened again after a failed write; it takes writes again.");
            }
            Err(error) => {
                tracing::warn!(%error, %reason, "The store still cannot be opened again; trying again in a second.");
            }
        }
    }
}

/// Opens a handle of engine `H` in `dir`, refusing a directory another engine made.
fn open_handle<H: Handle>(dir: &Path, options: H::Options) -> Result<H, StoreError> {
    ensure_made_by(dir, H::ENGINE)?;
    H::open(dir, options)
}

/// Starts a thread (`otpd-store-<name>`) that runs `work` on `reopening` every `every`, and
/// ends once the store is dropped.
fn every_while_open<H: Handle>(
    reopening: &Arc<Reopening<H>>,
    name: &str,
    every: Duration,
    mut work: impl FnMut(&Reopening<H>) + Send + 'static,
) -> Result<(), StoreError> {
    let store: Weak<Reopening<H>> = Arc::downgrade(reopening);
    std::thread::Builder::new()
        .name(format!("otpd-store-{name}"))
        .spawn(move || loop {
            std::thread::sleep(every);
            match store.upgrade() {
                Some(store) => work(&store),
                None => return,
            }
        })
        .map(drop)
        .map_err(|error| {
            StoreError::Io(format!(
                "could not start the store's {name} thread: {error}"
            ))
        })
}

/// What the engines' own tests share: opening a directory again, and the case that a flush
/// makes writes survive it.
#[cfg(test)]
pub(super) mod testing {
    use std::time::Duration;

    use super::super::kv::KvEngine;
    use super::super::StoreError;

    /// Opens an engine with `open`, waiting for a handle of the run before to let go of the
    /// directory (the flusher thread drops its handle just after the engine).
    pub fn open_again<E>(open: impl Fn() -> Result<E, StoreError>) -> Result<E, StoreError> {
        let mut opened = open();
        for _ in 0..100 {
            match &opened {
                Err(StoreError::Io(text)) if text.contains("another otpd") => {
                    std::thread::sleep(Duration::from_millis(20));
                    opened = open();
                }
                _ => break,
            }
        }
        opened
    }

    /// Writes, removes and flushes on an engine from `open`, opens it again, and finds what
    /// was flushed.
    pub fn flushed_writes_survive_a_reopen<E: KvEngine>(open: impl Fn() -> Result<E, StoreError>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let engine = open().unwrap();
            engine.insert(b"v/kept", b"1").unwrap();
            engine.insert(b"v/gone", b"2").unwrap();
            engine.remove(b"v/gone").unwrap();
            runtime.block_on(engine.flush()).unwrap();
        }
        let engine = open_again(open).unwrap();
        assert_eq!(
            engine.get(b"v/kept").unwrap().as_ref().map(AsRef::as_ref),
            Some(&b"1"[..])
        );
        assert!(engine.get(b"v/gone").unwrap().is_none());
    }
}
