//! Fake provider servers for the integration tests and the load harness (feature `testing`).

pub mod fakes;
pub mod smsc;

pub use fakes::{FakeControl, FakeProviderServer, FakeSmtpServer, RecordedMessage, WireFormat};
pub use smsc::{FakeSmsc, SmscControl, Submitted};
