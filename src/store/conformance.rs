//! The suite every engine passes: the seam's own promises, then the records over it. Each
//! case is written once as a generic function of a fresh engine; `engine_suite!` runs every
//! case for one engine.

use std::time::Duration;

use super::kv::{KeyRange, KvEngine, Put};
use super::lsm_engine::LsmEngine;
use super::memory::MemoryEngine;
use super::records::RecordStore;
use super::sled_engine::SledEngine;
use super::watched::{WatchedEngine, Write};
use super::{keys, IssueWrite, MessageOwner, Store, StoreError, Swept};
use crate::domain::fraud::{Block, Figures, FraudMode, Prefix, Rule};
use crate::domain::{
    BlockEntry, Channel, CodeHash, DeliveryJob, DeliveryState, DestinationKey, DestinationState,
    IdempotencyKey, IdempotencyRecord, IssueReceipt, JobId, PeriodCounter, QuotaCount, QuotaUsage,
    SendsAndSpend, Status, TenantUsage, Timestamp, Verification, VerificationId,
};

/// Runs every case of the suite as a test of its own, each on an engine from `$open`, an
/// expression giving the engine and whatever must outlive it (a temporary directory).
macro_rules! engine_suite {
    ($engine:ident, $open:expr) => {
        mod $engine {
            engine_suite!(@cases $open;
                kv_reads_what_was_written,
                kv_replace_hands_back_what_the_key_held,
                kv_replace_all_hands_back_what_each_key_held_before_its_put,
                kv_writes_all_in_order,
                kv_compare_and_swap_changes_only_the_expected_value,
                kv_scans_keys_in_order_within_the_range,
                kv_concurrent_swaps_lose_no_update,
                kv_flush_resolves_and_health_answers,
                an_issue_reads_back_whole,
                what_was_never_written_reads_as_none,
                updates_apply_atomically_and_may_decline,
                each_next_workflow_step_is_scheduled_until_forgotten,
                a_resend_decided_on_a_record_changed_since_writes_nothing,
                the_outbox_pages_in_the_order_jobs_were_made_and_holds_only_jobs,
                finishing_a_job_records_its_outcome_then_leaves_the_outbox,
                records_of_ids_made_before_ids_carried_their_second_are_kept_where_they_are,
                records_of_ids_made_before_ids_carried_their_second_are_swept_in_their_time,
                abandoning_an_issue_cancels_only_the_current_send,
                message_owners_are_found_per_provider,
                usage_blocklist_and_fraud_blocks_round_trip,
                the_sweep_purges_each_record_when_it_is_due,
                a_record_written_again_is_swept_at_its_newest_time,
                the_records_of_an_issue_due_together_share_one_index_entry,
                a_destination_sent_to_again_outlives_its_first_index_entry,
                a_resend_due_at_the_same_time_leaves_the_first_job_its_entry,
                the_sweep_visits_at_most_limit_entries,
                an_unreadable_record_is_an_error,
            );
        }
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (engine, _outlives_the_engine) = $open;
                super::$case(engine);
            }
        )*
    };
}

engine_suite!(on_memory, (super::MemoryEngine::new(), ()));
engine_suite!(on_sled, {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine =
        super::SledEngine::open(dir.path(), crate::store::SledOptions::uncompressed(1 << 20))
            .expect("sled opens");
    (engine, dir)
});

engine_suite!(on_lsm, {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = super::LsmEngine::open(dir.path(), crate::store::LsmOptions::with_cache(1 << 20))
        .expect("the lsm tree opens");
    (engine, dir)
});

const RETENTION: Duration = Duration::from_secs(3600);
/// 2027-01-15T08:00:00Z.
const NOW: Timestamp = Timestamp(1_800_000_000_000);
const TTL_SECS: u64 = 600;

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn value<E: KvEngine>(engine: &E, key: &[u8]) -> Option<Vec<u8>> {
    engine
        .get(key)
        .expect("the engine reads")
        .map(|value| value.as_ref().to_vec())
}

fn scanned<E: KvEngine>(engine: &E, range: KeyRange<'_>, limit: usize) -> Vec<String> {
    engine
        .scan(range, limit)
        .expect("the engine scans")
        .iter()
        .map(|(key, _)| String::from_utf8_lossy(key.as_ref()).into_owned())
        .collect()
}

// The seam.

fn kv_reads_what_was_written<E: KvEngine>(engine: E) {
    assert_eq!(value(&engine, b"k"), None);
    engine.insert(b"k", b"one").unwrap();
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"one"[..]));
    engine.insert(b"k", b"two").unwrap();
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"two"[..]));
    engine.insert(b"empty", b"").unwrap();
    assert_eq!(value(&engine, b"empty").as_deref(), Some(&b""[..]));
    engine.remove(b"k").unwrap();
    assert_eq!(value(&engine, b"k"), None);
    engine.remove(b"k").unwrap();
    assert_eq!(value(&engine, b"empty").as_deref(), Some(&b""[..]));
}

fn kv_writes_all_in_order<E: KvEngine>(engine: E) {
    engine.insert(b"gone", b"was here").unwrap();
    engine
        .write_all(&[
            Put::set(b"a", Some(b"first")),
            Put::set(b"gone", None),
            Put::set(b"a", Some(b"second")),
            Put::set(b"b", Some(b"")),
            Put::set(b"never", None),
            Put::insert(b"c", b"kept", true),
            Put::set(b"b", None),
        ])
        .unwrap();
    assert_eq!(value(&engine, b"a").as_deref(), Some(&b"second"[..]));
    assert_eq!(value(&engine, b"gone"), None);
    assert_eq!(value(&engine, b"b"), None);
    assert_eq!(value(&engine, b"never"), None);
    assert_eq!(value(&engine, b"c").as_deref(), Some(&b"kept"[..]));
    engine.write_all(&[]).unwrap();
}

fn kv_replace_hands_back_what_the_key_held<E: KvEngine>(engine: E) {
    let replace = |new: Option<&[u8]>| {
        engine
            .replace(b"k", new)
            .expect("the engine writes")
            .map(|old| old.as_ref().to_vec())
    };
    assert_eq!(replace(Some(b"one")), None, "nothing was there");
    assert_eq!(replace(Some(b"two")).as_deref(), Some(&b"one"[..]));
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"two"[..]));
    assert_eq!(replace(None).as_deref(), Some(&b"two"[..]), "a removal");
    assert_eq!(value(&engine, b"k"), None);
    assert_eq!(replace(None), None, "removing what is absent");
}

fn kv_replace_all_hands_back_what_each_key_held_before_its_put<E: KvEngine>(engine: E) {
    engine.insert(b"k", b"one").unwrap();
    engine.insert(b"gone", b"was here").unwrap();
    let held: Vec<Option<Vec<u8>>> = engine
        .replace_all(&[
            Put::set(b"k", Some(b"two")),
            Put::insert(b"fresh", b"made", true),
            Put::set(b"gone", None),
            Put::set(b"k", Some(b"three")),
            Put::set(b"absent", Some(b"now")),
        ])
        .expect("the engine writes")
        .into_iter()
        .map(|old| old.map(|old| old.as_ref().to_vec()))
        .collect();
    let said = |text: &[u8]| Some(text.to_vec());
    assert_eq!(
        held,
        [said(b"one"), None, said(b"was here"), said(b"two"), None],
        "a key written twice held the first write's value before the second"
    );
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"three"[..]));
    assert_eq!(value(&engine, b"fresh").as_deref(), Some(&b"made"[..]));
    assert_eq!(value(&engine, b"gone"), None);
    assert_eq!(value(&engine, b"absent").as_deref(), Some(&b"now"[..]));
    assert!(engine.replace_all(&[]).unwrap().is_empty());
}

fn kv_compare_and_swap_changes_only_the_expected_value<E: KvEngine>(engine: E) {
    let swap = |expected: Option<&[u8]>, new: Option<&[u8]>| {
        engine.compare_and_swap(b"k", expected, new).unwrap()
    };
    assert!(!swap(Some(b"a"), Some(b"b")), "absent is not a value");
    assert_eq!(value(&engine, b"k"), None);
    assert!(swap(None, Some(b"a")), "absent as expected");
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"a"[..]));
    assert!(!swap(None, Some(b"b")), "present, not absent");
    assert!(!swap(Some(b"b"), Some(b"c")), "another value");
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"a"[..]));
    assert!(swap(Some(b"a"), Some(b"b")));
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"b"[..]));
    assert!(swap(Some(b"b"), None), "a swap to nothing removes");
    assert_eq!(value(&engine, b"k"), None);
    assert!(!swap(Some(b"b"), None));
}

fn kv_scans_keys_in_order_within_the_range<E: KvEngine>(engine: E) {
    for key in ["a/1", "o/3", "o/10", "o/1", "o/2", "p/1", "o"] {
        engine.insert(key.as_bytes(), key.as_bytes()).unwrap();
    }
    let outbox = KeyRange::prefix(b"o/");
    assert_eq!(scanned(&engine, outbox, 10), ["o/1", "o/10", "o/2", "o/3"]);
    let entries = engine.scan(outbox, 1).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].1.as_ref(), b"o/1", "values come with their keys");
    assert_eq!(scanned(&engine, outbox, 2), ["o/1", "o/10"]);
    assert!(scanned(&engine, outbox, 0).is_empty());
    assert_eq!(scanned(&engine, outbox.after(b"o/10"), 10), ["o/2", "o/3"]);
    assert_eq!(scanned(&engine, outbox.after(b"o/15"), 10), ["o/2", "o/3"]);
    assert_eq!(scanned(&engine, outbox.after(b"a"), 10).len(), 4);
    assert!(scanned(&engine, outbox.after(b"o/3"), 10).is_empty());
    assert!(scanned(&engine, outbox.after(b"p/0"), 10).is_empty());
    assert_eq!(
        scanned(&engine, outbox.before(b"o/3"), 10),
        ["o/1", "o/10", "o/2"]
    );
    assert_eq!(
        scanned(&engine, outbox.after(b"o/1").before(b"o/3"), 10),
        ["o/10", "o/2"]
    );
    assert!(scanned(&engine, outbox.after(b"o/2").before(b"o/2"), 10).is_empty());
    assert!(scanned(&engine, outbox.after(b"o/3").before(b"o/1"), 10).is_empty());
    assert!(scanned(&engine, outbox.before(b"a"), 10).is_empty());
    assert_eq!(scanned(&engine, KeyRange::prefix(b""), 10).len(), 7);
}

fn kv_concurrent_swaps_lose_no_update<E: KvEngine>(engine: E) {
    const THREADS: u64 = 4;
    const EACH: u64 = 100;
    engine.insert(b"n", &0u64.to_be_bytes()).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    loop {
                        let current = value(&engine, b"n").unwrap();
                        let n = u64::from_be_bytes(current.as_slice().try_into().unwrap());
                        let next = (n + 1).to_be_bytes();
                        if engine
                            .compare_and_swap(b"n", Some(&current), Some(&next))
                            .unwrap()
                        {
                            break;
                        }
                    }
                }
            });
        }
    });
    let total = value(&engine, b"n").unwrap();
    assert_eq!(total, (THREADS * EACH).to_be_bytes());
}

fn kv_flush_resolves_and_health_answers<E: KvEngine>(engine: E) {
    engine.insert(b"k", b"v").unwrap();
    block_on(engine.flush()).unwrap();
    let both = futures_util::future::join(engine.flush(), engine.flush());
    let (a, b) = block_on(both);
    a.unwrap();
    b.unwrap();
    engine.check_health().unwrap();
    assert_eq!(value(&engine, b"k").as_deref(), Some(&b"v"[..]));
}

// The records.

fn store<E: KvEngine>(engine: E) -> RecordStore<E> {
    RecordStore::new(engine, RETENTION)
}

/// A first send to `+23480312000<n>`, its idempotency record kept for a day.
fn issue(n: u8) -> IssueWrite {
    let id = VerificationId::generate();
    let to = format!("+23480312000{n:02}");
    let expires_at = NOW.plus_secs(TTL_SECS);
    let verification = Verification {
        id: id.clone(),
        tenant: "acme".into(),
        channel: Channel::Sms,
        to: to.clone(),
        country: Some("NG".into()),
        locale: None,
        template: "default".into(),
        session_id: None,
        code_hash: CodeHash([n; 32]),
        code_length: 6,
        send_seq: 1,
        status: Status::Pending,
        attempts_used: 0,
        max_attempts: 5,
        created_at: NOW,
        expires_at,
        last_sent_at: NOW,
        updated_at: NOW,
        delivery: DeliveryState::Queued,
        provider: None,
        sent_at: None,
        delivered_at: None,
        transaction: None,
        kept_code: None,
        timeline: Vec::new(),
        workflow: None,
    };
    let job = DeliveryJob {
        job_id: JobId::new(&id, 1),
        verification_id: id.clone(),
        send_seq: 1,
        tenant: "acme".into(),
        channel: Channel::Sms,
        to: to.clone(),
        country: Some("NG".into()),
        region: "eu".into(),
        locale: None,
        template: "default".into(),
        expires_at,
        created_at: NOW,
        sealed_code: vec![n, 1, 2, 3],
    };
    let receipt = IssueReceipt {
        created: true,
        id: id.clone(),
        channel: Channel::Sms,
        to_masked: "+234*****0000".into(),
        expires_at,
        resend_available_at: NOW.plus_secs(30),
        attempts_remaining: 5,
    };
    IssueWrite {
        destination_key: DestinationKey {
            tenant: "acme".into(),
            channel: Channel::Sms,
            to,
        },
        destination: DestinationState {
            pending: Some(id.clone()),
            recent_sends: vec![NOW],
            purge_at: NOW.plus_secs(TTL_SECS + 60),
            recent: vec![id.clone()],
        },
        idempotency: Some((
            IdempotencyKey {
                tenant: "acme".into(),
                key: format!("request-{n}"),
            },
            IdempotencyRecord {
                body_hash: [n; 32],
                receipt,
                expires_at: NOW.plus_secs(86_400),
            },
        )),
        job,
        verification,
        decided_on: None,
    }
}

fn idempotency_key(write: &IssueWrite) -> &IdempotencyKey {
    &write.idempotency.as_ref().expect("an idempotent issue").0
}

fn outbox_ids<E: KvEngine>(store: &RecordStore<E>) -> Vec<JobId> {
    store
        .outbox_page(None, usize::MAX)
        .unwrap()
        .jobs
        .into_iter()
        .map(|job| job.job_id)
        .collect()
}

fn an_issue_reads_back_whole<E: KvEngine>(engine: E) {
    let store = store(engine);
    let write = issue(1);
    store.commit_issue(&write).unwrap();
    let stored = store.verification(&write.verification.id).unwrap().unwrap();
    assert_eq!(stored.to, write.verification.to);
    assert_eq!(stored.code_hash.0, write.verification.code_hash.0);
    assert_eq!(stored.status, Status::Pending);
    assert_eq!(stored.expires_at, write.verification.expires_at);
    assert_eq!(
        store.destination(&write.destination_key).unwrap().as_ref(),
        Some(&write.destination)
    );
    let (key, record) = write.idempotency.as_ref().unwrap();
    assert_eq!(store.idempotency(key).unwrap().as_ref(), Some(record));
    let jobs = store.outbox_page(None, 10).unwrap().jobs;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, write.job.job_id);
    assert_eq!(jobs[0].sealed_code, write.job.sealed_code);
    let job = store.outbox_job(&write.job.job_id).unwrap().unwrap();
    assert_eq!(job.sealed_code, write.job.sealed_code);
}

fn what_was_never_written_reads_as_none<E: KvEngine>(engine: E) {
    let store = store(engine);
    let write = issue(1);
    let id = &write.verification.id;
    assert!(store.verification(id).unwrap().is_none());
    assert!(store.destination(&write.destination_key).unwrap().is_none());
    assert!(store
        .idempotency(idempotency_key(&write))
        .unwrap()
        .is_none());
    assert!(store.message_owner("twilio", "SM1").unwrap().is_none());
    assert!(store.quota("twilio").unwrap().is_none());
    assert!(store.tenant_usage("acme").unwrap().is_none());
    assert!(store.blocklist().unwrap().is_empty());
    assert!(store.fraud_blocks().unwrap().is_empty());
    let page = store.outbox_page(None, 10).unwrap();
    assert!(page.jobs.is_empty() && page.next.is_none());
    assert!(store.outbox_job(&write.job.job_id).unwrap().is_none());
    let mut called = false;
    let updated = store
        .update_verification(id, &mut |_| {
            called = true;
            true
        })
        .unwrap();
    assert!(updated.is_none() && !called);
    assert!(
        store.verification(id).unwrap().is_none(),
        "an update creates nothing"
    );
}

/// A second send of `first`'s verification, decided on `decided_on`.
fn resend_of(first: &IssueWrite, decided_on: Verification) -> IssueWrite {
    let id = &first.verification.id;
    let mut write = issue(1);
    write.verification.id = id.clone();
    write.verification.send_seq = 2;
    write.job.job_id = JobId::new(id, 2);
    write.job.verification_id = id.clone();
    write.decided_on = Some(decided_on);
    write
}

fn a_resend_decided_on_a_record_changed_since_writes_nothing<E: KvEngine>(engine: E) {
    let store = store(engine);
    let first = issue(1);
    store.commit_issue(&first).unwrap();
    let id = first.verification.id.clone();
    let resend = |decided_on| resend_of(&first, decided_on);
    // A check approved it after the resend was decided: the resend writes nothing.
    let stale = resend(first.verification.clone());
    store
        .update_verification(&id, &mut |record| {
            record.status = Status::Approved;
            true
        })
        .unwrap();
    assert!(matches!(store.commit_issue(&stale), Err(StoreError::Io(_))));
    let kept = store.verification(&id).unwrap().unwrap();
    assert_eq!((kept.status, kept.send_seq), (Status::Approved, 1));
    assert!(store.outbox_job(&stale.job.job_id).unwrap().is_none());

    // Decided on the record as it stands: written.
    let current = resend(kept);
    store.commit_issue(&current).unwrap();
    assert_eq!(store.verification(&id).unwrap().unwrap().send_seq, 2);
    assert!(store.outbox_job(&current.job.job_id).unwrap().is_some());
}

fn each_next_workflow_step_is_scheduled_until_forgotten<E: KvEngine>(engine: E) {
    use crate::domain::workflow::{plan, StepTrigger};
    use crate::domain::Workflow;
    use crate::store::DueStep;
    let store = store(engine);
    let steps = plan(&[
        (Channel::Sms, Some(30)),
        (Channel::Voice, Some(30)),
        (Channel::Whatsapp, None),
    ])
    .unwrap();
    let mut write = issue(1);
    let expires_at = write.verification.expires_at;
    write.verification.workflow = Some(Workflow::start(&steps, 1, NOW, expires_at));
    let id = write.verification.id.clone();
    store.commit_issue(&issue(2)).unwrap();
    store.commit_issue(&write).unwrap();
    let first = NOW.plus_secs(30);
    assert_eq!(store.due_steps(NOW, 10).unwrap(), vec![], "nothing due yet");
    let due = store.due_steps(first, 10).unwrap();
    assert_eq!(
        due,
        vec![DueStep {
            at: first,
            id: id.clone()
        }],
        "only the workflow's step"
    );

    // The step is taken: the next is scheduled; the taken one stays until forgotten.
    let second = first.plus_secs(30);
    store
        .update_verification(&id, &mut |record| {
            let workflow = record.workflow.as_mut().unwrap();
            let step = workflow.next_step(StepTrigger::Due(first)).unwrap();
            workflow.sent(step, 2, first, expires_at);
            true
        })
        .unwrap();
    let listed = |now| -> Vec<Timestamp> {
        store
            .due_steps(now, 10)
            .unwrap()
            .iter()
            .map(|step| step.at)
            .collect()
    };
    assert_eq!(listed(second), vec![second], "the taken step's entry went");
    store.commit_issue(&write).unwrap();
    assert_eq!(listed(second), vec![first, second], "a restarted workflow");
    assert_eq!(
        store.due_steps(second, 1).unwrap().len(),
        1,
        "at most limit"
    );

    // A change that leaves the schedule as it was writes no new entry.
    store
        .update_verification(&id, &mut |record| {
            record.attempts_used += 1;
            true
        })
        .unwrap();
    assert_eq!(listed(Timestamp(u64::MAX - 1)), vec![first, second]);

    // Verified: the workflow ends, and its schedule with it (the entry the restart left
    // behind stays until it is due, then is forgotten).
    store
        .update_verification(&id, &mut |record| {
            record.workflow.as_mut().unwrap().end();
            true
        })
        .unwrap();
    assert_eq!(listed(Timestamp(u64::MAX - 1)), vec![second]);
    store
        .forget_step(&DueStep {
            at: second,
            id: id.clone(),
        })
        .unwrap();
    assert_eq!(listed(Timestamp(u64::MAX - 1)), vec![]);
}

fn updates_apply_atomically_and_may_decline<E: KvEngine>(engine: E) {
    let store = store(engine);
    let write = issue(1);
    let id = &write.verification.id;
    store.commit_issue(&write).unwrap();

    let declined = store
        .update_verification(id, &mut |record| {
            record.attempts_used = 99;
            false
        })
        .unwrap()
        .unwrap();
    assert_eq!(declined.attempts_used, 99, "the caller sees its own copy");
    assert_eq!(store.verification(id).unwrap().unwrap().attempts_used, 0);

    const THREADS: u32 = 4;
    const EACH: u32 = 50;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    store
                        .update_verification(id, &mut |record| {
                            record.attempts_used += 1;
                            true
                        })
                        .unwrap();
                }
            });
        }
    });
    let after = store.verification(id).unwrap().unwrap();
    assert_eq!(after.attempts_used, THREADS * EACH, "no update was lost");
}

fn the_outbox_pages_in_the_order_jobs_were_made_and_holds_only_jobs<E: KvEngine>(engine: E) {
    let store = store(engine);
    let writes: Vec<IssueWrite> = (0..5).map(issue).collect();
    for write in &writes {
        store.commit_issue(write).unwrap();
    }
    // Records whose keys sort right after the outbox's ("q/", "u/", "v/", "x/").
    store.save_quota("twilio", &QuotaUsage::default()).unwrap();
    store
        .save_tenant_usage("acme", &TenantUsage::default())
        .unwrap();

    let mut expected: Vec<JobId> = writes.iter().map(|w| w.job.job_id.clone()).collect();
    expected.sort_by(|a, b| (a.made(), a.as_str()).cmp(&(b.made(), b.as_str())));
    assert_eq!(paged_outbox(&store, 2), expected);
}

/// The outbox's job ids, read `per_page` at a time.
fn paged_outbox<E: KvEngine>(store: &RecordStore<E>, per_page: usize) -> Vec<JobId> {
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.outbox_page(after.as_ref(), per_page).unwrap();
        assert!(page.jobs.len() <= per_page);
        let Some(next) = page.next else { break };
        after = Some(next);
        paged.extend(page.jobs.into_iter().map(|job| job.job_id));
    }
    paged
}

fn finishing_a_job_records_its_outcome_then_leaves_the_outbox<E: KvEngine>(engine: E) {
    let store = store(engine);
    let (first, second) = (issue(1), issue(2));
    store.commit_issue(&first).unwrap();
    store.commit_issue(&second).unwrap();
    store
        .finish_job(&first.job, &|record| {
            record.delivery = DeliveryState::Sent;
            record.provider = Some("twilio".into());
        })
        .unwrap();
    let record = store.verification(&first.verification.id).unwrap().unwrap();
    assert_eq!(record.delivery, DeliveryState::Sent);
    assert_eq!(record.provider.as_deref(), Some("twilio"));
    assert_eq!(outbox_ids(&store), vec![second.job.job_id.clone()]);
    let untouched = store
        .verification(&second.verification.id)
        .unwrap()
        .unwrap();
    assert_eq!(untouched.delivery, DeliveryState::Queued);
}

/// A store written before ids carried their second holds a verification and its job under
/// `v/<id>` and `o/<job id>`: they are read, changed and finished there, not copied.
fn records_of_ids_made_before_ids_carried_their_second_are_kept_where_they_are<E: KvEngine>(
    engine: E,
) {
    let store = store(engine);
    let first = issue(1);
    store.commit_issue(&first).unwrap();
    let id = first.verification.id.clone();
    let (verification_key, job_key) = (keys::verification(&id), keys::outbox(&first.job.job_id));
    let (old_verification_key, old_job_key) = (
        keys::verification_as_first_stored(&id),
        keys::outbox_as_first_stored(&first.job.job_id),
    );
    for (key, old_key) in [
        (&verification_key, &old_verification_key),
        (&job_key, &old_job_key),
    ] {
        let bytes = value(store.engine(), key).unwrap();
        store.engine().insert(old_key, &bytes).unwrap();
        store.engine().remove(key).unwrap();
    }
    let present = |key: &[u8]| value(store.engine(), key).is_some();

    assert_eq!(store.verification(&id).unwrap().unwrap().send_seq, 1);
    assert!(store.outbox_job(&first.job.job_id).unwrap().is_some());
    let other = issue(2);
    store.commit_issue(&other).unwrap();
    assert_eq!(
        paged_outbox(&store, 1),
        vec![other.job.job_id.clone(), first.job.job_id.clone()],
        "a page ending at a job where it was first stored goes on after it"
    );
    store.finish_job(&other.job, &|_| {}).unwrap();
    store
        .update_verification(&id, &mut |record| {
            record.attempts_used = 1;
            true
        })
        .unwrap();
    let mut resend = issue(1);
    resend.verification.id = id.clone();
    resend.verification.send_seq = 2;
    resend.job.job_id = JobId::new(&id, 2);
    resend.job.verification_id = id.clone();
    resend.decided_on = Some(store.verification(&id).unwrap().unwrap());
    store.commit_issue(&resend).unwrap();
    store.finish_job(&first.job, &|_| {}).unwrap();

    let kept = store.verification(&id).unwrap().unwrap();
    assert_eq!(
        (kept.attempts_used, kept.send_seq),
        (0, 2),
        "the resend's record"
    );
    assert!(present(&old_verification_key) && !present(&verification_key));
    assert!(!present(&old_job_key), "the first job left the outbox");
    assert_eq!(outbox_ids(&store), vec![resend.job.job_id.clone()]);
    assert!(present(&keys::outbox(&resend.job.job_id)));
}

/// A store written before ids carried their second has a verification and its job under
/// `v/<id>` and `o/<job id>`, with expiry-index entries naming those keys: the sweep
/// purges them there in their time.
fn records_of_ids_made_before_ids_carried_their_second_are_swept_in_their_time<E: KvEngine>(
    engine: E,
) {
    let store = store(engine);
    let write = issue(1);
    store.commit_issue(&write).unwrap();
    let id = &write.verification.id;
    let moved = [
        (
            keys::verification(id),
            keys::verification_as_first_stored(id),
        ),
        (
            keys::outbox(&write.job.job_id),
            keys::outbox_as_first_stored(&write.job.job_id),
        ),
    ];
    let as_first_stored = |key: &[u8]| {
        moved
            .iter()
            .find(|(now, _)| now.as_slice() == key)
            .map_or(key.to_vec(), |(_, first)| first.clone())
    };
    for (key, first_stored) in &moved {
        let bytes = value(store.engine(), key).unwrap();
        store.engine().insert(first_stored, &bytes).unwrap();
        store.engine().remove(key).unwrap();
    }
    // The index entries as the earlier build wrote them: naming the keys it stored under.
    for (index_key, companions) in store
        .engine()
        .scan(KeyRange::prefix(keys::EXPIRY), 100)
        .unwrap()
    {
        let (index_key, companions) = (index_key.as_ref().to_vec(), companions.as_ref().to_vec());
        let (purge_at, primary) = keys::read_expiry(&index_key).unwrap();
        let primary = as_first_stored(primary);
        let named: Vec<Vec<u8>> = keys::read_expiry_companions(&companions)
            .unwrap()
            .into_iter()
            .map(as_first_stored)
            .collect();
        store.engine().remove(&index_key).unwrap();
        let named: Vec<&[u8]> = named.iter().map(Vec::as_slice).collect();
        store
            .engine()
            .insert(
                &keys::expiry(purge_at, &primary),
                &keys::expiry_companions(&named),
            )
            .unwrap();
    }
    let verification_due = write.verification.expires_at.plus(RETENTION);
    let present = |key: &[u8]| value(store.engine(), key).is_some();

    store.sweep(Timestamp(verification_due.0 - 1), 100).unwrap();
    assert!(store.verification(id).unwrap().is_some());
    assert!(store.outbox_job(&write.job.job_id).unwrap().is_some());

    store.sweep(verification_due, 100).unwrap();
    assert!(store.verification(id).unwrap().is_none());
    assert!(store.outbox_job(&write.job.job_id).unwrap().is_none());
    for (key, first_stored) in &moved {
        assert!(!present(key) && !present(first_stored));
    }
}

fn abandoning_an_issue_cancels_only_the_current_send<E: KvEngine>(engine: E) {
    let store = store(engine);
    let write = issue(1);
    store.commit_issue(&write).unwrap();
    store
        .abandon_issue(&write.job, Some(idempotency_key(&write)))
        .unwrap();
    let record = store.verification(&write.verification.id).unwrap().unwrap();
    assert_eq!(record.status, Status::Canceled);
    assert_eq!(record.delivery, DeliveryState::Failed);
    assert!(store
        .idempotency(idempotency_key(&write))
        .unwrap()
        .is_none());
    assert!(outbox_ids(&store).is_empty());

    // A resend made the first job stale: abandoning it leaves the new send alone.
    let resent = issue(2);
    store.commit_issue(&resent).unwrap();
    store
        .update_verification(&resent.verification.id, &mut |record| {
            record.send_seq = 2;
            true
        })
        .unwrap();
    store.abandon_issue(&resent.job, None).unwrap();
    let record = store
        .verification(&resent.verification.id)
        .unwrap()
        .unwrap();
    assert_eq!(record.status, Status::Pending);
    assert_eq!(record.delivery, DeliveryState::Queued);
    assert!(
        store
            .idempotency(idempotency_key(&resent))
            .unwrap()
            .is_some(),
        "kept when not named"
    );
    assert!(outbox_ids(&store).is_empty());
}

fn owner(message_id: &str, purge_at: Timestamp) -> MessageOwner {
    MessageOwner {
        provider_message_id: message_id.into(),
        verification_id: VerificationId::generate(),
        send_seq: 1,
        purge_at,
    }
}

fn message_owners_are_found_per_provider<E: KvEngine>(engine: E) {
    let store = store(engine);
    let twilio = owner("SM1", NOW.plus_secs(86_400));
    let vonage = owner("SM1", NOW.plus_secs(86_400));
    store.index_message("twilio", &twilio).unwrap();
    store.index_message("vonage", &vonage).unwrap();
    assert_eq!(store.message_owner("twilio", "SM1").unwrap(), Some(twilio));
    assert_eq!(store.message_owner("vonage", "SM1").unwrap(), Some(vonage));
    assert_eq!(store.message_owner("twilio", "SM2").unwrap(), None);
    assert_eq!(store.message_owner("twilio\0SM", "1").unwrap(), None);
}

fn block(prefix: &str, until: Timestamp) -> Block {
    Block {
        prefix: Prefix::new(prefix.into()),
        country: "NG".into(),
        rule: Rule::SequentialNumbers,
        mode: FraudMode::Enforce,
        figures: Figures {
            window_seconds: 600,
            sends: 80,
            judged_sends: 60,
            verified: 0,
            conversion: 0.0,
            baseline_sends: 2.5,
            distinct_numbers: 80,
            longest_run: 40,
            country_sends: 900,
            country_conversion: Some(0.7),
        },
        explanation: "A run of 40 numbers.".into(),
        started_at: NOW,
        until,
    }
}

fn entry(text: &str, note: Option<&str>) -> BlockEntry {
    BlockEntry {
        entry: text.into(),
        note: note.map(Into::into),
        added_at: NOW,
        added_by: "ops".into(),
    }
}

fn usage_blocklist_and_fraud_blocks_round_trip<E: KvEngine>(engine: E) {
    let store = store(engine);
    let quota = QuotaUsage {
        day: PeriodCounter {
            start: Timestamp(1_799_971_200_000),
            counts: QuotaCount { used: 42, fired: 1 },
        },
        month: PeriodCounter {
            start: Timestamp(1_798_761_600_000),
            counts: QuotaCount {
                used: 420,
                fired: 0,
            },
        },
    };
    store.save_quota("twilio", &quota).unwrap();
    assert_eq!(store.quota("twilio").unwrap(), Some(quota));
    assert_eq!(store.quota("vonage").unwrap(), None);
    let usage = TenantUsage {
        hour: PeriodCounter {
            start: Timestamp(1_799_996_400_000),
            counts: SendsAndSpend { sends: 3, spend: 7 },
        },
        day: PeriodCounter {
            start: Timestamp(1_799_971_200_000),
            counts: SendsAndSpend {
                sends: 30,
                spend: 70,
            },
        },
    };
    store.save_tenant_usage("acme", &usage).unwrap();
    assert_eq!(store.tenant_usage("acme").unwrap(), Some(usage));

    store.save_block_entry(&entry("+2348", None)).unwrap();
    store.save_block_entry(&entry("+2347", None)).unwrap();
    store
        .save_block_entry(&entry("+2348", Some("pumped")))
        .unwrap();
    assert_eq!(
        store.blocklist().unwrap(),
        [entry("+2347", None), entry("+2348", Some("pumped"))]
    );
    store.remove_block_entry("+2347").unwrap();
    store.remove_block_entry("+2340").unwrap();
    assert_eq!(store.blocklist().unwrap(), [entry("+2348", Some("pumped"))]);

    let (a, b) = (
        block("+2348031", NOW.plus_secs(3600)),
        block("+2348032", NOW.plus_secs(3600)),
    );
    store.save_fraud_block(&a).unwrap();
    store.save_fraud_block(&b).unwrap();
    assert_eq!(store.fraud_blocks().unwrap(), [a.clone(), b.clone()]);
    store.remove_fraud_block(&a.prefix).unwrap();
    assert_eq!(store.fraud_blocks().unwrap(), [b]);
    assert_eq!(store.blocklist().unwrap().len(), 1, "the lists do not mix");
}

fn the_sweep_purges_each_record_when_it_is_due<E: KvEngine>(engine: E) {
    let store = store(engine);
    // Each due more than an hour after the one before, so none shares another's entry.
    let mut write = issue(1);
    write.destination.purge_at = NOW.plus_secs(60);
    store.commit_issue(&write).unwrap();
    let message = owner("SM1", NOW.plus_secs(7200));
    store.index_message("twilio", &message).unwrap();
    let fraud = block("+2348031", NOW.plus_secs(1800));
    store.save_fraud_block(&fraud).unwrap();
    store.save_block_entry(&entry("+2348", None)).unwrap();
    store.save_quota("twilio", &QuotaUsage::default()).unwrap();

    let destination_due = write.destination.purge_at;
    let verification_due = write.verification.expires_at.plus(RETENTION);
    let idempotency_due = write.idempotency.as_ref().unwrap().1.expires_at;
    let id = &write.verification.id;

    assert_eq!(store.sweep(NOW, 100).unwrap().removed, 0);
    assert_eq!(
        store
            .sweep(Timestamp(destination_due.0 - 1), 100)
            .unwrap()
            .removed,
        0
    );
    assert!(store.destination(&write.destination_key).unwrap().is_some());
    assert_eq!(store.sweep(destination_due, 100).unwrap().removed, 1);
    assert!(store.destination(&write.destination_key).unwrap().is_none());
    assert!(store.verification(id).unwrap().is_some());

    // The fraud block at its end.
    assert_eq!(store.sweep(fraud.until, 100).unwrap().removed, 1);
    assert!(store.fraud_blocks().unwrap().is_empty());

    // The verification and its job, kept for the retention after expiry.
    assert_eq!(store.sweep(verification_due, 100).unwrap().removed, 2);
    assert!(store.verification(id).unwrap().is_none());
    assert!(outbox_ids(&store).is_empty());
    assert!(store.message_owner("twilio", "SM1").unwrap().is_some());

    assert_eq!(store.sweep(message.purge_at, 100).unwrap().removed, 1);
    assert!(store.message_owner("twilio", "SM1").unwrap().is_none());
    assert!(store
        .idempotency(idempotency_key(&write))
        .unwrap()
        .is_some());
    assert_eq!(store.sweep(idempotency_due, 100).unwrap().removed, 1);
    assert!(store
        .idempotency(idempotency_key(&write))
        .unwrap()
        .is_none());

    // Nothing left to sweep, and what never expires is still there.
    assert_eq!(
        store.sweep(Timestamp(u64::MAX - 1), 100).unwrap().removed,
        0
    );
    assert!(store
        .engine()
        .scan(KeyRange::prefix(keys::EXPIRY), 10)
        .unwrap()
        .is_empty());
    assert_eq!(store.blocklist().unwrap().len(), 1);
    assert!(store.quota("twilio").unwrap().is_some());
}

/// An issue without an idempotency key whose verification, destination and job are all
/// due at one time, and that time.
fn issue_due_together(n: u8) -> (IssueWrite, Timestamp) {
    let mut write = issue(n);
    let due = write.verification.expires_at.plus(RETENTION);
    write.destination.purge_at = due;
    write.idempotency = None;
    (write, due)
}

fn the_records_of_an_issue_due_together_share_one_index_entry<E: KvEngine>(engine: E) {
    let store = store(engine);
    let (write, due) = issue_due_together(1);
    store.commit_issue(&write).unwrap();
    let index = store
        .engine()
        .scan(KeyRange::prefix(keys::EXPIRY), 10)
        .unwrap();
    assert_eq!(
        index.len(),
        1,
        "the verification, its destination and its job"
    );

    assert_eq!(store.sweep(Timestamp(due.0 - 1), 100).unwrap().removed, 0);
    assert!(store
        .verification(&write.verification.id)
        .unwrap()
        .is_some());
    assert_eq!(store.sweep(due, 100).unwrap().removed, 3);
    assert!(store
        .verification(&write.verification.id)
        .unwrap()
        .is_none());
    assert!(store.destination(&write.destination_key).unwrap().is_none());
    assert!(outbox_ids(&store).is_empty());
    assert!(store
        .engine()
        .scan(KeyRange::prefix(keys::EXPIRY), 10)
        .unwrap()
        .is_empty());
}

/// A resend that keeps the code keeps the expiry too: its records are due when the first
/// send's are, and the first send's job, if still in the outbox, is swept with them.
fn a_resend_due_at_the_same_time_leaves_the_first_job_its_entry<E: KvEngine>(engine: E) {
    let store = store(engine);
    let (first, due) = issue_due_together(1);
    store.commit_issue(&first).unwrap();
    let mut resend = first.clone();
    resend.verification.send_seq = 2;
    resend.job.send_seq = 2;
    resend.job.job_id = JobId::new(&first.verification.id, 2);
    store.commit_issue(&resend).unwrap();
    assert_eq!(outbox_ids(&store).len(), 2, "neither job finished");

    store.sweep(due, 100).unwrap();
    assert!(outbox_ids(&store).is_empty(), "a job left unswept");
    assert!(store
        .verification(&first.verification.id)
        .unwrap()
        .is_none());
}

/// A destination sent to again before its first verification is swept stays until the
/// second one's time, though it shares the first one's index entry.
fn a_destination_sent_to_again_outlives_its_first_index_entry<E: KvEngine>(engine: E) {
    let store = store(engine);
    let mut first = issue(1);
    let first_due = first.verification.expires_at.plus(RETENTION);
    first.destination.purge_at = first_due;
    store.commit_issue(&first).unwrap();
    let mut second = issue(1);
    second.destination_key = first.destination_key.clone();
    second.verification.expires_at = second.verification.expires_at.plus_secs(600);
    second.destination.purge_at = second.verification.expires_at.plus(RETENTION);
    second.idempotency = None;
    store.commit_issue(&second).unwrap();

    store.sweep(first_due, 100).unwrap();
    assert!(store
        .verification(&first.verification.id)
        .unwrap()
        .is_none());
    assert!(store.destination(&first.destination_key).unwrap().is_some());
    store.sweep(second.destination.purge_at, 100).unwrap();
    assert!(store.destination(&first.destination_key).unwrap().is_none());
}

fn a_record_written_again_is_swept_at_its_newest_time<E: KvEngine>(engine: E) {
    let store = store(engine);
    let early = NOW.plus_secs(60);
    let late = NOW.plus_secs(600);
    store.index_message("twilio", &owner("SM1", early)).unwrap();
    let kept = owner("SM1", late);
    store.index_message("twilio", &kept).unwrap();
    assert_eq!(store.sweep(early, 100).unwrap().removed, 0);
    assert_eq!(
        store.message_owner("twilio", "SM1").unwrap().as_ref(),
        Some(&kept)
    );
    assert_eq!(store.sweep(late, 100).unwrap().removed, 1);
    assert!(store.message_owner("twilio", "SM1").unwrap().is_none());
}

fn the_sweep_visits_at_most_limit_entries<E: KvEngine>(engine: E) {
    let store = store(engine);
    for n in 0..3 {
        let purge_at = NOW.plus_secs(n);
        store
            .index_message("twilio", &owner(&format!("SM{n}"), purge_at))
            .unwrap();
    }
    let later = NOW.plus_secs(60);
    let present = |n: u64| {
        store
            .message_owner("twilio", &format!("SM{n}"))
            .unwrap()
            .is_some()
    };
    assert_eq!(store.sweep(later, 2).unwrap().removed, 2);
    assert_eq!(
        (present(0), present(1), present(2)),
        (false, false, true),
        "the earliest due go first"
    );
    assert_eq!(
        store.sweep(later, 2).unwrap(),
        Swept {
            entries: 1,
            removed: 1
        },
        "fewer entries than asked: none left due"
    );
    assert_eq!(store.sweep(later, 2).unwrap().entries, 0);
}

fn an_unreadable_record_is_an_error<E: KvEngine>(engine: E) {
    let store = store(engine);
    let id = VerificationId::generate();
    let key = keys::verification(&id);
    for bytes in [&[][..], &[2, 0, 0][..], &[1, 0xff, 0xff][..]] {
        store.engine().insert(&key, bytes).unwrap();
        assert!(
            matches!(store.verification(&id), Err(StoreError::Corrupt(_))),
            "{bytes:?}"
        );
        assert!(matches!(
            store.update_verification(&id, &mut |_| true),
            Err(StoreError::Corrupt(_))
        ));
    }
}

// The order of an issue's writes.

/// An issue's records go to the engine in one batch, which the LSM tree writes as one entry
/// of its journal and one pass into its table; a resend's in two around the swap of its
/// verification.
#[test]
fn a_first_issue_is_written_in_one_step_and_a_resend_in_three() {
    let store = store(WatchedEngine::default());
    let steps = || {
        store
            .engine()
            .steps
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let first = issue(1);
    store.commit_issue(&first).unwrap();
    assert_eq!(steps(), 1, "a first issue is one batch");
    assert!(store.engine().writes().len() >= 4, "of several records");

    store
        .commit_issue(&resend_of(&first, first.verification.clone()))
        .unwrap();
    assert_eq!(steps(), 1 + 3, "a resend: its job, the swap, the rest");
    let resent = store.verification(&first.verification.id).unwrap().unwrap();
    assert_eq!(resent.send_seq, 2);
}

/// A store holding the first `count` of `writes`, as a restart after a kill finds it.
fn cut_after(writes: &[Write], count: usize) -> RecordStore<MemoryEngine> {
    let engine = MemoryEngine::new();
    for (key, value) in &writes[..count] {
        engine
            .set(key, value.as_deref())
            .expect("the engine writes");
    }
    store(engine)
}

/// A request delivered again after a kill must find its idempotency record before anything
/// that would refuse it: a destination naming a pending verification refuses a new code
/// within the cooldown, so a request whose first attempt left only that behind was answered
/// `resend_cooldown` and its code never went out.
#[test]
fn every_prefix_of_an_issue_s_writes_that_names_the_pending_verification_remembers_the_request() {
    let store = store(WatchedEngine::default());
    let write = issue(1);
    store.commit_issue(&write).unwrap();
    let writes = store.engine().writes();
    assert!(writes.len() >= 4, "an issue writes several records");
    for cut in 0..=writes.len() {
        let restarted = cut_after(&writes, cut);
        let pending = restarted
            .destination(&write.destination_key)
            .unwrap()
            .and_then(|state| state.pending);
        let remembered = restarted.idempotency(idempotency_key(&write)).unwrap();
        assert!(
            pending.is_none() || remembered.is_some(),
            "after {cut} of {} writes the destination names its pending verification, but the \
             request's idempotency record is not there",
            writes.len()
        );
        if let Some(remembered) = remembered {
            assert!(
                restarted
                    .verification(&remembered.receipt.id)
                    .unwrap()
                    .is_some(),
                "after {cut} writes the idempotency record names a verification not written yet"
            );
        }
    }
}
