//! Criterion benchmarks of otpd's hot paths: code generation and HMAC, a check (HMAC compare
//! and the sled update), sealing, the routing decision, the breaker, and issue writes with
//! group-committed flushes (one writer against many).
//!
//! `cargo bench --bench hot_paths` measures; `cargo test --benches` (and so
//! `cargo test --workspace --all-targets`) runs each benchmark once, untimed, as a test.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use secrecy::SecretSlice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd::bus::amqp::topology::{topic_matches, Topology};
use otpd::config::Settings;
use otpd::delivery::breaker::{Breaker, BreakerConfig, Outcome};
use otpd::delivery::region::routing_key;
use otpd::delivery::RegionTable;
use otpd::domain::{
    Channel, CodeHasher, DeliveryJob, DeliveryState, Destination, DestinationKey, DestinationState,
    JobId, OtpCode, Presented, Status, Timestamp, Verification, VerificationId,
};
use otpd::secrets::Sealer;
use otpd::store::{IssueWrite, SledOptions, SledStore, Store};
use otpd::verify::rules::apply_check;

fn key(byte: u8) -> SecretSlice<u8> {
    SecretSlice::from(vec![byte; 32])
}

fn verification(id: VerificationId, hash: otpd::domain::CodeHash, n: u64) -> Verification {
    let now = Timestamp::now();
    Verification {
        id,
        tenant: "bench".into(),
        channel: Channel::Sms,
        to: format!("+4915{:09}", 100_000_000 + n),
        country: Some("DE".into()),
        locale: Some("de".into()),
        template: "login".into(),
        session_id: None,
        code_hash: hash,
        code_length: 6,
        send_seq: 1,
        status: Status::Pending,
        attempts_used: 0,
        // Wrong codes forever: every check writes the record.
        max_attempts: u32::MAX,
        created_at: now,
        expires_at: now.plus_secs(3600),
        last_sent_at: now,
        updated_at: now,
        delivery: DeliveryState::Queued,
        provider: None,
        sent_at: None,
        delivered_at: None,
        transaction: None,
        kept_code: None,
        timeline: Vec::new(),
        workflow: None,
    }
}

fn issue_write(hasher: &CodeHasher, sealer: &Sealer, n: u64) -> IssueWrite {
    let id = VerificationId::generate();
    let code = OtpCode::generate(6);
    let record = verification(id.clone(), hasher.hash(id.as_str(), &code), n);
    let job_id = JobId::new(&id, 1);
    let job = DeliveryJob {
        sealed_code: sealer.seal(&job_id, &code),
        job_id,
        verification_id: id.clone(),
        send_seq: 1,
        tenant: record.tenant.clone(),
        channel: Channel::Sms,
        to: record.to.clone(),
        country: record.country.clone(),
        region: "eu".into(),
        locale: record.locale.clone(),
        template: record.template.clone(),
        expires_at: record.expires_at,
        created_at: record.created_at,
    };
    IssueWrite {
        destination_key: DestinationKey {
            tenant: record.tenant.clone(),
            channel: Channel::Sms,
            to: record.to.clone(),
        },
        destination: DestinationState {
            pending: Some(id),
            recent_sends: vec![record.created_at],
            purge_at: record.expires_at,
            recent: vec![record.id.clone()],
        },
        idempotency: None,
        job,
        verification: record,
        decided_on: None,
    }
}

fn open_store(dir: &std::path::Path) -> SledStore {
    SledStore::open(
        dir,
        SledOptions::uncompressed(64 * 1024 * 1024),
        Duration::from_secs(86_400),
    )
    .expect("open sled")
}

fn codes(c: &mut Criterion) {
    let hasher = CodeHasher::new(key(7));
    let id = VerificationId::generate();
    let mut group = c.benchmark_group("code");
    group.bench_function("generate_6", |b| b.iter(|| OtpCode::generate(black_box(6))));
    let code = OtpCode::generate(6);
    group.bench_function("hmac", |b| {
        b.iter(|| hasher.hash(black_box(id.as_str()), black_box(&code)))
    });
    group.bench_function("generate_and_hmac", |b| {
        b.iter(|| hasher.hash(id.as_str(), &OtpCode::generate(6)))
    });
    group.finish();
}

fn checks(c: &mut Criterion) {
    let hasher = CodeHasher::new(key(7));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(dir.path());
    let sealer = Sealer::new(&key(9));
    let write = issue_write(&hasher, &sealer, 1);
    let id = write.verification.id.clone();
    store.commit_issue(&write).expect("commit");
    let wrong = OtpCode::parse("000000").expect("a code");
    let mut group = c.benchmark_group("check");
    group.bench_function("apply_check_pure", |b| {
        let candidate = hasher.hash(id.as_str(), &wrong);
        b.iter_batched_ref(
            || write.verification.clone(),
            |record| apply_check(record, &candidate, &Presented::default(), Timestamp::now()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("hmac_and_sled_update", |b| {
        b.iter(|| {
            let candidate = hasher.hash(id.as_str(), &wrong);
            let now = Timestamp::now();
            store
                .update_verification(&id, &mut |record| {
                    apply_check(record, &candidate, &Presented::default(), now).is_ok()
                })
                .expect("update")
        })
    });
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let sealer = Sealer::new(&key(9));
    let job = JobId::new(&VerificationId::generate(), 1);
    let code = OtpCode::generate(6);
    let sealed = sealer.seal(&job, &code);
    let mut group = c.benchmark_group("aead");
    group.bench_function("seal", |b| {
        b.iter(|| sealer.seal(black_box(&job), black_box(&code)))
    });
    group.bench_function("open", |b| {
        b.iter(|| sealer.open(black_box(&job), black_box(&sealed)))
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let settings = Settings::load(None).expect("default settings");
    let table = RegionTable::from_settings(&settings.regions);
    let topology = Topology::from_settings(&settings.amqp, &settings.cluster);
    let destinations: Vec<Destination> = [
        "+4915112345678",
        "+14155552671",
        "+61412345678",
        "+2348031234567",
    ]
    .iter()
    .map(|to| Destination::parse(Channel::Sms, to).expect("valid number"))
    .collect();
    let mut group = c.benchmark_group("routing");
    group.bench_function("region_for_and_key", |b| {
        b.iter(|| {
            for destination in &destinations {
                let region = table.region_for(black_box(destination));
                black_box(routing_key(Channel::Sms, region, destination.country()));
            }
        })
    });
    group.bench_function("topic_matches", |b| {
        b.iter(|| {
            black_box(topic_matches(black_box("sms.eu.*"), black_box("sms.eu.DE")))
                & black_box(topic_matches(
                    black_box("email.#"),
                    black_box("email.world.xx"),
                ))
        })
    });
    group.bench_function("queues_for", |b| {
        b.iter(|| topology.queues_for(black_box("sms.eu.DE")).len())
    });
    group.finish();
}

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");
    group.bench_function("allow_and_record", |b| {
        let mut breaker = Breaker::new(BreakerConfig::default());
        let start = Timestamp::now();
        let mut tick = 0u64;
        b.iter(|| {
            tick += 1;
            // A call per millisecond, one in ten failing: the window keeps sliding.
            let now = Timestamp(start.0 + tick);
            let outcome = if tick % 10 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            if let Ok(permit) = breaker.allow(now) {
                black_box(breaker.record(permit, outcome, now));
            }
        })
    });
    group.finish();
}

fn issue_writes(c: &mut Criterion) {
    let hasher = CodeHasher::new(key(7));
    let sealer = Sealer::new(&key(9));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sled_issue");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    for writers in [1usize, 16, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(open_store(dir.path()));
        group.bench_function(format!("commit_and_flush/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let per_writer = iters.div_ceil(writers as u64);
                let writes: Vec<Vec<IssueWrite>> = (0..writers)
                    .map(|w| {
                        (0..per_writer)
                            .map(|i| issue_write(&hasher, &sealer, w as u64 * per_writer + i))
                            .collect()
                    })
                    .collect();
                runtime.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = writes
                        .into_iter()
                        .map(|batch| {
                            let store = Arc::clone(&store);
                            tokio::spawn(async move {
                                for write in batch {
                                    store.commit_issue(&write).expect("commit");
                                    store.flush().await.expect("flush");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("writer");
                    }
                    // Time per write, as if `iters` writes were made.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_writer * writers as u64) as f64)
                })
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    codes,
    checks,
    sealing,
    routing,
    breaker,
    issue_writes
);
criterion_main!(benches);
