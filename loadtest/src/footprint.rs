//! The store's size on disk over a run, sampled while the load goes on, so that a long run
//! shows whether sweeping holds it flat.

use otpd::sync::LockUnpoisoned;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

use crate::spawn::mean_store_bytes;

/// How often the store's size is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The store's size (a node's, the mean over the nodes) `seconds` into the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StoreSample {
    pub seconds: f64,
    pub bytes: u64,
}

/// Samples the store directories every [`SAMPLE_EVERY`], from otpd's start until it is
/// finished (a ceiling measured first and the drain after the load count in the run's
/// time).
pub struct StoreWatch {
    samples: Arc<Mutex<Vec<StoreSample>>>,
    task: JoinHandle<()>,
}

impl StoreWatch {
    pub fn start(dirs: Vec<PathBuf>) -> StoreWatch {
        let dirs: Arc<[PathBuf]> = dirs.into();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&samples);
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            loop {
                ticks.tick().await;
                let seconds = started.elapsed().as_secs_f64();
                let dirs = Arc::clone(&dirs);
                let bytes = tokio::task::spawn_blocking(move || mean_store_bytes(&dirs)).await;
                if let Ok(Some(bytes)) = bytes {
                    kept.lock_unpoisoned().push(StoreSample { seconds, bytes });
                }
            }
        });
        StoreWatch { samples, task }
    }

    /// Stops sampling; the samples taken, oldest first.
    pub fn finish(self) -> Vec<StoreSample> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock_unpoisoned())
    }
}

/// How the store grew over the last third of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastThird {
    /// The size when the last third began.
    pub from: u64,
    /// The largest size in the last third.
    pub peak: u64,
    /// The smallest size in the last third.
    pub low: u64,
    /// What a least-squares line through the third's samples rose by over the third, as a
    /// fraction of where the line began: the store's trend, whatever saw it rises and falls
    /// in (a journal written out, a compaction), where `growth` depends on where in that saw
    /// the third begins.
    pub trend: f64,
}

impl LastThird {
    /// Samples spanning less than this say nothing about flatness.
    const FEWEST_SAMPLES: usize = 3;

    /// The last third of `samples` (oldest first), from the first sample at or after two
    /// thirds of the time they span; `None` with too few samples to have thirds.
    pub fn of(samples: &[StoreSample]) -> Option<LastThird> {
        if samples.len() < Self::FEWEST_SAMPLES {
            return None;
        }
        let (first, last) = (samples.first()?, samples.last()?);
        let two_thirds = first.seconds + (last.seconds - first.seconds) * 2.0 / 3.0;
        let start = samples.iter().position(|s| s.seconds >= two_thirds)?;
        let third = &samples[start..];
        Some(LastThird {
            from: third[0].bytes,
            peak: third.iter().map(|s| s.bytes).max()?,
            low: third.iter().map(|s| s.bytes).min()?,
            trend: fitted_rise(third),
        })
    }

    /// The growth over the third, as a fraction of its starting size.
    pub fn growth(&self) -> f64 {
        (self.peak as f64 - self.from as f64) / (self.from.max(1) as f64)
    }
}

/// What the least-squares line through `samples` rises by from the first sample's time to the
/// last's, as a fraction of the line's value at the first (0 for fewer than two times).
fn fitted_rise(samples: &[StoreSample]) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return 0.0;
    };
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.seconds).sum::<f64>() / n;
    let mean_b = samples.iter().map(|s| s.bytes as f64).sum::<f64>() / n;
    let spread: f64 = samples.iter().map(|s| (s.seconds - mean_t).powi(2)).sum();
    if spread == 0.0 {
        return 0.0;
    }
    let slope = samples
        .iter()
        .map(|s| (s.seconds - mean_t) * (s.bytes as f64 - mean_b))
        .sum::<f64>()
        / spread;
    let at = |seconds: f64| mean_b + slope * (seconds - mean_t);
    (at(last.seconds) - at(first.seconds)) / at(first.seconds).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(bytes: &[u64]) -> Vec<StoreSample> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| StoreSample {
                seconds: 10.0 * i as f64,
                bytes,
            })
            .collect()
    }

    #[test]
    fn a_store_growing_in_its_last_third_shows_the_growth() {
        let third = LastThird::of(&samples(&[10, 50, 90, 100, 100, 100, 110])).unwrap();
        assert_eq!((third.from, third.peak, third.low), (100, 110, 100));
        assert!((third.growth() - 0.10).abs() < 1e-9);
        // The line through (40 s, 100), (50 s, 100), (60 s, 110): 98.3 to 108.3.
        assert!(
            (third.trend - 10.0 / (590.0 / 6.0)).abs() < 1e-9,
            "{}",
            third.trend
        );
    }

    #[test]
    fn a_saw_around_a_level_has_no_trend_wherever_its_third_begins() {
        // The third begins at a trough, so its peak is half as much again as its start.
        let saw = [
            100, 150, 100, 150, 100, 150, 100, 150, 100, 150, 100, 150, 100,
        ];
        let third = LastThird::of(&samples(&saw)).unwrap();
        assert_eq!((third.from, third.peak, third.low), (100, 150, 100));
        assert!((third.growth() - 0.5).abs() < 1e-9);
        assert!(third.trend.abs() < 1e-9, "{}", third.trend);
        // A store still rising through its saw shows it.
        let rising: Vec<u64> = saw
            .iter()
            .enumerate()
            .map(|(i, b)| b + 10 * i as u64)
            .collect();
        let third = LastThird::of(&samples(&rising)).unwrap();
        assert!((third.trend - 0.2).abs() < 1e-9, "{}", third.trend);
    }

    #[test]
    fn a_flat_store_and_one_that_shrank_show_none() {
        let flat = LastThird::of(&samples(&[10, 80, 100, 100, 100, 100])).unwrap();
        assert_eq!(flat.growth(), 0.0);
        let shrunk = LastThird::of(&samples(&[10, 80, 100, 120, 100, 90])).unwrap();
        assert_eq!(shrunk.growth(), 0.0, "measured from the third's start");
    }

    #[test]
    fn too_few_samples_have_no_thirds() {
        assert_eq!(LastThird::of(&samples(&[10, 20])), None);
        assert_eq!(LastThird::of(&[]), None);
    }
}
