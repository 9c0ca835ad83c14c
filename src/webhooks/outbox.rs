//! The webhooks waiting to be sent, durably: a sled database of their own in
//! `<store dir>/webhooks` (outside the store and its changelog: the node that recorded an
//! event sends it). Events to send are keyed by a sequence number, so they come out in the
//! order they went in; expiry probes, one per live verification, wait in a tree of their
//! own keyed by when they are due, so the events never queue behind them and a pass reads
//! only the probes that are due.

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
    /// Events to send, by sequence number.
    deliveries: sled::Tree,
    /// Expiry probes, by due time and sequence number.
    probes: sled::Tree,
    next: AtomicU64,
}

/// Where a probe waits: its due time, then its sequence number.
pub type ProbeKey = [u8; 16];

impl Outbox {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|error| {
                StoreError::Io(format!("the webhook outbox {}: {error}", dir.display()))
            })?;
        let deliveries = db.open_tree("deliveries").map_err(io)?;
        let probes = db.open_tree("probes").map_err(io)?;
        let last_delivery = deliveries
            .last()
            .map_err(io)?
            .map(|(key, _)| sequence(&key));
        let last_probe = probes
            .iter()
            .keys()
            .filter_map(Result::ok)
            .map(|key| sequence(&key[8..]))
            .max();
        let next = last_delivery.max(last_probe).unwrap_or(0) + 1;
        Ok(Outbox {
            db,
            deliveries,
            probes,
            next: AtomicU64::new(next),
        })
    }

    /// Keeps `entries`, in order, and resolves once they are on disk.
    pub async fn push(&self, entries: &[Entry]) -> Result<(), StoreError> {
        for entry in entries {
            let seq = self.next.fetch_add(1, Ordering::SeqCst).to_be_bytes();
            match entry.kind {
                Kind::Deliver { .. } => self.deliveries.insert(seq, encode(entry)),
                Kind::ExpiryProbe { .. } => {
                    let mut key: ProbeKey = [0; 16];
                    key[..8].copy_from_slice(&entry.next_at.0.to_be_bytes());
                    key[8..].copy_from_slice(&seq);
                    self.probes.insert(key, encode(entry))
                }
            }
            .map_err(io)?;
        }
        self.flush().await
    }

    /// Up to `limit` events to send, oldest first, each with its key.
    pub fn oldest(&self, limit: usize) -> Result<Vec<(u64, Entry)>, StoreError> {
        decode_all(self.deliveries.iter().take(limit), sequence)
    }

    /// Up to `limit` probes due at `now`, the earliest first.
    pub fn due_probes(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(ProbeKey, Entry)>, StoreError> {
        let until = now.0.saturating_add(1).to_be_bytes();
        decode_all(self.probes.range(..until).take(limit), |key| {
            key.try_into().unwrap_or([0; 16])
        })
    }

    /// Writes event `entry` again under `key` (its attempts and next time changed).
    pub fn replace(&self, key: u64, entry: &Entry) -> Result<(), StoreError> {
        self.deliveries
            .insert(key.to_be_bytes(), encode(entry))
            .map_err(io)?;
        Ok(())
    }

    pub fn remove(&self, key: u64) -> Result<(), StoreError> {
        self.deliveries.remove(key.to_be_bytes()).map_err(io)?;
        Ok(())
    }

    pub fn remove_probe(&self, key: &ProbeKey) -> Result<(), StoreError> {
        self.probes.remove(key).map_err(io)?;
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(io)?;
        Ok(())
    }
}

/// The entries of `items`, each with its key as `key_of` reads it.
fn decode_all<K>(
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    key_of: impl Fn(&[u8]) -> K,
) -> Result<Vec<(K, Entry)>, StoreError> {
    items
        .map(|item| {
            let (key, value) = item.map_err(io)?;
            let entry = serde_json::from_slice(&value)
                .map_err(|error| StoreError::Corrupt(format!("a webhook outbox entry: {error}")))?;
            Ok((key_of(&key), entry))
        })
        .collect()
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
    async fn probes_wait_apart_and_come_out_only_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let probe = |due: u64| Entry {
            kind: Kind::ExpiryProbe {
                verification: VerificationId::generate(),
            },
            next_at: Timestamp(due),
            ..entry("p")
        };
        outbox
            .push(&[probe(500), entry("a"), probe(100)])
            .await
            .unwrap();
        let events: Vec<Entry> = outbox
            .oldest(10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            events,
            vec![entry("a")],
            "events do not queue behind probes"
        );
        assert!(outbox.due_probes(Timestamp(99), 10).unwrap().is_empty());
        let due = outbox.due_probes(Timestamp(100), 10).unwrap();
        assert_eq!(
            due.iter().map(|(_, e)| e.next_at).collect::<Vec<_>>(),
            [Timestamp(100)]
        );
        outbox.remove_probe(&due[0].0).unwrap();
        assert_eq!(outbox.due_probes(Timestamp(1_000), 10).unwrap().len(), 1);
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
