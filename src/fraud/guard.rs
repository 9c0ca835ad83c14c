//! The PumpingGuard: per-prefix and per-country windows of sends and conversions, a sample of
//! each prefix's recent numbers, and the blocks the rules decide. Pure logic: takes `now`.
//!
//! Memory is bounded whatever callers send: at most `max_prefixes` prefixes (the least
//! recently seen are forgotten first, a sixteenth at a time), each with 20 slices of counts
//! and at most `numbers_per_prefix` recent numbers; one window per country (the countries of
//! the phone-number metadata, about 250); at most `max_prefixes` blocks.

use std::collections::{HashMap, VecDeque};

use super::prefix::{Prefix, Target};
use super::rules::{self, Figures, Thresholds};
use super::settings::FraudSettings;
use super::window::{Shape, WindowCounts};
use crate::domain::Timestamp;

pub use crate::domain::fraud::Block;

struct PrefixState {
    counts: WindowCounts,
    /// Recent sends' times and national numbers, oldest first, at most `numbers_per_prefix`.
    recent: VecDeque<(Timestamp, u64)>,
    last_seen: Timestamp,
}

pub struct PumpingGuard {
    settings: FraudSettings,
    shape: Shape,
    thresholds: Thresholds,
    prefixes: HashMap<Prefix, PrefixState>,
    countries: HashMap<String, WindowCounts>,
    blocks: HashMap<Prefix, Block>,
}

impl PumpingGuard {
    pub fn new(settings: &FraudSettings) -> Self {
        PumpingGuard {
            settings: settings.clone(),
            shape: Shape::from_settings(settings),
            thresholds: Thresholds::from_settings(settings),
            prefixes: HashMap::new(),
            countries: HashMap::new(),
            blocks: HashMap::new(),
        }
    }

    /// The active block of `target`'s prefix, if any.
    pub fn block_for(&self, target: &Target, now: Timestamp) -> Option<&Block> {
        self.blocks
            .get(&target.prefix)
            .filter(|block| block.is_active(now))
    }

    /// Counts a send to `target` and applies the rules to its prefix. Returns the block when
    /// this send made the prefix blocked.
    pub fn record_send(&mut self, target: &Target, now: Timestamp) -> Option<Block> {
        self.count_send(target, now);
        if self.block_for(target, now).is_some() {
            return None;
        }
        let block = self.evaluate(target, now)?;
        self.insert_block(block.clone(), now);
        Some(block)
    }

    /// Counts a send to `target` without judging its prefix: another node made it, and
    /// judged it there.
    pub fn count_send(&mut self, target: &Target, now: Timestamp) {
        let shape = self.shape;
        self.countries
            .entry(target.country.clone())
            .or_insert_with(|| WindowCounts::new(&shape, now))
            .record_send(&shape, now);
        if !self.prefixes.contains_key(&target.prefix) && self.prefixes.len() >= self.capacity() {
            self.evict_least_recently_seen();
        }
        let cap = self.settings.numbers_per_prefix;
        let window_start = Timestamp(now.0.saturating_sub(shape.window().as_millis() as u64));
        let state = self
            .prefixes
            .entry(target.prefix.clone())
            .or_insert_with(|| PrefixState {
                counts: WindowCounts::new(&shape, now),
                recent: VecDeque::new(),
                last_seen: now,
            });
        state.counts.record_send(&shape, now);
        state.last_seen = state.last_seen.max(now);
        while state.recent.len() >= cap
            || state
                .recent
                .front()
                .is_some_and(|(at, _)| *at < window_start)
        {
            state.recent.pop_front();
        }
        state.recent.push_back((now, target.national));
    }

    /// Counts the verification of a send to `target` made at `sent_at`.
    pub fn record_conversion(&mut self, target: &Target, sent_at: Timestamp, now: Timestamp) {
        let shape = self.shape;
        if let Some(country) = self.countries.get_mut(&target.country) {
            country.record_conversion(&shape, sent_at, now);
        }
        if let Some(state) = self.prefixes.get_mut(&target.prefix) {
            state.counts.record_conversion(&shape, sent_at, now);
        }
    }

    /// Takes back a block saved before a restart, if it has not ended; it is applied in the
    /// current mode.
    pub fn restore(&mut self, mut block: Block, now: Timestamp) {
        if block.is_active(now) {
            block.mode = self.settings.mode;
            self.insert_block(block, now);
        }
    }

    /// Lifts the active block of the prefix written `prefix` (an operator's decision) and
    /// forgets what was counted for it, so the next sends are judged afresh.
    pub fn lift(&mut self, prefix: &str, now: Timestamp) -> Option<Block> {
        if !self.blocks.get(prefix)?.is_active(now) {
            return None;
        }
        self.prefixes.remove(prefix);
        self.blocks.remove(prefix)
    }

    /// Forgets the block of `prefix` another node lifted, and what was counted for it.
    pub fn forget_block(&mut self, prefix: &Prefix) {
        self.prefixes.remove(prefix);
        self.blocks.remove(prefix);
    }

    /// Every active block, oldest first.
    pub fn active_blocks(&self, now: Timestamp) -> Vec<Block> {
        let mut blocks: Vec<Block> = self
            .blocks
            .values()
            .filter(|block| block.is_active(now))
            .cloned()
            .collect();
        blocks.sort_by(|a, b| (a.started_at, &a.prefix).cmp(&(b.started_at, &b.prefix)));
        blocks
    }

    pub fn tracked_prefixes(&self) -> usize {
        self.prefixes.len()
    }

    fn capacity(&self) -> usize {
        self.settings.max_prefixes.max(1)
    }

    /// The rule that fires on `target`'s prefix now, as a block.
    fn evaluate(&self, target: &Target, now: Timestamp) -> Option<Block> {
        let state = self.prefixes.get(&target.prefix)?;
        let tally = state.counts.tally(&self.shape, now);
        // Both rules need low conversion: the cheap test first, so normal traffic stops here.
        if !rules::converts_low(&tally, &self.thresholds) {
            return None;
        }
        let window_start = Timestamp(now.0.saturating_sub(self.shape.window().as_millis() as u64));
        let mut numbers: Vec<u64> = state
            .recent
            .iter()
            .filter(|(at, _)| *at >= window_start)
            .map(|(_, number)| *number)
            .collect();
        let (distinct, longest_run) =
            rules::longest_run(&mut numbers, self.thresholds.sequential_gap);
        let rule = rules::decide(&tally, longest_run, &self.thresholds)?;
        let country = self
            .countries
            .get(&target.country)
            .map(|counts| counts.tally(&self.shape, now))
            .unwrap_or_default();
        let figures = Figures {
            window_seconds: self.shape.window().as_secs(),
            sends: tally.sends,
            judged_sends: tally.judged,
            verified: tally.verified,
            conversion: round(rules::conversion(&tally, 1).unwrap_or(0.0), 1000.0),
            baseline_sends: round(tally.baseline, 100.0),
            distinct_numbers: distinct,
            longest_run,
            country_sends: country.sends,
            country_conversion: rules::conversion(&country, self.thresholds.min_judged_sends)
                .map(|rate| round(rate, 1000.0)),
        };
        Some(Block {
            explanation: rules::explain(rule, target.prefix.as_str(), &figures, &self.thresholds),
            prefix: target.prefix.clone(),
            country: target.country.clone(),
            rule,
            mode: self.settings.mode,
            figures,
            started_at: now,
            until: now.plus(self.settings.block_duration()),
        })
    }

    fn insert_block(&mut self, block: Block, now: Timestamp) {
        self.blocks.retain(|_, existing| existing.is_active(now));
        if !self.blocks.contains_key(&block.prefix) && self.blocks.len() >= self.capacity() {
            let ending_first = self
                .blocks
                .values()
                .min_by_key(|existing| existing.until)
                .map(|existing| existing.prefix.clone());
            if let Some(prefix) = ending_first {
                self.blocks.remove(&prefix);
            }
        }
        self.blocks.insert(block.prefix.clone(), block);
    }

    /// Forgets the least recently seen sixteenth of the prefixes (at least one), so a stream
    /// of new prefixes costs one scan per sixteenth of the capacity, not one per send.
    fn evict_least_recently_seen(&mut self) {
        let mut seen: Vec<Timestamp> = self.prefixes.values().map(|s| s.last_seen).collect();
        if seen.is_empty() {
            return;
        }
        let count = (seen.len() / 16).max(1);
        let (_, cutoff, _) = seen.select_nth_unstable(count - 1);
        let cutoff = *cutoff;
        let mut to_remove = count;
        self.prefixes.retain(|_, state| {
            if to_remove > 0 && state.last_seen <= cutoff {
                to_remove -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn round(value: f64, scale: f64) -> f64 {
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fraud::{FraudMode, Rule};
    use crate::fraud::prefix::target;

    const START: Timestamp = Timestamp(1_800_000_000_000);

    fn at_ms(ms: u64) -> Timestamp {
        Timestamp(START.0 + ms)
    }

    fn ng(n: u64) -> Target {
        target(&format!("+234803{:07}", n), "NG", 4).unwrap()
    }

    /// A pseudo-random valid-looking national number per `i` within prefix `prefix`.
    fn spread(prefix: &str, i: u64) -> Target {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
        x ^= x >> 29;
        target(&format!("{prefix}{:06}", x % 1_000_000), "NG", 4).unwrap()
    }

    #[test]
    fn a_sequential_pump_is_blocked_with_its_figures() {
        let mut guard = PumpingGuard::new(&FraudSettings::default());
        let mut fired = None;
        // 1,000 sequential numbers, one every 200 ms, none verified.
        for n in 0..1000 {
            if let Some(block) = guard.record_send(&ng(1_000_000 + n), at_ms(n * 200)) {
                fired = Some((n, block));
                break;
            }
        }
        let (n, block) = fired.expect("the pump was never blocked");
        // Nothing can be judged before the first slice is 60 s past its end (90 s in).
        assert!((450..=460).contains(&n), "blocked after {n} sends");
        assert_eq!(block.rule, Rule::SequentialNumbers);
        assert_eq!(block.prefix.as_str(), "+2348031");
        assert_eq!(block.country, "NG");
        assert_eq!(block.mode, FraudMode::Enforce);
        assert_eq!(block.figures.verified, 0);
        assert_eq!(block.figures.conversion, 0.0);
        assert!(block.figures.judged_sends >= 20);
        assert_eq!(block.figures.longest_run, 128);
        assert_eq!(block.until, block.started_at.plus_secs(3600));
        assert!(block.explanation.contains("near-consecutive"));
        let later = at_ms(n * 200 + 1000);
        assert!(guard.block_for(&ng(1_000_999), later).is_some());
        assert!(
            guard.block_for(&ng(2_000_000), later).is_none(),
            "+2348032 is another prefix"
        );
        assert!(guard
            .block_for(&ng(1_000_999), block.until.plus_secs(1))
            .is_none());
    }

    #[test]
    fn a_surge_of_random_numbers_with_no_conversion_is_blocked() {
        let mut guard = PumpingGuard::new(&FraudSettings::default());
        let mut fired = None;
        for i in 0..2000 {
            if let Some(block) = guard.record_send(&spread("+2348031", i), at_ms(i * 100)) {
                fired = Some(block);
                break;
            }
        }
        let block = fired.expect("the surge was never blocked");
        assert_eq!(block.rule, Rule::SurgeLowConversion);
        assert!(block.figures.sends >= 50);
        assert!(block.figures.longest_run < 20);
        assert!(block.explanation.contains("sends to +2348031"));
    }

    #[test]
    fn normal_traffic_of_many_prefixes_converting_well_is_never_blocked() {
        let mut guard = PumpingGuard::new(&FraudSettings::default());
        // Two hours of 10 sends per second over 40 prefixes; 70 % verified about 20 s later.
        let mut pending: VecDeque<(Timestamp, Target)> = VecDeque::new();
        for i in 0..72_000u64 {
            let now = at_ms(i * 100);
            while pending
                .front()
                .is_some_and(|(sent, _)| sent.plus_secs(20) <= now)
            {
                let (sent, target) = pending.pop_front().unwrap();
                guard.record_conversion(&target, sent, now);
            }
            let prefix = format!("+23480{:02}", 10 + i % 40);
            let target = spread(&prefix, i);
            assert_eq!(guard.record_send(&target, now), None, "blocked at send {i}");
            if (i / 40) % 10 < 7 {
                pending.push_back((now, target));
            }
        }
        assert!(guard.active_blocks(at_ms(7_200_000)).is_empty());
    }

    #[test]
    fn a_lifted_block_ends_now_and_the_prefix_is_judged_afresh() {
        let mut guard = PumpingGuard::new(&FraudSettings::default());
        let (n, block) = (0..2000u64)
            .find_map(|n| Some((n, guard.record_send(&ng(1_000_000 + n), at_ms(n * 200))?)))
            .expect("the pump was never blocked");
        let now = at_ms(n * 200 + 1000);

        assert_eq!(guard.lift("+2348032", now), None, "another prefix");
        assert_eq!(guard.lift(block.prefix.as_str(), now), Some(block.clone()));

        assert_eq!(guard.block_for(&ng(1_000_000 + n + 1), now), None);
        assert!(guard.active_blocks(now).is_empty());
        assert_eq!(guard.lift(block.prefix.as_str(), now), None, "lifted twice");
        // What was counted is gone: the next send is not judged on the old run.
        assert_eq!(guard.record_send(&ng(1_000_000 + n + 1), now), None);
    }

    #[test]
    fn a_marketing_spike_that_converts_is_not_blocked() {
        let mut guard = PumpingGuard::new(&FraudSettings::default());
        // 100 times the usual volume, sequential even, but 80 % verified within 10 s.
        for i in 0..3000u64 {
            let now = at_ms(i * 50);
            let target = ng(1_000_000 + i);
            assert_eq!(guard.record_send(&target, now), None, "blocked at {i}");
            if i % 5 != 0 {
                guard.record_conversion(&target, now, now.plus_secs(10));
            }
        }
    }

    #[test]
    fn monitor_mode_records_the_block_in_monitor_mode() {
        let settings = FraudSettings {
            mode: FraudMode::Monitor,
            conversion_grace_seconds: 0,
            ..FraudSettings::default()
        };
        let mut guard = PumpingGuard::new(&settings);
        let block = (0..1000)
            .find_map(|n| guard.record_send(&ng(n), at_ms(n * 1000)))
            .expect("blocked");
        assert_eq!(block.mode, FraudMode::Monitor);
        assert_eq!(guard.active_blocks(block.started_at), vec![block]);
    }

    #[test]
    fn a_blocked_prefix_does_not_fire_again_until_its_block_ends() {
        let settings = FraudSettings {
            conversion_grace_seconds: 0,
            block_seconds: 60,
            ..FraudSettings::default()
        };
        let mut guard = PumpingGuard::new(&settings);
        let mut fired = Vec::new();
        for n in 0..400 {
            if let Some(block) = guard.record_send(&ng(n), at_ms(n * 1000)) {
                fired.push(block.started_at);
            }
        }
        assert!(fired.len() >= 2, "{fired:?}");
        for pair in fired.windows(2) {
            assert!(pair[1] >= pair[0].plus_secs(60), "{fired:?}");
        }
    }

    #[test]
    fn restored_blocks_apply_until_they_end_in_the_current_mode() {
        let mut guard = PumpingGuard::new(&FraudSettings {
            conversion_grace_seconds: 0,
            ..FraudSettings::default()
        });
        let block = (0..1000)
            .find_map(|n| guard.record_send(&ng(n), at_ms(n * 1000)))
            .unwrap();
        let mut restarted = PumpingGuard::new(&FraudSettings {
            mode: FraudMode::Monitor,
            ..FraudSettings::default()
        });
        restarted.restore(block.clone(), block.started_at.plus_secs(10));
        let restored = restarted.active_blocks(block.started_at.plus_secs(10));
        assert_eq!(restored.len(), 1);
        assert_eq!(restored[0].mode, FraudMode::Monitor);
        let mut late = PumpingGuard::new(&FraudSettings::default());
        late.restore(block.clone(), block.until);
        assert!(late.active_blocks(block.until).is_empty());
    }

    #[test]
    fn tracked_prefixes_stay_within_the_cap_and_the_busy_one_stays() {
        let settings = FraudSettings {
            max_prefixes: 64,
            ..FraudSettings::default()
        };
        let mut guard = PumpingGuard::new(&settings);
        for i in 0..10_000u64 {
            let now = at_ms(i * 10);
            // Every third send goes to the busy prefix; the rest to ever-new ones.
            if i % 3 == 0 {
                guard.record_send(&ng(1_000_000 + i), now);
            } else {
                let other = target(&format!("+233{i:04}000000"), "GH", 4).unwrap();
                guard.record_send(&other, now);
            }
            assert!(guard.tracked_prefixes() <= 64);
        }
        assert!(guard.prefixes.contains_key(&ng(1_000_000).prefix));
    }

    #[test]
    fn recent_numbers_per_prefix_are_capped() {
        let settings = FraudSettings {
            numbers_per_prefix: 32,
            sequential_run: 20,
            ..FraudSettings::default()
        };
        let mut guard = PumpingGuard::new(&settings);
        for n in 0..1000 {
            guard.record_send(&ng(n), at_ms(n));
        }
        assert_eq!(guard.prefixes[&ng(0).prefix].recent.len(), 32);
    }
}
