//! SMS-pumping guard: per-prefix sends and conversions, the rules that block a prefix, and
//! the gate that applies, persists and reports those blocks.

pub mod gate;
pub mod guard;
pub mod prefix;
pub mod rules;
pub mod settings;
pub mod window;

use serde::Serialize;

pub use gate::{FraudGate, FraudRefusal};
pub use guard::{Block, PumpingGuard};
pub use prefix::{Prefix, Target};
pub use rules::{Figures, Rule};
pub use settings::{FraudMode, FraudSettings};

/// A block as `GET /v1/fraud/blocks` and the `fraud.blocked` event show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockView {
    pub prefix: String,
    pub country: String,
    pub rule: String,
    pub mode: String,
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
