//! SMPP 3.4 to an SMSC: one persistent transceiver bind, at most `window` submits
//! unanswered, `enquire_link` to keep it, a new bind (with backoff) when it drops; GSM 7-bit
//! when the text allows it, UCS-2 otherwise; delivery receipts come back on the bind.

use async_trait::async_trait;
use rusmpp::extra::encoding::EncodedSubmitSmExt;
use rusmpp::pdus::SubmitSm;
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvTag};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use rusmpp::{CommandStatus, Pdu};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

use super::receipts::{is_receipt, receipt_of};
use super::session::{status_name, Credentials, Lost, OnDeliver, Session};
use crate::providers::kind::BuildError;
use crate::providers::receipts::ReceiptInbox;
use crate::providers::support::{self, check_timeout, default_timeout_ms};
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

fn default_binds() -> usize {
    1
}

/// Most binds one provider keeps.
pub const MOST_BINDS: usize = 16;
/// The widest window: below what one bind queues for writing, so a stalled SMSC never
/// leaves a send waiting on the queue rather than on its timeout.
pub const WIDEST_WINDOW: usize = 200;
/// A bind that ends sooner than this after it was made keeps the backoff growing: an SMSC
/// that drops every bind at once is not bound again in a loop.
const SHORT_LIVED: Duration = Duration::from_secs(10);

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
    /// Submits in flight unanswered on each bind, at most. Default 10.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Binds kept, 1–16, each with its own window; sends take them in turn. Default 1.
    #[serde(default = "default_binds")]
    pub binds: usize,
    /// Seconds between keep-alives (`enquire_link`). Default 30.
    #[serde(default = "default_enquire_link_seconds")]
    pub enquire_link_seconds: u64,
    /// Whether the bind goes over TLS (1.2 or 1.3), the SMSC's certificate checked against
    /// the public CAs and `ca_file`'s. Default false.
    #[serde(default)]
    pub tls: bool,
    /// A PEM bundle of CAs trusted for the SMSC's certificate besides the public ones, with
    /// `tls`. Default unset.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Milliseconds a connection, a TLS handshake, a bind or a submit may each take.
    /// Default 5000.
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
        if !(1..=WIDEST_WINDOW).contains(&self.window) {
            problems.push(format!(
                "{prefix}.window is {}; keep 1 to {WIDEST_WINDOW} submits unanswered on a bind",
                self.window
            ));
        }
        if !(1..=MOST_BINDS).contains(&self.binds) {
            problems.push(format!(
                "{prefix}.binds is {}; keep 1 to {MOST_BINDS} binds (the SMSC's account says how many it allows)",
                self.binds
            ));
        }
        if self.enquire_link_seconds == 0 {
            problems.push(format!("{prefix}.enquire_link_seconds must be at least 1"));
        }
        if self.ca_file.is_some() && !self.tls {
            problems.push(format!(
                "{prefix}.ca_file is set but tls is not; set tls = true to bind over TLS, or leave ca_file out"
            ));
        }
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }

    /// The type of number and numbering plan of `sender`: the settings' for the configured
    /// sender, otherwise 1/1 for a number and 5/0 for a name.
    fn source(&self, sender: &str) -> (Ton, Npi) {
        let (ton, npi) = if support::is_number(sender) {
            (1, 1)
        } else {
            (5, 0)
        };
        if sender != self.source_addr {
            return (Ton::from(ton), Npi::from(npi));
        }
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
    binds: Vec<Bind>,
    /// The bind the next send takes.
    turn: AtomicUsize,
    inbox: Option<ReceiptInbox>,
    /// With `tls`: what the handshake trusts.
    tls: Option<tokio_rustls::TlsConnector>,
}

/// One bind: its window and its session.
struct Bind {
    window: Semaphore,
    bound: Mutex<Binding>,
}

/// The bind, or when the next may be tried.
#[derive(Default)]
struct Binding {
    session: Option<Arc<Session>>,
    bound_at: Option<Instant>,
    next_try: Option<Instant>,
    backoff: Duration,
}

impl Binding {
    /// Waits longer before the next bind: after a refused bind, or one that ended at once.
    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MOST_BACKOFF);
        self.next_try = Some(Instant::now() + self.backoff);
    }
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
        let tls = config
            .tls
            .then(|| {
                let setting = format!("providers.{id}.ca_file");
                crate::tls::client_config(&setting, config.ca_file.as_deref())
                    .map(|client| tokio_rustls::TlsConnector::from(Arc::new(client)))
                    .map_err(|error| BuildError::Invalid(vec![error.to_string()]))
            })
            .transpose()?;
        let binds = (0..config.binds)
            .map(|_| Bind {
                window: Semaphore::new(config.window),
                bound: Mutex::new(Binding::default()),
            })
            .collect();
        Ok(SmppProvider {
            id: id.to_owned(),
            config,
            binds,
            turn: AtomicUsize::new(0),
            inbox,
            tls,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// The standing session of `bind`, or a new one.
    async fn session(&self, bind: &Bind) -> Result<Arc<Session>, ProviderError> {
        let mut binding = bind.bound.lock().await;
        if let Some(session) = binding.session.as_ref().filter(|s| s.is_open()) {
            return Ok(Arc::clone(session));
        }
        if binding.session.take().is_some()
            && binding
                .bound_at
                .is_some_and(|at| at.elapsed() < SHORT_LIVED)
        {
            binding.back_off();
        }
        if let Some(next_try) = binding.next_try {
            let now = Instant::now();
            if now < next_try {
                return Err(ProviderError::Transient {
                    reason: "the SMPP bind is down; otpd binds again shortly".into(),
                    retry_after: Some(next_try - now),
                });
            }
        }
        match self.bind().await {
            Ok(session) => {
                let session = Arc::new(session);
                binding.session = Some(Arc::clone(&session));
                binding.bound_at = Some(Instant::now());
                binding.next_try = None;
                Ok(session)
            }
            Err(reason) => {
                binding.back_off();
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
        let every = Duration::from_secs(self.config.enquire_link_seconds);
        let Some(tls) = &self.tls else {
            return Session::bind(
                stream,
                credentials,
                self.timeout(),
                every,
                self.on_deliver(),
            )
            .await;
        };
        let name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|_| format!("'{}' is not a name TLS can check", self.config.host))?;
        let stream = tokio::time::timeout(self.timeout(), tls.connect(name, stream))
            .await
            .map_err(|_| format!("the TLS handshake with {address} took over the timeout"))?
            .map_err(|error| format!("the TLS handshake with {address} failed: {error}"))?;
        Session::bind(
            stream,
            credentials,
            self.timeout(),
            every,
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
                    (_, None) if is_receipt(&delivered) => {
                        // Never its text: a receipt's `text:` may quote the message.
                        tracing::warn!(provider = %provider, "An SMPP delivery receipt named no message id or no state otpd knows; it was acknowledged and dropped.");
                        true
                    }
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
        let source = message
            .sender_id
            .as_deref()
            .unwrap_or(&self.config.source_addr);
        let (source_ton, source_npi) = self.config.source(source);
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
        let submit = submit.build();
        if let Ok(gsm) = submit
            .clone()
            .encode(&message.body)
            .gsm7bit_unpacked()
            .build()
        {
            return Ok(gsm);
        }
        // UCS-2 as UTF-16: a character beyond it (an emoji) goes as its surrogate pair.
        let utf16: Vec<u8> = message
            .body
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let bytes = utf16.len();
        let text = OctetString::from_vec(utf16).map_err(|_| {
            refused(&format!(
                "its text takes {bytes} bytes in UCS-2, over the 255 of one submit"
            ))
        })?;
        Ok(submit
            .with_short_message(text)
            .with_data_coding(DataCoding::Ucs2))
    }

    /// Submits on `session`, holding its window's `_in_flight` until answered.
    async fn submit_on(
        &self,
        session: &Session,
        submit: SubmitSm,
        _in_flight: tokio::sync::SemaphorePermit<'_>,
    ) -> Result<SendReceipt, ProviderError> {
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
        if answer.status() == CommandStatus::EsmeRinvbndsts {
            // The SMSC no longer counts this bind: the next send binds again.
            session.close();
        }
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
        // The binds in turn; one that is down passes the send to the next.
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut down = None;
        for offset in 0..self.binds.len() {
            let bind = &self.binds[(first + offset) % self.binds.len()];
            let in_flight = bind
                .window
                .acquire()
                .await
                .map_err(|_| ProviderError::Transient {
                    reason: "the provider is stopping".into(),
                    retry_after: None,
                })?;
            match self.session(bind).await {
                Ok(session) => return self.submit_on(&session, submit, in_flight).await,
                Err(error) => down = Some(error),
            }
        }
        Err(down.expect("a provider has at least one bind"))
    }
}
