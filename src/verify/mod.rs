//! Checking codes: the rules (`rules`) and the store round trip (`service`).

pub mod rules;
pub mod service;

pub use rules::{CheckOutcome, CheckRefusal, Closing};
pub use service::{CheckError, Checker};
