//! Email through an SMTP relay with lettre over rustls: STARTTLS, implicit TLS, or plain (loopback).

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::providers::classify;
use crate::providers::kind::BuildError;
use crate::providers::support::{check_timeout, default_timeout_ms};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required. Default port 587.
    Starttls,
    /// TLS from the first byte (SMTPS). Default port 465.
    Implicit,
    /// No TLS at all: only for a relay on loopback. Default port 25.
    None,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_subject() -> String {
    "Your verification code".to_owned()
}

/// Settings of one SMTP relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Relay host name (checked against its TLS certificate). Required.
    pub host: String,
    /// Relay port. Default by `tls`: 587 for starttls, 465 for implicit, 25 for none.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls`, `implicit` or `none`. Default `starttls`.
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH. Default unset (no AUTH).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP AUTH; set with `username`. Default unset.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Sender mailbox, e.g. `Acme <no-reply@acme.example>`. Required.
    pub from: String,
    /// Subject line. Default `Your verification code`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM bundle of CA certificates trusted for the relay's certificate besides the system's
    /// (for a relay with a private CA); not with `tls = "none"`. Default unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl SmtpConfig {
    /// Every problem with these settings, each naming the setting under `prefix`, the CA
    /// file read and checked.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = self.check(prefix);
        if let Some(path) = &self.ca_file {
            if let Err(error) = crate::tls::read_ca_bundle(&format!("{prefix}.ca_file"), path) {
                problems.push(error.to_string());
            }
        }
        problems
    }

    /// Every problem that needs no file; building the provider reads the CA file, once.
    pub fn check(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(format!("{prefix}.host is empty; set the relay's host name"));
        }
        if self.port == Some(0) {
            problems.push(format!("{prefix}.port must be between 1 and 65535"));
        }
        if self.from.parse::<Mailbox>().is_err() {
            problems.push(format!(
                "{prefix}.from is '{}'; use an address such as no-reply@example.com or 'Name <no-reply@example.com>'",
                self.from
            ));
        }
        if self.subject.contains(['\r', '\n']) {
            problems.push(format!("{prefix}.subject must be one line"));
        }
        if self.username.is_some() != self.password.is_some() {
            problems.push(format!(
                "{prefix}: set both username and password, or neither"
            ));
        }
        if self.tls == SmtpTls::None && !is_loopback(&self.host) {
            problems.push(format!(
                "{prefix}.tls is none but {} is not a loopback host; use starttls or implicit",
                self.host
            ));
        }
        if self.ca_file.is_some() && self.tls == SmtpTls::None {
            problems.push(format!(
                "{prefix}.ca_file is set but {prefix}.tls is none; use starttls or implicit, or remove ca_file"
            ));
        }
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Sends email through an SMTP relay.
pub struct SmtpProvider {
    id: String,
    from: Mailbox,
    subject: String,
    timeout: Duration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpProvider {
    pub fn new(id: &str, config: SmtpConfig) -> Result<Self, BuildError> {
        let problems = config.check(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let invalid = |problem: String| BuildError::Invalid(vec![problem]);
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|error| invalid(format!("{id}.from: {error}")))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let ca = match &config.ca_file {
            Some(path) => {
                let pem = crate::tls::read_ca_bundle(&format!("{id}.ca_file"), path)
                    .map_err(|error| invalid(error.to_string()))?;
                Some(
                    Certificate::from_pem(pem.as_bytes())
                        .map_err(|error| invalid(format!("{id}.ca_file: {error}")))?,
                )
            }
            None => None,
        };
        let tls = |host: &str| {
            let mut parameters = TlsParameters::builder(host.to_owned());
            if let Some(ca) = &ca {
                parameters = parameters.add_root_certificate(ca.clone());
            }
            parameters
                .build_rustls()
                .map_err(|error| BuildError::Client(format!("{id}: TLS setup failed: {error}")))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
                .port(config.port.unwrap_or(config.tls.default_port()))
                .timeout(Some(timeout));
        builder = match config.tls {
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&config.host)?)),
            SmtpTls::Implicit => builder.tls(Tls::Wrapper(tls(&config.host)?)),
            SmtpTls::None => builder.tls(Tls::None),
        };
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        Ok(SmtpProvider {
            id: id.to_owned(),
            from,
            subject: config.subject,
            timeout,
            transport: builder.build(),
        })
    }
}

/// Classifies an SMTP failure: a 4yz reply, a timeout or a broken connection is transient;
/// a 5yz reply is permanent.
pub fn classify_smtp(error: &lettre::transport::smtp::Error) -> ProviderError {
    let code = error
        .status()
        .map(|code| format!("SMTP {code}"))
        .unwrap_or_else(|| "SMTP".to_owned());
    let reason = format!("{code}: {}", classify::truncate(&error.to_string(), 200));
    if error.is_permanent() {
        ProviderError::Permanent { reason }
    } else {
        ProviderError::Transient {
            reason,
            retry_after: None,
        }
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let to: Mailbox = message.to.parse().map_err(|_| ProviderError::Permanent {
            reason: "the destination is not a valid email address".into(),
        })?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(self.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|error| ProviderError::Permanent {
                reason: format!("could not build the email: {error}"),
            })?;
        let response = tokio::time::timeout(self.timeout, self.transport.send(email))
            .await
            .map_err(|_| classify::timed_out(self.timeout))?
            .map_err(|error| classify_smtp(&error))?;
        let text = response.message().collect::<Vec<_>>().join(" ");
        let provider_message_id = text
            .split_once("queued as ")
            .map(|(_, id)| id.split_whitespace().next().unwrap_or_default().to_owned())
            .filter(|id| !id.is_empty());
        Ok(SendReceipt {
            provider_message_id,
        })
    }
}
