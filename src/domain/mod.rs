//! The vocabulary of otpd: destinations, channels, codes, verifications and delivery jobs.

pub mod channel;
pub mod code;
pub mod destination;
pub mod job;
pub mod name;
pub mod rate_limit;
pub mod records;
pub mod time;
pub mod verification;

pub use channel::Channel;
pub use code::{CodeHash, CodeHasher, OtpCode};
pub use destination::{Destination, DestinationError};
pub use job::{DeliveryJob, JobId};
pub use name::is_name;
pub use records::{
    DestinationKey, DestinationState, IdempotencyKey, IdempotencyRecord, IssueReceipt,
};
pub use time::Timestamp;
pub use verification::{DeliveryState, Status, Verification, VerificationId};
