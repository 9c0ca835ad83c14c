//! Test support shared by the integration tests and the load harness: fake provider servers.

pub mod fakes;

pub use fakes::{FakeControl, FakeProviderServer, FakeSmtpServer, RecordedMessage, WireFormat};
