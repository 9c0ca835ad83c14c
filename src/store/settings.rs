//! `[store]`: where the state lives, how long finished records stay, how much cache sled gets,
//! whether it compresses.

use serde::Deserialize;
use std::path::PathBuf;

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
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.sweep_interval_seconds == 0 {
            problems.push("store.sweep_interval_seconds must be at least 1".into());
        }
        problems
    }
}
