//! Fake provider servers for the integration tests and the load harness (feature `testing`).

pub mod fakes;

pub use fakes::{FakeControl, FakeProviderServer, FakeSmtpServer, RecordedMessage, WireFormat};
