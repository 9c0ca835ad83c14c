//! The `Store` over any key-value engine: record kinds under their key prefixes
//! (`keys`), postcard encoding with a format byte, atomic updates by compare-and-swap, the
//! expiry index and the sweep that purges what it points at.

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

use super::kv::{KeyRange, KvEngine, Put};
use super::{
    keys, DueStep, IssueWrite, MessageOwner, OutboxCursor, OutboxPage, Store, StoreError, Swept,
};
use crate::domain::fraud::{Block, Prefix};
use crate::domain::{
    BlockEntry, DeliveryJob, DeliveryState, DestinationKey, DestinationState, IdempotencyKey,
    IdempotencyRecord, JobId, QuotaUsage, Status, TenantUsage, Timestamp, Verification,
    VerificationId,
};

/// First byte of every stored record, so a future format can be told apart.
///
/// Formats 2, 3, 4 and 5 each added a field at the end of a verification (`transaction`,
/// `kept_code`, `timeline`, then `workflow`); format 4 also added `recent` at the end of a
/// destination's state. A record of an earlier format reads as the current one with one
/// zero byte per verification field added since: postcard writes an absent optional and an
/// empty list as that byte, and every other kind of record ignores the bytes, unread.
const FORMAT_VERSION: u8 = 5;
/// The earlier formats otpd reads, with the fields added since each.
const EARLIER_FORMATS: &[(u8, usize)] = &[(1, 4), (2, 3), (3, 2), (4, 1)];

/// The records otpd keeps, on the engine `E`. Generic rather than over a `dyn` engine, so
/// the hot path (reads, compare-and-swap updates) calls the engine directly.
pub struct RecordStore<E> {
    engine: E,
    /// How long finished verifications stay after expiry before they are swept.
    retention: Duration,
}

/// A record as found: the key it is stored under, and its bytes.
type Found<V> = Option<(Vec<u8>, V)>;

/// The record `found`, whichever key it was under.
fn decode_found<T: DeserializeOwned, V: AsRef<[u8]>>(
    found: Found<V>,
) -> Result<Option<T>, StoreError> {
    found.map(|(_, bytes)| decode(bytes.as_ref())).transpose()
}

impl<E: KvEngine> RecordStore<E> {
    pub fn new(engine: E, retention: Duration) -> Self {
        RecordStore { engine, retention }
    }

    /// The engine underneath, for what works on keys rather than records.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.engine.get(key)? {
            Some(bytes) => decode(bytes.as_ref()).map(Some),
            None => Ok(None),
        }
    }

    /// The record under `key`, or, if there is none, under `first_stored` (where records of
    /// ids made before ids carried their second are): the key it was found under, and its
    /// bytes.
    fn find(
        &self,
        key: Vec<u8>,
        first_stored: impl FnOnce() -> Vec<u8>,
    ) -> Result<Found<E::Value>, StoreError> {
        if let Some(bytes) = self.engine.get(&key)? {
            return Ok(Some((key, bytes)));
        }
        let first_stored = first_stored();
        Ok(self
            .engine
            .get(&first_stored)?
            .map(|bytes| (first_stored, bytes)))
    }

    fn find_verification(&self, id: &VerificationId) -> Result<Found<E::Value>, StoreError> {
        self.find(keys::verification(id), || {
            keys::verification_as_first_stored(id)
        })
    }

    fn find_job(&self, id: &JobId) -> Result<Found<E::Value>, StoreError> {
        self.find(keys::outbox(id), || keys::outbox_as_first_stored(id))
    }

    fn write<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.engine.insert(key, &encode(value)?)
    }

    /// Writes a record that the sweeper deletes after `purge_at`: its expiry-index entry
    /// first, so no record is ever left without one.
    fn write_expiring<T: Serialize>(
        &self,
        key: &[u8],
        purge_at: Timestamp,
        value: &T,
    ) -> Result<(), StoreError> {
        self.engine.insert(&keys::expiry(purge_at, key), &[])?;
        self.write(key, value)
    }

    /// Puts `verification`'s next workflow step on the schedule, unless it was due then
    /// already (`due_before`). Written before the verification, so no due step is ever
    /// missing from the schedule.
    fn schedule_step(
        &self,
        due_before: Option<Timestamp>,
        verification: &Verification,
    ) -> Result<(), StoreError> {
        match step_key(due_before, verification) {
            Some(key) => self.engine.insert(&key, &[]),
            None => Ok(()),
        }
    }

    /// The key and stored bytes of `decided_on`'s verification, if they are still what it
    /// was decided on.
    fn ensure_unchanged(
        &self,
        decided_on: &Verification,
    ) -> Result<(Vec<u8>, E::Value), StoreError> {
        let (key, current) = self
            .find_verification(&decided_on.id)?
            .ok_or_else(changed_meanwhile)?;
        // Compared as this build writes them, whatever format the stored one has.
        let stored = encode(&decode::<Verification>(current.as_ref())?)?;
        if stored == encode(decided_on)? {
            Ok((key, current))
        } else {
            Err(changed_meanwhile())
        }
    }

    /// Every record under `prefix`, in key order.
    fn read_all<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        self.engine
            .scan(KeyRange::prefix(prefix), usize::MAX)?
            .iter()
            .map(|(_, bytes)| decode(bytes.as_ref()))
            .collect()
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

    /// Purges what the index entry names and is due, then the entry; returns how many
    /// records went.
    fn sweep_entry(
        &self,
        index_key: &[u8],
        value: &[u8],
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let primary = keys::expiry_target(index_key);
        let companions = keys::read_expiry_companions(value).unwrap_or_else(|| {
            // Only otpd writes these; an entry it cannot read names nothing it can sweep, and
            // stopping at it would stop every sweep after it.
            tracing::warn!(
                entry = %String::from_utf8_lossy(index_key),
                "An expiry-index entry names keys otpd cannot read; what it named stays."
            );
            Vec::new()
        });
        let mut removed = 0;
        for key in primary.into_iter().chain(companions) {
            if self.purge_if_due(key, now)? {
                removed += 1;
            }
        }
        self.engine.remove(index_key)?;
        Ok(removed)
    }

    /// Removes the record under `key` if its time has passed. A record written again since
    /// its entry was made has a newer entry of its own, and waits for that one.
    fn purge_if_due(&self, key: &[u8], now: Timestamp) -> Result<bool, StoreError> {
        let Some(bytes) = self.engine.get(key)? else {
            return Ok(false);
        };
        let bytes = bytes.as_ref();
        if self.purge_at(key, bytes)?.is_some_and(|at| at > now) {
            return Ok(false);
        }
        // Only if nobody changed it meanwhile.
        self.engine.compare_and_swap(key, Some(bytes), None)
    }
}

impl<E: KvEngine> Store for RecordStore<E> {
    fn verification(&self, id: &VerificationId) -> Result<Option<Verification>, StoreError> {
        decode_found(self.find_verification(id)?)
    }

    fn update_verification(
        &self,
        id: &VerificationId,
        change: &mut dyn FnMut(&mut Verification) -> bool,
    ) -> Result<Option<Verification>, StoreError> {
        loop {
            let Some((key, current)) = self.find_verification(id)? else {
                return Ok(None);
            };
            let current = current.as_ref();
            let mut record: Verification = decode(current)?;
            let due_before = next_step_at(&record);
            if !change(&mut record) {
                return Ok(Some(record));
            }
            self.schedule_step(due_before, &record)?;
            if self
                .engine
                .compare_and_swap(&key, Some(current), Some(&encode(&record)?))?
            {
                // The step it was due for is no longer: its entry goes (one left by a crash
                // here is forgotten when it comes due).
                if let Some(before) = due_before.filter(|_| next_step_at(&record) != due_before) {
                    self.engine.remove(&keys::workflow_step(before, id))?;
                }
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
        // Written in an order where every prefix is harmless, in as few steps as the engine
        // takes: the LSM tree writes a first issue as one batch (a resend as two, around the
        // swap of its verification), sled one by one (its batches take the global write
        // lock and wait out every flush in progress, which stalled the IssuanceActor). An
        // engine recovers a prefix of its writes, so:
        // - the expiry index entries go first (an entry for a missing record is skipped);
        // - the outbox job next (without its verification, recovery drops it as gone);
        // - then the verification, the idempotency record, and last the destination state:
        //   a request delivered again finds its idempotency record (and hands its job on
        //   again) before it could find the destination naming its pending verification,
        //   which would refuse it a code within the cooldown.
        // A crash before the flush answers nothing to the caller, so a retry decides afresh.
        let destination_key = keys::destination(&write.destination_key);
        let outbox_key = keys::outbox(&write.job.job_id);
        // A resend is compared before anything is written, so one refused here leaves
        // nothing behind; the swap of these bytes below catches a change in the moments
        // between.
        let (verification_key, decided_on) = match &write.decided_on {
            Some(decided_on) => {
                let (key, current) = self.ensure_unchanged(decided_on)?;
                (key, Some(current))
            }
            None => (keys::verification(&write.verification.id), None),
        };
        let idempotency = match &write.idempotency {
            Some((key, record)) => {
                Some((keys::idempotency(key), record.expires_at, encode(record)?))
            }
            None => None,
        };
        let mut expiring = vec![
            (
                self.verification_purge_at(&write.verification),
                verification_key.as_slice(),
            ),
            (write.destination.purge_at, destination_key.as_slice()),
            (
                write.job.expires_at.plus(self.retention),
                outbox_key.as_slice(),
            ),
        ];
        if let Some((key, expires_at, _)) = &idempotency {
            expiring.push((*expires_at, key.as_slice()));
        }
        let index = index_entries(&expiring, &outbox_key);
        let step = step_key(None, &write.verification);
        let job = encode(&write.job)?;
        let verification = encode(&write.verification)?;
        let destination = encode(&write.destination)?;
        // A first issue's verification has a new id, and so are its job and the index entry
        // named after that job: keys nothing held, written without asking what they held.
        let first_issue = decided_on.is_none();
        let mut puts: Vec<Put<'_>> = (index.iter())
            .map(|(key, companions, anchored)| {
                Put::insert(key, companions, *anchored && first_issue)
            })
            .collect();
        puts.extend(step.as_deref().map(|key| Put::insert(key, &[], false)));
        puts.push(Put::insert(&outbox_key, &job, first_issue));
        match &decided_on {
            None => puts.push(Put::insert(&verification_key, &verification, true)),
            Some(decided_on) => {
                self.engine.write_all(&puts)?;
                puts.clear();
                let swapped = self
                    .engine
                    .compare_and_swap(
                        &verification_key,
                        Some(decided_on.as_ref()),
                        Some(&verification),
                    )
                    .and_then(|swapped| swapped.then_some(()).ok_or_else(changed_meanwhile));
                if let Err(error) = swapped {
                    self.engine.remove(&outbox_key)?;
                    return Err(error);
                }
            }
        }
        if let Some((key, _, record)) = &idempotency {
            puts.push(Put::insert(key, record, false));
        }
        puts.push(Put::insert(&destination_key, &destination, false));
        self.engine.write_all(&puts)
    }

    fn outbox_job(&self, id: &JobId) -> Result<Option<DeliveryJob>, StoreError> {
        decode_found(self.find_job(id)?)
    }

    fn outbox_page(
        &self,
        after: Option<&OutboxCursor>,
        limit: usize,
    ) -> Result<OutboxPage, StoreError> {
        let mut range = KeyRange::prefix(keys::OUTBOX);
        if let Some(OutboxCursor(after)) = after {
            range = range.after(after);
        }
        let listed = self.engine.scan(range, limit)?;
        Ok(OutboxPage {
            jobs: listed
                .iter()
                .map(|(_, bytes)| decode(bytes.as_ref()))
                .collect::<Result<_, _>>()?,
            next: listed
                .last()
                .map(|(key, _)| OutboxCursor(key.as_ref().to_vec())),
        })
    }

    fn finish_job(
        &self,
        job: &DeliveryJob,
        record_outcome: &dyn Fn(&mut Verification),
    ) -> Result<(), StoreError> {
        // The outcome first, then the outbox entry: a crash in between leaves a job whose
        // outcome is recorded, which recovery drops rather than sends again. (A compare-and-
        // swap and a removal instead of a transaction, which would stall every writer.)
        self.update_verification(&job.verification_id, &mut |record| {
            record_outcome(record);
            true
        })?;
        match self.find_job(&job.job_id)? {
            Some((key, _)) => self.engine.remove(&key),
            None => Ok(()),
        }
    }

    fn abandon_issue(
        &self,
        job: &DeliveryJob,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<(), StoreError> {
        if let Some(key) = idempotency {
            self.engine.remove(&keys::idempotency(key))?;
        }
        self.finish_job(job, &|verification| {
            if verification.send_seq == job.send_seq {
                verification.status = Status::Canceled;
                verification.delivery = DeliveryState::Failed;
                verification.close_out();
            }
        })
    }

    fn index_message(&self, provider: &str, owner: &MessageOwner) -> Result<(), StoreError> {
        let key = keys::message(provider, &owner.provider_message_id);
        self.write_expiring(&key, owner.purge_at, owner)
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
        self.write(&keys::quota(provider), usage)
    }

    fn tenant_usage(&self, tenant: &str) -> Result<Option<TenantUsage>, StoreError> {
        self.read(&keys::tenant_usage(tenant))
    }

    fn save_tenant_usage(&self, tenant: &str, usage: &TenantUsage) -> Result<(), StoreError> {
        self.write(&keys::tenant_usage(tenant), usage)
    }

    fn blocklist(&self) -> Result<Vec<BlockEntry>, StoreError> {
        self.read_all(keys::BLOCKLIST)
    }

    fn save_block_entry(&self, entry: &BlockEntry) -> Result<(), StoreError> {
        self.write(&keys::block_entry(&entry.entry), entry)
    }

    fn remove_block_entry(&self, entry: &str) -> Result<(), StoreError> {
        self.engine.remove(&keys::block_entry(entry))
    }

    fn save_fraud_block(&self, block: &Block) -> Result<(), StoreError> {
        self.write_expiring(&keys::fraud_block(&block.prefix), block.until, block)
    }

    fn remove_fraud_block(&self, prefix: &Prefix) -> Result<(), StoreError> {
        self.engine.remove(&keys::fraud_block(prefix))
    }

    fn fraud_blocks(&self) -> Result<Vec<Block>, StoreError> {
        self.read_all(keys::FRAUD_BLOCK)
    }

    fn due_steps(&self, now: Timestamp, limit: usize) -> Result<Vec<DueStep>, StoreError> {
        let end = keys::workflow_steps_end(now);
        let listed = self
            .engine
            .scan(KeyRange::prefix(keys::WORKFLOW_STEP).before(&end), limit)?;
        Ok(listed
            .iter()
            .filter_map(|(key, _)| {
                let step = keys::read_workflow_step(key.as_ref());
                if step.is_none() {
                    tracing::warn!(entry = %String::from_utf8_lossy(key.as_ref()), "A workflow-step entry otpd cannot read; it is left alone.");
                }
                step
            })
            .map(|(at, id)| DueStep { at, id })
            .collect())
    }

    fn forget_step(&self, step: &DueStep) -> Result<(), StoreError> {
        self.engine.remove(&keys::workflow_step(step.at, &step.id))
    }

    fn sweep(&self, now: Timestamp, limit: usize) -> Result<Swept, StoreError> {
        let end = keys::expiry_end(now);
        let due = self
            .engine
            .scan(KeyRange::prefix(keys::EXPIRY).before(&end), limit)?;
        let mut swept = Swept {
            entries: due.len(),
            removed: 0,
        };
        for (index_key, value) in due {
            swept.removed += self.sweep_entry(index_key.as_ref(), value.as_ref(), now)?;
        }
        Ok(swept)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.engine.flush()
    }

    fn flush_unhurried(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.engine.flush_unhurried()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.engine.check_health()
    }
}

/// The expiry-index entries of an issue's `expiring` records: those due close together
/// (`due_together`) share one entry when `anchor`, the key no other issue writes, is among
/// them and names it (so a resend due at the same time never replaces the first send's
/// entry); the others have one each, naming no other key. Each comes with whether it is
/// the anchor's, a key no other issue writes either.
fn index_entries(expiring: &[(Timestamp, &[u8])], anchor: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let mut entries = Vec::new();
    for (purge_at, group) in due_together(expiring) {
        if group.contains(&anchor) {
            let companions: Vec<&[u8]> = group.into_iter().filter(|key| *key != anchor).collect();
            entries.push((
                keys::expiry(purge_at, anchor),
                keys::expiry_companions(&companions),
                true,
            ));
        } else {
            entries.extend(
                group
                    .into_iter()
                    .map(|key| (keys::expiry(purge_at, key), Vec::new(), false)),
            );
        }
    }
    entries
}

/// How much later than its own time a record may be purged, so that records written
/// together share one expiry-index entry (their readers look at their times, not at whether
/// the sweep came).
const SWEPT_TOGETHER_WITHIN: Duration = Duration::from_secs(3600);

/// The keys of `expiring` grouped to share expiry-index entries, each group at the latest
/// time of its keys, which are due within [`SWEPT_TOGETHER_WITHIN`] of the earliest; groups
/// in order of time, keys in order of time, then as given.
fn due_together<'a>(expiring: &[(Timestamp, &'a [u8])]) -> Vec<(Timestamp, Vec<&'a [u8]>)> {
    let mut by_time = expiring.to_vec();
    by_time.sort_by_key(|(at, _)| *at);
    let mut groups: Vec<(Timestamp, Timestamp, Vec<&[u8]>)> = Vec::new();
    for (purge_at, key) in by_time {
        match groups.last_mut() {
            Some((first, last, keys)) if purge_at <= first.plus(SWEPT_TOGETHER_WITHIN) => {
                *last = purge_at;
                keys.push(key);
            }
            _ => groups.push((purge_at, purge_at, vec![key])),
        }
    }
    groups
        .into_iter()
        .map(|(_, last, keys)| (last, keys))
        .collect()
}

/// The schedule's entry for `verification`'s next workflow step, unless it has none or it
/// was due then already (`due_before`).
fn step_key(due_before: Option<Timestamp>, verification: &Verification) -> Option<Vec<u8>> {
    next_step_at(verification)
        .filter(|due| Some(*due) != due_before)
        .map(|due| keys::workflow_step(due, &verification.id))
}

fn changed_meanwhile() -> StoreError {
    StoreError::Io(
        "the verification changed while this send was decided (a check or a cancel at the same moment); nothing was sent".into(),
    )
}

fn next_step_at(verification: &Verification) -> Option<Timestamp> {
    verification.workflow.as_ref()?.next_at
}

/// Room for a record as most are, so that encoding one seldom grows its buffer.
const RECORD_CAPACITY: usize = 512;

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    let mut buffer = Vec::with_capacity(RECORD_CAPACITY);
    buffer.push(FORMAT_VERSION);
    postcard::to_extend(record, buffer)
        .map_err(|error| StoreError::Corrupt(format!("could not encode a record: {error}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, body)) => decode_body(body),
        Some((version, body)) => match EARLIER_FORMATS.iter().find(|(v, _)| v == version) {
            Some((_, added)) => decode_body(&[body, &vec![0; *added]].concat()),
            None => Err(StoreError::Corrupt(format!(
                "record format {version} is not known to this otpd"
            ))),
        },
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(body)
        .map_err(|error| StoreError::Corrupt(format!("undecodable record: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PeriodCounter, QuotaCount, SendsAndSpend};
    use crate::store::MemoryStore;

    /// A tenant's hour or day as otpd stored it before the period counter.
    #[derive(Serialize)]
    struct EarlierWindow {
        start: Timestamp,
        sends: u64,
        spend: u64,
    }

    #[derive(Serialize)]
    struct EarlierTenantUsage {
        hour: EarlierWindow,
        day: EarlierWindow,
    }

    /// A provider's day or month as otpd stored it before the period counter.
    #[derive(Serialize)]
    struct EarlierPeriodUsage {
        index: u64,
        used: u64,
        fired: u8,
    }

    #[derive(Serialize)]
    struct EarlierQuotaUsage {
        day: EarlierPeriodUsage,
        month: EarlierPeriodUsage,
    }

    #[test]
    fn records_due_close_together_share_an_entry_at_the_latest_time() {
        let start = Timestamp(1_000_000);
        let within = start.plus(SWEPT_TOGETHER_WITHIN);
        let beyond = within.plus_secs(1);
        let groups = due_together(&[
            (within, b"v/1".as_slice()),
            (start, b"i/1".as_slice()),
            (within, b"o/1".as_slice()),
            (beyond, b"d/1".as_slice()),
        ]);
        assert_eq!(
            groups,
            [
                (
                    within,
                    vec![b"i/1".as_slice(), b"v/1".as_slice(), b"o/1".as_slice()]
                ),
                (beyond, vec![b"d/1".as_slice()])
            ]
        );
    }

    #[test]
    fn only_the_group_of_the_issue_s_own_key_shares_an_entry() {
        let start = Timestamp(1_000_000);
        let late = start.plus(SWEPT_TOGETHER_WITHIN).plus_secs(1);
        let entries = index_entries(
            &[
                (late, b"v/1".as_slice()),
                (start, b"i/1".as_slice()),
                (start, b"d/1".as_slice()),
                (late, b"o/1#2".as_slice()),
            ],
            b"o/1#2",
        );
        assert_eq!(
            entries,
            [
                (keys::expiry(start, b"i/1"), vec![], false),
                (keys::expiry(start, b"d/1"), vec![], false),
                (
                    keys::expiry(late, b"o/1#2"),
                    keys::expiry_companions(&[b"v/1"]),
                    true
                ),
            ]
        );
    }

    #[test]
    fn usage_saved_by_earlier_versions_reads_back() {
        let store = MemoryStore::in_memory(Duration::from_secs(3600));
        let hour = Timestamp(1_799_996_400_000);
        let day = Timestamp(1_799_971_200_000);
        let earlier = EarlierTenantUsage {
            hour: EarlierWindow {
                start: hour,
                sends: 3,
                spend: 7,
            },
            day: EarlierWindow {
                start: day,
                sends: 30,
                spend: 70,
            },
        };
        let usage = TenantUsage {
            hour: PeriodCounter {
                start: hour,
                counts: SendsAndSpend { sends: 3, spend: 7 },
            },
            day: PeriodCounter {
                start: day,
                counts: SendsAndSpend {
                    sends: 30,
                    spend: 70,
                },
            },
        };
        assert_eq!(encode(&usage).unwrap(), encode(&earlier).unwrap());
        let key = keys::tenant_usage("acme");
        store
            .engine()
            .insert(&key, &encode(&earlier).unwrap())
            .unwrap();
        assert_eq!(store.tenant_usage("acme").unwrap(), Some(usage));

        // Quota usage decodes too, its period numbers where starts now are (quota::from_saved
        // reads them as the periods they named).
        let earlier = EarlierQuotaUsage {
            day: EarlierPeriodUsage {
                index: 20_833,
                used: 42,
                fired: 1,
            },
            month: EarlierPeriodUsage {
                index: 2027 * 12,
                used: 420,
                fired: 0,
            },
        };
        let key = keys::quota("twilio");
        store
            .engine()
            .insert(&key, &encode(&earlier).unwrap())
            .unwrap();
        let read = store.quota("twilio").unwrap().unwrap();
        assert_eq!(read.day.start, Timestamp(20_833));
        assert_eq!(read.day.counts, QuotaCount { used: 42, fired: 1 });
        assert_eq!(read.month.start, Timestamp(2027 * 12));
        assert_eq!(read.month.counts.used, 420);
    }

    #[test]
    fn verifications_saved_by_earlier_formats_read_back_without_the_later_fields() {
        let store = MemoryStore::in_memory(Duration::from_secs(3600));
        let verification = crate::verify::rules::tests::pending(Some("s-1"));
        // Format 1 held the same fields up to the transaction; format 2 up to the kept code;
        // format 3 up to the timeline; format 4 up to the workflow.
        let current = encode(&verification).unwrap();
        assert!(
            current.ends_with(&[0, 0, 0, 0]),
            "three absent optionals and an empty list are four zero bytes"
        );
        for (version, added) in EARLIER_FORMATS {
            let mut earlier = current[..current.len() - added].to_vec();
            earlier[0] = *version;
            store
                .engine()
                .insert(&keys::verification(&verification.id), &earlier)
                .unwrap();
            let read = store.verification(&verification.id).unwrap().unwrap();
            assert_eq!((read.transaction, read.kept_code), (None, None));
            assert!(read.timeline.is_empty());
            assert_eq!(read.workflow, None);
            assert_eq!(read.session_id.as_deref(), Some("s-1"));
            assert_eq!(read.expires_at, verification.expires_at);
        }
        assert!(matches!(
            decode::<Verification>(&[9, 0]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
