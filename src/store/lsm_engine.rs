//! fjall, an LSM tree, behind the engine seam. A write appends to a journal and to a table
//! in memory; full tables are written out sorted, and compaction merges them in the
//! background, dropping what was written over; a full compaction now and then drops what
//! was removed (`lsm_compaction`), so the disk holds about what is live (sled's log keeps
//! two to four times that, BENCHMARKS.md). A write costs the same wherever its key falls,
//! where sled rewrites the page it lands on. Flushes are group-committed fsyncs of the
//! journal on a thread of their own. A compare-and-swap reads and writes under the lock of
//! its key's stripe, which every write takes too, so no write slips between the two. After
//! a failed write (a full disk) fjall refuses every write for good, so the keyspace is
//! opened again, which reads the journal back and cuts a torn entry off its end.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::engine::EngineKind;
use super::flusher::GroupFlusher;
use super::kv::{Entry, KeyRange, KvEngine, Put};
use super::lsm_compaction::{self, Compactable, Compaction};
use super::reopening::{Handle, Reopening};
use super::StoreError;
use crate::sync::LockUnpoisoned;

pub struct LsmEngine {
    database: Arc<Reopening<Lsm>>,
    flusher: GroupFlusher,
    stripes: Stripes,
}

/// How the LSM tree is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsmOptions {
    /// Bytes of block cache.
    pub cache_capacity_bytes: u64,
    /// How often the journal's buffer is written out to its file between flushes.
    pub journal_written_every: Duration,
}

impl LsmOptions {
    /// `cache_capacity_bytes` of block cache, the journal written out every
    /// `JOURNAL_WRITTEN_EVERY`.
    pub fn with_cache(cache_capacity_bytes: u64) -> Self {
        LsmOptions {
            cache_capacity_bytes,
            journal_written_every: JOURNAL_WRITTEN_EVERY,
        }
    }
}

/// How often the journal's buffer goes to its file between flushes: a write no flush has
/// asked for yet reaches the operating system within this (sled's writes within 500 ms),
/// and a disk that fails is seen within it, so creates get 503 in broker mode too, where
/// the changelog rather than a flush makes a partition's writes durable.
const JOURNAL_WRITTEN_EVERY: Duration = Duration::from_millis(100);

/// No cap on the tables in memory, nor on the journals on disk, beyond the table each write
/// goes to (`TABLE_IN_MEMORY`, then sealed and written out). fjall waits out a cap in a loop that
/// never looks at whether its background threads have stopped: once a failed write of a
/// table (a full disk) has stopped them, a write waiting there would wait for good,
/// holding the store against being opened again.
const UNCAPPED: u64 = u64::MAX;
/// The bytes a table in memory takes before it is sealed and written out: four times
/// fjall's default, so a node applying a changelog backlog writes out and merges a quarter
/// as many tables (BENCHMARKS.md, "A backlog applied in batches"); sealed tables stay in
/// memory until they are written out.
const TABLE_IN_MEMORY: u32 = 64 * 1024 * 1024;
/// The one partition of the keyspace the records are in.
const RECORDS: &str = "records";

/// The open keyspace, the partition of the records, and the lock that keeps a second
/// process out of the directory (fjall takes none). Dropped in this order: the lock is let
/// go once fjall's threads have stopped.
pub(super) struct Lsm {
    records: fjall::PartitionHandle,
    keyspace: fjall::Keyspace,
    _lock: std::fs::File,
}

impl LsmEngine {
    /// Opens (or creates) the engine in `dir`.
    pub fn open(dir: &Path, options: LsmOptions) -> Result<Self, StoreError> {
        let database: Arc<Reopening<Lsm>> = Reopening::open(dir, options)?;
        let flusher = database.start_flusher()?;
        database.start_periodic_write(
            "journal",
            options.journal_written_every,
            Lsm::write_out_journal,
        )?;
        start_compactions(&database)?;
        Ok(LsmEngine {
            database,
            flusher,
            stripes: Stripes::default(),
        })
    }
}

/// Starts the thread that compacts the tree whole when removed keys have grown it
/// (`lsm_compaction`), counting from the files it holds now.
fn start_compactions(database: &Arc<Reopening<Lsm>>) -> Result<(), StoreError> {
    let bytes = database.maintain(Lsm::bytes_on_disk).unwrap_or(0);
    let mut compaction = Compaction::from(bytes, lsm_compaction::GROWTH_FLOOR);
    database.start_upkeep("compaction", lsm_compaction::LOOK_EVERY, move |tree| {
        compaction.look(tree)
    })
}

impl Lsm {
    /// Sets `key` to `value` (`None`: removes it).
    fn set(&self, key: &[u8], value: Option<&[u8]>) -> fjall::Result<()> {
        self.write_all(&[Put::set(key, value)])
    }

    /// Sets each key to its value (`None`: removes it) in one batch: one entry in the
    /// journal and one pass into the table in memory. The entry stays in the journal's
    /// buffer until the flusher's fsync, the periodic write-out or a full buffer writes it
    /// out, as sled's writes do (a write each cost a system call): nothing is acknowledged
    /// before a flush's fsync, and a process killed before one leaves the journal cut at an
    /// entry, a state the store was in (a returning node applies the changelog again from
    /// the offset the cut journal holds).
    fn write_all(&self, puts: &[Put<'_>]) -> fjall::Result<()> {
        let mut batch = self.keyspace.batch().durability(None);
        for put in puts {
            match put.value {
                Some(value) => batch.insert(&self.records, put.key, value),
                None => batch.remove(&self.records, put.key),
            }
        }
        batch.commit()
    }

    /// What each of `puts`' keys holds before `puts` are made: `None` for a new key, and
    /// for a key written earlier in `puts` what that write leaves in it.
    fn held_before(&self, puts: &[Put<'_>]) -> fjall::Result<Vec<Option<fjall::Slice>>> {
        (puts.iter().enumerate())
            .map(|(at, put)| {
                let earlier = puts[..at]
                    .iter()
                    .rev()
                    .find(|earlier| earlier.key == put.key);
                match earlier {
                    Some(earlier) => Ok(earlier.value.map(fjall::Slice::from)),
                    None if put.new_value().is_some() => Ok(None),
                    None => self.records.get(put.key),
                }
            })
            .collect()
    }

    /// Writes the journal's buffer out to its file, without an fsync.
    fn write_out_journal(&self) -> fjall::Result<()> {
        self.keyspace.persist(fjall::PersistMode::Buffer)
    }
}

impl Compactable for Lsm {
    fn bytes_on_disk(&self) -> u64 {
        self.records.disk_space()
    }

    fn compact_fully(&self) -> Result<(), String> {
        self.records.major_compact().map_err(|error| said(&error))
    }
}

impl Handle for Lsm {
    type Options = LsmOptions;
    type Error = fjall::Error;
    const ENGINE: EngineKind = EngineKind::Lsm;

    fn open(dir: &Path, options: LsmOptions) -> Result<Self, StoreError> {
        let cannot = |reason: String| {
            StoreError::Io(format!(
                "could not open the store in {}: {reason}",
                dir.display()
            ))
        };
        std::fs::create_dir_all(dir).map_err(|error| cannot(error.to_string()))?;
        let lock = std::fs::File::create(dir.join(super::engine::LOCK_FILE))
            .map_err(|error| cannot(error.to_string()))?;
        fs2::FileExt::try_lock_exclusive(&lock).map_err(|error| {
            if error.kind() == fs2::lock_contended_error().kind() {
                cannot("another otpd is using this directory".into())
            } else {
                cannot(format!("could not lock it: {error}"))
            }
        })?;
        let damaged = |error: fjall::Error| {
            let said = said(&error);
            cannot(if fails_on_disk(&error) {
                said
            } else {
                format!(
                    "{said} (its files may be damaged: restore the directory from a backup, \
                     or move it and the state.id file beside it aside to start empty)"
                )
            })
        };
        let keyspace = fjall::Config::new(dir)
            .cache_size(options.cache_capacity_bytes)
            .max_write_buffer_size(UNCAPPED)
            .max_journaling_size(UNCAPPED)
            .open()
            .map_err(damaged)?;
        let records = keyspace
            .open_partition(
                RECORDS,
                fjall::PartitionCreateOptions::default().max_memtable_size(TABLE_IN_MEMORY),
            )
            .map_err(damaged)?;
        Ok(Lsm {
            records,
            keyspace,
            _lock: lock,
        })
    }

    fn fails_the_store(error: &fjall::Error) -> bool {
        fails_on_disk(error)
    }

    fn describe(error: &fjall::Error) -> String {
        said(error)
    }

    fn make_durable(&self) -> Result<(), fjall::Error> {
        self.keyspace.persist(fjall::PersistMode::SyncAll)
    }

    /// Never as it is: after a failed write of a table fjall refuses every write for good
    /// (it is poisoned), and what a failed write left at the journal's end is cut off only
    /// by reading the journal back.
    fn works_again(&self) -> bool {
        false
    }
}

/// Whether `error` is the disk failing (or fjall refusing writes after it did), not one
/// unreadable block: the store is then opened again.
fn fails_on_disk(error: &fjall::Error) -> bool {
    matches!(
        error,
        fjall::Error::Io(_)
            | fjall::Error::Poisoned
            | fjall::Error::Storage(fjall::LsmError::Io(_))
    )
}

/// `error` as a person reads it (fjall's own text is its debug form).
fn said(error: &fjall::Error) -> String {
    match error {
        fjall::Error::Io(error) | fjall::Error::Storage(fjall::LsmError::Io(error)) => {
            error.to_string()
        }
        fjall::Error::Poisoned => {
            "the store stopped taking writes after a failed write (a full disk?)".into()
        }
        other => format!("{other:?}"),
    }
}

/// How many locks the keys are spread over.
const STRIPES: usize = 64;

/// Locks that make a key's compare-and-swap one step against every other write of it.
struct Stripes([Mutex<()>; STRIPES]);

impl Default for Stripes {
    fn default() -> Self {
        Stripes(std::array::from_fn(|_| Mutex::new(())))
    }
}

impl Stripes {
    fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.0[self.of(key)].lock_unpoisoned()
    }

    /// The locks of every stripe `keys` fall in, taken in the stripes' order (so two
    /// callers never wait on each other).
    fn lock_all<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<MutexGuard<'_, ()>> {
        let mut taken = [false; STRIPES];
        for key in keys {
            taken[self.of(key)] = true;
        }
        (self.0.iter().zip(taken))
            .filter(|(_, taken)| *taken)
            .map(|(stripe, _)| stripe.lock_unpoisoned())
            .collect()
    }

    fn of(&self, key: &[u8]) -> usize {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        (hash % STRIPES as u64) as usize
    }
}

impl KvEngine for LsmEngine {
    type Value = fjall::Slice;

    fn get(&self, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
        self.database.with(|lsm| lsm.records.get(key))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let _stripe = self.stripes.lock(key);
        self.database.with(|lsm| lsm.set(key, Some(value)))
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        let _stripe = self.stripes.lock(key);
        self.database.with(|lsm| lsm.set(key, None))
    }

    /// One batch, where a write each would go into the journal and the table once per key.
    fn write_all(&self, puts: &[Put<'_>]) -> Result<(), StoreError> {
        let _stripes = self.stripes.lock_all(puts.iter().map(|put| put.key));
        self.database.with(|lsm| lsm.write_all(puts))
    }

    /// The keys read and the batch written under their stripes' locks, so no write slips
    /// between the two.
    fn replace_all(&self, puts: &[Put<'_>]) -> Result<Vec<Option<fjall::Slice>>, StoreError> {
        let _stripes = self.stripes.lock_all(puts.iter().map(|put| put.key));
        self.database.with(|lsm| {
            let held = lsm.held_before(puts)?;
            lsm.write_all(puts)?;
            Ok(held)
        })
    }

    fn replace(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<fjall::Slice>, StoreError> {
        let _stripe = self.stripes.lock(key);
        self.database.with(|lsm| {
            let old = lsm.records.get(key)?;
            lsm.set(key, value)?;
            Ok(old)
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let _stripe = self.stripes.lock(key);
        self.database.with(|lsm| {
            if lsm.records.get(key)?.as_deref() != expected {
                return Ok(false);
            }
            lsm.set(key, new)?;
            Ok(true)
        })
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<fjall::Slice>>, StoreError> {
        self.database
            .with(|lsm| range.walk(limit, |bounds| lsm.records.range::<&[u8], _>(bounds)))
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.flush().boxed()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.database
            .health(|lsm| lsm.records.get(b"health").map(|_| ()))
    }

    fn reopens(&self) -> u64 {
        self.database.reopens()
    }
}

#[cfg(test)]
mod tests {
    use super::super::reopening::testing;
    use super::*;

    const OPTIONS: LsmOptions = LsmOptions {
        cache_capacity_bytes: 1 << 20,
        journal_written_every: JOURNAL_WRITTEN_EVERY,
    };

    /// Bytes that do not compress, so a file holding them shows them whole.
    fn scattered(seed: u8) -> Vec<u8> {
        (0..64u32)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed)
            .collect()
    }

    #[test]
    fn flushed_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        testing::flushed_writes_survive_a_reopen(|| LsmEngine::open(dir.path(), OPTIONS));
    }

    /// Whether any file under `dir` holds `bytes`.
    fn some_file_holds(dir: &Path, bytes: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                return some_file_holds(&path, bytes);
            }
            let text = std::fs::read(&path).unwrap();
            text.windows(bytes.len()).any(|window| window == bytes)
        })
    }

    #[tokio::test]
    async fn a_write_goes_to_the_journal_file_with_the_flush_not_a_call_each() {
        let dir = tempfile::tempdir().unwrap();
        let written_out_only_by_flushes = LsmOptions {
            journal_written_every: Duration::from_secs(3600),
            ..OPTIONS
        };
        let engine = LsmEngine::open(dir.path(), written_out_only_by_flushes).unwrap();
        let value = scattered;
        engine.insert(b"v/1", &value(1)).unwrap();
        engine
            .write_all(&[Put::set(b"v/2", Some(&value(2))), Put::set(b"v/3", None)])
            .unwrap();
        assert_eq!(engine.get(b"v/2").unwrap().as_deref(), Some(&value(2)[..]));
        for seed in [1, 2] {
            assert!(
                !some_file_holds(dir.path(), &value(seed)),
                "the writes wait in the journal's buffer for the flusher"
            );
        }

        engine.flush().await.unwrap();
        for seed in [1, 2] {
            assert!(
                some_file_holds(dir.path(), &value(seed)),
                "the flush wrote them out"
            );
        }
    }

    #[tokio::test]
    async fn its_flushes_are_timed_under_its_own_name() {
        let flushes = || {
            crate::telemetry::metrics::metrics()
                .store_flush
                .with_label_values(&["lsm"])
                .get_sample_count()
        };
        let dir = tempfile::tempdir().unwrap();
        let engine = LsmEngine::open(dir.path(), OPTIONS).unwrap();
        let before = flushes();
        engine.insert(b"v/1", b"one").unwrap();
        engine.flush().await.unwrap();
        assert!(
            flushes() > before,
            "the flush is in otpd_store_flush_seconds{{store=\"lsm\"}}"
        );
    }

    #[test]
    fn a_write_no_flush_asks_for_reaches_the_journal_file_within_the_write_out_period() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LsmEngine::open(dir.path(), OPTIONS).unwrap();
        engine.insert(b"v/1", &scattered(1)).unwrap();
        let started = std::time::Instant::now();
        while !some_file_holds(dir.path(), &scattered(1)) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a write no flush asked for was still in the journal's buffer after 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_full_compaction_drops_removed_keys_from_the_files_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LsmEngine::open(dir.path(), OPTIONS).unwrap();
        let key = |n: u32| format!("v/{n:08}").into_bytes();
        let value = |n: u32| format!("verification {n} {}", "x".repeat(100)).into_bytes();
        for n in 0..30_000 {
            engine.insert(&key(n), &value(n)).unwrap();
        }
        for n in 0..30_000 {
            if n % 3 != 0 {
                engine.remove(&key(n)).unwrap();
            }
        }
        let written_out = |lsm: &Lsm| lsm.records.rotate_memtable_and_wait().map(drop);
        engine.database.with(written_out).unwrap();
        let before = engine.database.maintain(Lsm::bytes_on_disk).unwrap();

        let mut compaction = Compaction::from(0, 0);
        let done = engine
            .database
            .maintain(|lsm| compaction.run_if_due(lsm))
            .unwrap()
            .unwrap()
            .expect("a tree grown past its floor is compacted");

        assert_eq!(done.before, before);
        // What is left is the third kept: the removed two thirds and their tombstones are
        // gone from the files (compaction into the first level keeps every tombstone).
        let kept_alone = {
            let other = tempfile::tempdir().unwrap();
            let kept = LsmEngine::open(other.path(), OPTIONS).unwrap();
            for n in (0..30_000).step_by(3) {
                kept.insert(&key(n), &value(n)).unwrap();
            }
            kept.database.with(written_out).unwrap();
            kept.database.maintain(Lsm::bytes_on_disk).unwrap()
        };
        assert!(
            done.after <= kept_alone + kept_alone / 10,
            "{} bytes left where the kept keys alone take {kept_alone} (before: {before})",
            done.after
        );
        for n in 0..30_000 {
            let found = engine.get(&key(n)).unwrap();
            assert_eq!(found.as_deref(), (n % 3 == 0).then(|| value(n)).as_deref());
        }
    }

    #[test]
    fn a_directory_in_use_is_refused_and_so_is_one_sled_made() {
        let dir = tempfile::tempdir().unwrap();
        let engine = LsmEngine::open(dir.path(), OPTIONS).unwrap();
        let Err(StoreError::Io(text)) = LsmEngine::open(dir.path(), OPTIONS) else {
            panic!("a second engine opened a directory in use");
        };
        assert!(
            text.contains("another otpd is using this directory"),
            "{text}"
        );
        drop(engine);

        let sled_dir = tempfile::tempdir().unwrap();
        drop(
            super::super::SledEngine::open(
                sled_dir.path(),
                super::super::SledOptions::uncompressed(1 << 20),
            )
            .unwrap(),
        );
        let Err(StoreError::Io(text)) = LsmEngine::open(sled_dir.path(), OPTIONS) else {
            panic!("an lsm engine opened a sled store");
        };
        assert!(text.contains("store.engine = \"sled\""), "{text}");
    }
}
