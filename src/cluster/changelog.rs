//! The changelog: every change to a partition's state, as the owner made it, appended to
//! the partition's changelog stream (partitions share streams) and confirmed before
//! anything is answered; every node applies the streams to its store, which is then a view
//! of the whole cluster's state.
//!
//! The owner changes its store as a single node would. `LoggedEngine` sits under the
//! records and remembers each write made while a command runs for a destination (`in_slot`),
//! with the value it replaced; the next flush hands them, one record per changelog stream
//! (partitions share streams), to the `Changelog` and resolves once the broker has
//! confirmed them. A write the broker did not
//! confirm is undone, so the owner's store never holds what the changelog does not.

use async_trait::async_trait;
use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::settings::ClusterSettings;
use crate::store::kv::{Entry, KeyRange, KvEngine, Put};
use crate::store::{ListsWatch, StoreError};
use crate::sync::LockUnpoisoned;

/// Where the offset a node has applied of each changelog stream is kept (outside every
/// record prefix, so no scan or sweep sees it).
const CHECKPOINT: &[u8] = b"~cluster/applied/";

thread_local! {
    /// The slot of the destination whose command is running on this thread, if any.
    static SLOT: Cell<Option<u32>> = const { Cell::new(None) };
    /// The number of the last partition write this thread made and has not flushed yet (0:
    /// none). A command writes, then asks for a flush, on one thread: the flush waits for
    /// that write, and answers for it.
    static LAST_WRITE: Cell<u64> = const { Cell::new(0) };
}

/// How many finished appends are remembered, for flushes that ask about them late.
const FINISHED_KEPT: usize = 4096;

/// How long an unhurried flush waits for another flush to append its writes along with
/// theirs before it appends them itself. At a few hundred OTPs a second, a send's outcome
/// then rides in the next create's append rather than costing one of its own: a record is a
/// confirmed publish, delivered back to every node. Kept short because an owner killed
/// before it appends an outcome has the code sent again (20 ms gave a node killed under
/// load 15–62 such sends where 5 ms gave 0–8, BENCHMARKS.md).
const UNHURRIED_WAIT: Duration = Duration::from_millis(5);

/// Runs `change` with its writes counted as changes of the destination in `slot`.
pub fn in_slot<T>(slot: u32, change: impl FnOnce() -> T) -> T {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SLOT.with(|current| current.set(self.0));
        }
    }
    let _restore = Restore(SLOT.with(|current| current.replace(Some(slot))));
    change()
}

/// One key's new value (`None`: removed). Both are written as byte strings, taken and read
/// whole; that is the same bytes postcard gives a list of bytes read one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogWrite {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// Why a node that opened its store again refuses writes until it joins again.
pub const STORE_REOPENED: &str =
    "the store was opened again after a failed write; this node applies the changelogs again from what it holds";

/// A message of a changelog stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRecord {
    /// Writes of one flush, in the order they were made. `origin` names the node's
    /// connection that made them.
    Writes { origin: u64, writes: Vec<LogWrite> },
    /// A node that became the owner marks where it starts: once it has applied this, it has
    /// applied everything before it.
    Fence { origin: u64, nonce: u64 },
}

/// The first byte of a record compressed with LZ4: its postcard bytes follow as an LZ4
/// block preceded by their length (`lz4_flex`'s size-prefixed block). A record whose first
/// byte is anything else is postcard's bytes as they are, as every build before compression
/// wrote them (their first byte is the variant's tag, 0 or 1).
const LZ4_RECORD: u8 = 0xF4;

/// The most a record may say it holds once decompressed. A flush writes a few kilobytes;
/// a length past this is damage, refused before anything is allocated for it.
const RECORD_LIMIT: usize = 1 << 30;

impl LogRecord {
    /// The record as a stream message: its postcard bytes, LZ4-compressed. The values it
    /// carries repeat a verification's id and destination from key to key, so a record
    /// takes about a third of the bytes (broker disk, and the broker's work delivering a
    /// backlog to a node coming back).
    pub fn encode(&self) -> Vec<u8> {
        let packed = lz4_flex::block::compress_prepend_size(&self.plain());
        [&[LZ4_RECORD], packed.as_slice()].concat()
    }

    /// Its postcard bytes, uncompressed.
    fn plain(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a log record always encodes")
    }

    /// Reads a stream message, compressed or as builds before compression wrote it.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        unpacked(bytes)
            .and_then(|plain| postcard::from_bytes(&plain).map_err(|error| error.to_string()))
            .map_err(|error| {
                StoreError::Corrupt(format!("an unreadable changelog record: {error}"))
            })
    }
}

/// A stream message's postcard bytes: decompressed, or as they are in a record written
/// before compression.
fn unpacked(message: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some((&LZ4_RECORD, packed)) = message.split_first() else {
        return Ok(message.into());
    };
    let (length, block) =
        lz4_flex::block::uncompressed_size(packed).map_err(|error| error.to_string())?;
    if length > RECORD_LIMIT {
        return Err(format!(
            "it says it holds {length} bytes, past the {RECORD_LIMIT} a record may"
        ));
    }
    let plain = lz4_flex::block::decompress(block, length).map_err(|error| error.to_string())?;
    Ok(plain.into())
}

/// A confirm the broker will give (or refuse) for an appended record.
pub type Confirm = BoxFuture<'static, Result<(), AppendError>>;

/// Why a record did not reach its changelog stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// No confirm came in time: the broker may hear nothing from this node (a connection gone
    /// silent, until the heartbeats give up), and a record appended behind it would wait as
    /// long for nothing.
    Unconfirmed(String),
    /// Refused, by the broker or before it was sent (a partition not owned, no connection, a
    /// broker blocking publishes).
    Refused(String),
}

impl AppendError {
    /// The same failure, its reason told of stream `stream`.
    fn of_stream(self, stream: u16) -> Self {
        let told = |reason| format!("changelog stream {stream} did not take the change: {reason}");
        match self {
            AppendError::Unconfirmed(reason) => AppendError::Unconfirmed(told(reason)),
            AppendError::Refused(reason) => AppendError::Refused(told(reason)),
        }
    }
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Unconfirmed(reason) | AppendError::Refused(reason) => f.write_str(reason),
        }
    }
}

impl From<String> for AppendError {
    fn from(reason: String) -> Self {
        AppendError::Refused(reason)
    }
}

/// The changelog streams, as the broker side offers them.
#[async_trait]
pub trait Changelog: Send + Sync {
    /// Appends `record`, which carries changes of `partitions` (all of one stream), to
    /// their stream; the returned confirm resolves once the broker has it. Refuses when this
    /// node does not own every one of them. Records handed over one after another are
    /// appended in that order.
    async fn append(&self, partitions: &[u16], record: Vec<u8>) -> Result<Confirm, AppendError>;
}

/// What became of an append: its refusal, or the broker's word once it gives it.
async fn confirmed(sent: Result<Confirm, AppendError>) -> Result<(), AppendError> {
    sent?.await
}

/// The first wait before a refused fence is appended again; each refusal doubles it, up to
/// `FENCE_RETRY_CAP`.
const FENCE_RETRY_FIRST: Duration = Duration::from_millis(250);
const FENCE_RETRY_CAP: Duration = Duration::from_secs(4);

/// Appends `fence`, a new owner's mark in `partition`'s changelog, until the broker confirms
/// it, for as long as `still_wanted` says the partition is this node's to catch up on.
/// Returns whether it was confirmed.
///
/// A refusal does not always end the connection: a memory or disk alarm refuses appends
/// until it clears, and a confirm can time out on a connection that stays up. A new owner
/// that gave up then would hold its partition without ever serving it, and every command
/// sent there would time out until the node restarted.
pub async fn append_fence(
    changelog: &dyn Changelog,
    partition: u16,
    fence: &[u8],
    still_wanted: impl Fn() -> bool,
) -> bool {
    let mut wait = FENCE_RETRY_FIRST;
    let mut refusals = 0u32;
    while still_wanted() {
        match confirmed(changelog.append(&[partition], fence.to_vec()).await).await {
            Ok(()) => {
                if refusals > 0 {
                    tracing::info!(
                        partition,
                        refusals,
                        "A partition's changelog is marked at last; catching up on it."
                    );
                }
                return true;
            }
            Err(error) => {
                refusals += 1;
                if refusals == 1 {
                    tracing::warn!(%error, partition, "Could not mark a partition's changelog; trying again until the broker takes it (the partition serves nothing meanwhile).");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(FENCE_RETRY_CAP);
            }
        }
    }
    false
}

/// A write made while a command ran, with what it replaced.
struct Captured {
    /// Writes are numbered from 1 in the order they were made.
    seq: u64,
    partition: u16,
    key: Vec<u8>,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// What applying a run of stream messages came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Writes other nodes made, now in this store.
    pub writes: usize,
    /// The keys those writes came to, each written once.
    pub keys: usize,
    /// Records of this node's own: their writes are in its store already.
    pub own: usize,
    /// The fences met (origin, nonce), in order.
    pub fences: Vec<(u64, u64)>,
}

type Generation = Shared<BoxFuture<'static, Result<(), AppendError>>>;

/// Appends by the writes they carry (first and last number): those in flight, and the
/// outcome of those recently finished.
#[derive(Default)]
struct Appends {
    in_flight: Vec<(u64, u64, Generation)>,
    finished: std::collections::VecDeque<(u64, u64, Result<(), AppendError>)>,
    /// The last write any append carried: a later one is still pending, and looking for it
    /// among the appends would go through all of them.
    last_carried: u64,
}

impl Appends {
    fn started(&mut self, (lo, hi): (u64, u64), generation: Generation) {
        self.in_flight.push((lo, hi, generation));
        self.last_carried = self.last_carried.max(hi);
    }

    fn finished(&mut self, (lo, hi): (u64, u64), result: Result<(), AppendError>) {
        self.in_flight.retain(|(first, _, _)| *first != lo);
        if self.finished.len() == FINISHED_KEPT {
            self.finished.pop_front();
        }
        self.finished.push_back((lo, hi, result));
        self.last_carried = self.last_carried.max(hi);
    }

    /// Where write `seq`'s append stands: see `LogShared::standing`.
    fn standing(&self, seq: u64) -> Option<Standing> {
        if seq > self.last_carried {
            return None;
        }
        let covers = |lo: u64, hi: u64| (lo..=hi).contains(&seq);
        if let Some((_, _, generation)) = self
            .in_flight
            .iter()
            .rev()
            .find(|(lo, hi, _)| covers(*lo, *hi))
        {
            return Some(Standing::InFlight(generation.clone()));
        }
        self.finished
            .iter()
            .rev()
            .find(|(lo, hi, _)| covers(*lo, *hi))
            .map(|(_, _, result)| Standing::Done(result.clone()))
    }
}

/// Where the append of a write stands.
enum Standing {
    InFlight(Generation),
    Done(Result<(), AppendError>),
}

pub struct LogShared<E: KvEngine> {
    inner: E,
    partitions: u16,
    streams: u16,
    /// Writes not yet handed to the changelog, in the order they were made.
    pending: Mutex<Vec<Captured>>,
    /// Held while writes are taken from `pending` and appended, so they reach the streams
    /// in the order they were made; holds the last append until it is confirmed.
    appending: tokio::sync::Mutex<Option<Generation>>,
    /// The number the next write gets.
    next_seq: AtomicU64,
    /// Appends in flight and recently finished.
    appends: Mutex<Appends>,
    /// Told each time writes are taken from `pending` and appended.
    appended: tokio::sync::Notify,
    changelog: OnceLock<Arc<dyn Changelog>>,
    /// The connection this node appends through now; its own records are not applied again.
    origin: AtomicU64,
    /// How many times the engine had been opened again when `origin` was set.
    reopens_at_origin: AtomicU64,
    /// Writes outside any partition (quotas, usage, blocklist) since the last flush: those
    /// are made durable by the engine itself.
    local_writes: AtomicBool,
    /// Told when an applied record changes the lists every node enforces.
    lists: Arc<ListsWatch>,
}

/// The engine under the records in broker mode: `E`, with each partition write remembered
/// for the changelog.
pub struct LoggedEngine<E: KvEngine>(Arc<LogShared<E>>);

impl<E: KvEngine> LoggedEngine<E> {
    /// The cluster's partitions, sharing its changelog streams, as `cluster` gives them.
    pub fn new(inner: E, cluster: &ClusterSettings) -> Self {
        LoggedEngine(Arc::new(LogShared {
            inner,
            partitions: cluster.partitions.max(1),
            streams: cluster.streams(),
            pending: Mutex::default(),
            appending: tokio::sync::Mutex::new(None),
            next_seq: AtomicU64::new(1),
            appends: Mutex::default(),
            appended: tokio::sync::Notify::new(),
            changelog: OnceLock::new(),
            origin: AtomicU64::new(0),
            reopens_at_origin: AtomicU64::new(0),
            local_writes: AtomicBool::new(false),
            lists: Arc::default(),
        }))
    }

    /// The shared state, for the side that appends and applies.
    pub fn shared(&self) -> Arc<LogShared<E>> {
        Arc::clone(&self.0)
    }
}

impl<E: KvEngine> LogShared<E> {
    /// Appends go to `changelog` from now on.
    pub fn append_to(&self, changelog: Arc<dyn Changelog>) {
        let _ = self.changelog.set(changelog);
    }

    /// A new connection: records appended from now on carry `origin`.
    pub fn set_origin(&self, origin: u64) {
        self.reopens_at_origin
            .store(self.inner.reopens(), Ordering::Release);
        self.origin.store(origin, Ordering::Release);
    }

    /// Whether the engine was opened again (after a failed write) since this connection
    /// began: it may have lost what it applied or wrote and had not made durable, own
    /// records included, so nothing more is appended or applied until the node joins again
    /// and applies the changelogs from what the store holds.
    pub fn reopened_since_join(&self) -> bool {
        self.inner.reopens() != self.reopens_at_origin.load(Ordering::Acquire)
    }

    fn refuse_if_reopened(&self) -> Result<(), StoreError> {
        if self.reopened_since_join() {
            return Err(StoreError::Io(STORE_REOPENED.into()));
        }
        Ok(())
    }

    pub fn origin(&self) -> u64 {
        self.origin.load(Ordering::Acquire)
    }

    /// What tells of list changes applied from other nodes.
    pub fn lists(&self) -> Arc<ListsWatch> {
        Arc::clone(&self.lists)
    }

    fn partition_of(&self, slot: u32) -> u16 {
        super::partition_of(slot, self.partitions)
    }

    /// Makes `puts` as the engine's one step, remembering each for the changelog when a
    /// command for a destination runs. An engine that makes them one by one (sled) and fails
    /// midway leaves the puts before the failure made but not remembered: a prefix, which
    /// the records' order keeps harmless, that the changelog never carries.
    fn write_all(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        let Some(slot) = SLOT.with(Cell::get) else {
            self.local_writes.store(true, Ordering::Release);
            return self.inner.write_all(puts);
        };
        let mut pending = self.pending.lock_unpoisoned();
        let held = self.inner.replace_all(puts)?;
        for (put, old) in puts.iter().zip(held) {
            let old = old.map(|old| old.as_ref().to_vec());
            pending.push(self.captured(slot, put.key, old, put.value));
        }
        Ok(())
    }

    /// A write of `key` from `old` to `new` by a command for `slot`, numbered as the next.
    fn captured(
        &self,
        slot: u32,
        key: &[u8],
        old: Option<Vec<u8>>,
        new: Option<&[u8]>,
    ) -> Captured {
        Captured {
            seq: self.number_write(),
            partition: self.partition_of(slot),
            key: key.to_vec(),
            old,
            new: new.map(<[u8]>::to_vec),
        }
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let Some(slot) = SLOT.with(Cell::get) else {
            self.local_writes.store(true, Ordering::Release);
            return self.inner.compare_and_swap(key, expected, new);
        };
        let mut pending = self.pending.lock_unpoisoned();
        let swapped = self.inner.compare_and_swap(key, expected, new)?;
        if swapped {
            pending.push(self.captured(slot, key, expected.map(<[u8]>::to_vec), new));
        }
        Ok(swapped)
    }

    /// The next write's number, remembered as this thread's last write.
    fn number_write(&self) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        LAST_WRITE.with(|last| last.set(seq));
        seq
    }

    /// Resolves once write `target` (this thread's last, 0: none) is confirmed by the
    /// changelog, or fails if it was not; and once writes outside partitions are durable in
    /// the engine.
    async fn flush(self: Arc<Self>, target: u64) -> Result<(), StoreError> {
        self.refuse_if_reopened()?;
        if target > 0 {
            let standing = match self.standing(target) {
                Some(standing) => Some(standing),
                None => Arc::clone(&self).append_pending(target).await,
            };
            let outcome = match standing {
                Some(Standing::InFlight(generation)) => generation.await,
                Some(Standing::Done(result)) => result,
                None => Ok(()),
            };
            outcome.map_err(|error| StoreError::Flush(error.to_string()))?;
        }
        if self.local_writes.swap(false, Ordering::AcqRel) {
            self.inner.flush().await?;
        }
        Ok(())
    }

    /// Appends the pending writes, `target` among them unless an append has carried it
    /// meanwhile; where `target` then stands. One append is in flight at a time: the writes
    /// made while it is confirmed go together in the next, and the broker's cost is per
    /// append far more than per write (BENCHMARKS.md).
    ///
    /// The flushes that wait for the lock are let in one at a time, each finding its write
    /// carried and waking the next; the next append goes out only once that queue has
    /// passed, so it carries what was written meanwhile too. Waking them all at once
    /// instead, and appending as soon as the last append was confirmed, nearly doubled the
    /// appends per check and cost the broker a third more per check, for no less of
    /// otpd's CPU (BENCHMARKS.md, thirty-third session).
    ///
    /// When the broker did not confirm the last append in time, the pending writes fail with
    /// it rather than wait out a timeout of their own: a broker gone silent would otherwise
    /// keep a caller twice the timeout (the append ahead, then its own), and one whose job
    /// could not be handed on either three times. The next flush appends again.
    async fn append_pending(self: Arc<Self>, target: u64) -> Option<Standing> {
        let mut last = self.appending.lock().await;
        if let Some(in_flight) = last.take() {
            // Its outcome is its own flushes' to report.
            if let Err(AppendError::Unconfirmed(reason)) = in_flight.await {
                self.fail_pending(AppendError::Unconfirmed(format!(
                    "not appended behind a change the broker did not confirm ({reason})"
                )));
            }
        }
        if self.standing(target).is_none() {
            let captured = std::mem::take(&mut *self.pending.lock_unpoisoned());
            if let (Some(first), Some(newest)) = (captured.first(), captured.last()) {
                let range = (first.seq, newest.seq);
                let generation = Arc::clone(&self).append(captured, range).await;
                self.appends
                    .lock_unpoisoned()
                    .started(range, generation.clone());
                self.appended.notify_waiters();
                // Confirmed and settled even if no flush waits for it.
                tokio::spawn(generation.clone());
                *last = Some(generation);
            }
        }
        self.standing(target)
    }

    /// As `flush`, once another flush has appended write `target` along with its own, or
    /// `wait` has passed without one.
    async fn flush_unhurried(
        self: Arc<Self>,
        target: u64,
        wait: Duration,
    ) -> Result<(), StoreError> {
        if target > 0 {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let appended = self.appended.notified();
                tokio::pin!(appended);
                appended.as_mut().enable();
                if self.standing(target).is_some() {
                    break;
                }
                if tokio::time::timeout_at(deadline, appended).await.is_err() {
                    break;
                }
            }
        }
        self.flush(target).await
    }

    /// Where write `seq`'s append stands; `None` if no append has carried it yet, or it
    /// finished too long ago to remember (then it was confirmed long before the flush
    /// asking about it). Looked for from the newest: a flush asks about a write it has just
    /// made.
    fn standing(&self, seq: u64) -> Option<Standing> {
        self.appends.lock_unpoisoned().standing(seq)
    }

    /// The append of writes `range` ended with `result`.
    fn finished(&self, range: (u64, u64), result: Result<(), AppendError>) {
        self.appends.lock_unpoisoned().finished(range, result);
    }

    /// Appends `captured`, one record per stream; the generation resolves once all are
    /// confirmed, and undoes the writes of every stream whose append failed.
    async fn append(self: Arc<Self>, captured: Vec<Captured>, range: (u64, u64)) -> Generation {
        let origin = self.origin();
        let mut by_stream: BTreeMap<u16, Vec<Captured>> = BTreeMap::new();
        for write in captured {
            by_stream
                .entry(super::stream_of(write.partition, self.streams))
                .or_default()
                .push(write);
        }
        let mut confirms = Vec::new();
        for (stream, writes) in by_stream {
            let mut partitions: Vec<u16> = writes.iter().map(|w| w.partition).collect();
            partitions.sort_unstable();
            partitions.dedup();
            let record = LogRecord::Writes {
                origin,
                writes: writes
                    .iter()
                    .map(|w| LogWrite {
                        key: w.key.clone(),
                        value: w.new.clone(),
                    })
                    .collect(),
            };
            let sent = match self.changelog.get() {
                Some(changelog) => changelog.append(&partitions, record.encode()).await,
                None => Err(AppendError::Refused(
                    "the changelog is not open yet".to_owned(),
                )),
            };
            confirms.push((stream, writes, sent));
        }
        let shared = Arc::clone(&self);
        async move {
            let mut failure = None;
            for (stream, writes, sent) in confirms {
                if let Err(error) = confirmed(sent).await {
                    shared.undo(&writes);
                    failure = Some(error.of_stream(stream));
                }
            }
            let result = failure.map_or(Ok(()), Err);
            shared.finished(range, result.clone());
            result
        }
        .boxed()
        .shared()
    }

    /// Puts back what `writes` replaced, latest first, where nothing changed them since.
    fn undo(&self, writes: &[Captured]) {
        for write in writes.iter().rev() {
            let restored =
                self.inner
                    .compare_and_swap(&write.key, write.new.as_deref(), write.old.as_deref());
            if let Err(error) = restored {
                tracing::error!(%error, "Could not undo a change the changelog refused.");
            }
        }
    }

    /// The connection is gone: writes not yet appended never will be, so they are undone.
    pub fn abandon_pending(&self) {
        self.fail_pending(AppendError::Refused(
            "the broker connection closed before the change reached the changelog".into(),
        ));
    }

    /// Undoes the writes not yet appended, which fail with `error`.
    fn fail_pending(&self, error: AppendError) {
        let captured = std::mem::take(&mut *self.pending.lock_unpoisoned());
        self.undo(&captured);
        if let (Some(first), Some(last)) = (captured.first(), captured.last()) {
            self.finished((first.seq, last.seq), Err(error));
        }
    }

    /// Applies a run of consecutive messages of changelog `stream`, each with its offset, to
    /// the store, then records the run's last offset as applied.
    ///
    /// A record carries whole values, never changes to them, so a run comes to the last
    /// value each key is given in it: each key is written once, in key order, whatever the
    /// records wrote before (under load a run of a few seconds writes most verifications
    /// two or three times, between their creation, their delivery and their check). The
    /// keys and then the run's offset go to the engine's `write_all`: the LSM tree writes
    /// them as one batch, sled one by one (its batches wait out the flush in progress). A
    /// store stopped midway has its offset from before the run, applies the run again, and
    /// comes to the same values.
    pub fn apply(&self, stream: u16, run: &[(u64, &[u8])]) -> Result<Applied, StoreError> {
        self.refuse_if_reopened()?;
        let mut applied = Applied::default();
        let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (_, bytes) in run {
            match LogRecord::decode(bytes)? {
                LogRecord::Writes { origin, .. } if origin == self.origin() => applied.own += 1,
                LogRecord::Writes { writes, .. } => {
                    applied.writes += writes.len();
                    latest.extend(writes.into_iter().map(|write| (write.key, write.value)));
                }
                LogRecord::Fence { origin, nonce } => applied.fences.push((origin, nonce)),
            }
        }
        applied.keys = latest.len();
        let checkpoint = checkpoint_key(stream);
        let offset = run.last().map(|(last, _)| last.to_be_bytes());
        let mut writes: Vec<Put<'_>> = latest
            .iter()
            .map(|(key, value)| Put::set(key, value.as_deref()))
            .collect();
        if let Some(offset) = &offset {
            writes.push(Put::set(&checkpoint, Some(offset)));
        }
        self.inner.write_all(&writes)?;
        if latest.keys().any(|key| ListsWatch::is_list_key(key)) {
            self.lists.changed();
        }
        Ok(applied)
    }

    /// The offset of changelog `stream` this store has applied up to, if any.
    pub fn applied(&self, stream: u16) -> Result<Option<u64>, StoreError> {
        Ok(self
            .inner
            .get(&checkpoint_key(stream))?
            .and_then(|bytes| bytes.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }
}

/// A node's store as the broker side feeds it: the changelog streams applied to it, and the
/// connection its own records come from.
pub trait View: Send + Sync {
    /// See [`LogShared::append_to`].
    fn append_to(&self, changelog: Arc<dyn Changelog>);
    /// See [`LogShared::lists`].
    fn lists(&self) -> Arc<ListsWatch>;
    fn apply(&self, stream: u16, run: &[(u64, &[u8])]) -> Result<Applied, StoreError>;
    fn applied(&self, stream: u16) -> Result<Option<u64>, StoreError>;
    /// Records `offset` of changelog `stream` as applied, unless a later one is.
    fn save_applied(&self, stream: u16, offset: u64) -> Result<(), StoreError>;
    fn set_origin(&self, origin: u64);
    fn origin(&self) -> u64;
    fn abandon_pending(&self);
    /// See [`LogShared::reopened_since_join`].
    fn reopened_since_join(&self) -> bool;
}

impl<E: KvEngine> View for LogShared<E> {
    fn append_to(&self, changelog: Arc<dyn Changelog>) {
        LogShared::append_to(self, changelog)
    }

    fn lists(&self) -> Arc<ListsWatch> {
        LogShared::lists(self)
    }

    fn apply(&self, stream: u16, run: &[(u64, &[u8])]) -> Result<Applied, StoreError> {
        LogShared::apply(self, stream, run)
    }

    fn applied(&self, stream: u16) -> Result<Option<u64>, StoreError> {
        LogShared::applied(self, stream)
    }

    fn save_applied(&self, stream: u16, offset: u64) -> Result<(), StoreError> {
        if LogShared::applied(self, stream)?.is_some_and(|applied| applied >= offset) {
            return Ok(());
        }
        self.inner
            .insert(&checkpoint_key(stream), &offset.to_be_bytes())
    }

    fn set_origin(&self, origin: u64) {
        LogShared::set_origin(self, origin)
    }

    fn origin(&self) -> u64 {
        LogShared::origin(self)
    }

    fn abandon_pending(&self) {
        LogShared::abandon_pending(self)
    }

    fn reopened_since_join(&self) -> bool {
        LogShared::reopened_since_join(self)
    }
}

fn checkpoint_key(stream: u16) -> Vec<u8> {
    let mut key = CHECKPOINT.to_vec();
    key.extend_from_slice(&stream.to_be_bytes());
    key
}

impl<E: KvEngine> KvEngine for LoggedEngine<E> {
    type Value = E::Value;

    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, StoreError> {
        self.0.inner.get(key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.write_all(&[Put::set(key, Some(value))])
    }

    /// What the key held, remembered to undo the write, is nothing: the engine is not asked.
    fn insert_new(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.write_all(&[Put::insert(key, value, true)])
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.0.write_all(&[Put::set(key, None)])
    }

    fn write_all(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        self.0.write_all(puts)
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.0.compare_and_swap(key, expected, new)
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<Self::Value>>, StoreError> {
        self.0.inner.scan(range, limit)
    }

    /// Resolves once this thread's partition writes are confirmed by the changelog (the
    /// writes a command made before asking for the flush), and writes outside partitions
    /// are durable.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let target = LAST_WRITE.with(|last| last.replace(0));
        Arc::clone(&self.0).flush(target).boxed()
    }

    /// As `flush`, after waiting up to [`UNHURRIED_WAIT`] for another flush to append
    /// this thread's partition writes along with its own.
    fn flush_unhurried(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let target = LAST_WRITE.with(|last| last.replace(0));
        Arc::clone(&self.0)
            .flush_unhurried(target, UNHURRIED_WAIT)
            .boxed()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.0.inner.check_health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryEngine;
    use crate::store::watched::WatchedEngine;

    /// A changelog that keeps what it was given, or refuses everything.
    #[derive(Default)]
    struct Recorded {
        records: Mutex<Vec<(Vec<u16>, LogRecord)>>,
        refuse: AtomicBool,
    }

    #[async_trait]
    impl Changelog for Recorded {
        async fn append(
            &self,
            partitions: &[u16],
            record: Vec<u8>,
        ) -> Result<Confirm, AppendError> {
            if self.refuse.load(Ordering::Acquire) {
                return Ok(async { Err("refused".to_owned().into()) }.boxed());
            }
            let record = LogRecord::decode(&record).unwrap();
            self.records
                .lock_unpoisoned()
                .push((partitions.to_vec(), record));
            Ok(async { Ok(()) }.boxed())
        }
    }

    fn engine() -> (LoggedEngine<MemoryEngine>, Arc<Recorded>) {
        engine_with_streams(4)
    }

    /// A cluster of `partitions` sharing `streams` changelog streams.
    fn cluster(partitions: u16, streams: u16) -> ClusterSettings {
        ClusterSettings {
            partitions,
            changelog_streams: streams,
            ..ClusterSettings::default()
        }
    }

    /// A record as builds before byte strings wrote it: keys and values as lists of bytes.
    #[derive(Serialize)]
    enum EarlierRecord {
        Writes {
            origin: u64,
            writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        },
    }

    #[test]
    fn records_written_before_compression_still_read() {
        let writes = vec![
            (b"v/one".to_vec(), Some(vec![0, 1, 2, 255, 128])),
            (b"v/two".to_vec(), None),
            (vec![7; 300], Some(vec![9; 1_000])),
        ];
        let earlier = postcard::to_stdvec(&EarlierRecord::Writes {
            origin: 42,
            writes: writes.clone(),
        })
        .unwrap();
        let record = LogRecord::Writes {
            origin: 42,
            writes: writes
                .into_iter()
                .map(|(key, value)| LogWrite { key, value })
                .collect(),
        };
        assert_eq!(record.plain(), earlier);
        assert_eq!(LogRecord::decode(&earlier).unwrap(), record);
    }

    #[test]
    fn records_are_written_compressed_and_read_back_whole() {
        let id = "ver_367997806b13d00033794561c1f9da75";
        let writes: Vec<LogWrite> = (0..20)
            .map(|n| LogWrite {
                key: format!("v/{n:04}{id}").into_bytes(),
                value: (n % 5 != 0)
                    .then(|| format!("{id}.{n}+4915100000236 DE login").into_bytes()),
            })
            .collect();
        let record = LogRecord::Writes { origin: 42, writes };
        let message = record.encode();
        assert_eq!(message[0], LZ4_RECORD);
        assert!(
            message.len() * 2 < record.plain().len(),
            "{} bytes compressed, {} plain",
            message.len(),
            record.plain().len()
        );
        assert_eq!(LogRecord::decode(&message).unwrap(), record);
        let fence = LogRecord::Fence {
            origin: 1,
            nonce: 2,
        };
        assert_eq!(LogRecord::decode(&fence.encode()).unwrap(), fence);
    }

    #[test]
    fn a_damaged_compressed_record_is_refused_with_a_reason() {
        let record = LogRecord::Writes {
            origin: 42,
            writes: vec![LogWrite {
                key: b"v/one".to_vec(),
                value: Some(vec![3; 500]),
            }],
        };
        let message = record.encode();
        let cut = LogRecord::decode(&message[..message.len() - 3]).unwrap_err();
        assert!(
            cut.to_string().contains("unreadable changelog record"),
            "{cut}"
        );
        let mut huge = message.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let refused = LogRecord::decode(&huge).unwrap_err();
        assert!(refused.to_string().contains("past the"), "{refused}");
    }

    /// An engine of four partitions sharing `streams` streams.
    fn engine_with_streams(streams: u16) -> (LoggedEngine<MemoryEngine>, Arc<Recorded>) {
        let engine = LoggedEngine::new(MemoryEngine::default(), &cluster(4, streams));
        let changelog = Arc::new(Recorded::default());
        engine.shared().append_to(changelog.clone());
        engine.shared().set_origin(7);
        (engine, changelog)
    }

    fn value(engine: &LoggedEngine<MemoryEngine>, key: &[u8]) -> Option<Vec<u8>> {
        engine
            .get(key)
            .unwrap()
            .map(|v| AsRef::<[u8]>::as_ref(&v).to_vec())
    }

    #[tokio::test]
    async fn writes_in_a_slot_reach_their_partitions_stream_in_order() {
        let (engine, changelog) = engine();
        in_slot(5, || {
            engine.insert(b"a", b"1").unwrap();
            engine.insert(b"a", b"2").unwrap();
            assert!(engine.compare_and_swap(b"b", None, Some(b"x")).unwrap());
            assert!(!engine.compare_and_swap(b"b", None, Some(b"y")).unwrap());
        });
        in_slot(6, || engine.remove(b"a").unwrap());
        engine.insert(b"local", b"kept here").unwrap();
        engine.flush().await.unwrap();
        let records = changelog.records.lock_unpoisoned().clone();
        let write = |key: &[u8], value: Option<&[u8]>| LogWrite {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        assert_eq!(
            records,
            vec![
                (
                    vec![1],
                    LogRecord::Writes {
                        origin: 7,
                        writes: vec![
                            write(b"a", Some(b"1")),
                            write(b"a", Some(b"2")),
                            write(b"b", Some(b"x")),
                        ]
                    }
                ),
                (
                    vec![2],
                    LogRecord::Writes {
                        origin: 7,
                        writes: vec![write(b"a", None)]
                    }
                ),
            ]
        );
    }

    #[tokio::test]
    async fn partitions_that_share_a_stream_are_one_append_naming_them_all() {
        let (engine, changelog) = engine_with_streams(2);
        // Slots 1, 3 and 5 are partitions 1, 3 and 1 of four: stream 1 of two. Slot 2 is
        // partition 2: stream 0.
        in_slot(1, || engine.insert(b"a", b"1").unwrap());
        in_slot(2, || engine.insert(b"b", b"2").unwrap());
        in_slot(3, || engine.insert(b"c", b"3").unwrap());
        in_slot(5, || engine.insert(b"d", b"4").unwrap());
        engine.flush().await.unwrap();
        let records = changelog.records.lock_unpoisoned().clone();
        let keys = |record: &LogRecord| match record {
            LogRecord::Writes { writes, .. } => writes.iter().map(|w| w.key.clone()).collect(),
            LogRecord::Fence { .. } => Vec::new(),
        };
        let appends: Vec<(Vec<u16>, Vec<Vec<u8>>)> = records
            .iter()
            .map(|(partitions, record)| (partitions.clone(), keys(record)))
            .collect();
        assert_eq!(
            appends,
            vec![
                (vec![2], vec![b"b".to_vec()]),
                (
                    vec![1, 3],
                    vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
                ),
            ]
        );
    }

    /// The keys of each record appended so far.
    fn appended_keys(changelog: &Recorded) -> Vec<Vec<Vec<u8>>> {
        let records = changelog.records.lock_unpoisoned().clone();
        records
            .iter()
            .map(|(_, record)| match record {
                LogRecord::Writes { writes, .. } => writes.iter().map(|w| w.key.clone()).collect(),
                LogRecord::Fence { .. } => Vec::new(),
            })
            .collect()
    }

    /// A send's outcome written in slot 1, and its unhurried flush under way.
    fn outcome_waiting(
        engine: &LoggedEngine<MemoryEngine>,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        in_slot(1, || engine.insert(b"outcome", b"sent").unwrap());
        tokio::spawn(engine.flush_unhurried())
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhurried_flush_rides_in_the_record_of_the_next_flush() {
        let (engine, changelog) = engine();
        let unhurried = outcome_waiting(&engine);
        tokio::time::sleep(UNHURRIED_WAIT / 2).await;
        assert!(appended_keys(&changelog).is_empty(), "it waits for company");

        in_slot(1, || engine.insert(b"created", b"1").unwrap());
        engine.flush().await.unwrap();
        unhurried.await.unwrap().unwrap();
        assert_eq!(
            appended_keys(&changelog),
            vec![vec![b"outcome".to_vec(), b"created".to_vec()]],
            "one record carries both"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhurried_flush_nobody_comes_along_for_appends_after_its_wait() {
        let (engine, changelog) = engine();
        let unhurried = outcome_waiting(&engine);
        tokio::time::sleep(UNHURRIED_WAIT - Duration::from_millis(1)).await;
        assert!(appended_keys(&changelog).is_empty());
        assert!(!unhurried.is_finished());

        tokio::time::sleep(Duration::from_millis(2)).await;
        unhurried.await.unwrap().unwrap();
        assert_eq!(appended_keys(&changelog), vec![vec![b"outcome".to_vec()]]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhurried_flush_fails_with_the_append_that_carried_its_write() {
        let (engine, changelog) = engine();
        let unhurried = outcome_waiting(&engine);
        tokio::time::sleep(UNHURRIED_WAIT / 2).await;
        changelog.refuse.store(true, Ordering::Release);
        in_slot(2, || engine.insert(b"created", b"1").unwrap());
        assert!(engine.flush().await.is_err());
        assert!(unhurried.await.unwrap().is_err());
        assert_eq!(value(&engine, b"outcome"), None, "undone");
    }

    #[tokio::test]
    async fn a_refused_append_undoes_its_writes_and_fails_the_flush() {
        let (engine, changelog) = engine();
        engine.insert(b"k", b"before").unwrap();
        changelog.refuse.store(true, Ordering::Release);
        in_slot(1, || {
            engine.insert(b"k", b"after").unwrap();
            engine.insert(b"new", b"1").unwrap();
        });
        assert!(engine.flush().await.is_err());
        assert_eq!(value(&engine, b"k"), Some(b"before".to_vec()));
        assert_eq!(value(&engine, b"new"), None);
    }

    #[tokio::test]
    async fn a_flush_waits_for_its_write_when_another_flush_appended_it() {
        let engine = LoggedEngine::new(MemoryEngine::default(), &cluster(1, 1));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        struct Held(Shared<tokio::sync::oneshot::Receiver<()>>);
        #[async_trait]
        impl Changelog for Held {
            async fn append(&self, _: &[u16], _: Vec<u8>) -> Result<Confirm, AppendError> {
                let held = self.0.clone();
                Ok(async move { held.await.map_err(|e| e.to_string().into()) }.boxed())
            }
        }
        engine.shared().append_to(Arc::new(Held(released.shared())));
        in_slot(0, || engine.insert(b"k1", b"v").unwrap());
        let mut first = engine.flush();
        in_slot(0, || engine.insert(b"k2", b"v").unwrap());
        // The second flush appends both writes; the first then finds its write in flight.
        let second = tokio::spawn(engine.flush());
        tokio::task::yield_now().await;
        assert!(futures_util::poll!(&mut first).is_pending());
        release.send(()).unwrap();
        first.await.unwrap();
        second.await.unwrap().unwrap();
    }

    /// A changelog whose first append's confirm fails with `failure` after `wait`; every
    /// later one is confirmed at once. Counts the appends.
    struct FirstFails {
        failure: AppendError,
        wait: Duration,
        appends: AtomicU64,
    }

    #[async_trait]
    impl Changelog for FirstFails {
        async fn append(&self, _: &[u16], _: Vec<u8>) -> Result<Confirm, AppendError> {
            let first = self.appends.fetch_add(1, Ordering::AcqRel) == 0;
            let (failure, wait) = (self.failure.clone(), self.wait);
            Ok(async move {
                if !first {
                    return Ok(());
                }
                tokio::time::sleep(wait).await;
                Err(failure)
            }
            .boxed())
        }
    }

    /// Flushes `k1`, whose append fails with `failure` 5 s on, and 1 s into that append
    /// writes and flushes `k2`: the store, the changelog, the second flush's outcome and how
    /// long it took.
    async fn flush_behind_a_failing_append(
        failure: AppendError,
    ) -> (
        LoggedEngine<MemoryEngine>,
        Arc<FirstFails>,
        Result<(), StoreError>,
        Duration,
    ) {
        let engine = LoggedEngine::new(MemoryEngine::default(), &cluster(1, 1));
        let changelog = Arc::new(FirstFails {
            failure,
            wait: Duration::from_secs(5),
            appends: AtomicU64::new(0),
        });
        engine.shared().append_to(changelog.clone());
        in_slot(0, || engine.insert(b"k1", b"v").unwrap());
        let first = tokio::spawn(engine.flush());
        tokio::time::sleep(Duration::from_secs(1)).await;
        in_slot(0, || engine.insert(b"k2", b"v").unwrap());
        let started = tokio::time::Instant::now();
        let second = engine.flush().await;
        let took = started.elapsed();
        assert!(first.await.unwrap().is_err(), "the first append failed");
        assert_eq!(value(&engine, b"k1"), None, "and its write is undone");
        (engine, changelog, second, took)
    }

    #[tokio::test(start_paused = true)]
    async fn writes_behind_an_append_the_broker_did_not_confirm_fail_with_it_at_once() {
        let unconfirmed = AppendError::Unconfirmed("no confirm within 5000 ms".into());
        let (engine, changelog, second, took) = flush_behind_a_failing_append(unconfirmed).await;

        let error = second.expect_err("the write behind fails too").to_string();
        assert!(error.contains("did not confirm"), "{error}");
        assert_eq!(
            took,
            Duration::from_secs(4),
            "it fails as the append ahead does, not a timeout later"
        );
        assert_eq!(changelog.appends.load(Ordering::Acquire), 1, "not appended");
        assert_eq!(value(&engine, b"k2"), None, "undone");

        // The next flush appends again.
        in_slot(0, || engine.insert(b"k3", b"v").unwrap());
        engine.flush().await.unwrap();
        assert_eq!(changelog.appends.load(Ordering::Acquire), 2);
        assert_eq!(value(&engine, b"k3"), Some(b"v".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_behind_a_refused_append_are_appended_all_the_same() {
        let refused = AppendError::Refused("the broker refused the record".into());
        let (engine, changelog, second, took) = flush_behind_a_failing_append(refused).await;

        second.expect("the write behind is appended and confirmed");
        assert_eq!(took, Duration::from_secs(4), "once the append ahead failed");
        assert_eq!(changelog.appends.load(Ordering::Acquire), 2);
        assert_eq!(value(&engine, b"k2"), Some(b"v".to_vec()));
    }

    #[tokio::test]
    async fn writes_flushed_while_an_append_is_in_flight_go_together_in_the_next() {
        let engine = LoggedEngine::new(MemoryEngine::default(), &cluster(1, 1));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        /// Holds the first append's confirm until released, confirms the rest at once, and
        /// keeps how many writes each append carried.
        struct FirstHeld {
            held: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
            carried: Mutex<Vec<usize>>,
        }
        #[async_trait]
        impl Changelog for FirstHeld {
            async fn append(&self, _: &[u16], record: Vec<u8>) -> Result<Confirm, AppendError> {
                let LogRecord::Writes { writes, .. } = LogRecord::decode(&record).unwrap() else {
                    panic!("a flush appends writes");
                };
                self.carried.lock_unpoisoned().push(writes.len());
                let held = self.held.lock_unpoisoned().take();
                Ok(async move {
                    match held {
                        Some(held) => held.await.map_err(|e| e.to_string().into()),
                        None => Ok(()),
                    }
                }
                .boxed())
            }
        }
        let changelog = Arc::new(FirstHeld {
            held: Mutex::new(Some(released)),
            carried: Mutex::default(),
        });
        engine.shared().append_to(changelog.clone());
        in_slot(0, || engine.insert(b"k1", b"v").unwrap());
        let first = tokio::spawn(engine.flush());
        tokio::task::yield_now().await;
        let mut later = Vec::new();
        for key in [b"k2", b"k3"] {
            in_slot(0, || engine.insert(key, b"v").unwrap());
            later.push(tokio::spawn(engine.flush()));
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *changelog.carried.lock_unpoisoned(),
            vec![1],
            "the next waits for the first"
        );
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for flush in later {
            flush.await.unwrap().unwrap();
        }
        assert_eq!(
            *changelog.carried.lock_unpoisoned(),
            vec![1, 2],
            "k2 and k3 in one append"
        );
    }

    #[tokio::test]
    async fn a_new_key_is_written_unread_carried_and_taken_back_when_refused() {
        let engine = LoggedEngine::new(WatchedEngine::default(), &cluster(4, 4));
        let changelog = Arc::new(Recorded::default());
        engine.shared().append_to(changelog.clone());
        in_slot(1, || engine.insert_new(b"new", b"1").unwrap());
        assert_eq!(engine.0.inner.reads.load(Ordering::Acquire), 0, "unread");
        in_slot(1, || engine.insert(b"old", b"1").unwrap());
        assert_eq!(engine.0.inner.reads.load(Ordering::Acquire), 1);
        engine.flush().await.unwrap();
        assert_eq!(
            appended_keys(&changelog),
            vec![vec![b"new".to_vec(), b"old".to_vec()]]
        );

        changelog.refuse.store(true, Ordering::Release);
        in_slot(1, || engine.insert_new(b"refused", b"1").unwrap());
        assert!(engine.flush().await.is_err());
        let held = |key: &[u8]| engine.get(key).unwrap();
        assert_eq!(held(b"refused"), None, "taken back");
        assert_eq!(held(b"new"), Some(b"1".to_vec()));
    }

    #[tokio::test]
    async fn writes_made_together_are_carried_each_and_taken_back_when_refused() {
        let (engine, changelog) = engine();
        engine.insert(b"k", b"before").unwrap();
        engine.insert(b"gone", b"was here").unwrap();
        in_slot(1, || {
            let together = [
                Put::set(b"k", Some(b"1")),
                Put::insert(b"new", b"n", true),
                Put::set(b"gone", None),
                Put::set(b"k", Some(b"2")),
            ];
            engine.write_all(&together).unwrap()
        });
        engine.flush().await.unwrap();
        let keys = |keys: &[&[u8]]| keys.iter().map(|key| key.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            appended_keys(&changelog),
            vec![keys(&[b"k", b"new", b"gone", b"k"])]
        );

        changelog.refuse.store(true, Ordering::Release);
        in_slot(1, || {
            let together = [
                Put::set(b"k", Some(b"3")),
                Put::set(b"gone", Some(b"back")),
                Put::set(b"k", Some(b"4")),
                Put::insert(b"fresh", b"f", true),
            ];
            engine.write_all(&together).unwrap()
        });
        assert!(engine.flush().await.is_err());
        assert_eq!(value(&engine, b"k"), Some(b"2".to_vec()), "as before them");
        assert_eq!(value(&engine, b"gone"), None);
        assert_eq!(value(&engine, b"fresh"), None);
        assert_eq!(value(&engine, b"new"), Some(b"n".to_vec()));
    }

    #[tokio::test]
    async fn a_refused_append_fails_its_own_flush_only() {
        let (engine, changelog) = engine();
        changelog.refuse.store(true, Ordering::Release);
        in_slot(1, || engine.insert(b"a", b"1").unwrap());
        assert!(engine.flush().await.is_err());
        changelog.refuse.store(false, Ordering::Release);
        in_slot(1, || engine.insert(b"b", b"1").unwrap());
        engine.flush().await.unwrap();
        assert_eq!(value(&engine, b"a"), None);
        assert_eq!(value(&engine, b"b"), Some(b"1".to_vec()));
    }

    #[tokio::test]
    async fn a_store_opened_again_appends_and_applies_nothing_until_the_node_joins_again() {
        let engine = LoggedEngine::new(WatchedEngine::default(), &cluster(4, 4));
        let shared = engine.shared();
        let changelog = Arc::new(Recorded::default());
        shared.append_to(changelog.clone());
        shared.set_origin(7);
        in_slot(1, || engine.insert(b"a", b"1").unwrap());
        engine.flush().await.unwrap();

        shared.inner.reopens.store(1, Ordering::Release);
        assert!(shared.reopened_since_join());
        in_slot(1, || engine.insert(b"a", b"2").unwrap());
        let refused = engine.flush().await.unwrap_err();
        assert!(refused.to_string().contains("opened again"), "{refused}");
        let record = LogRecord::Fence {
            origin: 9,
            nonce: 1,
        }
        .encode();
        assert!(shared.apply(1, &[(0, record.as_slice())]).is_err());

        // A new connection starts from what the store holds.
        shared.set_origin(8);
        assert!(!shared.reopened_since_join());
        assert!(shared.apply(1, &[(0, record.as_slice())]).is_ok());
        engine.flush().await.unwrap();
    }

    #[tokio::test]
    async fn writes_abandoned_with_the_connection_fail_their_flush() {
        let (engine, _) = engine();
        in_slot(1, || engine.insert(b"a", b"1").unwrap());
        let flush = engine.flush();
        engine.shared().abandon_pending();
        assert!(flush.await.is_err());
        assert_eq!(value(&engine, b"a"), None);
    }

    #[test]
    fn applying_a_run_of_records_in_order_skipping_its_own() {
        let (engine, _) = engine();
        let shared = engine.shared();
        let write = |origin, key: &[u8], value: Option<&[u8]>| {
            LogRecord::Writes {
                origin,
                writes: vec![LogWrite {
                    key: key.to_vec(),
                    value: value.map(<[u8]>::to_vec),
                }],
            }
            .encode()
        };
        let run = [
            write(3, b"k", Some(b"1")),
            write(3, b"gone", Some(b"x")),
            write(7, b"k", None),
            LogRecord::Fence {
                origin: 7,
                nonce: 9,
            }
            .encode(),
            write(4, b"k", Some(b"2")),
            write(4, b"gone", None),
        ];
        let run: Vec<(u64, &[u8])> = (10..).zip(run.iter().map(Vec::as_slice)).collect();
        assert_eq!(
            shared.apply(2, &run).unwrap(),
            Applied {
                writes: 4,
                keys: 2,
                own: 1,
                fences: vec![(7, 9)],
            }
        );
        assert_eq!(
            value(&engine, b"k"),
            Some(b"2".to_vec()),
            "the last write wins"
        );
        assert_eq!(value(&engine, b"gone"), None);
        assert_eq!(
            shared.applied(2).unwrap(),
            Some(15),
            "the run's last offset"
        );
        assert_eq!(shared.applied(3).unwrap(), None);
        assert_eq!(shared.apply(2, &[]).unwrap(), Applied::default());
        assert_eq!(shared.applied(2).unwrap(), Some(15));
        // A run that ends with no writes of its own still records how far it went.
        let fence = LogRecord::Fence {
            origin: 5,
            nonce: 1,
        }
        .encode();
        shared.apply(2, &[(16, fence.as_slice())]).unwrap();
        assert_eq!(shared.applied(2).unwrap(), Some(16));
    }

    #[test]
    fn applying_a_list_change_tells_the_watchers() {
        let (engine, _) = engine();
        let shared = engine.shared();
        let lists = shared.lists();
        let record = |key: &[u8]| LogRecord::Writes {
            origin: 3,
            writes: vec![LogWrite {
                key: key.to_vec(),
                value: Some(b"v".to_vec()),
            }],
        };
        shared
            .apply(1, &[(1, &record(b"v/ver_1").encode())])
            .unwrap();
        assert_eq!(lists.generation(), 0, "a verification is no list");
        shared
            .apply(1, &[(2, &record(b"b/+2348").encode())])
            .unwrap();
        assert_eq!(lists.generation(), 1, "a blocklist entry");
        shared
            .apply(1, &[(3, &record(b"f/+234803").encode())])
            .unwrap();
        assert_eq!(lists.generation(), 2, "a fraud block");
    }

    /// A changelog that refuses its first appends, half of them before taking the record
    /// (as during a memory alarm) and half at the confirm, then takes every one.
    struct RefusingAtFirst {
        refusals_left: std::sync::atomic::AtomicU32,
        taken: Mutex<Vec<Vec<u8>>>,
        tried: AtomicU64,
    }

    impl RefusingAtFirst {
        fn new(refusals: u32) -> Self {
            RefusingAtFirst {
                refusals_left: std::sync::atomic::AtomicU32::new(refusals),
                taken: Mutex::default(),
                tried: AtomicU64::new(0),
            }
        }
    }

    #[async_trait]
    impl Changelog for RefusingAtFirst {
        async fn append(&self, _: &[u16], record: Vec<u8>) -> Result<Confirm, AppendError> {
            let tried = self.tried.fetch_add(1, Ordering::AcqRel);
            let refuse = self
                .refusals_left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            match (refuse, tried % 2) {
                (true, 0) => Err("the broker is blocking publishes".to_owned().into()),
                (true, _) => Ok(async {
                    Err(AppendError::Unconfirmed(
                        "no confirm within 2000 ms".to_owned(),
                    ))
                }
                .boxed()),
                (false, _) => {
                    self.taken.lock_unpoisoned().push(record);
                    Ok(async { Ok(()) }.boxed())
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_fence_is_appended_again_until_the_broker_takes_it() {
        let changelog = RefusingAtFirst::new(5);
        let fence = LogRecord::Fence {
            origin: 7,
            nonce: 11,
        }
        .encode();
        let started = tokio::time::Instant::now();

        assert!(append_fence(&changelog, 3, &fence, || true).await);
        assert_eq!(changelog.tried.load(Ordering::Acquire), 6);
        assert_eq!(*changelog.taken.lock_unpoisoned(), vec![fence]);
        // 250 + 500 + 1,000 + 2,000 + 4,000 ms between the six attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(7_750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fence_no_longer_wanted_is_not_appended_again() {
        let changelog = RefusingAtFirst::new(u32::MAX);
        let asked = AtomicU64::new(0);
        let wanted_twice = || asked.fetch_add(1, Ordering::AcqRel) < 2;

        assert!(!append_fence(&changelog, 3, b"fence", wanted_twice).await);
        assert_eq!(changelog.tried.load(Ordering::Acquire), 2);
        assert!(changelog.taken.lock_unpoisoned().is_empty());
    }
}
