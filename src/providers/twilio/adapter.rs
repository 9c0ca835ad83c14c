//! Twilio Programmable Messaging: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
//! form-encoded, HTTP basic auth with the Account SID and Auth Token.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

use crate::providers::kind::BuildError;
use crate::providers::support::{
    check_callback_url, check_timeout, default_timeout_ms, exchange, http_client, validate_base_url,
};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// Twilio's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// Settings of one Twilio account. Exactly one of `from` and `messaging_service_sid` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// API base URL, without a trailing path. Default `https://api.twilio.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`), also the basic-auth user. Required.
    pub account_sid: String,
    /// Auth Token, the basic-auth password and the key of `X-Twilio-Signature`. Required.
    pub auth_token: SecretString,
    /// Sender: an E.164 number or an alphanumeric sender id. Default unset.
    #[serde(default)]
    pub from: Option<String>,
    /// Messaging Service SID (`MG…`), used instead of `from`. Default unset.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// URL Twilio posts status callbacks to (`StatusCallback`). Default unset.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl TwilioConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems =
            account_problems(prefix, &self.base_url, &self.account_sid, &self.auth_token);
        match (&self.from, &self.messaging_service_sid) {
            (Some(_), Some(_)) => problems.push(format!(
                "{prefix}: set either from or messaging_service_sid, not both"
            )),
            (None, None) => problems.push(format!(
                "{prefix}: set from (a sender number) or messaging_service_sid"
            )),
            _ => {}
        }
        check_callback_url(
            &mut problems,
            &format!("{prefix}.status_callback"),
            self.status_callback.as_deref(),
        );
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

/// Sends SMS through Twilio.
pub struct TwilioProvider {
    id: String,
    config: TwilioConfig,
    messages_url: String,
    client: reqwest::Client,
}

/// The part of Twilio's Message resource otpd reads.
#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: Option<String>,
    status: Option<String>,
}

/// Twilio's error body: `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<u64>,
    message: Option<String>,
}

impl TwilioProvider {
    pub fn new(id: &str, config: TwilioConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let messages_url = account_url(&config.base_url, &config.account_sid, "Messages.json");
        let client = http_client(Duration::from_millis(config.timeout_ms))?;
        Ok(TwilioProvider {
            id: id.to_owned(),
            config,
            messages_url,
            client,
        })
    }

    fn form<'a>(&'a self, message: &'a OutboundMessage) -> Vec<(&'static str, &'a str)> {
        let mut form = vec![("To", message.to.as_str())];
        if let Some(sender) = &message.sender_id {
            form.push(("From", sender));
        } else if let Some(service) = &self.config.messaging_service_sid {
            form.push(("MessagingServiceSid", service));
        } else if let Some(from) = &self.config.from {
            form.push(("From", from));
        }
        form.push(("Body", message.body.as_str()));
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback));
        }
        form
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let request = self
            .client
            .post(&self.messages_url)
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose_secret()),
            )
            .form(&self.form(message));
        let answer = exchange(request).await?;
        let bytes = &answer.body;
        if answer.status.is_success() {
            // The message was accepted: an unreadable answer must not cause a second send.
            let resource: Option<MessageResource> = serde_json::from_slice(bytes).ok();
            if let Some(MessageResource {
                status: Some(state),
                ..
            }) = &resource
            {
                if state == "failed" || state == "undelivered" {
                    return Err(ProviderError::Permanent {
                        reason: format!("Twilio answered with message status {state}"),
                    });
                }
            }
            return Ok(SendReceipt {
                provider_message_id: resource.and_then(|resource| resource.sid),
            });
        }
        Err(answer.refused(&error_detail(bytes)))
    }
}

/// Every problem with a Twilio account's settings under `prefix`: its API URL, Account SID
/// and Auth Token.
pub(super) fn account_problems(
    prefix: &str,
    base_url: &str,
    account_sid: &str,
    auth_token: &SecretString,
) -> Vec<String> {
    let mut problems = Vec::new();
    validate_base_url(prefix, base_url, &mut problems);
    if account_sid.trim().is_empty() {
        problems.push(format!(
            "{prefix}.account_sid is empty; set the Account SID (AC…)"
        ));
    }
    if auth_token.expose_secret().is_empty() {
        problems.push(format!(
            "{prefix}.auth_token is empty; set the account's Auth Token"
        ));
    }
    problems
}

/// The URL of one of an account's resources: `…/2010-04-01/Accounts/{sid}/{resource}`.
pub(super) fn account_url(base_url: &str, account_sid: &str, resource: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{account_sid}/{resource}",
        base_url.trim_end_matches('/')
    )
}

/// What Twilio's error body says: `Twilio error 21211: The 'To' number is not valid.`;
/// empty when the body is not Twilio's.
pub(super) fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { code, message }) => {
            let code = code.map(|code| code.to_string()).unwrap_or_default();
            format!(
                "Twilio error {code}: {}",
                message.unwrap_or_else(|| "no message".into())
            )
        }
        Err(_) => String::new(),
    }
}
