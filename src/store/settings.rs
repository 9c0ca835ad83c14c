//! `[store]`: where the state lives, which engine keeps it, how long finished records stay,
//! how much cache the engine gets, whether sled compresses.

use serde::Deserialize;
use std::path::PathBuf;

use super::{EngineKind, LsmOptions, SledOptions};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// State directory. Default `./data`.
    pub dir: PathBuf,
    /// The engine under the records, fixed when the store is created. Unset (the default):
    /// the engine that made the store, and for a new store the LSM tree (sled when
    /// `compression` asks for sled's).
    #[serde(default)]
    pub engine: Option<EngineKind>,
    /// Seconds between sweeps of expired records. Default 60.
    pub sweep_interval_seconds: u64,
    /// Seconds a finished verification stays readable. Default 86400.
    pub retention_seconds: u64,
    /// Bytes of cache the engine may use (sled's pages, the LSM tree's blocks). Default
    /// 16 MiB.
    pub cache_capacity_bytes: u64,
    /// Whether sled writes the store's pages compressed. Fixed when the store is created.
    /// Default false.
    pub compression: bool,
}

impl StoreSettings {
    /// Where the engine keeps the node's state.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// How sled is opened for the node's state.
    pub fn sled_options(&self) -> SledOptions {
        SledOptions {
            cache_capacity_bytes: self.cache_capacity_bytes,
            compression: self.compression,
        }
    }

    /// How the LSM tree is opened for the node's state.
    pub fn lsm_options(&self) -> LsmOptions {
        LsmOptions::with_cache(self.cache_capacity_bytes)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sweep_interval_seconds == 0 {
            problems.push("store.sweep_interval_seconds must be at least 1".into());
        }
        match self.engine {
            Some(engine) if self.compression && engine != EngineKind::Sled => {
                problems.push(format!(
                    "store.compression is sled's setting; the {} engine always compresses its \
                     tables: leave store.compression false, or set store.engine = \"sled\"",
                    engine.name()
                ))
            }
            _ => {}
        }
        problems
    }
}
