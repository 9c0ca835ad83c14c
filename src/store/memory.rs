//! An in-memory engine: a sorted map behind a lock, gone with the process. For tests, and
//! for state that another log makes durable.

use futures_util::future::{self, BoxFuture};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use super::kv::{Entry, KeyRange, KvEngine};
use super::records::RecordStore;
use super::StoreError;
use crate::sync::ReadWriteUnpoisoned;

/// Keys and values in a `BTreeMap`; a flush resolves at once, there being no disk, and is
/// counted (for tests of how often something flushes).
#[derive(Debug, Default)]
pub struct MemoryEngine {
    /// A writer that panicked left the map whole (every change is one map call), so a
    /// poisoned lock is used as it is.
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    flushes: AtomicU64,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many flushes were asked for.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }
}

impl KvEngine for MemoryEngine {
    type Value = Vec<u8>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.read_unpoisoned().get(key).cloned())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.map
            .write_unpoisoned()
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.map.write_unpoisoned().remove(key);
        Ok(())
    }

    fn replace(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        let mut map = self.map.write_unpoisoned();
        Ok(match value {
            Some(value) => map.insert(key.to_vec(), value.to_vec()),
            None => map.remove(key),
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let mut map = self.map.write_unpoisoned();
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => map.insert(key.to_vec(), value.to_vec()),
            None => map.remove(key),
        };
        Ok(true)
    }

    fn scan(&self, range: KeyRange<'_>, limit: usize) -> Result<Vec<Entry<Vec<u8>>>, StoreError> {
        let Some(bounds) = range.bounds() else {
            return Ok(Vec::new());
        };
        Ok(self
            .map
            .read_unpoisoned()
            .range::<[u8], _>(bounds)
            .take_while(|(key, _)| range.contains(key))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flushes.fetch_add(1, Ordering::AcqRel);
        Box::pin(future::ready(Ok(())))
    }

    fn check_health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The store's records kept in memory only.
pub type MemoryStore = RecordStore<MemoryEngine>;

impl RecordStore<MemoryEngine> {
    /// An empty store in memory; finished verifications are swept `retention` after expiry.
    pub fn in_memory(retention: Duration) -> Self {
        RecordStore::new(MemoryEngine::new(), retention)
    }
}
