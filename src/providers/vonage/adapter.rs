//! Vonage (Nexmo) SMS API: `POST {base_url}/sms/json`, form-encoded, key and secret in the form.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

use crate::providers::classify;
use crate::providers::kind::BuildError;
use crate::providers::support::{
    check_callback_url, check_timeout, default_timeout_ms, exchange, http_client, validate_base_url,
};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// Vonage's SMS API host.
pub const DEFAULT_BASE_URL: &str = "https://rest.nexmo.com";

/// The pause a "Throttled" (status 1) answer implies; Vonage sends no `Retry-After`.
pub const THROTTLED_WAIT: Duration = Duration::from_secs(1);

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// Settings of one Vonage account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageConfig {
    /// API base URL. Default `https://rest.nexmo.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// API key. Required.
    pub api_key: String,
    /// API secret. Required.
    pub api_secret: SecretString,
    /// Sender: a number (digits) or an alphanumeric sender id. Required.
    pub from: String,
    /// Delivery receipt URL sent as `callback`; carry the receipt secret in it (see
    /// `receipts`). Default unset (the account's default DLR URL).
    #[serde(default)]
    pub callback: Option<String>,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl VonageConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        validate_base_url(prefix, &self.base_url, &mut problems);
        if self.api_key.trim().is_empty() {
            problems.push(format!("{prefix}.api_key is empty; set the Vonage API key"));
        }
        if self.api_secret.expose_secret().is_empty() {
            problems.push(format!(
                "{prefix}.api_secret is empty; set the Vonage API secret"
            ));
        }
        if self.from.trim().is_empty() {
            problems.push(format!(
                "{prefix}.from is empty; set a sender number or alphanumeric id"
            ));
        }
        check_callback_url(
            &mut problems,
            &format!("{prefix}.callback"),
            self.callback.as_deref(),
        );
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

/// Sends SMS through Vonage.
pub struct VonageProvider {
    id: String,
    config: VonageConfig,
    url: String,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct SmsResponse {
    #[serde(default)]
    messages: Vec<SmsMessage>,
}

#[derive(Debug, Deserialize)]
struct SmsMessage {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
    #[serde(rename = "error-text")]
    error_text: Option<String>,
}

/// Classifies one per-message status from Vonage's SMS API error table: 0 success; 1
/// throttled (back-pressure); 5 internal error, 9 partner quota violation (top up and retry)
/// and 10 too many binds (back off and retry) are transient; every other code (missing or
/// invalid parameters, invalid credentials, invalid message, number barred, account barred,
/// message too long, invalid sender, non-whitelisted destination, …) is permanent.
pub fn classify_status(status: &str, error_text: Option<&str>) -> Result<(), ProviderError> {
    let reason = || {
        format!(
            "Vonage status {status}: {}",
            classify::truncate(error_text.unwrap_or("no error text"), 200)
        )
    };
    match status {
        "0" => Ok(()),
        "1" => Err(ProviderError::Transient {
            reason: reason(),
            retry_after: Some(THROTTLED_WAIT),
        }),
        "5" | "9" | "10" => Err(ProviderError::Transient {
            reason: reason(),
            retry_after: None,
        }),
        _ => Err(ProviderError::Permanent { reason: reason() }),
    }
}

impl VonageProvider {
    pub fn new(id: &str, config: VonageConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let url = format!("{}/sms/json", config.base_url.trim_end_matches('/'));
        let client = http_client(Duration::from_millis(config.timeout_ms))?;
        Ok(VonageProvider {
            id: id.to_owned(),
            config,
            url,
            client,
        })
    }
}

#[async_trait]
impl Provider for VonageProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let to = message.to.trim_start_matches('+');
        let mut form = vec![
            ("api_key", self.config.api_key.as_str()),
            ("api_secret", self.config.api_secret.expose_secret()),
            (
                "from",
                message.sender_id.as_deref().unwrap_or(&self.config.from),
            ),
            ("to", to),
            ("text", message.body.as_str()),
        ];
        if !message.body.is_ascii() {
            form.push(("type", "unicode"));
        }
        if let Some(callback) = &self.config.callback {
            form.push(("callback", callback));
        }
        if let Some(registration) = &message.registration {
            // India's DLT: the SMS API's own parameters.
            form.push(("entity-id", &registration.entity_id));
            form.push(("content-id", &registration.template_id));
        }
        let reply = exchange(self.client.post(&self.url).form(&form)).await?;
        if !reply.status.is_success() {
            return Err(reply.refused(""));
        }
        let answer: SmsResponse =
            serde_json::from_slice(&reply.body).map_err(|error| ProviderError::Transient {
                reason: format!(
                    "Vonage answered {} with an unreadable body: {error}",
                    reply.status
                ),
                retry_after: None,
            })?;
        if answer.messages.is_empty() {
            return Err(ProviderError::Transient {
                reason: "Vonage answered without a message status".into(),
                retry_after: None,
            });
        }
        for part in &answer.messages {
            classify_status(&part.status, part.error_text.as_deref())?;
        }
        Ok(SendReceipt {
            provider_message_id: answer
                .messages
                .into_iter()
                .next()
                .and_then(|part| part.message_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_documented_table() {
        assert!(classify_status("0", None).is_ok());
        let throttled = classify_status("1", Some("Throttled")).unwrap_err();
        assert_eq!(throttled.retry_after(), Some(THROTTLED_WAIT));
        for transient in ["5", "9", "10"] {
            let error = classify_status(transient, None).unwrap_err();
            assert!(error.is_transient(), "{transient}");
            assert_eq!(error.retry_after(), None);
        }
        for permanent in ["2", "3", "4", "6", "7", "8", "12", "15", "29", "33"] {
            assert!(!classify_status(permanent, None).unwrap_err().is_transient());
        }
    }
}
