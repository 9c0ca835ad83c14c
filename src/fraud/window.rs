//! Sliding-window counts of sends and conversions, kept in fixed slices, and the baseline: a
//! moving average of the usual volume, fed by each slice as it leaves the window.

use std::time::Duration;

use super::settings::{FraudSettings, WINDOW_SLICES};
use crate::domain::Timestamp;

const SLICES: u64 = WINDOW_SLICES as u64;

/// The time shape every window shares, derived once from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Milliseconds per slice: the window's length divided by `WINDOW_SLICES`.
    pub slice_ms: u64,
    /// Sends are judged for conversion once their slice ended this long ago.
    pub grace_ms: u64,
    /// Weight the baseline keeps per slice: 0.5^(slice / half-life).
    pub keep: f64,
    /// Conversion below which a leaving slice's sends do not count as usual volume.
    pub conversion_floor: f64,
}

impl Shape {
    pub fn from_settings(settings: &FraudSettings) -> Self {
        let slice_ms = (settings.window().as_millis() as u64 / SLICES).max(1);
        let half_life_ms = (settings.baseline_half_life_seconds.max(1) * 1000) as f64;
        Shape {
            slice_ms,
            grace_ms: settings.grace().as_millis() as u64,
            keep: 0.5_f64.powf(slice_ms as f64 / half_life_ms),
            conversion_floor: settings.low_conversion_below,
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.slice_ms * SLICES)
    }

    fn index(&self, at: Timestamp) -> u64 {
        at.0 / self.slice_ms
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slice {
    index: u64,
    sends: u32,
    verified: u32,
}

/// What a window holds at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Sends in the window.
    pub sends: u64,
    /// Sends old enough to be judged for conversion (past the grace period).
    pub judged: u64,
    /// Of the judged sends, those verified.
    pub verified: u64,
    /// Usual sends per window, from the baseline.
    pub baseline: f64,
}

/// Counts of one prefix or country: 20 slices of 16 bytes and one average.
#[derive(Debug, Clone)]
pub struct WindowCounts {
    slices: [Slice; WINDOW_SLICES],
    /// The newest slice index the window has moved to.
    latest: u64,
    /// Usual sends per slice (exponentially weighted).
    baseline: f64,
}

impl WindowCounts {
    pub fn new(shape: &Shape, now: Timestamp) -> Self {
        WindowCounts {
            slices: empty_slices(shape.index(now)),
            latest: shape.index(now),
            baseline: 0.0,
        }
    }

    pub fn record_send(&mut self, shape: &Shape, now: Timestamp) {
        let index = self.advance(shape, now);
        let slice = &mut self.slices[(index % SLICES) as usize];
        slice.sends = slice.sends.saturating_add(1);
    }

    /// Counts a verification of a send made at `sent_at`; a send that has left the window
    /// (or was never counted) is ignored. Returns whether it counted.
    pub fn record_conversion(&mut self, shape: &Shape, sent_at: Timestamp, now: Timestamp) -> bool {
        let latest = self.advance(shape, now);
        let index = shape.index(sent_at).min(latest);
        if index + SLICES <= latest {
            return false;
        }
        let slice = &mut self.slices[(index % SLICES) as usize];
        if slice.index != index || slice.verified >= slice.sends {
            return false;
        }
        slice.verified += 1;
        true
    }

    /// The counts at `now` (as of the last record; `now` only decides what is judged).
    pub fn tally(&self, shape: &Shape, now: Timestamp) -> Tally {
        let mut tally = Tally {
            baseline: self.baseline * SLICES as f64,
            ..Tally::default()
        };
        for slice in self.live_slices() {
            tally.sends += u64::from(slice.sends);
            let ended = (slice.index + 1).saturating_mul(shape.slice_ms);
            if ended.saturating_add(shape.grace_ms) <= now.0 {
                tally.judged += u64::from(slice.sends);
                tally.verified += u64::from(slice.verified);
            }
        }
        tally
    }

    fn live_slices(&self) -> impl Iterator<Item = &Slice> {
        let latest = self.latest;
        self.slices
            .iter()
            .filter(move |slice| slice.index <= latest && slice.index + SLICES > latest)
    }

    /// Moves the window to `now`: every slice that leaves feeds the baseline. Returns the
    /// current slice index (time never moves the window back).
    fn advance(&mut self, shape: &Shape, now: Timestamp) -> u64 {
        let target = shape.index(now);
        if target <= self.latest {
            return self.latest;
        }
        let steps = target - self.latest;
        for step in 1..=steps.min(SLICES) {
            let index = self.latest + step;
            let position = (index % SLICES) as usize;
            let leaving = self.slices[position];
            let sample = if leaving.index + SLICES == index {
                usual_volume(&leaving, shape.conversion_floor)
            } else {
                0.0
            };
            self.baseline = shape.keep * self.baseline + (1.0 - shape.keep) * sample;
            self.slices[position] = Slice {
                index,
                ..Slice::default()
            };
        }
        if steps > SLICES {
            // The rest of the gap: empty slices, each only decaying the average.
            self.baseline *= shape.keep.powf((steps - SLICES) as f64);
            self.slices = empty_slices(target);
        }
        self.latest = target;
        target
    }
}

/// Empty slices, each at its place in the window that ends with slice `latest`.
fn empty_slices(latest: u64) -> [Slice; WINDOW_SLICES] {
    let mut slices = [Slice::default(); WINDOW_SLICES];
    for index in latest.saturating_sub(SLICES - 1)..=latest {
        slices[(index % SLICES) as usize].index = index;
    }
    slices
}

/// The sends of a slice that count as usual volume: all of them when it converted normally,
/// only as many as its verifications explain when it did not (none, for pumped traffic).
fn usual_volume(slice: &Slice, conversion_floor: f64) -> f64 {
    let sends = f64::from(slice.sends);
    (f64::from(slice.verified) / conversion_floor).min(sends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape::from_settings(&FraudSettings::default())
    }

    const START: Timestamp = Timestamp(1_800_000_000_000);

    fn secs(s: u64) -> Timestamp {
        START.plus_secs(s)
    }

    #[test]
    fn default_shape_is_twenty_slices_of_thirty_seconds() {
        let shape = shape();
        assert_eq!(shape.slice_ms, 30_000);
        assert_eq!(shape.window(), Duration::from_secs(600));
        assert!((shape.keep - 0.5_f64.powf(30.0 / 3600.0)).abs() < 1e-12);
    }

    #[test]
    fn counts_only_the_last_window() {
        let shape = shape();
        let mut counts = WindowCounts::new(&shape, START);
        for s in 0..10 {
            counts.record_send(&shape, secs(s));
        }
        counts.record_send(&shape, secs(400));
        assert_eq!(counts.tally(&shape, secs(400)).sends, 11);
        counts.record_send(&shape, secs(615));
        assert_eq!(
            counts.tally(&shape, secs(615)).sends,
            2,
            "the first ten left the window"
        );
    }

    #[test]
    fn judges_conversion_only_after_the_grace_period() {
        let shape = shape();
        let mut counts = WindowCounts::new(&shape, START);
        counts.record_send(&shape, secs(1));
        counts.record_send(&shape, secs(2));
        assert!(counts.record_conversion(&shape, secs(1), secs(20)));
        let young = counts.tally(&shape, secs(20));
        assert_eq!((young.sends, young.judged, young.verified), (2, 0, 0));
        // The slice of START ends at +30 s (START is on a slice boundary); +60 s grace.
        let judged = counts.tally(&shape, secs(90));
        assert_eq!((judged.judged, judged.verified), (2, 1));
    }

    #[test]
    fn a_conversion_counts_in_the_slice_of_its_send_and_never_beyond_its_sends() {
        let shape = shape();
        let mut counts = WindowCounts::new(&shape, START);
        counts.record_send(&shape, secs(1));
        counts.record_send(&shape, secs(100));
        assert!(counts.record_conversion(&shape, secs(1), secs(200)));
        assert!(
            !counts.record_conversion(&shape, secs(1), secs(200)),
            "more verified than sent"
        );
        assert!(
            !counts.record_conversion(&shape, secs(50), secs(200)),
            "no send in that slice"
        );
        assert!(
            !counts.record_conversion(&shape, secs(1), secs(700)),
            "the send left the window"
        );
    }

    #[test]
    fn the_baseline_learns_converting_traffic_and_decays() {
        let shape = shape();
        let mut counts = WindowCounts::new(&shape, START);
        // Ten sends every 30 s slice for two hours, 8 of each 10 verified.
        for slice in 0..240 {
            let at = secs(slice * 30);
            for _ in 0..10 {
                counts.record_send(&shape, at);
            }
            for _ in 0..8 {
                counts.record_conversion(&shape, at, at);
            }
        }
        let learned = counts.tally(&shape, secs(240 * 30)).baseline;
        // Usual volume is 200 per window; two half-lives in, the average is 3/4 of the way.
        assert!((140.0..=160.0).contains(&learned), "baseline {learned}");
        // Quiet for two hours: two half-lives later about a quarter is left (a little more:
        // the last window's slices still fed the average as they left).
        counts.record_send(&shape, secs(240 * 30 + 7200));
        let decayed = counts.tally(&shape, secs(240 * 30 + 7200)).baseline;
        let left = decayed / learned;
        assert!((0.25..0.32).contains(&left), "{decayed} vs {learned}");
    }

    #[test]
    fn unconverted_traffic_does_not_raise_the_baseline() {
        let shape = shape();
        let mut counts = WindowCounts::new(&shape, START);
        for slice in 0..240 {
            for _ in 0..100 {
                counts.record_send(&shape, secs(slice * 30));
            }
        }
        assert_eq!(counts.tally(&shape, secs(240 * 30)).baseline, 0.0);
    }
}
