//! Delivering jobs: what to do with a job (`plan`), when to retry (`retry`), the message
//! text (`templates`), when to stop using a provider (`breaker`), the SenderActor that does
//! the I/O, and outbox recovery at start.

pub mod breaker;
pub mod health;
pub mod plan;
pub mod receipt;
pub mod recovery;
pub mod retry;
pub mod sender;
pub mod templates;

pub use sender::SenderActor;
pub use templates::Templates;
