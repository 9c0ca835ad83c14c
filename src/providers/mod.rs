//! Providers deliver rendered messages: one `Provider` trait with one `send`, a registry of
//! kinds (`registry`), and one folder per vendor with its settings, adapter, receipt reader
//! and the channels it serves.

pub mod classify;
pub mod http;
pub mod kind;
pub mod receipts;
pub mod registry;
pub mod sandbox;
pub mod smpp;
pub mod smtp;
pub mod support;
pub mod twilio;
pub mod voice;
pub mod vonage;
pub mod whatsapp;

use async_trait::async_trait;
use std::time::Duration;

use crate::domain::{Channel, JobId, OtpCode, VerificationId};

pub use http::{HttpConfig, HttpProvider};
pub use kind::{BuildContext, BuildError, ProviderKind};
pub use registry::{BuiltProvider, ProviderSettings, SandboxSettings, SANDBOX};
pub use sandbox::SandboxConfig;
pub use sandbox::SandboxProvider;
pub use smpp::{SmppConfig, SmppProvider};
pub use smtp::{SmtpConfig, SmtpProvider, SmtpTls};
pub use twilio::{TwilioConfig, TwilioProvider, TwilioVoiceConfig, TwilioVoiceProvider};
pub use vonage::{VonageConfig, VonageProvider, VonageVoiceConfig, VonageVoiceProvider};
pub use whatsapp::{WhatsappConfig, WhatsappProvider};

/// A message ready to go out. `body` holds the code: it is never logged.
#[derive(Clone)]
pub struct OutboundMessage {
    pub job_id: JobId,
    pub verification_id: VerificationId,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    /// The text to send (for voice, to read out), or the code alone where the provider's own
    /// template holds the words (WhatsApp): see `Channel::message_form`.
    pub body: String,
    /// The language the person asked for (`de`, `pt-BR`), for providers that pick a text or a
    /// voice of their own by it.
    pub locale: Option<String>,
    /// The code itself, for providers whose own template carries it (WhatsApp), and to mask
    /// it in whatever a provider says back.
    pub code: OtpCode,
    /// The sender ID the destination's country requires, over the provider's own `from`.
    pub sender_id: Option<String>,
    /// The sender's registration with the destination country's regulator, when it
    /// requires one (India's DLT), for the provider to carry in its own form.
    pub registration: Option<Registration>,
}

/// A sender's registration with a country's regulator, as providers must carry it with each
/// message: India's DLT principal entity id and the id of the registered content template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub entity_id: String,
    pub template_id: String,
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
    /// The request went out and no answer came in time (or none that could be read): the
    /// provider may have taken the message. Another provider is tried rather than this one
    /// again, so a provider that stalls costs at most one extra send.
    #[error("no answer: {reason}")]
    Unanswered { reason: String },
}

impl ProviderError {
    /// Whether the message may go out if tried again.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProviderError::Permanent { .. })
    }

    /// Whether the provider may have taken the message though the call failed.
    pub fn may_have_been_taken(&self) -> bool {
        matches!(self, ProviderError::Unanswered { .. })
    }

    /// The same error with `code`, as it is or spelled out, masked wherever the provider's
    /// answer quoted it: a vendor's message may quote the request, and the request holds the
    /// code.
    pub fn masking(self, code: &OtpCode) -> Self {
        let mask = |reason: String| {
            reason
                .replace(&code.spelled_out(), "<code>")
                .replace(code.reveal(), "<code>")
        };
        let mut masked = self;
        let (ProviderError::Transient { reason, .. }
        | ProviderError::Permanent { reason }
        | ProviderError::Unanswered { reason }) = &mut masked;
        *reason = mask(std::mem::take(reason));
        masked
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. } => *retry_after,
            ProviderError::Permanent { .. } | ProviderError::Unanswered { .. } => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_that_quotes_the_code_keeps_it_masked_written_or_spelled() {
        let code = OtpCode::parse("493817").unwrap();
        let quoted = ProviderError::Permanent {
            reason: "bad Body 'Code 493817' and Twiml 'Code 4, 9, 3, 8, 1, 7'".into(),
        };
        assert_eq!(
            quoted.masking(&code).to_string(),
            "rejected: bad Body 'Code <code>' and Twiml 'Code <code>'"
        );
        let throttled = ProviderError::Transient {
            reason: "slow down 493817".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            throttled.masking(&code).retry_after(),
            Some(Duration::from_secs(2))
        );
    }
}
