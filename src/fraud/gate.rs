//! The FraudGate: the guard shared by issuance and checking behind one short-held lock, with
//! the I/O around it: refusing creates (enforce mode), persisting blocks, logging and
//! publishing `fraud.blocked`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::guard::{Block, PumpingGuard};
use super::prefix::{target, Prefix, Target};
use super::rules::Rule;
use super::settings::{FraudMode, FraudSettings};
use super::BlockView;
use crate::domain::{Channel, Destination, Timestamp, Verification};
use crate::store::{Store, StoreError};
use crate::telemetry::events::{FraudBlockLifted, FraudBlocked};
use crate::telemetry::platform::{Event, EventSink};

/// A create refused because its number's prefix is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudRefusal {
    pub prefix: Prefix,
    pub rule: Rule,
    pub until: Timestamp,
    pub retry_after: Duration,
}

/// A cheap handle on the shared guard; `off` does nothing at all.
#[derive(Clone)]
pub struct FraudGate {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    guard: Mutex<PumpingGuard>,
    mode: FraudMode,
    prefix_digits: u8,
    store: Arc<dyn Store>,
    events: Arc<dyn EventSink>,
}

impl FraudGate {
    /// A gate that lets everything through and records nothing.
    pub fn off() -> Self {
        FraudGate { shared: None }
    }

    /// The gate for `settings`, with the blocks saved before a restart that have not ended.
    pub fn load(
        settings: &FraudSettings,
        store: Arc<dyn Store>,
        events: Arc<dyn EventSink>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        if settings.mode == FraudMode::Off {
            return Ok(Self::off());
        }
        let mut guard = PumpingGuard::new(settings);
        for block in store.fraud_blocks()? {
            guard.restore(block, now);
        }
        Ok(FraudGate {
            shared: Some(Arc::new(Shared {
                guard: Mutex::new(guard),
                mode: settings.mode,
                prefix_digits: settings.prefix_digits,
                store,
                events,
            })),
        })
    }

    /// Before anything is written: in enforce mode, refuses a create to a blocked prefix.
    /// Otherwise returns where the number belongs for the guard (`None` when the guard is off
    /// or it is no phone number), to hand to `record_send` once the create is committed.
    pub fn screen(
        &self,
        destination: &Destination,
        now: Timestamp,
    ) -> Result<Option<Target>, FraudRefusal> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let Some(target) = shared.target_of(destination) else {
            return Ok(None);
        };
        if shared.mode == FraudMode::Enforce {
            if let Some(block) = shared.lock().block_for(&target, now) {
                return Err(FraudRefusal {
                    prefix: block.prefix.clone(),
                    rule: block.rule,
                    until: block.until,
                    retry_after: now.until(block.until),
                });
            }
        }
        Ok(Some(target))
    }

    /// After a create was committed: counts the send to `target` (from `screen`), and
    /// reports a block it caused.
    pub fn record_send(&self, target: &Target, now: Timestamp) {
        let Some(shared) = &self.shared else {
            return;
        };
        let fired = shared.lock().record_send(target, now);
        if let Some(block) = fired {
            shared.report(&block);
        }
    }

    /// After a check approved `verification`: counts the conversion of its latest send.
    pub fn record_conversion(&self, verification: &Verification, now: Timestamp) {
        let Some(shared) = &self.shared else {
            return;
        };
        if verification.channel != Channel::Sms {
            return;
        }
        let Some(country) = &verification.country else {
            return;
        };
        let Some(target) = target(&verification.to, country, shared.prefix_digits) else {
            return;
        };
        shared
            .lock()
            .record_conversion(&target, verification.last_sent_at, now);
    }

    /// Lifts the block of `prefix` now (an operator's decision) and deletes it from the store
    /// (durable with the caller's next flush). `None` when no block of that prefix is in force.
    pub fn lift(
        &self,
        prefix: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Option<Block>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let Some(block) = shared.lock().lift(prefix, now) else {
            return Ok(None);
        };
        shared.store.remove_fraud_block(&block.prefix)?;
        FraudBlockLifted { block: &block, by }.emit();
        Ok(Some(block))
    }

    /// The blocks in force at `now`, oldest first.
    pub fn active_blocks(&self, now: Timestamp) -> Vec<Block> {
        match &self.shared {
            Some(shared) => shared.lock().active_blocks(now),
            None => Vec::new(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PumpingGuard> {
        self.guard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn target_of(&self, destination: &Destination) -> Option<Target> {
        match destination {
            Destination::Phone { e164, country } => target(e164, country, self.prefix_digits),
            Destination::Email { .. } => None,
        }
    }

    /// Logs and counts the block, saves it (durable with the caller's next flush) so it
    /// outlives a restart, and publishes `fraud.blocked` without waiting for the broker.
    fn report(&self, block: &Block) {
        FraudBlocked { block }.emit();
        if let Err(error) = self.store.save_fraud_block(block) {
            tracing::error!(prefix = %block.prefix, %error, "Could not save a fraud block; it ends at a restart.");
        }
        let event = Event::FraudBlocked {
            block: BlockView::of(block),
        };
        let events = Arc::clone(&self.events);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = events.publish_event(&event).await {
                    tracing::warn!(%error, "Could not publish a fraud.blocked event.");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;
    use crate::store::SledStore;
    use crate::telemetry::platform::NoEvents;

    #[test]
    fn a_lifted_block_is_gone_from_the_store_too() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), 1 << 20, Duration::from_secs(3600)).unwrap());
        let settings = FraudSettings {
            conversion_grace_seconds: 0,
            ..FraudSettings::default()
        };
        let start = Timestamp(1_800_000_000_000);
        let gate =
            FraudGate::load(&settings, Arc::clone(&store), Arc::new(NoEvents), start).unwrap();
        let mut now = start;
        for n in 0..1000u64 {
            now = Timestamp(start.0 + n * 200);
            let to = format!("+234803{:07}", 1_000_000 + n);
            let destination = Destination::parse(Channel::Sms, &to).unwrap();
            let Ok(Some(target)) = gate.screen(&destination, now) else {
                break; // blocked
            };
            gate.record_send(&target, now);
        }
        let saved = store.fraud_blocks().unwrap();
        assert_eq!(saved.len(), 1, "the pump was blocked and saved");

        let lifted = gate.lift(saved[0].prefix.as_str(), "ops", now).unwrap();

        assert_eq!(lifted.as_ref(), Some(&saved[0]));
        assert!(store.fraud_blocks().unwrap().is_empty());
        let restarted = FraudGate::load(&settings, store, Arc::new(NoEvents), now).unwrap();
        assert!(restarted.active_blocks(now).is_empty());
    }
}
