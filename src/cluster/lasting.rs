//! State that outlives the changelogs' retention: the lists every node enforces (blocklist
//! entries, fraud blocks) and the counters the cluster shares (capped tenants' usage, capped
//! providers' quotas). A changelog keeps three days; a blocklist entry may stand for years.
//! So the owner of each partition writes its lasting state again every `REWRITE_EVERY`
//! (first `FIRST_REWRITE_AFTER` a node starts), and the stream always holds every such
//! record within its retention: a node that joins later, or comes back after longer than
//! the retention, still learns all of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::changelog::in_slot;
use crate::access::caps::CapTable;
use crate::delivery::quota::QuotaLimits;
use crate::domain::counters::Counter;
use crate::domain::fraud::Block;
use crate::domain::slot::lists_slot;
use crate::domain::{BlockEntry, QuotaUsage, TenantUsage};
use crate::store::{Store, StoreError};

/// How often the lasting state is written again: well within the changelogs' retention
/// (`x-max-age` 3 days), so missed turns and restarts still leave it in the stream.
pub const REWRITE_EVERY: Duration = Duration::from_secs(6 * 3600);
pub const FIRST_REWRITE_AFTER: Duration = Duration::from_secs(600);

/// One record of lasting state, with the slot its partition is found by.
#[derive(Debug, Clone, PartialEq)]
pub enum Lasting {
    BlockEntry(BlockEntry),
    FraudBlock(Block),
    TenantUsage(String, TenantUsage),
    Quota(String, QuotaUsage),
}

impl Lasting {
    pub fn slot(&self) -> u32 {
        match self {
            Lasting::BlockEntry(_) | Lasting::FraudBlock(_) => lists_slot(),
            Lasting::TenantUsage(tenant, _) => Counter::Tenant(tenant.clone()).slot(),
            Lasting::Quota(provider, _) => Counter::Provider(provider.clone()).slot(),
        }
    }
}

/// Reads and writes again the lasting state of this node's store.
pub struct LastingState {
    store: Arc<dyn Store>,
    caps: CapTable,
    quotas: BTreeMap<String, QuotaLimits>,
}

impl LastingState {
    pub fn new(
        store: Arc<dyn Store>,
        caps: CapTable,
        quotas: BTreeMap<String, QuotaLimits>,
    ) -> Self {
        LastingState {
            store,
            caps,
            quotas,
        }
    }

    /// Every lasting record this store holds. Only capped providers' quotas are the
    /// cluster's; an uncapped provider's count is each node's own.
    pub fn records(&self) -> Result<Vec<Lasting>, StoreError> {
        let mut records: Vec<Lasting> = self
            .store
            .blocklist()?
            .into_iter()
            .map(Lasting::BlockEntry)
            .collect();
        records.extend(
            self.store
                .fraud_blocks()?
                .into_iter()
                .map(Lasting::FraudBlock),
        );
        for tenant in self.caps.capped_tenants() {
            if let Some(usage) = self.store.tenant_usage(tenant)? {
                records.push(Lasting::TenantUsage(tenant.to_owned(), usage));
            }
        }
        for (provider, limits) in &self.quotas {
            if !limits.any() {
                continue;
            }
            if let Some(usage) = self.store.quota(provider)? {
                records.push(Lasting::Quota(provider.clone(), usage));
            }
        }
        Ok(records)
    }

    /// Writes `record` again, in its slot (durable with the next flush).
    pub fn rewrite(&self, record: &Lasting) -> Result<(), StoreError> {
        in_slot(record.slot(), || match record {
            Lasting::BlockEntry(entry) => self.store.save_block_entry(entry),
            Lasting::FraudBlock(block) => self.store.save_fraud_block(block),
            Lasting::TenantUsage(tenant, usage) => self.store.save_tenant_usage(tenant, usage),
            Lasting::Quota(provider, usage) => self.store.save_quota(provider, usage),
        })
    }

    /// Writes again the records of the partitions this node serves now (`enter` lets it
    /// in, and the partition stays its own while the guard lives), and waits until they
    /// are durable (in the changelog). Returns how many it wrote.
    pub async fn rewrite_served<G>(
        &self,
        enter: impl Fn(u32) -> Option<G>,
    ) -> Result<usize, StoreError> {
        let mut entered = Vec::new();
        for record in self.records()? {
            if let Some(guard) = enter(record.slot()) {
                self.rewrite(&record)?;
                entered.push(guard);
            }
        }
        self.store.flush().await?;
        Ok(entered.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TenantSettings;
    use crate::domain::Timestamp;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn the_lists_and_the_capped_counters_last_and_each_nodes_own_counts_do_not() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory(Duration::from_secs(60)));
        let entry = BlockEntry {
            entry: "+2348".into(),
            note: None,
            added_at: Timestamp(1),
            added_by: "ops".into(),
        };
        store.save_block_entry(&entry).unwrap();
        store
            .save_tenant_usage("capped", &TenantUsage::default())
            .unwrap();
        store
            .save_tenant_usage("free", &TenantUsage::default())
            .unwrap();
        store
            .save_quota("sms-capped", &QuotaUsage::default())
            .unwrap();
        store
            .save_quota("sms-free", &QuotaUsage::default())
            .unwrap();
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "capped".to_owned(),
            TenantSettings {
                sends_per_day: Some(10),
                ..TenantSettings::default()
            },
        );
        let mut quotas = BTreeMap::new();
        quotas.insert(
            "sms-capped".to_owned(),
            QuotaLimits {
                daily: Some(5),
                monthly: None,
            },
        );
        quotas.insert("sms-free".to_owned(), QuotaLimits::default());
        let lasting = LastingState::new(
            Arc::clone(&store),
            CapTable::from_settings(&tenants, &Default::default()),
            quotas,
        );

        let records = lasting.records().unwrap();

        assert_eq!(
            records,
            vec![
                Lasting::BlockEntry(entry),
                Lasting::TenantUsage("capped".into(), TenantUsage::default()),
                Lasting::Quota("sms-capped".into(), QuotaUsage::default()),
            ]
        );
        assert_eq!(records[0].slot(), lists_slot());
        assert_eq!(records[1].slot(), Counter::Tenant("capped".into()).slot());
        // Only what this node serves is written again.
        let lists_only = lasting
            .rewrite_served(|slot| (slot == lists_slot()).then_some(()))
            .await
            .unwrap();
        assert_eq!(lists_only, 1);
        assert_eq!(lasting.rewrite_served(|_| Some(())).await.unwrap(), 3);
    }
}
