//! A memory engine for tests that watches what is done to it: it keeps, in order, every
//! write that reached it (what an engine's journal holds, of which a process killed at any
//! moment leaves a prefix), counts the reads made of it and the steps its writes came in,
//! and can be told it was opened again.

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::kv::{Entry, KeyRange, KvEngine, Put};
use super::memory::MemoryEngine;
use super::StoreError;
use crate::sync::LockUnpoisoned;

/// A key and what was written to it (`None`: removed).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
pub struct WatchedEngine {
    inner: MemoryEngine,
    writes: Mutex<Vec<Write>>,
    /// Reads made of it.
    pub reads: AtomicU64,
    /// The steps it was written in: each write, swap and batch of writes (`write_all`).
    pub steps: AtomicU64,
    /// What it answers to [`KvEngine::reopens`].
    pub reopens: AtomicU64,
}

impl WatchedEngine {
    /// Every write that reached it, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock_unpoisoned().clone()
    }

    fn stepped(&self) {
        self.steps.fetch_add(1, Ordering::AcqRel);
    }

    fn wrote(&self, key: &[u8], value: Option<&[u8]>) {
        self.writes
            .lock_unpoisoned()
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
    }
}

impl KvEngine for WatchedEngine {
    type Value = <MemoryEngine as KvEngine>::Value;

    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, StoreError> {
        self.reads.fetch_add(1, Ordering::AcqRel);
        self.inner.get(key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.stepped();
        self.wrote(key, Some(value));
        self.inner.insert(key, value)
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.stepped();
        self.wrote(key, None);
        self.inner.remove(key)
    }

    fn write_all(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        self.stepped();
        for put in puts {
            self.wrote(put.key, put.value);
        }
        self.inner.write_all(puts)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.stepped();
        let swapped = self.inner.compare_and_swap(key, expected, new)?;
        if swapped {
            self.wrote(key, new);
        }
        Ok(swapped)
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<Self::Value>>, StoreError> {
        self.inner.scan(range, limit)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.flush()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.inner.check_health()
    }

    fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Acquire)
    }
}
