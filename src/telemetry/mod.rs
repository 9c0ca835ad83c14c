//! Logs and metrics (each observable event is a struct whose `emit()` writes both), and the
//! events platforms are told of (`platform`).
//! No event carries a code, a destination or a verification id in a metric label.

pub mod events;
pub mod memory;
pub mod metrics;
pub mod platform;

/// `[log]`: how log lines are written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default: a line for people) or `json` (an object a line, for collectors).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// and the spans it ran in; the same fields as the text lines.
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), output on stderr in
/// `format`.
pub fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The HTTP framework reports each malformed request (a bad header, a body shorter than
    // its Content-Length) at ERROR: a client's mistake, not otpd's, which anyone could
    // otherwise use to flood the log. Shown only when RUST_LOG names actix_http.
    let asked_for = std::env::var("RUST_LOG").is_ok_and(|value| value.contains("actix_http"));
    if !asked_for {
        filter = filter.add_directive(
            "actix_http::h1::dispatcher=off"
                .parse()
                .expect("a valid directive"),
        );
    }
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => subscriber.try_init(),
        LogFormat::Json => subscriber.json().try_init(),
    };
}
