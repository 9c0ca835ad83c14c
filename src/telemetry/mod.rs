//! Logs and metrics (each observable event is a struct whose `emit()` writes both), and the
//! events platforms are told of (`platform`).
//! No event carries a code, a destination or a verification id in a metric label.

pub mod events;
pub mod memory;
pub mod metrics;
pub mod platform;

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), output on stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
