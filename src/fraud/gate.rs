//! The FraudGate: the guard shared by issuance and checking behind one short-held lock, with
//! the I/O around it: refusing creates (enforce mode), persisting blocks, logging and
//! publishing `fraud.blocked`. A block decided here is handed to its keeper, so every node
//! of a cluster enforces it; blocks kept or lifted by another node are read again from the
//! store when it tells of them.

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use super::guard::{Block, PumpingGuard};
use super::prefix::{target, Prefix, Target};
use super::rules::Rule;
use super::settings::{FraudMode, FraudSettings};
use super::signals::{Signal, SIGNALS_WAITING};
use super::BlockView;
use crate::domain::workflow::StepOutcome;
use crate::domain::{AttemptOutcome, Channel, Destination, Timestamp, Verification};
use crate::store::{ListsWatch, Store, StoreError};
use crate::sync::LockUnpoisoned;
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

/// Where a block decided on this node is kept so that every node enforces it: in a
/// cluster, the owner of the lists' partition, which writes it to that partition's changelog.
#[async_trait]
pub trait BlockKeeper: Send + Sync {
    async fn keep(&self, block: Block) -> Result<(), StoreError>;
}

struct Shared {
    guard: Mutex<PumpingGuard>,
    mode: FraudMode,
    prefix_digits: u8,
    store: Arc<dyn Store>,
    events: Arc<dyn EventSink>,
    /// Unset: blocks are saved straight to this node's store.
    keeper: OnceLock<Weak<dyn BlockKeeper>>,
    lists: Arc<ListsWatch>,
    /// The prefixes of the blocks as last read from the store, and the lists' generation
    /// they were read at (checked on every create without taking the lock).
    stored: Mutex<HashSet<Prefix>>,
    read_at: AtomicU64,
    /// Unset: what this guard counts stays on this node.
    told: OnceLock<tokio::sync::mpsc::Sender<Signal>>,
}

impl FraudGate {
    /// A gate that lets everything through and records nothing.
    pub fn off() -> Self {
        FraudGate { shared: None }
    }

    /// The gate for `settings`, with the blocks saved before a restart that have not ended;
    /// it reads them again when `lists` tells of another node's change.
    pub fn load(
        settings: &FraudSettings,
        store: Arc<dyn Store>,
        events: Arc<dyn EventSink>,
        lists: Arc<ListsWatch>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        if settings.mode == FraudMode::Off {
            return Ok(Self::off());
        }
        let read_at = lists.generation();
        let mut guard = PumpingGuard::new(settings);
        let mut prefixes = HashSet::new();
        for block in store.fraud_blocks()? {
            prefixes.insert(block.prefix.clone());
            guard.restore(block, now);
        }
        Ok(FraudGate {
            shared: Some(Arc::new(Shared {
                guard: Mutex::new(guard),
                mode: settings.mode,
                prefix_digits: settings.prefix_digits,
                store,
                events,
                keeper: OnceLock::new(),
                lists,
                stored: Mutex::new(prefixes),
                read_at: AtomicU64::new(read_at),
                told: OnceLock::new(),
            })),
        })
    }

    /// Hands the blocks decided from now on to `keeper` instead of this node's store.
    pub fn keep_blocks_with(&self, keeper: Weak<dyn BlockKeeper>) {
        if let Some(shared) = &self.shared {
            let _ = shared.keeper.set(keeper);
        }
    }

    /// From now on, tells what this guard counts to the receiver returned, for the other
    /// nodes' guards. `None` when the guard is off, or is told already.
    pub fn tell_signals(&self) -> Option<tokio::sync::mpsc::Receiver<Signal>> {
        let shared = self.shared.as_ref()?;
        let (sender, receiver) = tokio::sync::mpsc::channel(SIGNALS_WAITING);
        shared.told.set(sender).ok()?;
        Some(receiver)
    }

    /// Counts what other nodes' guards counted, so this guard judges a prefix on the whole
    /// cluster's traffic. (They judged their own sends; these only count.)
    pub fn fold(&self, signals: &[Signal]) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut guard = shared.lock();
        for signal in signals {
            match signal {
                Signal::Sent { target, at } => guard.count_send(target, *at),
                Signal::Converted {
                    target,
                    sent_at,
                    at,
                } => guard.record_conversion(target, *sent_at, *at),
            }
        }
    }

    /// Keeps `block`, decided on some node, in this node's store and guard (this node
    /// keeps the lists); resolves once it is durable.
    pub fn keep(&self, block: Block) -> BoxFuture<'static, Result<(), StoreError>> {
        let Some(shared) = &self.shared else {
            return Box::pin(async { Ok(()) });
        };
        if let Err(error) = shared.store.save_fraud_block(&block) {
            return Box::pin(async move { Err(error) });
        }
        shared.stored.lock_unpoisoned().insert(block.prefix.clone());
        shared.lock().restore(block, Timestamp::now());
        shared.store.flush()
    }

    /// Before anything is written: in enforce mode, refuses a create to a blocked prefix on
    /// a channel whose carrier is paid per message (SMS, voice: the traffic pumping
    /// inflates). Otherwise returns where the number belongs for the guard (`None` when the
    /// guard is off, the channel is not carrier-billed, or it is no phone number), to hand
    /// to `record_send` once the create is committed.
    pub fn screen(
        &self,
        channel: Channel,
        destination: &Destination,
        now: Timestamp,
    ) -> Result<Option<Target>, FraudRefusal> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        if !channel.is_carrier_billed() {
            return Ok(None);
        }
        let Some(target) = shared.target_of(destination) else {
            return Ok(None);
        };
        shared.refresh(now);
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
        shared.tell(|| Signal::Sent {
            target: target.clone(),
            at: now,
        });
        if let Some(block) = fired {
            shared.report(&block);
        }
    }

    /// After a check approved `verification`: counts the conversion of its latest send on a
    /// channel the carrier bills, the one the guard counted (a workflow may have moved on
    /// from SMS to WhatsApp since).
    pub fn record_conversion(&self, verification: &Verification, now: Timestamp) {
        let Some(shared) = &self.shared else {
            return;
        };
        let Some(sent_at) = last_carrier_billed_send(verification) else {
            return;
        };
        let Some(country) = &verification.country else {
            return;
        };
        let Some(target) = target(&verification.to, country, shared.prefix_digits) else {
            return;
        };
        shared.lock().record_conversion(&target, sent_at, now);
        shared.tell(|| Signal::Converted {
            target,
            sent_at,
            at: now,
        });
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
        shared.refresh(now);
        let Some(block) = shared.lock().lift(prefix, now) else {
            return Ok(None);
        };
        shared.store.remove_fraud_block(&block.prefix)?;
        shared.stored.lock_unpoisoned().remove(&block.prefix);
        FraudBlockLifted { block: &block, by }.emit();
        Ok(Some(block))
    }

    /// The blocks in force at `now`, oldest first.
    pub fn active_blocks(&self, now: Timestamp) -> Vec<Block> {
        match &self.shared {
            Some(shared) => {
                shared.refresh(now);
                shared.lock().active_blocks(now)
            }
            None => Vec::new(),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PumpingGuard> {
        self.guard.lock_unpoisoned()
    }

    /// Tells the other nodes' guards of a count, when they are listening. A full outbox
    /// drops it: the guard's figures are statistics, and a gap only delays a block.
    fn tell(&self, signal: impl FnOnce() -> Signal) {
        if let Some(told) = self.told.get() {
            let _ = told.try_send(signal());
        }
    }

    /// Reads the blocks again when another node has kept or lifted one since they were
    /// read: a block gone from the store was lifted; a block of this node's still on its way
    /// to the keeper (never read from the store) stays.
    fn refresh(&self, now: Timestamp) {
        let generation = self.lists.generation();
        if self.read_at.load(Ordering::Acquire) == generation {
            return;
        }
        let mut stored = self.stored.lock_unpoisoned();
        if self.read_at.load(Ordering::Acquire) == generation {
            return; // read by another create meanwhile
        }
        let blocks = match self.store.fraud_blocks() {
            Ok(blocks) => blocks,
            Err(error) => {
                tracing::warn!(%error, "Could not read the fraud blocks other nodes kept; reading them at the next create.");
                return;
            }
        };
        let prefixes: HashSet<Prefix> = blocks.iter().map(|block| block.prefix.clone()).collect();
        let mut guard = self.lock();
        for lifted in stored.difference(&prefixes) {
            guard.forget_block(lifted);
        }
        for block in blocks {
            guard.restore(block, now);
        }
        *stored = prefixes;
        self.read_at.store(generation, Ordering::Release);
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
        self.hand_to_keeper(block);
        let event = Event::FraudBlocked {
            block: BlockView::of(block),
        };
        let events = Arc::clone(&self.events);
        spawn(async move {
            if let Err(error) = events.publish_event(&event).await {
                tracing::warn!(%error, "Could not publish a fraud.blocked event.");
            }
        });
    }

    /// Saves `block` where every node finds it: through the keeper when there is one,
    /// otherwise in this node's store (durable with the caller's next flush).
    fn hand_to_keeper(&self, block: &Block) {
        let keeper = self.keeper.get().and_then(Weak::upgrade);
        let Some(keeper) = keeper else {
            if let Err(error) = self.store.save_fraud_block(block) {
                tracing::error!(prefix = %block.prefix, %error, "Could not save a fraud block; it ends at a restart.");
            }
            return;
        };
        let block = block.clone();
        spawn(async move {
            let prefix = block.prefix.clone();
            if let Err(error) = keeper.keep(block).await {
                tracing::error!(%prefix, %error, "Could not keep a fraud block for every node; it holds on this node only, until a restart.");
            }
        });
    }
}

/// Runs `work` on the runtime of the caller, if it has one.
fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
    }
}

/// When `verification`'s latest send on a carrier-billed channel was counted: its current
/// send's; else its workflow's latest such step; else the latest such send its timeline
/// shows (a resend on another channel).
fn last_carrier_billed_send(verification: &Verification) -> Option<Timestamp> {
    if verification.channel.is_carrier_billed() {
        return Some(verification.last_sent_at);
    }
    let by_step = verification.workflow.as_ref().and_then(|workflow| {
        workflow
            .steps
            .iter()
            .filter(|step| step.channel.is_carrier_billed())
            .filter_map(|step| step.reached.as_ref())
            .filter(|reached| matches!(reached.outcome, StepOutcome::Sent { .. }))
            .map(|reached| reached.at)
            .max()
    });
    by_step.or_else(|| {
        verification
            .timeline
            .iter()
            .rev()
            .find(|attempt| {
                attempt.channel.is_carrier_billed() && attempt.outcome == AttemptOutcome::Sent
            })
            .map(|attempt| attempt.started_at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;
    use crate::store::SledStore;
    use crate::telemetry::platform::NoEvents;

    #[test]
    fn a_conversion_is_credited_to_the_latest_send_the_carrier_billed() {
        use crate::domain::{DeliveryAttempt, NextStep};
        let mut verification = crate::verify::rules::tests::pending(None);
        assert_eq!(
            last_carrier_billed_send(&verification),
            Some(verification.last_sent_at)
        );
        let sent = |channel, started_at, outcome| DeliveryAttempt {
            number: 1,
            send: 1,
            channel,
            provider: Some("p".into()),
            region: "eu".into(),
            started_at,
            took_ms: 5,
            outcome,
            detail: None,
            next: NextStep::Done,
            receipt: None,
            repeats: 0,
        };
        // A workflow moved on from SMS to WhatsApp: the SMS that went out is credited.
        verification.channel = Channel::Whatsapp;
        verification.timeline = vec![
            sent(Channel::Sms, Timestamp(1_000), AttemptOutcome::Sent),
            sent(Channel::Sms, Timestamp(2_000), AttemptOutcome::Permanent),
            sent(Channel::Whatsapp, Timestamp(3_000), AttemptOutcome::Sent),
        ];
        assert_eq!(
            last_carrier_billed_send(&verification),
            Some(Timestamp(1_000))
        );
        verification.timeline.remove(0);
        assert_eq!(
            last_carrier_billed_send(&verification),
            None,
            "nothing billed went out"
        );
        // A workflow's SMS step is credited at the time it was counted.
        let steps =
            crate::domain::workflow::plan(&[(Channel::Sms, None), (Channel::Whatsapp, None)])
                .unwrap();
        verification.workflow = Some(crate::domain::Workflow::start(
            &steps,
            1,
            Timestamp(500),
            verification.expires_at,
        ));
        assert_eq!(
            last_carrier_billed_send(&verification),
            Some(Timestamp(500))
        );
    }

    fn sled_store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(
            SledStore::open(
                dir,
                crate::store::SledOptions::uncompressed(1 << 20),
                Duration::from_secs(3600),
            )
            .unwrap(),
        )
    }

    fn settings() -> FraudSettings {
        FraudSettings {
            conversion_grace_seconds: 0,
            ..FraudSettings::default()
        }
    }

    const START: Timestamp = Timestamp(1_800_000_000_000);

    /// Sends to consecutive numbers of one prefix, never verified, until `gate` blocks
    /// them; returns the time of the last send.
    fn pump(gate: &FraudGate) -> Timestamp {
        pump_on(gate, Channel::Sms)
    }

    /// `pump` on `channel`: stops at the first send the guard does not count.
    fn pump_on(gate: &FraudGate, channel: Channel) -> Timestamp {
        let mut now = START;
        for n in 0..1000u64 {
            now = Timestamp(START.0 + n * 200);
            let to = format!("+234803{:07}", 1_000_000 + n);
            let destination = Destination::parse(channel, &to).unwrap();
            let Ok(Some(target)) = gate.screen(channel, &destination, now) else {
                break; // blocked, or not counted
            };
            gate.record_send(&target, now);
        }
        now
    }

    /// A gate with the test settings on `store`, at `START`.
    fn gate_on(store: Arc<dyn Store>) -> FraudGate {
        FraudGate::load(
            &settings(),
            store,
            Arc::new(NoEvents),
            Arc::default(),
            START,
        )
        .unwrap()
    }

    /// Pumps consecutive numbers of one prefix, never verified, one every two seconds,
    /// through `nodes` nodes' gates in turn, each telling the others what it counted when
    /// `telling`; returns how many sends went out before a gate refused one.
    fn pump_through(nodes: usize, telling: bool) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let gates: Vec<FraudGate> = (0..nodes)
            .map(|node| gate_on(sled_store(&dir.path().join(node.to_string()))))
            .collect();
        let mut told: Vec<_> = gates
            .iter()
            .map(|gate| gate.tell_signals().expect("a guard that is on tells"))
            .collect();
        for n in 0..1000u64 {
            let now = Timestamp(START.0 + n * 2_000);
            let gate = &gates[n as usize % nodes];
            let to = format!("+234803{:07}", 1_000_000 + n);
            let destination = Destination::parse(Channel::Sms, &to).unwrap();
            let Ok(Some(target)) = gate.screen(Channel::Sms, &destination, now) else {
                return n;
            };
            gate.record_send(&target, now);
            for (from, outbox) in told.iter_mut().enumerate() {
                let mut signals = Vec::new();
                while let Ok(signal) = outbox.try_recv() {
                    signals.push(signal);
                }
                let others = gates.iter().enumerate().filter(|(to, _)| *to != from);
                for (_, other) in others.filter(|_| telling) {
                    other.fold(&signals);
                }
            }
        }
        panic!("the pump was never blocked");
    }

    #[test]
    fn nodes_that_tell_each_other_their_counts_judge_a_pump_as_one_node_would() {
        let one = pump_through(1, false);
        let apart = pump_through(2, false);
        let together = pump_through(2, true);
        assert!(
            together < apart,
            "blocked after {together} sends when two nodes told each other, {apart} when not"
        );
        // One send later at most: the node that did not judge the pump learns of the block
        // through its keeper, which this test has not.
        assert!(
            together <= one + 1,
            "blocked after {together} sends by two telling nodes, {one} by one node alone"
        );
    }

    #[test]
    fn what_a_guard_folds_in_it_does_not_tell_again() {
        let dir = tempfile::tempdir().unwrap();
        let gate = gate_on(sled_store(dir.path()));
        let mut told = gate.tell_signals().unwrap();
        assert!(gate.tell_signals().is_none(), "told once");
        let target = crate::fraud::prefix::target("+2348031000000", "NG", 4).unwrap();
        gate.fold(&[Signal::Sent {
            target: target.clone(),
            at: START,
        }]);
        assert!(told.try_recv().is_err(), "a folded count is not told again");
        gate.record_send(&target, START);
        assert_eq!(
            told.try_recv().ok(),
            Some(Signal::Sent { target, at: START })
        );
    }

    #[test]
    fn calls_are_judged_like_sms_and_whatsapp_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = sled_store(dir.path());
        let enforcing = FraudSettings {
            mode: FraudMode::Enforce,
            ..settings()
        };
        let gate = FraudGate::load(
            &enforcing,
            Arc::clone(&store),
            Arc::new(NoEvents),
            Arc::default(),
            START,
        )
        .unwrap();

        pump_on(&gate, Channel::Whatsapp);
        assert!(
            store.fraud_blocks().unwrap().is_empty(),
            "WhatsApp is not counted"
        );

        let now = pump_on(&gate, Channel::Voice);
        assert_eq!(
            store.fraud_blocks().unwrap().len(),
            1,
            "a pump of calls is blocked"
        );
        let pumped = Destination::parse(Channel::Voice, "+2348031999999").unwrap();
        assert!(gate.screen(Channel::Voice, &pumped, now).is_err());
        assert!(gate.screen(Channel::Sms, &pumped, now).is_err());
        assert!(matches!(
            gate.screen(Channel::Whatsapp, &pumped, now),
            Ok(None)
        ));
    }

    #[test]
    fn a_lifted_block_is_gone_from_the_store_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = sled_store(dir.path());
        let settings = settings();
        let gate = gate_on(Arc::clone(&store));
        let now = pump(&gate);
        let saved = store.fraud_blocks().unwrap();
        assert_eq!(saved.len(), 1, "the pump was blocked and saved");

        let lifted = gate.lift(saved[0].prefix.as_str(), "ops", now).unwrap();

        assert_eq!(lifted.as_ref(), Some(&saved[0]));
        assert!(store.fraud_blocks().unwrap().is_empty());
        let restarted =
            FraudGate::load(&settings, store, Arc::new(NoEvents), Arc::default(), now).unwrap();
        assert!(restarted.active_blocks(now).is_empty());
    }

    #[test]
    fn blocks_kept_and_lifted_by_another_node_hold_here_once_told() {
        let dir = tempfile::tempdir().unwrap();
        let store = sled_store(dir.path());
        let settings = settings();
        // Another node decides a block: the same sends, on a gate of its own.
        let other = gate_on(sled_store(&dir.path().join("other")));
        let now = pump(&other);
        let block = other
            .active_blocks(now)
            .pop()
            .expect("the other node blocked the pump");

        let lists = Arc::new(ListsWatch::default());
        let here = FraudGate::load(
            &settings,
            Arc::clone(&store),
            Arc::new(NoEvents),
            Arc::clone(&lists),
            START,
        )
        .unwrap();
        let pumped = Destination::parse(Channel::Sms, "+2348031999999").unwrap();
        assert!(
            here.screen(Channel::Sms, &pumped, now).is_ok(),
            "nothing blocked here yet"
        );
        // The block reaches this node's store through the changelog, which tells the watch.
        store.save_fraud_block(&block).unwrap();
        lists.changed();
        let refused = here.screen(Channel::Sms, &pumped, now).unwrap_err();
        assert_eq!(refused.prefix, block.prefix);
        assert_eq!(here.active_blocks(now).len(), 1);
        // Lifted on the node that keeps the lists: gone here too.
        store.remove_fraud_block(&block.prefix).unwrap();
        lists.changed();
        assert!(here.screen(Channel::Sms, &pumped, now).is_ok());
        assert!(here.active_blocks(now).is_empty());
    }
}
