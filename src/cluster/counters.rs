//! The keeping of the counters the whole cluster shares (`domain::counters`): each is kept
//! by the owner of its own partition (the slot of its name), written to that partition's
//! changelog like a destination's state, so every node counts against one number and a
//! takeover carries it on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::changelog::in_slot;
use crate::access::caps::{self, CapTable};
use crate::delivery::quota::actor::announce;
use crate::delivery::quota::{self, QuotaAlert, QuotaLimits};
use crate::domain::counters::{Change, Count, Counter, Tallied, Usage};
use crate::domain::Timestamp;
use crate::store::{Store, StoreError};
use crate::sync::LockUnpoisoned;
use crate::telemetry::platform::EventSink;

/// The counters of the partitions this node serves, kept in its store.
pub struct CounterBook {
    store: Arc<dyn Store>,
    caps: CapTable,
    quotas: BTreeMap<String, QuotaLimits>,
    events: Arc<dyn EventSink>,
    /// One count at a time: each reads its counter, decides and writes it back.
    one_at_a_time: Mutex<()>,
}

impl CounterBook {
    pub fn new(
        store: Arc<dyn Store>,
        caps: CapTable,
        quotas: BTreeMap<String, QuotaLimits>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        CounterBook {
            store,
            caps,
            quotas,
            events,
            one_at_a_time: Mutex::new(()),
        }
    }

    /// Applies `count` and answers once it is durable (in a cluster: in the changelog).
    pub async fn apply(&self, count: Count) -> Result<Tallied, StoreError> {
        let now = Timestamp::now();
        let (changed, flushed) = {
            let _turn = self.one_at_a_time.lock_unpoisoned();
            let changed = in_slot(count.counter.slot(), || self.change(&count, now))?;
            (changed, self.store.flush())
        };
        flushed.await?;
        let (tallied, alerts) = changed;
        if let (Counter::Provider(id), false) = (&count.counter, alerts.is_empty()) {
            tokio::spawn(announce(id.clone(), alerts, now, Arc::clone(&self.events)));
        }
        Ok(tallied)
    }

    fn change(
        &self,
        count: &Count,
        now: Timestamp,
    ) -> Result<(Tallied, Vec<QuotaAlert>), StoreError> {
        match &count.counter {
            Counter::Tenant(tenant) => {
                let usage = self.store.tenant_usage(tenant)?.unwrap_or_default();
                let (granted, after) = match count.change {
                    Change::Take { cost } => {
                        match caps::admit(&usage, &self.caps.caps(tenant), cost, now) {
                            Ok(after) => (true, after),
                            Err(_) => (false, usage),
                        }
                    }
                    Change::GiveBack { cost, taken_at } => {
                        (true, caps::give_back(&usage, cost, taken_at))
                    }
                };
                if after != usage {
                    self.store.save_tenant_usage(tenant, &after)?;
                }
                let tallied = Tallied {
                    granted,
                    usage: Usage::Tenant(after),
                    at: now,
                };
                Ok((tallied, Vec::new()))
            }
            Counter::Provider(id) => {
                let usage = self
                    .store
                    .quota(id)?
                    .map(quota::from_saved)
                    .unwrap_or_default();
                let limits = self.quotas.get(id).copied().unwrap_or_default();
                let mut after = usage;
                let mut alerts = Vec::new();
                let granted = match count.change {
                    Change::Take { cost } => {
                        let free = !usage.is_exhausted(&limits, now);
                        if free {
                            alerts = after.record(&limits, cost, now);
                        }
                        free
                    }
                    Change::GiveBack { cost, taken_at } => {
                        after.give_back(cost, taken_at);
                        true
                    }
                };
                if after != usage {
                    self.store.save_quota(id, &after)?;
                }
                let tallied = Tallied {
                    granted,
                    usage: Usage::Provider(after),
                    at: now,
                };
                Ok((tallied, alerts))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TenantSettings;
    use crate::store::memory::MemoryStore;
    use crate::telemetry::platform::NoEvents;
    use std::time::Duration;

    fn book(store: Arc<dyn Store>) -> CounterBook {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "acme".to_owned(),
            TenantSettings {
                sends_per_hour: Some(2),
                ..TenantSettings::default()
            },
        );
        let mut quotas = BTreeMap::new();
        quotas.insert(
            "sms-a".to_owned(),
            QuotaLimits {
                daily: Some(1),
                monthly: None,
            },
        );
        let caps = CapTable::from_settings(&tenants, &Default::default());
        CounterBook::new(store, caps, quotas, Arc::new(NoEvents))
    }

    fn take(counter: Counter) -> Count {
        Count {
            counter,
            change: Change::Take { cost: 1 },
        }
    }

    #[tokio::test]
    async fn takes_stop_at_the_cap_and_a_give_back_frees_a_place() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory(Duration::from_secs(60)));
        let book = book(Arc::clone(&store));
        let tenant = Counter::Tenant("acme".into());
        assert!(book.apply(take(tenant.clone())).await.unwrap().granted);
        let second = book.apply(take(tenant.clone())).await.unwrap();
        assert!(second.granted);
        assert!(!book.apply(take(tenant.clone())).await.unwrap().granted);
        let given_back = Count {
            counter: tenant.clone(),
            change: Change::GiveBack {
                cost: 1,
                taken_at: second.at,
            },
        };
        book.apply(given_back).await.unwrap();
        assert!(book.apply(take(tenant)).await.unwrap().granted);
        // Kept in the store, where the next owner finds it.
        let saved = store.tenant_usage("acme").unwrap().unwrap();
        assert_eq!(saved.hour.counts.sends, 2);

        let provider = Counter::Provider("sms-a".into());
        assert!(book.apply(take(provider.clone())).await.unwrap().granted);
        let refused = book.apply(take(provider)).await.unwrap();
        assert!(!refused.granted);
        let Usage::Provider(usage) = refused.usage else {
            panic!("a provider's count answered with {:?}", refused.usage);
        };
        assert_eq!(usage.used(quota::Period::Day, refused.at), 1);
    }

    #[test]
    fn counters_of_one_name_but_two_kinds_have_their_own_slots() {
        assert_ne!(
            Counter::Tenant("a".into()).slot(),
            Counter::Provider("a".into()).slot()
        );
    }
}
