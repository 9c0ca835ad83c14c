//! The webhooks waiting to be sent, durably: a sled database of their own in
//! `<store dir>/webhooks` (outside the store and its changelog: the node that recorded an
//! event sends it), keyed by a sequence number, so they come out in the order they went in.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::{Timestamp, VerificationId};
use crate::store::StoreError;

/// sled's page cache for the outbox: it holds a backlog, not a working set.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// One waiting webhook, or a probe that looks at a verification when its code expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub tenant: String,
    pub kind: Kind,
    pub created_at: Timestamp,
    /// Sends tried so far.
    pub attempts: u32,
    /// Not before.
    pub next_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// An event to send: its id and its body, signed as it is.
    Deliver { id: String, body: String },
    /// At `next_at`, tell `verification.expired` if the verification is still pending.
    ExpiryProbe { verification: VerificationId },
}

pub struct Outbox {
    db: sled::Db,
    next: AtomicU64,
}

impl Outbox {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|error| {
                StoreError::Io(format!("the webhook outbox {}: {error}", dir.display()))
            })?;
        let next = match db.last().map_err(io)? {
            Some((key, _)) => sequence(&key) + 1,
            None => 1,
        };
        Ok(Outbox {
            db,
            next: AtomicU64::new(next),
        })
    }

    /// Keeps `entries`, in order, and resolves once they are on disk.
    pub async fn push(&self, entries: &[Entry]) -> Result<(), StoreError> {
        for entry in entries {
            let key = self.next.fetch_add(1, Ordering::SeqCst).to_be_bytes();
            self.db.insert(key, encode(entry)).map_err(io)?;
        }
        self.db.flush_async().await.map_err(io)?;
        Ok(())
    }

    /// Up to `limit` entries, oldest first, each with its key.
    pub fn oldest(&self, limit: usize) -> Result<Vec<(u64, Entry)>, StoreError> {
        self.db
            .iter()
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(io)?;
                let entry = serde_json::from_slice(&value).map_err(|error| {
                    StoreError::Corrupt(format!("a webhook outbox entry: {error}"))
                })?;
                Ok((sequence(&key), entry))
            })
            .collect()
    }

    /// Writes `entry` again under `key` (its attempts and next time changed).
    pub fn replace(&self, key: u64, entry: &Entry) -> Result<(), StoreError> {
        self.db
            .insert(key.to_be_bytes(), encode(entry))
            .map_err(io)?;
        Ok(())
    }

    pub fn remove(&self, key: u64) -> Result<(), StoreError> {
        self.db.remove(key.to_be_bytes()).map_err(io)?;
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(io)?;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.db.len()
    }

    pub fn is_empty(&self) -> bool {
        self.db.is_empty()
    }
}

fn encode(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(entry).expect("an outbox entry always encodes")
}

fn sequence(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn io(error: sled::Error) -> StoreError {
    StoreError::Io(format!("the webhook outbox: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            tenant: "acme".into(),
            kind: Kind::Deliver {
                id: id.into(),
                body: "{}".into(),
            },
            created_at: Timestamp(1),
            attempts: 0,
            next_at: Timestamp(1),
        }
    }

    #[tokio::test]
    async fn entries_come_out_in_order_and_outlive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            outbox.push(&[entry("a"), entry("b")]).await.unwrap();
            let oldest = outbox.oldest(10).unwrap();
            outbox.remove(oldest[0].0).unwrap();
            outbox.flush().await.unwrap();
        }
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.push(&[entry("c")]).await.unwrap();
        let ids: Vec<Entry> = outbox
            .oldest(10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(ids, vec![entry("b"), entry("c")]);
    }
}
