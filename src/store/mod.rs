//! Durable state behind one `Store` trait: verifications, destination history, idempotency
//! records, the delivery outbox, and the usage, blocklist and blocks of access, quota and
//! fraud. Records (`records`) over a small key-value seam (`kv`), with sled (`sled_engine`),
//! an LSM tree (`lsm_engine`) and an in-memory map (`memory`) as engines, and one
//! conformance suite they all pass.

#[cfg(test)]
mod conformance;
pub mod engine;
mod flusher;
pub mod identity;
mod keys;
pub mod kv;
mod lsm_compaction;
pub mod lsm_engine;
pub mod memory;
pub mod records;
mod reopening;
pub mod settings;
pub mod sled_engine;
#[cfg(test)]
pub mod watched;

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::fraud::{Block, Prefix};
use crate::domain::{
    BlockEntry, DeliveryJob, DestinationKey, DestinationState, IdempotencyKey, IdempotencyRecord,
    JobId, QuotaUsage, TenantUsage, Timestamp, Verification, VerificationId,
};

pub use engine::{engine_for, EngineKind};
pub use kv::{KeyRange, KvEngine};
pub use lsm_engine::{LsmEngine, LsmOptions};
pub use memory::{MemoryEngine, MemoryStore};
pub use records::RecordStore;
pub use settings::StoreSettings;
pub use sled_engine::{SledEngine, SledOptions, SledStore};

/// Counts the changes to the lists every node enforces (the blocklist, fraud blocks) that
/// reached this store from another node; whoever keeps a copy of them in memory reads them
/// again when the count moves.
#[derive(Debug, Default)]
pub struct ListsWatch(AtomicU64);

impl ListsWatch {
    /// Whether a write under `key` changes one of the lists.
    pub fn is_list_key(key: &[u8]) -> bool {
        key.starts_with(keys::BLOCKLIST) || key.starts_with(keys::FRAUD_BLOCK)
    }

    pub fn changed(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub fn generation(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StoreError {
    #[error("the store failed: {0}")]
    Io(String),
    #[error("a stored record could not be read: {0}")]
    Corrupt(String),
    #[error("the store could not make the change durable: {0}")]
    Flush(String),
}

impl StoreError {
    /// Whether the same write may succeed in a moment: a failed write or flush may (a full
    /// disk, a changelog out of reach); an unreadable record will not.
    pub fn may_pass(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Flush(_))
    }
}

/// The send a provider's message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageOwner {
    pub provider_message_id: String,
    pub verification_id: VerificationId,
    pub send_seq: u32,
    /// When the index entry may be swept.
    pub purge_at: Timestamp,
}

/// A page of the outbox, and where the next one starts.
#[derive(Debug, Default)]
pub struct OutboxPage {
    pub jobs: Vec<DeliveryJob>,
    /// After the page's last job; `None` when the page is empty.
    pub next: Option<OutboxCursor>,
}

/// Where a page of the outbox ended: the key of its last job as stored (jobs queued before
/// ids carried their second are stored elsewhere than their id alone would say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCursor(Vec<u8>);

/// What one sweep came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Expiry-index entries visited (and gone): fewer than asked means none is left due.
    pub entries: usize,
    /// Records deleted (an entry may name several).
    pub removed: usize,
}

/// A workflow step due at `at` for verification `id`, as the store's schedule lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueStep {
    pub at: Timestamp,
    pub id: VerificationId,
}

/// Everything one issue (or resend) writes.
#[derive(Debug, Clone)]
pub struct IssueWrite {
    pub verification: Verification,
    pub destination_key: DestinationKey,
    pub destination: DestinationState,
    pub idempotency: Option<(IdempotencyKey, IdempotencyRecord)>,
    pub job: DeliveryJob,
    /// For a resend (a workflow's step too): the verification as it was when the send was
    /// decided. The write is refused, and nothing sent, if a check or a cancel changed it
    /// since.
    pub decided_on: Option<Verification>,
}

/// The state otpd keeps. Writes are visible at once and durable after [`Store::flush`].
pub trait Store: Send + Sync + 'static {
    fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError>;

    /// Applies `change` to a verification atomically: concurrent changes are retried on the
    /// fresh record, so `change` may run more than once. It returns `false` to leave the
    /// record as it is. Returns the record as it stands afterwards, `None` if there is none.
    fn update_verification(
        &self,
        id: &VerificationId,
        change: &mut dyn FnMut(&mut Verification) -> bool,
    ) -> Result<Option<Verification>, StoreError>;

    fn destination(&self, key: &DestinationKey) -> Result<Option<DestinationState>, StoreError>;

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Writes a verification, its destination's state, its idempotency record and its
    /// delivery job, in an order where a crash part-way leaves nothing that acts.
    fn commit_issue(&self, write: &IssueWrite) -> Result<(), StoreError>;

    /// The outbox job `id`, while its delivery has not finished.
    fn outbox_job(&self, id: &JobId) -> Result<Option<DeliveryJob>, StoreError>;

    /// Up to `limit` outbox jobs in the order their verifications were made, starting where
    /// the page before ended (`after`).
    fn outbox_page(
        &self,
        after: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError>;

    /// Records a job's outcome on its verification, then removes the job from the outbox.
    fn finish_job(
        &self,
        job: &DeliveryJob,
        record_outcome: &dyn Fn(&mut Verification),
    ) -> Result<(), StoreError>;

    /// Undoes an issue whose job could not be handed on: the job leaves the outbox, the
    /// verification is canceled (if this job is still its current send), and the idempotency
    /// record is forgotten so a retry is decided afresh.
    fn abandon_issue(
        &self,
        job: &DeliveryJob,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<(), StoreError>;

    /// Remembers which send a provider's message id belongs to, for its delivery receipt.
    fn index_message(&self, provider: &str, message: &MessageOwner) -> Result<(), StoreError>;

    /// The send a provider's message id belongs to.
    fn message_owner(
        &self,
        provider: &str,
        provider_message_id: &str,
    ) -> Result<Option<MessageOwner>, StoreError>;

    /// A provider's quota usage as last saved.
    fn quota(&self, provider: &str) -> Result<Option<QuotaUsage>, StoreError>;

    /// Saves a provider's quota usage (durable with the next flush).
    fn save_quota(&self, provider: &str, usage: &QuotaUsage) -> Result<(), StoreError>;

    /// A tenant's usage against its caps, as last saved.
    fn tenant_usage(&self, tenant: &str) -> Result<Option<TenantUsage>, StoreError>;

    /// Saves a tenant's usage (durable with the next flush).
    fn save_tenant_usage(&self, tenant: &str, usage: &TenantUsage) -> Result<(), StoreError>;

    /// Every blocklist entry.
    fn blocklist(&self) -> Result<Vec<BlockEntry>, StoreError>;

    /// Adds or replaces a blocklist entry (durable with the next flush).
    fn save_block_entry(&self, entry: &BlockEntry) -> Result<(), StoreError>;

    /// Removes a blocklist entry (durable with the next flush).
    fn remove_block_entry(&self, entry: &str) -> Result<(), StoreError>;

    /// Saves a fraud block (durable with the next flush); it is swept once it has ended.
    fn save_fraud_block(&self, block: &Block) -> Result<(), StoreError>;

    /// Deletes a saved fraud block (durable with the next flush).
    fn remove_fraud_block(&self, prefix: &Prefix) -> Result<(), StoreError>;

    /// Every saved fraud block, ended ones included until they are swept.
    fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError>;

    /// Visits up to `limit` expiry-index entries whose time has passed and deletes the
    /// records they name that are due.
    fn sweep(&self, now: Timestamp, limit: usize) -> Result<Swept, StoreError>;

    /// Up to `limit` workflow steps due at or before `now`, earliest first. The schedule lists
    /// each time a verification's `workflow.next_at` was written; an entry whose verification
    /// has moved on since is still listed until it is forgotten.
    fn due_steps(&self, now: Timestamp, limit: usize) -> Result<Vec<DueStep>, StoreError>;

    /// Takes `step` off the schedule (durable with the next flush).
    fn forget_step(&self, step: &DueStep) -> Result<(), StoreError>;

    /// Resolves once every write made before the call is on disk. Concurrent calls share
    /// one fsync.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// [`flush`](Store::flush), for writes nobody is waiting on to answer (a send's outcome,
    /// a provider's receipt): it may be held back a little, so that they are made durable
    /// along with the next writes that are.
    fn flush_unhurried(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flush()
    }

    /// Whether the store answers reads.
    fn check_health(&self) -> Result<(), StoreError>;
}

/// `decided` as an answer once `flushed` resolves: what an actor that decides and writes
/// inside itself answers, so nothing is confirmed before it is on disk.
pub fn when_durable<T, E>(
    decided: Result<T, E>,
    flushed: BoxFuture<'static, Result<(), StoreError>>,
) -> BoxFuture<'static, Result<T, E>>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    Box::pin(async move {
        let answer = decided?;
        flushed.await?;
        Ok(answer)
    })
}
