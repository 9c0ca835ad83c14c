//! sled 0.34 behind the engine seam: one tree, tuned for throughput, written key by key
//! (never a batch or transaction, which take sled's global write lock and wait out every
//! flush in progress), with group-committed flushes on a thread of their own, and opened
//! again in place when a failed write (a full disk) has made sled give up.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use super::flusher::GroupFlusher;
use super::kv::{Entry, KeyRange, KvEngine};
use super::records::RecordStore;
use super::StoreError;

pub struct SledEngine {
    database: Arc<Database>,
    flusher: GroupFlusher,
}

/// sled's handle, opened again in place once sled has given up after a failed write: after
/// one I/O error (a full disk) sled refuses every operation for good, so the store would
/// answer 503 long after space came back.
struct Database {
    dir: PathBuf,
    cache_capacity_bytes: u64,
    /// `None` while it is being opened again.
    current: RwLock<Option<sled::Db>>,
    /// Why the store last failed, until a flush or a reopen shows it works again.
    failing: Mutex<Option<String>>,
    reopens: AtomicU64,
}

/// How often a failing store is looked at, and opened again if sled has given up.
const REPAIR_EVERY: Duration = Duration::from_secs(1);

impl SledEngine {
    /// Opens (or creates) the engine in `dir`, caching up to `cache_capacity_bytes`.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        let database = Arc::new(Database {
            dir: dir.to_path_buf(),
            cache_capacity_bytes,
            current: RwLock::new(Some(open_sled(dir, cache_capacity_bytes)?)),
            failing: Mutex::new(None),
            reopens: AtomicU64::new(0),
        });
        let flushed = Arc::downgrade(&database);
        let flusher = GroupFlusher::start(move || match flushed.upgrade() {
            Some(database) => database
                .with(|db| db.flush().map(|_| ()))
                .map_err(|error| error.to_string()),
            None => Ok(()),
        })
        .map_err(|error| StoreError::Io(format!("could not start the flusher thread: {error}")))?;
        let repaired = Arc::downgrade(&database);
        std::thread::Builder::new()
            .name("otpd-store-repair".into())
            .spawn(move || repair_while_open(&repaired))
            .map_err(|error| {
                StoreError::Io(format!(
                    "could not start the store's repair thread: {error}"
                ))
            })?;
        Ok(SledEngine { database, flusher })
    }
}

fn open_sled(dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|error| {
            let text = error.to_string();
            let hint = if text.contains("lock") {
                "is another otpd using this directory?"
            } else {
                "its files may be damaged: restore the directory from a backup, or move it aside to start empty"
            };
            StoreError::Io(format!(
                "could not open the store in {}: {text} ({hint})",
                dir.display()
            ))
        })
}

fn repair_while_open(database: &Weak<Database>) {
    loop {
        std::thread::sleep(REPAIR_EVERY);
        match database.upgrade() {
            Some(database) => database.repair(),
            None => return,
        }
    }
}

impl Database {
    /// Why the store is failing, if it is.
    fn failing(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `operation` on sled; an I/O error marks the store failing.
    fn with<T>(
        &self,
        operation: impl FnOnce(&sled::Db) -> sled::Result<T>,
    ) -> Result<T, StoreError> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = current.as_ref() else {
            return Err(StoreError::Io(
                "the store is being opened again after a failed write".into(),
            ));
        };
        operation(db).map_err(|error| {
            if matches!(error, sled::Error::Io(_)) {
                *self.failing() = Some(error.to_string());
            }
            io(error)
        })
    }

    /// If the store failed, sees whether sled takes writes again, and opens it again from
    /// disk if it has given up. What was not flushed before the failure was never
    /// confirmed to anyone, and is gone with the old handle.
    fn repair(&self) {
        let Some(reason) = self.failing().clone() else {
            return;
        };
        if self.with(|db| db.flush()).is_ok() {
            self.failing().take();
            return;
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        // sled lets go of its files once the last handle is gone.
        drop(current.take());
        match open_sled(&self.dir, self.cache_capacity_bytes) {
            Ok(db) => {
                *current = Some(db);
                self.failing().take();
                self.reopens.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(dir = %self.dir.display(), %reason, "The store was opened again after a failed write; it takes writes again.");
            }
            Err(error) => {
                tracing::warn!(%error, %reason, "The store still cannot be opened again; trying again in a second.");
            }
        }
    }
}

impl KvEngine for SledEngine {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.database.with(|db| db.get(key))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.database.with(|db| db.insert(key, value).map(|_| ()))
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.database.with(|db| db.remove(key).map(|_| ()))
    }

    fn replace(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<sled::IVec>, StoreError> {
        self.database.with(|db| match value {
            Some(value) => db.insert(key, value),
            None => db.remove(key),
        })
    }

    fn write_all(&self, writes: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(*key, *value),
                None => batch.remove(*key),
            }
        }
        self.database.with(|db| db.apply_batch(batch))
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.database.with(|db| {
            db.compare_and_swap(key, expected, new)
                .map(|swapped| swapped.is_ok())
        })
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<sled::IVec>>, StoreError> {
        let Some(bounds) = range.bounds() else {
            return Ok(Vec::new());
        };
        self.database.with(|db| {
            let mut entries = Vec::new();
            for entry in db.range::<&[u8], _>(bounds) {
                if entries.len() == limit {
                    break;
                }
                let (key, value) = entry?;
                if !range.contains(&key) {
                    break;
                }
                entries.push((key, value));
            }
            Ok(entries)
        })
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.flush().boxed()
    }

    /// Fails while the store is failing (a write or flush failed and has not worked since),
    /// though reads may still answer.
    fn check_health(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.database.failing().clone() {
            return Err(StoreError::Io(reason));
        }
        self.database.with(|db| db.get(b"health").map(|_| ()))
    }

    fn reopens(&self) -> u64 {
        self.database.reopens.load(Ordering::Acquire)
    }
}

/// The store's records on sled: what otpd runs on.
pub type SledStore = RecordStore<SledEngine>;

impl RecordStore<SledEngine> {
    /// Opens (or creates) the store in `dir`; finished verifications are swept `retention`
    /// after expiry.
    pub fn open(
        dir: &Path,
        cache_capacity_bytes: u64,
        retention: Duration,
    ) -> Result<Self, StoreError> {
        Ok(RecordStore::new(
            SledEngine::open(dir, cache_capacity_bytes)?,
            retention,
        ))
    }
}

fn io(error: sled::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushed_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let engine = SledEngine::open(dir.path(), 1 << 20).unwrap();
            engine.insert(b"v/kept", b"1").unwrap();
            engine.insert(b"v/gone", b"2").unwrap();
            engine.remove(b"v/gone").unwrap();
            runtime.block_on(engine.flush()).unwrap();
        }
        // The flusher thread lets go of its handle on the tree just after the drop.
        let mut reopened = SledEngine::open(dir.path(), 1 << 20);
        for _ in 0..100 {
            if reopened.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            reopened = SledEngine::open(dir.path(), 1 << 20);
        }
        let engine = reopened.unwrap();
        assert_eq!(engine.get(b"v/kept").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(b"v/gone").unwrap(), None);
    }
}
