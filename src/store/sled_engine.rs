//! sled 0.34 behind the engine seam: one tree, tuned for throughput, written key by key
//! (never a batch or transaction, which take sled's global write lock and wait out every
//! flush in progress), with group-committed flushes on a thread of their own.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::path::Path;
use std::time::Duration;

use super::flusher::GroupFlusher;
use super::kv::{Entry, KeyRange, KvEngine};
use super::records::RecordStore;
use super::StoreError;

pub struct SledEngine {
    tree: sled::Db,
    flusher: GroupFlusher,
}

impl SledEngine {
    /// Opens (or creates) the engine in `dir`, caching up to `cache_capacity_bytes`.
    pub fn open(dir: &Path, cache_capacity_bytes: u64) -> Result<Self, StoreError> {
        let tree = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|error| {
                StoreError::Io(format!(
                    "could not open the store in {}: {error} (is another otpd using this directory?)",
                    dir.display()
                ))
            })?;
        let flushed = tree.clone();
        let flusher = GroupFlusher::start(move || {
            flushed
                .flush()
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
        .map_err(|error| StoreError::Io(format!("could not start the flusher thread: {error}")))?;
        Ok(SledEngine { tree, flusher })
    }
}

impl KvEngine for SledEngine {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.tree.get(key).map_err(io)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value).map(|_| ()).map_err(io)
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key).map(|_| ()).map_err(io)
    }

    fn replace(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<sled::IVec>, StoreError> {
        match value {
            Some(value) => self.tree.insert(key, value),
            None => self.tree.remove(key),
        }
        .map_err(io)
    }

    fn write_all(&self, writes: &[(&[u8], Option<&[u8]>)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.insert(*key, *value),
                None => batch.remove(*key),
            }
        }
        self.tree.apply_batch(batch).map_err(io)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.tree
            .compare_and_swap(key, expected, new)
            .map(|swapped| swapped.is_ok())
            .map_err(io)
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<sled::IVec>>, StoreError> {
        let Some(bounds) = range.bounds() else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for entry in self.tree.range::<&[u8], _>(bounds) {
            if entries.len() == limit {
                break;
            }
            let (key, value) = entry.map_err(io)?;
            if !range.contains(&key) {
                break;
            }
            entries.push((key, value));
        }
        Ok(entries)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.flush().boxed()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.tree.get(b"health").map(|_| ()).map_err(io)
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
