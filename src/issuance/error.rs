//! Why an issue was refused, in no transport's terms: each error names its stable code, a
//! message that tells a person what to do, how long to wait, and the kind of refusal that
//! the HTTP API turns into a status and the broker into an event's error object.

use std::time::Duration;

use super::policy::{SendRefusal, StepRefused};
use crate::access::gate::AdmitError;
use crate::access::AccessDenied;
use crate::domain::time::retry_after_seconds;
use crate::domain::workflow::NoNextStep;
use crate::domain::Channel;
use crate::store::StoreError;
use crate::telemetry::platform::ErrorObject;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("resend cooldown")]
    Cooldown { retry_after: Duration },
    #[error("too many sends")]
    TooManySends { retry_after: Duration },
    #[error("idempotency key reused with another body")]
    IdempotencyKeyReused,
    #[error("unknown template '{0}'")]
    UnknownTemplate(String),
    #[error("channel '{channel}' is not offered")]
    ChannelNotOffered {
        channel: Channel,
        offered: Vec<Channel>,
    },
    #[error(transparent)]
    Access(#[from] AccessDenied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delivery is unavailable: {0}")]
    Unavailable(String),
    #[error("the number's prefix is blocked as suspected SMS pumping")]
    FraudSuspected(crate::fraud::FraudRefusal),
    #[error(transparent)]
    NoNextStep(#[from] NoNextStep),
    #[error("the verification's kept code does not open")]
    CodeNotKept,
}

impl From<AdmitError> for IssueError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Denied(denied) => IssueError::Access(denied),
            AdmitError::Store(error) => IssueError::Store(error),
        }
    }
}

impl From<StepRefused> for IssueError {
    fn from(refused: StepRefused) -> Self {
        match refused {
            StepRefused::NoStep(no_step) => no_step.into(),
            StepRefused::Send(refusal) => refusal.into(),
        }
    }
}

impl From<SendRefusal> for IssueError {
    fn from(refusal: SendRefusal) -> Self {
        match refusal {
            SendRefusal::Cooldown { retry_after } => IssueError::Cooldown { retry_after },
            SendRefusal::TooManySends { retry_after } => IssueError::TooManySends { retry_after },
        }
    }
}

impl IssueError {
    /// The stable code refusals of this kind are logged and counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            IssueError::RateLimited { .. } => "rate_limited",
            IssueError::Cooldown { .. } => "resend_cooldown",
            IssueError::TooManySends { .. } => "too_many_sends",
            IssueError::IdempotencyKeyReused => "idempotency_key_reused",
            IssueError::UnknownTemplate(_) => "unknown_template",
            IssueError::ChannelNotOffered { .. } => "channel_not_offered",
            IssueError::Access(denied) => denied.reason(),
            IssueError::Store(_) | IssueError::Unavailable(_) => "unavailable",
            IssueError::FraudSuspected(_) => "fraud_suspected",
            IssueError::NoNextStep(_) => "no_next_step",
            IssueError::CodeNotKept => "code_not_kept",
        }
    }
}

/// The kind of a refusal, which each transport maps to its own terms (an HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RefusalKind {
    InvalidRequest,
    Forbidden,
    Unprocessable,
    TooManyRequests,
    Unavailable,
    /// The verification is not in a state that allows it.
    Conflict,
}

/// What a refused request is told, whatever carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// Why, where the code alone does not say (e.g. `fraud_suspected` with `rate_limited`).
    pub reason: Option<&'static str>,
}

impl Refusal {
    /// The error object events and API answers carry.
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject {
            code: self.code.to_owned(),
            message: self.message.clone(),
            retry_after_seconds: self.retry_after.map(retry_after_seconds),
            reason: self.reason.map(str::to_owned),
        }
    }

    pub fn new(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            code,
            message: message.into(),
            retry_after: None,
            reason: None,
        }
    }

    fn after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Nothing was done and a retry shortly may succeed.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        Refusal::new(
            RefusalKind::Unavailable,
            "unavailable",
            format!("otpd cannot take this request right now ({detail}); nothing was changed. Retry shortly."),
        )
        .after(Duration::from_secs(1))
    }
}

impl From<&AccessDenied> for Refusal {
    fn from(denied: &AccessDenied) -> Self {
        let kind = match denied {
            AccessDenied::CapReached { .. } => RefusalKind::TooManyRequests,
            _ => RefusalKind::Forbidden,
        };
        let refusal = Refusal::new(kind, denied.code(), denied.to_string());
        match denied.retry_after() {
            Some(wait) => refusal.after(wait),
            None => refusal,
        }
    }
}

impl IssueError {
    /// What the caller is told.
    pub fn refusal(&self) -> Refusal {
        use RefusalKind::*;
        match self {
            IssueError::RateLimited { retry_after } => Refusal::new(
                TooManyRequests,
                "rate_limited",
                "Too many create requests from this tenant or client; wait and retry.",
            )
            .after(*retry_after),
            IssueError::Cooldown { retry_after } => Refusal::new(
                TooManyRequests,
                "resend_cooldown",
                "A code was sent to this destination moments ago; a new one can be sent after the cooldown.",
            )
            .after(*retry_after),
            IssueError::TooManySends { retry_after } => Refusal::new(
                TooManyRequests,
                "too_many_sends",
                "This destination has had the most codes allowed in the send window; wait before sending another.",
            )
            .after(*retry_after),
            IssueError::IdempotencyKeyReused => Refusal::new(
                Unprocessable,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different body; use a new key for a new request.",
            ),
            IssueError::UnknownTemplate(name) => Refusal::new(
                InvalidRequest,
                "invalid_request",
                format!(
                    "'template' is '{name}', which is not configured; omit it or use one of the configured templates"
                ),
            ),
            IssueError::ChannelNotOffered { channel, offered } => Refusal::new(
                InvalidRequest,
                "invalid_request",
                format!(
                    "The {channel} channel is not offered by this otpd: no provider is routed for it (routing.default.{channel}); use {}, or ask the operator to route a provider for {channel}.",
                    Channel::listed(offered.iter().copied())
                ),
            ),
            IssueError::Access(denied) => denied.into(),
            IssueError::Store(error) => Refusal::unavailable(error),
            IssueError::Unavailable(detail) => Refusal::unavailable(detail),
            IssueError::FraudSuspected(refusal) => Refusal {
                reason: Some("fraud_suspected"),
                ..Refusal::new(
                    TooManyRequests,
                    "rate_limited",
                    format!(
                        "Codes to numbers starting {} are paused until {}: traffic to them looks like SMS pumping (rule {}). Nothing was sent. If these are real users, retry after the pause and ask the otpd operator to review GET /v1/fraud/blocks.",
                        refusal.prefix,
                        refusal.until.to_rfc3339(),
                        refusal.rule.as_str()
                    ),
                )
            }
            .after(refusal.retry_after),
            IssueError::NoNextStep(no_step) => Refusal {
                // A step that came due too late is skipped saying so.
                reason: (*no_step == NoNextStep::TooLate).then_some("code_expiring"),
                ..Refusal::new(
                    Conflict,
                    "no_next_step",
                    format!("No step of a workflow can go out: {no_step}. Create a new verification to send a new code."),
                )
            },
            IssueError::CodeNotKept => Refusal::new(
                Conflict,
                "code_not_kept",
                "This verification's code cannot be sent again (its sealed copy does not open: was otpd's sealing key changed?). Create a new verification.",
            ),
        }
    }
}
