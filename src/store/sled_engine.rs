//! sled 0.34 behind the engine seam: one tree, tuned for throughput, written key by key
//! (never a batch or transaction, which take sled's global write lock and wait out every
//! flush in progress), with group-committed flushes on a thread of their own, and opened
//! again in place when a failed write (a full disk) has made sled give up.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::flusher::GroupFlusher;
use super::kv::{Entry, KeyRange, KvEngine};
use super::records::RecordStore;
use super::reopening::{Handle, Reopening};
use super::StoreError;

pub struct SledEngine {
    database: Arc<Reopening<sled::Db>>,
    flusher: GroupFlusher,
}

/// How sled is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// Bytes of page cache, as sled counts them.
    pub cache_capacity_bytes: u64,
    /// Whether pages are written compressed (zstd): less disk for more CPU per write. Fixed
    /// when the store is created; sled cannot open a store the other way.
    pub compression: bool,
}

impl SledOptions {
    /// A store written as it is, with `cache_capacity_bytes` of page cache.
    pub fn uncompressed(cache_capacity_bytes: u64) -> Self {
        SledOptions {
            cache_capacity_bytes,
            compression: false,
        }
    }
}

/// zstd's fastest level: the higher ones cost more CPU per write and saved no disk in the
/// measurements (BENCHMARKS.md).
const COMPRESSION_LEVEL: i32 = 1;

impl SledEngine {
    /// Opens (or creates) the engine in `dir`.
    pub fn open(dir: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let database: Arc<Reopening<sled::Db>> = Reopening::open(dir, options)?;
        let flusher = database.start_flusher()?;
        Ok(SledEngine { database, flusher })
    }
}

/// After one I/O error sled refuses every operation for good: it is opened again unless a
/// flush shows it works.
impl Handle for sled::Db {
    type Options = SledOptions;
    type Error = sled::Error;
    const ENGINE: super::engine::EngineKind = super::engine::EngineKind::Sled;

    fn open(dir: &Path, options: SledOptions) -> Result<Self, StoreError> {
        open_sled(dir, options)
    }

    fn fails_the_store(error: &sled::Error) -> bool {
        matches!(error, sled::Error::Io(_))
    }

    fn describe(error: &sled::Error) -> String {
        error.to_string()
    }

    fn make_durable(&self) -> Result<(), sled::Error> {
        self.flush().map(|_| ())
    }

    fn works_again(&self) -> bool {
        self.make_durable().is_ok()
    }
}

fn open_sled(dir: &Path, options: SledOptions) -> Result<sled::Db, StoreError> {
    ensure_same_compression(dir, options.compression)?;
    sled::Config::new()
        .path(dir)
        .cache_capacity(options.cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .use_compression(options.compression)
        .compression_factor(COMPRESSION_LEVEL)
        .open()
        .map_err(|error| {
            let text = error.to_string();
            let hint = if text.contains("lock") {
                "is another otpd using this directory?"
            } else {
                "its files may be damaged: restore the directory from a backup, or move it aside to start empty"
            };
            StoreError::Io(format!(
                "could not open the store in {}: {text} ({hint})",
                dir.display()
            ))
        })
}

/// Refuses to open a store created with the other compression setting, naming the setting
/// to give (sled's own refusal would read as a damaged store).
fn ensure_same_compression(dir: &Path, compression: bool) -> Result<(), StoreError> {
    // sled ends the file with a checksum in binary.
    let Ok(conf) = std::fs::read(dir.join("conf")) else {
        return Ok(());
    };
    match created_compressed(&String::from_utf8_lossy(&conf)) {
        Some(created) if created != compression => Err(StoreError::Io(format!(
            "the store in {} was created with store.compression = {created}, and an existing \
             store cannot change it: set store.compression = {created} \
             (OTPD__STORE__COMPRESSION), or move the directory aside to start an empty store",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Whether a store was created compressed, from the settings sled keeps beside it (its
/// `conf` file); `None` if they do not say.
fn created_compressed(conf: &str) -> Option<bool> {
    conf.lines()
        .find_map(|line| line.strip_prefix("use_compression:"))?
        .trim()
        .parse()
        .ok()
}

impl KvEngine for SledEngine {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.database.with(|db| db.get(key))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.database.with(|db| db.insert(key, value).map(|_| ()))
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.database.with(|db| db.remove(key).map(|_| ()))
    }

    fn replace(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<sled::IVec>, StoreError> {
        self.database.with(|db| match value {
            Some(value) => db.insert(key, value),
            None => db.remove(key),
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        self.database.with(|db| {
            db.compare_and_swap(key, expected, new)
                .map(|swapped| swapped.is_ok())
        })
    }

    fn scan(
        &self,
        range: KeyRange<'_>,
        limit: usize,
    ) -> Result<Vec<Entry<sled::IVec>>, StoreError> {
        self.database
            .with(|db| range.walk(limit, |bounds| db.range::<&[u8], _>(bounds)))
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flusher.flush().boxed()
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.database.health(|db| db.get(b"health").map(|_| ()))
    }

    fn reopens(&self) -> u64 {
        self.database.reopens()
    }
}

/// The store's records on sled: what otpd runs on.
pub type SledStore = RecordStore<SledEngine>;

impl RecordStore<SledEngine> {
    /// Opens (or creates) the store in `dir`; finished verifications are swept `retention`
    /// after expiry.
    pub fn open(dir: &Path, options: SledOptions, retention: Duration) -> Result<Self, StoreError> {
        Ok(RecordStore::new(SledEngine::open(dir, options)?, retention))
    }
}

#[cfg(test)]
mod tests {
    use super::super::reopening::testing::{self, open_again};
    use super::*;

    fn reopen(dir: &Path, options: SledOptions) -> Result<SledEngine, StoreError> {
        open_again(|| SledEngine::open(dir, options))
    }

    /// Writes `count` records alike in shape to a new store and flushes (more alike than
    /// otpd's, which carry hashes and sealed codes: enough to tell compressed from not).
    fn fill(dir: &Path, options: SledOptions, count: u32) -> SledEngine {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let engine = SledEngine::open(dir, options).unwrap();
        for n in 0..count {
            let key = format!("v/0192{n:08}-7c1e-7000-8000-000000000000");
            let value = format!("acme sms +49151{n:08} de login pending queued {n:0>160}");
            engine.insert(key.as_bytes(), value.as_bytes()).unwrap();
        }
        runtime.block_on(engine.flush()).unwrap();
        engine
    }

    #[test]
    fn flushed_writes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        testing::flushed_writes_survive_a_reopen(|| {
            SledEngine::open(dir.path(), SledOptions::uncompressed(1 << 20))
        });
    }

    #[test]
    fn a_compressed_store_takes_less_disk_and_reads_back() {
        let compressed = SledOptions {
            cache_capacity_bytes: 1 << 20,
            compression: true,
        };
        let (plain_dir, packed_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plain = fill(plain_dir.path(), SledOptions::uncompressed(1 << 20), 5_000);
        let packed = fill(packed_dir.path(), compressed, 5_000);
        let (plain_bytes, packed_bytes) = (
            plain.database.with(|db| db.size_on_disk()).unwrap(),
            packed.database.with(|db| db.size_on_disk()).unwrap(),
        );
        assert!(
            packed_bytes * 2 < plain_bytes,
            "compressed {packed_bytes} bytes, plain {plain_bytes}"
        );
        drop(packed);
        let reopened = reopen(packed_dir.path(), compressed).unwrap();
        let key = b"v/019200004999-7c1e-7000-8000-000000000000";
        let value = reopened
            .get(key)
            .unwrap()
            .expect("the last record is there");
        assert!(value.starts_with(b"acme sms +4915100004999"));
    }

    #[test]
    fn a_store_opened_with_the_other_compression_is_refused_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        drop(fill(dir.path(), SledOptions::uncompressed(1 << 20), 10));
        let other = SledOptions {
            cache_capacity_bytes: 1 << 20,
            compression: true,
        };
        let Err(StoreError::Io(text)) = reopen(dir.path(), other) else {
            panic!("a store created uncompressed opened compressed");
        };
        assert!(
            text.contains("created with store.compression = false")
                && text.contains("set store.compression = false"),
            "{text}"
        );
        assert!(reopen(dir.path(), SledOptions::uncompressed(1 << 20)).is_ok());
    }

    #[test]
    fn the_compression_a_store_was_created_with_is_read_from_its_conf() {
        // As sled writes it: three lines, then a checksum in binary.
        let conf = b"segment_size: 524288\nuse_compression: true\nversion: 0.34\nv\x19Q\xc1";
        assert_eq!(
            created_compressed(&String::from_utf8_lossy(conf)),
            Some(true)
        );
        assert_eq!(created_compressed("use_compression: false\n"), Some(false));
        assert_eq!(created_compressed("segment_size: 524288\n"), None);
        assert_eq!(created_compressed("use_compression: maybe\n"), None);
    }
}
