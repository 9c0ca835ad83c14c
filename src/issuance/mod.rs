//! Issuing codes: the policy (`policy`, `rate_limit`) and the IssuanceActor that applies it.

pub mod actor;
pub mod policy;
pub mod rate_limit;
pub mod request;
pub mod settings;

pub use actor::{IdempotencyInput, IssuanceActor, IssueError, IssueOtp, RequestSource};
pub use policy::{IssueRequest, SendLimits};
