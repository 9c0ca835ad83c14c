//! Everything after issuance: the job protocol, routing (regions, the route table, the
//! provider choice), the sender and its retries, the outcome and receipt recorder, each
//! provider's lane (breaker, pacing, quota), message templates and outbox recovery.

pub mod breaker;
pub mod choose;
pub mod health;
pub mod lane;
pub mod last_hour;
pub mod plan;
pub mod protocol;
pub mod quota;
pub mod receipt;
pub mod recorder;
pub mod recovery;
pub mod region;
pub mod retry;
pub mod router;
pub mod routes;
pub mod sender;
pub mod settings;
pub mod sms_text;
pub mod templates;
pub mod timeline;

pub use protocol::{DelayQueue, Deliver, DeliveryOutcome, DeliveryUnavailable, JobQueue};
pub use region::RegionTable;
pub use router::RouterActor;
pub use sender::SenderActor;
pub use templates::Templates;
