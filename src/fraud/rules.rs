//! The pumping rules as pure functions of a prefix's figures: a surge with low conversion, and
//! a run of sequential numbers with low conversion. Each finding carries its own explanation.

use super::settings::FraudSettings;
use super::window::Tally;

pub use crate::domain::fraud::{Figures, Rule};

/// The thresholds the rules compare against, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub low_conversion_below: f64,
    pub min_judged_sends: u64,
    pub surge_min_sends: u64,
    pub surge_factor: f64,
    pub sequential_run: u32,
    pub sequential_gap: u64,
}

impl Thresholds {
    pub fn from_settings(settings: &FraudSettings) -> Self {
        Thresholds {
            low_conversion_below: settings.low_conversion_below,
            min_judged_sends: u64::from(settings.min_judged_sends),
            surge_min_sends: u64::from(settings.surge_min_sends),
            surge_factor: settings.surge_factor,
            sequential_run: settings.sequential_run,
            sequential_gap: settings.sequential_gap,
        }
    }
}

/// The conversion of a tally, or `None` while too few sends can be judged to say.
pub fn conversion(tally: &Tally, min_judged_sends: u64) -> Option<f64> {
    (tally.judged >= min_judged_sends.max(1)).then(|| tally.verified as f64 / tally.judged as f64)
}

/// Whether the judged conversion is low: both rules need it.
pub fn converts_low(tally: &Tally, thresholds: &Thresholds) -> bool {
    conversion(tally, thresholds.min_judged_sends)
        .is_some_and(|rate| rate < thresholds.low_conversion_below)
}

/// Rule a): at least `surge_min_sends` in the window, at least `surge_factor` times the usual
/// volume, and low conversion.
pub fn surge_low_conversion(tally: &Tally, thresholds: &Thresholds) -> bool {
    tally.sends >= thresholds.surge_min_sends
        && tally.sends as f64 >= thresholds.surge_factor * tally.baseline
        && converts_low(tally, thresholds)
}

/// Rule b): a run of at least `sequential_run` near-consecutive numbers, and low conversion.
pub fn sequential_numbers(longest_run: u32, tally: &Tally, thresholds: &Thresholds) -> bool {
    longest_run >= thresholds.sequential_run && converts_low(tally, thresholds)
}

/// Sorts and dedups `numbers`; returns how many distinct there are and the length of the
/// longest chain in which each number is at most `gap` above the one before.
pub fn longest_run(numbers: &mut Vec<u64>, gap: u64) -> (u32, u32) {
    numbers.sort_unstable();
    numbers.dedup();
    let mut longest = u32::from(!numbers.is_empty());
    let mut current = longest;
    for pair in numbers.windows(2) {
        if pair[1] - pair[0] <= gap {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 1;
        }
    }
    (numbers.len() as u32, longest)
}

/// The rule that fires on these figures, if any; the sequential rule first, as the more
/// specific evidence.
pub fn decide(tally: &Tally, longest_run: u32, thresholds: &Thresholds) -> Option<Rule> {
    if sequential_numbers(longest_run, tally, thresholds) {
        Some(Rule::SequentialNumbers)
    } else if surge_low_conversion(tally, thresholds) {
        Some(Rule::SurgeLowConversion)
    } else {
        None
    }
}

/// One sentence saying which rule fired on which figures, for people and logs.
pub fn explain(rule: Rule, prefix: &str, figures: &Figures, thresholds: &Thresholds) -> String {
    let conversion = format!(
        "{} of {} sends old enough to judge were verified ({:.1} %, below {:.0} %)",
        figures.verified,
        figures.judged_sends,
        figures.conversion * 100.0,
        thresholds.low_conversion_below * 100.0
    );
    match rule {
        Rule::SurgeLowConversion => format!(
            "{} sends to {prefix} in {} s, at least {}× its usual {:.1} and at least {}, while {conversion}.",
            figures.sends,
            figures.window_seconds,
            thresholds.surge_factor,
            figures.baseline_sends,
            thresholds.surge_min_sends
        ),
        Rule::SequentialNumbers => format!(
            "{} near-consecutive numbers (steps of at most {}) among {} recent numbers of {prefix}, at least {}, while {conversion}.",
            figures.longest_run,
            thresholds.sequential_gap,
            figures.distinct_numbers,
            thresholds.sequential_run
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds::from_settings(&FraudSettings::default())
    }

    fn tally(sends: u64, judged: u64, verified: u64, baseline: f64) -> Tally {
        Tally {
            sends,
            judged,
            verified,
            baseline,
        }
    }

    #[test]
    fn conversion_needs_enough_judged_sends() {
        assert_eq!(conversion(&tally(100, 19, 0, 0.0), 20), None);
        assert_eq!(conversion(&tally(100, 20, 5, 0.0), 20), Some(0.25));
        assert!(converts_low(&tally(100, 40, 9, 0.0), &thresholds()));
        assert!(!converts_low(&tally(100, 40, 10, 0.0), &thresholds()));
    }

    #[test]
    fn a_surge_with_low_conversion_fires() {
        let t = thresholds();
        assert!(surge_low_conversion(&tally(400, 300, 3, 20.0), &t));
        // A new prefix has no usual volume: any surge above the minimum counts.
        assert!(surge_low_conversion(&tally(50, 30, 0, 0.0), &t));
    }

    #[test]
    fn a_surge_needs_the_minimum_the_factor_and_low_conversion() {
        let t = thresholds();
        assert!(
            !surge_low_conversion(&tally(49, 49, 0, 0.0), &t),
            "small traffic"
        );
        assert!(
            !surge_low_conversion(&tally(400, 300, 0, 81.0), &t),
            "under 5× usual"
        );
        assert!(
            !surge_low_conversion(&tally(400, 300, 210, 0.0), &t),
            "a marketing spike that converts"
        );
        assert!(
            !surge_low_conversion(&tally(400, 10, 0, 0.0), &t),
            "too young to judge"
        );
    }

    #[test]
    fn runs_allow_small_gaps_and_ignore_duplicates() {
        let mut numbers = vec![105, 100, 101, 101, 103, 200, 205, 300];
        assert_eq!(longest_run(&mut numbers, 2), (7, 4));
        assert_eq!(longest_run(&mut vec![5, 50, 500], 10), (3, 1));
        assert_eq!(longest_run(&mut Vec::new(), 10), (0, 0));
    }

    #[test]
    fn random_numbers_of_a_prefix_form_no_run() {
        // 128 numbers spread over a million, as real users of one 4-digit prefix are.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut numbers: Vec<u64> = (0..128)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                8_031_000_000 + state % 1_000_000
            })
            .collect();
        let (_, run) = longest_run(&mut numbers, 10);
        assert!(run < 4, "run {run}");
    }

    #[test]
    fn sequential_numbers_need_the_run_and_low_conversion() {
        let t = thresholds();
        assert!(sequential_numbers(20, &tally(30, 25, 0, 100.0), &t));
        assert!(!sequential_numbers(19, &tally(30, 25, 0, 0.0), &t));
        assert!(!sequential_numbers(40, &tally(30, 25, 20, 0.0), &t));
    }

    #[test]
    fn decide_prefers_the_more_specific_rule() {
        let t = thresholds();
        let pumped = tally(400, 300, 0, 0.0);
        assert_eq!(decide(&pumped, 60, &t), Some(Rule::SequentialNumbers));
        assert_eq!(decide(&pumped, 1, &t), Some(Rule::SurgeLowConversion));
        assert_eq!(decide(&tally(400, 300, 250, 0.0), 60, &t), None);
    }

    #[test]
    fn explanations_name_the_figures() {
        let figures = Figures {
            window_seconds: 600,
            sends: 412,
            judged_sends: 380,
            verified: 0,
            conversion: 0.0,
            baseline_sends: 3.07,
            distinct_numbers: 128,
            longest_run: 87,
            country_sends: 500,
            country_conversion: Some(0.1),
        };
        let text = explain(
            Rule::SurgeLowConversion,
            "+2348031",
            &figures,
            &thresholds(),
        );
        for part in [
            "412 sends to +2348031",
            "600 s",
            "3.1",
            "0 of 380",
            "below 25 %",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
        let text = explain(Rule::SequentialNumbers, "+2348031", &figures, &thresholds());
        assert!(text.contains("87 near-consecutive"), "{text}");
    }
}
