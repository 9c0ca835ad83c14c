//! Issuing codes: the policy (`policy`, `rate_limit`) and the IssuanceActor that applies it.

pub mod actor;
pub mod policy;
pub mod rate_limit;

pub use actor::{IssuanceActor, IssueError, IssueOtp};
pub use policy::{IssueRequest, SendLimits};
