//! The vocabulary of otpd: destinations, channels, codes, verifications, delivery jobs, and
//! the records the store keeps for access control, the pumping guard and provider quotas.

pub mod attempt;
pub mod channel;
pub mod code;
pub mod counters;
pub mod destination;
pub mod fraud;
pub mod job;
pub mod name;
pub mod period;
pub mod random;
pub mod rate_limit;
pub mod records;
pub mod slot;
pub mod time;
pub mod verification;
pub mod workflow;

pub use attempt::{AttemptOutcome, AttemptReceipt, DeliveryAttempt, NextStep};
pub use channel::Channel;
pub use code::{CodeHash, CodeHasher, OtpCode};
pub use destination::{Destination, DestinationError};
pub use job::{DeliveryJob, JobId};
pub use name::{is_country_code, is_name};
pub use period::{PeriodCounter, PeriodKind};
pub use records::{
    BlockEntry, DestinationKey, DestinationState, IdempotencyKey, IdempotencyRecord, IssueReceipt,
    QuotaCount, QuotaUsage, SendsAndSpend, TenantUsage,
};
pub use time::Timestamp;
pub use verification::{
    DeliveryState, Presented, Status, Transaction, Verification, VerificationId,
};
pub use workflow::{PlannedStep, StepTrigger, Workflow};
