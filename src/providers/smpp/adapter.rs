//! SMPP 3.4 to an SMSC: one persistent transceiver bind, at most `window` submits
//! unanswered, `enquire_link` to keep it, a new bind (with backoff) when it drops; GSM 7-bit
//! when the text allows it, UCS-2 otherwise; delivery receipts come back on the bind.

use async_trait::async_trait;
use rusmpp::extra::encoding::ucs2::Ucs2;
use rusmpp::extra::encoding::EncodedSubmitSmExt;
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvTag};
use rusmpp::types::{AnyOctetString, COctetString};
use rusmpp::values::{EsmClass, Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandStatus, Pdu};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

use super::receipts::receipt_of;
use super::session::{status_name, Credentials, Lost, OnDeliver, Session};
use crate::providers::kind::BuildError;
use crate::providers::receipts::ReceiptInbox;
use crate::providers::support::{check_timeout, default_timeout_ms};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// The pause an SMSC's "throttled" or "queue full" implies: it gives no time.
pub const THROTTLED_WAIT: Duration = Duration::from_secs(1);
/// The first and the longest wait before binding again after a bind failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MOST_BACKOFF: Duration = Duration::from_secs(30);
/// India's DLT ids, as SMSCs there take them: the principal entity id and the content
/// template id.
const DLT_ENTITY_ID_TAG: u16 = 0x1400;
const DLT_TEMPLATE_ID_TAG: u16 = 0x1401;

fn default_port() -> u16 {
    2775
}

fn default_bind() -> String {
    "transceiver".to_owned()
}

fn default_window() -> usize {
    10
}

fn default_enquire_link_seconds() -> u64 {
    30
}

/// Settings of one SMPP account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// The SMSC's host. Required.
    pub host: String,
    /// Its port. Default 2775.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The account's `system_id`, at most 15 characters. Required.
    pub system_id: String,
    /// Its password, at most 8 characters. Required: give it by the environment
    /// (`OTPD__PROVIDERS__<ID>__PASSWORD`).
    pub password: SecretString,
    /// `system_type`, when the SMSC wants one. Default empty.
    #[serde(default)]
    pub system_type: String,
    /// The sender: a number or an alphanumeric id, at most 20 characters. Required.
    pub source_addr: String,
    /// Its type of number; default 1 (international) for a number, 5 (alphanumeric)
    /// otherwise.
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// Its numbering plan; default 1 (E.164) for a number, 0 otherwise.
    #[serde(default)]
    pub source_npi: Option<u8>,
    /// The bind: `transceiver` (submits and receipts on one connection). Default
    /// `transceiver`.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Submits in flight unanswered, at most. Default 10.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Seconds between keep-alives (`enquire_link`). Default 30.
    #[serde(default = "default_enquire_link_seconds")]
    pub enquire_link_seconds: u64,
    /// Milliseconds a bind or a submit may take. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl SmppConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(format!("{prefix}.host is empty; set the SMSC's host"));
        }
        for (setting, value, most) in [
            ("system_id", self.system_id.as_str(), 15),
            ("password", self.password.expose_secret(), 8),
            ("system_type", self.system_type.as_str(), 12),
            ("source_addr", self.source_addr.as_str(), 20),
        ] {
            let required = setting != "system_type";
            if (required && value.is_empty()) || value.len() > most || !value.is_ascii() {
                problems.push(format!(
                    "{prefix}.{setting} must be ASCII of {} to {most} characters, as SMPP allows",
                    usize::from(required)
                ));
            }
        }
        if self.bind != "transceiver" {
            problems.push(format!(
                "{prefix}.bind is '{}'; otpd binds as a transceiver (submits and receipts on one connection): set \"transceiver\"",
                self.bind
            ));
        }
        if self.window == 0 {
            problems.push(format!("{prefix}.window must be at least 1"));
        }
        if self.enquire_link_seconds == 0 {
            problems.push(format!("{prefix}.enquire_link_seconds must be at least 1"));
        }
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }

    /// The sender's type of number and numbering plan.
    fn source(&self) -> (Ton, Npi) {
        let digits = self.source_addr.trim_start_matches('+');
        let is_number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let (ton, npi) = if is_number { (1, 1) } else { (5, 0) };
        (
            Ton::from(self.source_ton.unwrap_or(ton)),
            Npi::from(self.source_npi.unwrap_or(npi)),
        )
    }
}

/// Sends SMS through an SMSC.
pub struct SmppProvider {
    id: String,
    config: SmppConfig,
    window: Semaphore,
    bound: Mutex<Binding>,
    inbox: Option<ReceiptInbox>,
}

/// The bind, or when the next may be tried.
#[derive(Default)]
struct Binding {
    session: Option<Arc<Session>>,
    next_try: Option<Instant>,
    backoff: Duration,
}

impl SmppProvider {
    pub fn new(
        id: &str,
        config: SmppConfig,
        inbox: Option<ReceiptInbox>,
    ) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        Ok(SmppProvider {
            id: id.to_owned(),
            window: Semaphore::new(config.window),
            config,
            bound: Mutex::new(Binding::default()),
            inbox,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// The standing bind, or a new one.
    async fn session(&self) -> Result<Arc<Session>, ProviderError> {
        let mut binding = self.bound.lock().await;
        if let Some(session) = binding.session.as_ref().filter(|s| s.is_open()) {
            return Ok(Arc::clone(session));
        }
        binding.session = None;
        if let Some(next_try) = binding.next_try {
            if Instant::now() < next_try {
                return Err(ProviderError::Transient {
                    reason: "the SMPP bind is down; otpd binds again shortly".into(),
                    retry_after: None,
                });
            }
        }
        match self.bind().await {
            Ok(session) => {
                let session = Arc::new(session);
                *binding = Binding {
                    session: Some(Arc::clone(&session)),
                    ..Binding::default()
                };
                Ok(session)
            }
            Err(reason) => {
                binding.backoff = (binding.backoff * 2).clamp(FIRST_BACKOFF, MOST_BACKOFF);
                binding.next_try = Some(Instant::now() + binding.backoff);
                Err(ProviderError::Transient {
                    reason: format!("could not bind to the SMSC: {reason}"),
                    retry_after: None,
                })
            }
        }
    }

    async fn bind(&self) -> Result<Session, String> {
        let address = format!("{}:{}", self.config.host, self.config.port);
        let stream = tokio::time::timeout(self.timeout(), tokio::net::TcpStream::connect(&address))
            .await
            .map_err(|_| format!("connecting to {address} took over the timeout"))?
            .map_err(|error| format!("could not connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let credentials = Credentials {
            system_id: &self.config.system_id,
            password: self.config.password.expose_secret(),
            system_type: &self.config.system_type,
        };
        Session::bind(
            stream,
            credentials,
            self.timeout(),
            Duration::from_secs(self.config.enquire_link_seconds),
            self.on_deliver(),
        )
        .await
    }

    /// Where a `deliver_sm` goes: its receipt, if it is one, to the inbox.
    fn on_deliver(&self) -> OnDeliver {
        let (provider, inbox) = (self.id.clone(), self.inbox.clone());
        Arc::new(move |delivered| {
            let (provider, inbox) = (provider.clone(), inbox.clone());
            Box::pin(async move {
                match (inbox, receipt_of(&delivered)) {
                    (Some(inbox), Some(receipt)) => inbox.take(&provider, receipt).await,
                    // A message from a person, or receipts nobody reads: nothing to keep.
                    _ => true,
                }
            })
        })
    }

    fn submit_sm(&self, message: &OutboundMessage) -> Result<SubmitSm, ProviderError> {
        let refused = |what: &str| ProviderError::Permanent {
            reason: format!("the message cannot go by SMPP: {what}"),
        };
        let (source_ton, source_npi) = self.config.source();
        let source = message
            .sender_id
            .as_deref()
            .unwrap_or(&self.config.source_addr);
        let mut submit = SubmitSm::builder()
            .source_addr_ton(source_ton)
            .source_addr_npi(source_npi)
            .source_addr(
                COctetString::from_str(source.trim_start_matches('+'))
                    .map_err(|_| refused("the sender is not ASCII of at most 20 characters"))?,
            )
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(
                COctetString::from_str(message.to.trim_start_matches('+'))
                    .map_err(|_| refused("the number is too long"))?,
            )
            .esm_class(EsmClass::from(0u8))
            .registered_delivery(RegisteredDelivery::from(0x01u8));
        if let Some(registration) = &message.registration {
            for (tag, value) in [
                (DLT_ENTITY_ID_TAG, &registration.entity_id),
                (DLT_TEMPLATE_ID_TAG, &registration.template_id),
            ] {
                submit = submit.push_tlv(MessageSubmissionRequestTlvValue::Other {
                    tag: TlvTag::Other(tag),
                    value: AnyOctetString::from_slice(value.as_bytes()),
                });
            }
        }
        submit
            .build()
            .encode(&message.body)
            .gsm7bit_unpacked()
            .fallback(Ucs2::new())
            .build()
            .map_err(|_| refused("the text does not fit one submit (255 bytes)"))
    }
}

/// Classifies a `submit_sm_resp` status other than success. Throttled and queue full are
/// back-pressure: the provider pauses. A system error, a failed submit or an SMSC that
/// cannot take it now are tried again; every other status (a bad number, a bad sender,
/// a bad message) is the message's, for good.
pub fn classify_status(status: CommandStatus) -> ProviderError {
    let reason = format!("the SMSC answered {}", status_name(status));
    match status {
        CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => ProviderError::Transient {
            reason,
            retry_after: Some(THROTTLED_WAIT),
        },
        CommandStatus::EsmeRsyserr
        | CommandStatus::EsmeRsubmitfail
        | CommandStatus::EsmeRxTAppn
        | CommandStatus::EsmeRinvbndsts
        | CommandStatus::EsmeRunknownerr => ProviderError::Transient {
            reason,
            retry_after: None,
        },
        _ => ProviderError::Permanent { reason },
    }
}

#[async_trait]
impl Provider for SmppProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let submit = self.submit_sm(message)?;
        let _in_flight = self
            .window
            .acquire()
            .await
            .map_err(|_| ProviderError::Transient {
                reason: "the provider is stopping".into(),
                retry_after: None,
            })?;
        let session = self.session().await?;
        let answer = session
            .request(submit, self.timeout())
            .await
            .map_err(|lost| match lost {
                Lost::NotSent(reason) => ProviderError::Transient {
                    reason,
                    retry_after: None,
                },
                Lost::NoAnswer(reason) => ProviderError::Unanswered { reason },
            })?;
        if answer.status() != CommandStatus::EsmeRok {
            return Err(classify_status(answer.status()));
        }
        let provider_message_id = match answer.pdu() {
            Some(Pdu::SubmitSmResp(taken)) => Some(taken.message_id().as_str().to_owned()),
            _ => None,
        };
        Ok(SendReceipt {
            provider_message_id: provider_message_id.filter(|id| !id.is_empty()),
        })
    }
}
