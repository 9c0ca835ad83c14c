//! Providers deliver rendered messages. One trait with one `send`; one file per vendor.

pub mod classify;
pub mod http;
pub mod receipts;
pub mod sandbox;
pub mod settings;
pub mod smtp;
pub mod twilio;
pub mod vonage;

use async_trait::async_trait;
use std::time::Duration;

use crate::domain::{Channel, JobId, VerificationId};

pub use http::{HttpConfig, HttpProvider};
pub use sandbox::SandboxProvider;
pub use settings::{build, BuildError, ProviderSettings, SandboxConfig};
pub use smtp::{SmtpConfig, SmtpProvider, SmtpTls};
pub use twilio::{TwilioConfig, TwilioProvider};
pub use vonage::{VonageConfig, VonageProvider};

/// A message ready to go out. `body` holds the code: it is never logged.
#[derive(Clone)]
pub struct OutboundMessage {
    pub job_id: JobId,
    pub verification_id: VerificationId,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    pub body: String,
    /// The sender ID the destination's country requires, over the provider's own `from`.
    pub sender_id: Option<String>,
}

impl std::fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("job_id", &self.job_id)
            .field("channel", &self.channel)
            .field("body", &"<redacted>")
            .finish()
    }
}

/// What a provider says when it accepts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's own id for the message, for delivery receipts.
    pub provider_message_id: Option<String>,
}

/// A failed send, classified: transient failures may succeed later, permanent ones won't.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("temporary failure: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("rejected: {reason}")]
    Permanent { reason: String },
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Transient { .. })
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. } => *retry_after,
            ProviderError::Permanent { .. } => None,
        }
    }
}

/// Settings checks every adapter shares, each naming the setting under `prefix`.
pub(crate) mod checks {
    /// An optional callback URL must be http(s).
    pub fn callback_url(problems: &mut Vec<String>, setting: &str, url: Option<&str>) {
        if let Some(url) = url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!("{setting} must be an http(s) URL, got '{url}'"));
            }
        }
    }

    /// A send timeout of zero would fail every send.
    pub fn timeout(problems: &mut Vec<String>, prefix: &str, timeout_ms: u64) {
        if timeout_ms == 0 {
            problems.push(format!("{prefix}.timeout_ms must be at least 1"));
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's name in settings, metrics and records.
    fn id(&self) -> &str;

    /// Hands one message to the provider. Adapters never retry: the sender decides.
    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError>;
}
