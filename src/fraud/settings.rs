//! Settings of the SMS-pumping guard, each default with the reasoning behind it.

use serde::Deserialize;
use std::time::Duration;

pub use crate::domain::fraud::FraudMode;

/// Slices of one window: counts are kept per slice, so the window slides in steps of
/// `window_seconds / WINDOW_SLICES` and a prefix costs a fixed 20 × 16 bytes of counters.
pub const WINDOW_SLICES: usize = 20;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudSettings {
    /// `enforce`, `monitor` or `off`. Default `enforce`: every pumped message is paid for, and
    /// a block needs both a surge (or a run of sequential numbers) and near-zero conversion,
    /// which real users do not produce; a block ends by itself and says why.
    pub mode: FraudMode,
    /// National digits after the country calling code that make a prefix (`+234` `8031`).
    /// Default 4: operators hold number ranges named by their first 3–5 digits; 4 is narrow
    /// enough that a block spares the rest of the operator's subscribers, and wide enough
    /// that one campaign's leased range lands in one or a few prefixes.
    pub prefix_digits: u8,
    /// The sliding window sends and conversions are counted in, seconds. Default 600: long
    /// enough to see a campaign (pumping runs for minutes to hours), short enough to react
    /// within minutes.
    pub window_seconds: u64,
    /// Sends younger than this are not judged for conversion, seconds: they have not had
    /// their chance to be verified yet. Default 60: most people type a code within 30 s;
    /// 60 s keeps a surge's own fresh sends from looking unconverted.
    pub conversion_grace_seconds: u64,
    /// Conversion (verified ÷ judged sends) below which a prefix's traffic is suspect.
    /// Default 0.25: real users verify well above 50 % (typically 60–90 %), pumped numbers
    /// near 0 %; 25 % leaves room for poor delivery and for an attacker mixing in some real
    /// traffic.
    pub low_conversion_below: f64,
    /// Judged sends needed before a conversion counts as low. Default 20: 20 real users
    /// converting at 60 % all failing to verify has odds of 0.4^20 ≈ 10⁻⁸.
    pub min_judged_sends: u32,
    /// Surge rule: sends to the prefix in the window before it can be a surge. Default 50,
    /// so small traffic never trips the rule.
    pub surge_min_sends: u32,
    /// Surge rule: how many times the prefix's usual volume the window must hold. Default 5:
    /// daily traffic curves move a prefix 2–3× against its hour-long average; pumping moves
    /// it by orders of magnitude.
    pub surge_factor: f64,
    /// Half-life of the moving average that is a prefix's usual volume, seconds. Default
    /// 3600: it follows the daily curve, yet a surge of minutes stands out. Sends that did
    /// not convert never raise it, so pumping cannot teach itself as normal.
    pub baseline_half_life_seconds: u64,
    /// Sequential rule: distinct numbers in one run of near-consecutive numbers. Default 20:
    /// random real numbers in a 4-digit prefix (a million numbers or more) almost never sit
    /// within a few of each other; pumping scripts walk a leased range one by one.
    pub sequential_run: u32,
    /// Sequential rule: the largest step between neighbours in a run. Default 10, so a
    /// script that skips a few numbers (or sends in parallel, out of order) still forms a run.
    pub sequential_gap: u64,
    /// How long a block lasts, seconds. Default 3600: long enough that an automated campaign
    /// moves on, short enough that a mistaken block costs real users of one prefix an hour.
    pub block_seconds: u64,
    /// Prefixes tracked at once; the least recently seen go first. Default 10000 (about
    /// 25 MiB at most with `numbers_per_prefix` 128).
    pub max_prefixes: usize,
    /// Recent numbers kept per prefix for the sequential rule. Default 128: enough for a run
    /// of `sequential_run` among other traffic; 16 bytes each.
    pub numbers_per_prefix: usize,
}

impl Default for FraudSettings {
    fn default() -> Self {
        FraudSettings {
            mode: FraudMode::Enforce,
            prefix_digits: 4,
            window_seconds: 600,
            conversion_grace_seconds: 60,
            low_conversion_below: 0.25,
            min_judged_sends: 20,
            surge_min_sends: 50,
            surge_factor: 5.0,
            baseline_half_life_seconds: 3600,
            sequential_run: 20,
            sequential_gap: 10,
            block_seconds: 3600,
            max_prefixes: 10_000,
            numbers_per_prefix: 128,
        }
    }
}

impl FraudSettings {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.conversion_grace_seconds)
    }

    pub fn block_duration(&self) -> Duration {
        Duration::from_secs(self.block_seconds)
    }

    /// Every problem, each naming its setting under `section`.
    pub fn validate(&self, section: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=8).contains(&self.prefix_digits) {
            problems.push(format!(
                "{section}.prefix_digits is {}; allowed: 1 to 8",
                self.prefix_digits
            ));
        }
        if self.window_seconds < WINDOW_SLICES as u64 {
            problems.push(format!(
                "{section}.window_seconds must be at least {WINDOW_SLICES} (the window moves in {WINDOW_SLICES} slices)"
            ));
        }
        if self.conversion_grace_seconds >= self.window_seconds {
            problems.push(format!(
                "{section}.conversion_grace_seconds must be shorter than window_seconds"
            ));
        }
        if !(self.low_conversion_below > 0.0 && self.low_conversion_below <= 1.0) {
            problems.push(format!(
                "{section}.low_conversion_below is {}; allowed: above 0, at most 1",
                self.low_conversion_below
            ));
        }
        if !(self.surge_factor.is_finite() && self.surge_factor >= 1.0) {
            problems.push(format!(
                "{section}.surge_factor is {}; it must be a number of at least 1",
                self.surge_factor
            ));
        }
        for (name, value) in [
            ("min_judged_sends", u64::from(self.min_judged_sends)),
            ("surge_min_sends", u64::from(self.surge_min_sends)),
            (
                "baseline_half_life_seconds",
                self.baseline_half_life_seconds,
            ),
            ("block_seconds", self.block_seconds),
            ("max_prefixes", self.max_prefixes as u64),
        ] {
            if value == 0 {
                problems.push(format!("{section}.{name} must be at least 1"));
            }
        }
        if self.sequential_run < 2 {
            problems.push(format!("{section}.sequential_run must be at least 2"));
        }
        if (self.numbers_per_prefix as u64) < u64::from(self.sequential_run) {
            problems.push(format!(
                "{section}.numbers_per_prefix must be at least sequential_run ({}), or a run can never be seen",
                self.sequential_run
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(FraudSettings::default().validate("fraud").is_empty());
    }

    #[test]
    fn default_toml_holds_the_documented_defaults() {
        #[derive(Deserialize)]
        struct File {
            fraud: FraudSettings,
        }
        let file: File = config::Config::builder()
            .add_source(config::File::from_str(
                crate::config::DEFAULT_SETTINGS,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(file.fraud, FraudSettings::default());
    }

    #[test]
    fn reports_every_problem() {
        let settings = FraudSettings {
            prefix_digits: 0,
            window_seconds: 10,
            low_conversion_below: 0.0,
            surge_factor: 0.5,
            block_seconds: 0,
            sequential_run: 50,
            numbers_per_prefix: 10,
            ..FraudSettings::default()
        };
        let text = settings.validate("fraud").join("\n");
        for expected in [
            "fraud.prefix_digits",
            "fraud.window_seconds",
            "fraud.conversion_grace_seconds",
            "fraud.low_conversion_below",
            "fraud.surge_factor",
            "fraud.block_seconds",
            "fraud.numbers_per_prefix",
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
    }
}
