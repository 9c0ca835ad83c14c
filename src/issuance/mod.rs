//! Issuing codes: the policy (`policy`, `rate_limit`) and the IssuanceActor that applies it.

pub mod actor;
pub mod error;
pub mod handed_over;
pub mod issuer;
pub mod policy;
pub mod request;
pub mod settings;

pub use actor::{
    DueStepRefused, EditBlocklist, IdempotencyInput, IssuanceActor, IssueOtp, Issued,
    LiftFraudBlock, RequestSource, StepRefusal, Surface,
};
pub use error::{IssueError, Refusal, RefusalKind};
pub use issuer::{Issuer, IssuerSettings};
pub use policy::{IssueRequest, SendLimits};
