//! `[store]`: where the state lives, how long finished records stay, how much cache sled gets,
//! whether it compresses.

use serde::Deserialize;
use std::path::PathBuf;

use super::SledOptions;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// State directory. Default `./data`.
    pub dir: PathBuf,
    /// Seconds between sweeps of expired records. Default 60.
    pub sweep_interval_seconds: u64,
    /// Seconds a finished verification stays readable. Default 86400.
    pub retention_seconds: u64,
    /// Bytes of page cache sled may use, as sled counts them. Default 16 MiB.
    pub cache_capacity_bytes: u64,
    /// Whether the store's pages are written compressed. Fixed when the store is created.
    /// Default false.
    pub compression: bool,
}

impl StoreSettings {
    /// How sled is opened for the node's state.
    pub fn sled_options(&self) -> SledOptions {
        SledOptions {
            cache_capacity_bytes: self.cache_capacity_bytes,
            compression: self.compression,
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sweep_interval_seconds == 0 {
            problems.push("store.sweep_interval_seconds must be at least 1".into());
        }
        problems
    }
}
