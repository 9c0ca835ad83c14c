//! The `Store` on sled 0.34: one tree, postcard-encoded records with a format byte,
//! CAS loops for atomic updates, group-committed flushes.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

use super::flusher::GroupFlusher;
use super::{keys, IssueWrite, MessageOwner, Store, StoreError};
use crate::domain::fraud::{Block, Prefix};
use crate::domain::{
    BlockEntry, DeliveryJob, DeliveryState, DestinationKey, DestinationState, IdempotencyKey,
    IdempotencyRecord, JobId, QuotaUsage, Status, TenantUsage, Timestamp, Verification,
    VerificationId,
};

/// First byte of every stored record, so a future format can be told apart.
const FORMAT_VERSION: u8 = 1;

pub struct SledStore {
    tree: sled::Db,
    flusher: GroupFlusher,
    /// How long finished verifications stay after expiry before they are swept.
    retention: Duration,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(
        dir: &Path,
        cache_capacity_bytes: u64,
        retention: Duration,
    ) -> Result<Self, StoreError> {
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
        Ok(SledStore {
            tree,
            flusher,
            retention,
        })
    }

    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key).map_err(io)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn write<T: Serialize>(&self, key: Vec<u8>, value: &T) -> Result<(), StoreError> {
        self.tree
            .insert(key, encode(value)?)
            .map(|_| ())
            .map_err(io)
    }

    /// Writes a record that the sweeper deletes after `purge_at`: its expiry-index entry
    /// first, so no record is ever left without one.
    fn write_expiring<T: Serialize>(
        &self,
        key: Vec<u8>,
        purge_at: Timestamp,
        value: &T,
    ) -> Result<(), StoreError> {
        self.tree
            .insert(keys::expiry(purge_at, &key), &[])
            .map_err(io)?;
        self.write(key, value)
    }

    fn remove(&self, key: Vec<u8>) -> Result<(), StoreError> {
        self.tree.remove(key).map(|_| ()).map_err(io)
    }

    fn verification_purge_at(&self, verification: &Verification) -> Timestamp {
        verification.expires_at.plus(self.retention)
    }

    /// When the record under `key` may go, or `None` if it is of no kind that expires.
    fn purge_at(&self, key: &[u8], bytes: &[u8]) -> Result<Option<Timestamp>, StoreError> {
        Ok(if key.starts_with(keys::VERIFICATION) {
            Some(self.verification_purge_at(&decode::<Verification>(bytes)?))
        } else if key.starts_with(keys::DESTINATION) {
            Some(decode::<DestinationState>(bytes)?.purge_at)
        } else if key.starts_with(keys::IDEMPOTENCY) {
            Some(decode::<IdempotencyRecord>(bytes)?.expires_at)
        } else if key.starts_with(keys::MESSAGE) {
            Some(decode::<MessageOwner>(bytes)?.purge_at)
        } else if key.starts_with(keys::FRAUD_BLOCK) {
            Some(decode::<Block>(bytes)?.until)
        } else if key.starts_with(keys::OUTBOX) {
            Some(
                decode::<DeliveryJob>(bytes)?
                    .expires_at
                    .plus(self.retention),
            )
        } else {
            None
        })
    }

    fn sweep_entry(&self, index_key: &[u8], now: Timestamp) -> Result<bool, StoreError> {
        let Some(primary) = keys::expiry_target(index_key) else {
            self.tree.remove(index_key).map_err(io)?;
            return Ok(false);
        };
        let mut removed = false;
        if let Some(bytes) = self.tree.get(primary).map_err(io)? {
            let due = self.purge_at(primary, &bytes)?.is_none_or(|at| at <= now);
            if due {
                // Only if nobody changed it meanwhile; a changed record has a newer index entry.
                removed = self
                    .tree
                    .compare_and_swap(primary, Some(bytes), None as Option<&[u8]>)
                    .map_err(io)?
                    .is_ok();
            }
        }
        self.tree.remove(index_key).map_err(io)?;
        Ok(removed)
    }
}

impl Store for SledStore {
    fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        self.read(&keys::verification(id))
    }

    fn update_verification(
        &self,
        id: &VerificationId,
        change: &mut dyn FnMut(&mut Verification) -> bool,
    ) -> Result<Option<Verification>, StoreError> {
        let key = keys::verification(id);
        loop {
            let Some(current) = self.tree.get(&key).map_err(io)? else {
                return Ok(None);
            };
            let mut record: Verification = decode(&current)?;
            if !change(&mut record) {
                return Ok(Some(record));
            }
            let swapped = self
                .tree
                .compare_and_swap(&key, Some(current), Some(encode(&record)?))
                .map_err(io)?;
            if swapped.is_ok() {
                return Ok(Some(record));
            }
        }
    }

    fn destination(&self, key: &DestinationKey) -> Result<Option<DestinationState>, StoreError> {
        self.read(&keys::destination(key))
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read(&keys::idempotency(key))
    }

    fn commit_issue(&self, write: &IssueWrite) -> Result<(), StoreError> {
        // Written one by one, in an order where every prefix is harmless, rather than as a
        // sled batch: a batch takes sled's global write lock and waits out every flush in
        // progress, which stalled the IssuanceActor. sled recovers a prefix of its writes, so:
        // - the expiry index entries go first (an entry for a missing record is skipped);
        // - the outbox job next (without its verification, recovery drops it as gone);
        // - then the verification, the destination state, the idempotency record.
        // A crash before the flush answers nothing to the caller, so a retry decides afresh.
        let verification_key = keys::verification(&write.verification.id);
        let destination_key = keys::destination(&write.destination_key);
        let outbox_key = keys::outbox(&write.job.job_id);
        let idempotency = write
            .idempotency
            .as_ref()
            .map(|(key, record)| (keys::idempotency(key), record));
        let mut expiry_entries = vec![
            keys::expiry(
                self.verification_purge_at(&write.verification),
                &verification_key,
            ),
            keys::expiry(write.destination.purge_at, &destination_key),
            keys::expiry(write.job.expires_at.plus(self.retention), &outbox_key),
        ];
        if let Some((key, record)) = &idempotency {
            expiry_entries.push(keys::expiry(record.expires_at, key));
        }
        for entry in expiry_entries {
            self.tree.insert(entry, &[]).map_err(io)?;
        }
        self.tree
            .insert(outbox_key, encode(&write.job)?)
            .map_err(io)?;
        self.tree
            .insert(verification_key, encode(&write.verification)?)
            .map_err(io)?;
        self.tree
            .insert(destination_key, encode(&write.destination)?)
            .map_err(io)?;
        if let Some((key, record)) = idempotency {
            self.tree.insert(key, encode(record)?).map_err(io)?;
        }
        Ok(())
    }

    fn outbox_page(
        &self,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let start = match after {
            Some(job) => {
                let mut key = keys::outbox(job);
                key.push(0);
                key
            }
            None => keys::OUTBOX.to_vec(),
        };
        self.tree
            .range(start..)
            .take_while(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(key, _)| key.starts_with(keys::OUTBOX))
            })
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry.map_err(io)?;
                decode(&bytes)
            })
            .collect()
    }

    fn finish_job(
        &self,
        job: &DeliveryJob,
        record_outcome: &dyn Fn(&mut Verification),
    ) -> Result<(), StoreError> {
        // The outcome first, then the outbox entry: a crash in between leaves a job whose
        // outcome is recorded, which recovery drops rather than sends again. (A compare-and-
        // swap and a removal instead of a sled transaction, which would stall every writer.)
        self.update_verification(&job.verification_id, &mut |record| {
            record_outcome(record);
            true
        })?;
        self.tree
            .remove(keys::outbox(&job.job_id))
            .map(|_| ())
            .map_err(io)
    }

    fn abandon_issue(
        &self,
        job: &DeliveryJob,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<(), StoreError> {
        if let Some(key) = idempotency {
            self.tree.remove(keys::idempotency(key)).map_err(io)?;
        }
        self.finish_job(job, &|verification| {
            if verification.send_seq == job.send_seq {
                verification.status = Status::Canceled;
                verification.delivery = DeliveryState::Failed;
            }
        })
    }

    fn index_message(&self, provider: &str, owner: &MessageOwner) -> Result<(), StoreError> {
        let key = keys::message(provider, &owner.provider_message_id);
        self.write_expiring(key, owner.purge_at, owner)
    }

    fn message_owner(
        &self,
        provider: &str,
        provider_message_id: &str,
    ) -> Result<Option<MessageOwner>, StoreError> {
        self.read(&keys::message(provider, provider_message_id))
    }

    fn quota(&self, provider: &str) -> Result<Option<QuotaUsage>, StoreError> {
        self.read(&keys::quota(provider))
    }

    fn save_quota(&self, provider: &str, usage: &QuotaUsage) -> Result<(), StoreError> {
        self.write(keys::quota(provider), usage)
    }

    fn tenant_usage(&self, tenant: &str) -> Result<Option<TenantUsage>, StoreError> {
        self.read(&keys::tenant_usage(tenant))
    }

    fn save_tenant_usage(&self, tenant: &str, usage: &TenantUsage) -> Result<(), StoreError> {
        self.write(keys::tenant_usage(tenant), usage)
    }

    fn save_fraud_block(&self, block: &Block) -> Result<(), StoreError> {
        self.write_expiring(keys::fraud_block(&block.prefix), block.until, block)
    }

    fn blocklist(&self) -> Result<Vec<BlockEntry>, StoreError> {
        self.tree
            .scan_prefix(keys::BLOCKLIST)
            .values()
            .map(|bytes| decode(&bytes.map_err(io)?))
            .collect()
    }

    fn save_block_entry(&self, entry: &BlockEntry) -> Result<(), StoreError> {
        self.write(keys::block_entry(&entry.entry), entry)
    }

    fn remove_block_entry(&self, entry: &str) -> Result<(), StoreError> {
        self.remove(keys::block_entry(entry))
    }

    fn remove_fraud_block(&self, prefix: &Prefix) -> Result<(), StoreError> {
        self.remove(keys::fraud_block(prefix))
    }

    fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.tree
            .scan_prefix(keys::FRAUD_BLOCK)
            .map(|entry| {
                let (_, bytes) = entry.map_err(io)?;
                decode(&bytes)
            })
            .collect()
    }

    fn sweep(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let due: Vec<sled::IVec> = self
            .tree
            .range(keys::EXPIRY.to_vec()..keys::expiry_end(now))
            .keys()
            .take(limit)
            .collect::<Result<_, _>>()
            .map_err(io)?;
        let mut removed = 0;
        for index_key in due {
            if self.sweep_entry(&index_key, now)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.flush().boxed()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.tree.get(b"health").map(|_| ()).map_err(io)
    }
}

fn io(error: sled::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, vec![FORMAT_VERSION])
        .map_err(|error| StoreError::Corrupt(format!("could not encode a record: {error}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => postcard::from_bytes(body)
            .map_err(|error| StoreError::Corrupt(format!("undecodable record: {error}"))),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "record format {version} is not known to this otpd"
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}
