//! The store of a cluster node: each write to a destination's state is made inside its
//! slot, so the changelog engine below knows which partition (and so which changelog
//! stream) it belongs to.
//! The lists every node enforces (the blocklist, fraud blocks) are written in their own
//! slot, and the counters the cluster shares in theirs by the CounterBook; everything else
//! (uncapped providers' counts, sweeping) is this node's.

use futures_util::future::BoxFuture;

use super::changelog::in_slot;
use crate::domain::fraud::{Block, Prefix};
use crate::domain::slot::lists_slot;
use crate::domain::{
    BlockEntry, DeliveryJob, DestinationKey, DestinationState, IdempotencyKey, IdempotencyRecord,
    JobId, QuotaUsage, TenantUsage, Timestamp, Verification, VerificationId,
};
use crate::store::{
    DueStep, IssueWrite, MessageOwner, OutboxCursor, OutboxPage, Store, StoreError, Swept,
};

pub struct SlottedStore<S>(pub S);

impl<S: Store> Store for SlottedStore<S> {
    fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        self.0.verification(id)
    }

    fn update_verification(
        &self,
        id: &VerificationId,
        change: &mut dyn FnMut(&mut Verification) -> bool,
    ) -> Result<Option<Verification>, StoreError> {
        in_slot(id.slot(), || self.0.update_verification(id, change))
    }

    fn destination(&self, key: &DestinationKey) -> Result<Option<DestinationState>, StoreError> {
        self.0.destination(key)
    }

    fn idempotency(&self, key: &IdempotencyKey) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.0.idempotency(key)
    }

    fn commit_issue(&self, write: &IssueWrite) -> Result<(), StoreError> {
        in_slot(write.verification.id.slot(), || self.0.commit_issue(write))
    }

    fn outbox_job(&self, id: &JobId) -> Result<Option<DeliveryJob>, StoreError> {
        self.0.outbox_job(id)
    }

    fn outbox_page(
        &self,
        after: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError> {
        self.0.outbox_page(after, limit)
    }

    fn finish_job(
        &self,
        job: &DeliveryJob,
        record_outcome: &dyn Fn(&mut Verification),
    ) -> Result<(), StoreError> {
        in_slot(job.verification_id.slot(), || {
            self.0.finish_job(job, record_outcome)
        })
    }

    fn abandon_issue(
        &self,
        job: &DeliveryJob,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<(), StoreError> {
        in_slot(job.verification_id.slot(), || {
            self.0.abandon_issue(job, idempotency)
        })
    }

    fn index_message(&self, provider: &str, message: &MessageOwner) -> Result<(), StoreError> {
        in_slot(message.verification_id.slot(), || {
            self.0.index_message(provider, message)
        })
    }

    fn message_owner(
        &self,
        provider: &str,
        provider_message_id: &str,
    ) -> Result<Option<MessageOwner>, StoreError> {
        self.0.message_owner(provider, provider_message_id)
    }

    fn quota(&self, provider: &str) -> Result<Option<QuotaUsage>, StoreError> {
        self.0.quota(provider)
    }

    fn save_quota(&self, provider: &str, usage: &QuotaUsage) -> Result<(), StoreError> {
        self.0.save_quota(provider, usage)
    }

    fn tenant_usage(&self, tenant: &str) -> Result<Option<TenantUsage>, StoreError> {
        self.0.tenant_usage(tenant)
    }

    fn save_tenant_usage(&self, tenant: &str, usage: &TenantUsage) -> Result<(), StoreError> {
        self.0.save_tenant_usage(tenant, usage)
    }

    fn blocklist(&self) -> Result<Vec<BlockEntry>, StoreError> {
        self.0.blocklist()
    }

    fn save_block_entry(&self, entry: &BlockEntry) -> Result<(), StoreError> {
        in_slot(lists_slot(), || self.0.save_block_entry(entry))
    }

    fn remove_block_entry(&self, entry: &str) -> Result<(), StoreError> {
        in_slot(lists_slot(), || self.0.remove_block_entry(entry))
    }

    fn save_fraud_block(&self, block: &Block) -> Result<(), StoreError> {
        in_slot(lists_slot(), || self.0.save_fraud_block(block))
    }

    fn remove_fraud_block(&self, prefix: &Prefix) -> Result<(), StoreError> {
        in_slot(lists_slot(), || self.0.remove_fraud_block(prefix))
    }

    fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.0.fraud_blocks()
    }

    fn sweep(&self, now: Timestamp, limit: usize) -> Result<Swept, StoreError> {
        self.0.sweep(now, limit)
    }

    fn due_steps(&self, now: Timestamp, limit: usize) -> Result<Vec<DueStep>, StoreError> {
        self.0.due_steps(now, limit)
    }

    fn forget_step(&self, step: &DueStep) -> Result<(), StoreError> {
        in_slot(step.id.slot(), || self.0.forget_step(step))
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.0.flush()
    }

    fn flush_unhurried(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.0.flush_unhurried()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.0.check_health()
    }
}
