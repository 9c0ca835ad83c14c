//! A fraud block as it is stored and shown: the number prefix, the rule that fired, the
//! figures it fired on and the mode it applies in. The rules themselves live in `fraud`.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::Timestamp;

/// `+`, the country calling code and the first national digits: `+2348031`.
/// Never a full number: it names a range of at least 10^(national length − prefix digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix as the guard works it out (`fraud::prefix::target`); the text is not checked.
    pub fn new(prefix: String) -> Self {
        Prefix(prefix)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `Prefix` be looked up by its text (same hash and equality as `String`).
impl std::borrow::Borrow<str> for Prefix {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the guard does when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudMode {
    /// Creates to a blocked prefix are refused (429 `rate_limited`, reason `fraud_suspected`).
    Enforce,
    /// Blocks are recorded, logged and published, but nothing is refused.
    Monitor,
    /// Nothing is tracked.
    Off,
}

impl FraudMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudMode::Enforce => "enforce",
            FraudMode::Monitor => "monitor",
            FraudMode::Off => "off",
        }
    }
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Sends surged far above the prefix's usual volume while almost none were verified.
    SurgeLowConversion,
    /// Many near-consecutive numbers of one range were sent codes that almost none verified.
    SequentialNumbers,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::SurgeLowConversion => "surge_low_conversion",
            Rule::SequentialNumbers => "sequential_numbers",
        }
    }
}

/// The figures a decision was made on; what `GET /v1/fraud/blocks` and `fraud.blocked` show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The window everything is counted in, seconds.
    pub window_seconds: u64,
    /// Sends to the prefix in the window.
    pub sends: u64,
    /// Sends old enough to be judged for conversion (past the grace period).
    pub judged_sends: u64,
    /// Of the judged sends, those verified.
    pub verified: u64,
    /// `verified / judged_sends`.
    pub conversion: f64,
    /// The prefix's usual sends per window (moving average of converting traffic).
    pub baseline_sends: f64,
    /// Distinct numbers among the prefix's recent sends.
    pub distinct_numbers: u32,
    /// The longest run of near-consecutive numbers among them.
    pub longest_run: u32,
    /// Sends to the prefix's whole country in the window, for context.
    pub country_sends: u64,
    /// The country's conversion, for context (`None` with too few judged sends).
    pub country_conversion: Option<f64>,
}

/// A prefix the guard suspects of SMS pumping, until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub prefix: Prefix,
    /// ISO 3166 country of the prefix.
    pub country: String,
    pub rule: Rule,
    /// The mode the block is applied in: `enforce` refuses, `monitor` only records.
    pub mode: FraudMode,
    pub figures: Figures,
    /// One sentence: which rule fired on which figures.
    pub explanation: String,
    pub started_at: Timestamp,
    pub until: Timestamp,
}

impl Block {
    pub fn is_active(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

/// A block as `GET /v1/fraud/blocks` and the `fraud.blocked` event show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlockView {
    pub prefix: String,
    pub country: String,
    pub rule: String,
    pub mode: String,
    #[schema(value_type = Object)]
    pub figures: serde_json::Value,
    pub explanation: String,
    pub started_at: String,
    pub until: String,
}

impl BlockView {
    pub fn of(block: &Block) -> Self {
        BlockView {
            prefix: block.prefix.to_string(),
            country: block.country.clone(),
            rule: block.rule.as_str().to_owned(),
            mode: block.mode.as_str().to_owned(),
            figures: serde_json::to_value(&block.figures).unwrap_or_default(),
            explanation: block.explanation.clone(),
            started_at: block.started_at.to_rfc3339(),
            until: block.until.to_rfc3339(),
        }
    }
}
