//! SMS-pumping guard: per-prefix sends and conversions, the rules that block a prefix, and
//! the gate that applies, persists and reports those blocks.

pub mod gate;
pub mod guard;
pub mod prefix;
pub mod rules;
pub mod settings;
pub mod signals;
pub mod window;

pub use gate::{BlockKeeper, FraudGate, FraudRefusal};
pub use guard::{Block, PumpingGuard};
pub use prefix::{Prefix, Target};
pub use rules::{Figures, Rule};
pub use settings::{FraudMode, FraudSettings};
pub use signals::Signal;

pub use crate::domain::fraud::BlockView;
