//! WhatsApp Business Cloud API: `POST {base_url}/{version}/{phone_number_id}/messages`,
//! JSON, a bearer access token; each code goes out as an approved authentication template,
//! the code its body parameter and its copy-code button's.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::providers::classify;
use crate::providers::kind::BuildError;
use crate::providers::support::{
    by_locale, check_timeout, default_timeout_ms, exchange, http_client, validate_base_url,
};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// The Graph API host.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Graph API version otpd speaks.
pub const DEFAULT_API_VERSION: &str = "v21.0";

/// The pause a throttling error implies; the Cloud API sends no `Retry-After`.
pub const THROTTLED_WAIT: Duration = Duration::from_secs(1);

/// Cloud API error codes that mean "this sender, too fast, later": the app's or the
/// account's call rate (4, 80007), the phone number's throughput (130429). The provider
/// pauses, as after a 429.
const THROTTLED: &[u64] = &[4, 80007, 130429];
/// Codes that mean "this message, not now; try again": unknown (1), temporarily
/// unavailable (2), generic user error (131000), service unavailable (131016), and too many
/// messages to this one person (131056), which must not pause the sends to everyone else.
const TEMPORARY: &[u64] = &[1, 2, 131000, 131016, 131056];

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_language() -> String {
    "en_US".to_owned()
}

/// Settings of one WhatsApp Business phone number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    /// API base URL. Default `https://graph.facebook.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Graph API version. Default `v21.0`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The sending phone number's id (not the number itself). Required.
    pub phone_number_id: String,
    /// A system user's access token with `whatsapp_business_messaging`. Required: give it by
    /// the environment (`OTPD__PROVIDERS__<ID>__ACCESS_TOKEN`).
    pub access_token: SecretString,
    /// The approved authentication template's name. Required.
    pub template: String,
    /// Locale or language → the template's language code, e.g. `de = "de"`,
    /// `pt-BR = "pt_BR"`. Default none.
    #[serde(default)]
    pub languages: BTreeMap<String, String>,
    /// The template language for a locale `languages` does not name. Default `en_US`.
    #[serde(default = "default_language")]
    pub default_language: String,
    /// The app's secret, which signs the webhooks that carry message statuses
    /// (`X-Hub-Signature-256`). Default unset: statuses are refused.
    #[serde(default)]
    pub app_secret: Option<SecretString>,
    /// The token WhatsApp's subscription check must give (`hub.verify_token`), chosen when
    /// the webhook is set up. Default unset: the check is refused.
    #[serde(default)]
    pub verify_token: Option<SecretString>,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WhatsappConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        validate_base_url(prefix, &self.base_url, &mut problems);
        if !self.api_version.starts_with('v') {
            problems.push(format!(
                "{prefix}.api_version is '{}'; give a Graph API version such as {DEFAULT_API_VERSION}",
                self.api_version
            ));
        }
        if self.phone_number_id.is_empty()
            || !self.phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            problems.push(format!(
                "{prefix}.phone_number_id is '{}'; set the sending number's id (digits, from WhatsApp Manager), not the number",
                self.phone_number_id
            ));
        }
        if self.access_token.expose_secret().is_empty() {
            problems.push(format!(
                "{prefix}.access_token is empty; set a system user's access token"
            ));
        }
        if self.template.trim().is_empty() {
            problems.push(format!(
                "{prefix}.template is empty; set the approved authentication template's name"
            ));
        }
        let languages = std::iter::once(("default_language".to_owned(), &self.default_language))
            .chain(
                self.languages
                    .iter()
                    .map(|(locale, code)| (format!("languages.{locale}"), code)),
            );
        for (setting, code) in languages {
            if code.trim().is_empty() {
                problems.push(format!(
                    "{prefix}.{setting} is empty; give the template's language code, such as en_US"
                ));
            }
        }
        for (name, secret) in [
            ("app_secret", &self.app_secret),
            ("verify_token", &self.verify_token),
        ] {
            if secret
                .as_ref()
                .is_some_and(|secret| secret.expose_secret().is_empty())
            {
                problems.push(format!("{prefix}.{name} is empty; set it or leave it out"));
            }
        }
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }

    /// The template language for `locale`: by the locale, by its language, or the default.
    pub fn language(&self, locale: Option<&str>) -> &str {
        locale
            .and_then(|locale| by_locale(&self.languages, locale))
            .unwrap_or(&self.default_language)
    }
}

/// Sends codes as WhatsApp authentication templates.
pub struct WhatsappProvider {
    id: String,
    config: WhatsappConfig,
    messages_url: String,
    client: reqwest::Client,
}

/// The part of the Cloud API's answer otpd reads: `{"messages": [{"id": "wamid.…"}]}`.
#[derive(Debug, Deserialize)]
struct SentAnswer {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Debug, Deserialize)]
struct SentMessage {
    id: Option<String>,
}

/// The Graph API's error: `{"error": {"message": "…", "type": "…", "code": 131026, …}}`.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    code: Option<u64>,
    message: Option<String>,
}

impl WhatsappProvider {
    pub fn new(id: &str, config: WhatsappConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let messages_url = format!(
            "{}/{}/{}/messages",
            config.base_url.trim_end_matches('/'),
            config.api_version,
            config.phone_number_id
        );
        let client = http_client(Duration::from_millis(config.timeout_ms))?;
        Ok(WhatsappProvider {
            id: id.to_owned(),
            config,
            messages_url,
            client,
        })
    }

    /// The template message: the code fills the template's body and its copy-code button.
    fn template_message(&self, message: &OutboundMessage) -> serde_json::Value {
        let code = message.code.reveal();
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to.trim_start_matches('+'),
            "type": "template",
            "template": {
                "name": self.config.template,
                "language": {"code": self.config.language(message.locale.as_deref())},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": code}]},
                    {"type": "button", "sub_type": "url", "index": "0",
                     "parameters": [{"type": "text", "text": code}]},
                ],
            },
        })
    }
}

#[async_trait]
impl Provider for WhatsappProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let request = self
            .client
            .post(&self.messages_url)
            .bearer_auth(self.config.access_token.expose_secret())
            .json(&self.template_message(message));
        let answer = exchange(request).await?;
        if answer.status.is_success() {
            // The message was taken: an unreadable answer must not cause a second send.
            let sent: Option<SentAnswer> = serde_json::from_slice(&answer.body).ok();
            return Ok(SendReceipt {
                provider_message_id: sent
                    .and_then(|sent| sent.messages.into_iter().next())
                    .and_then(|message| message.id),
            });
        }
        let Ok(ErrorAnswer { error }) = serde_json::from_slice(&answer.body) else {
            return Err(answer.refused(""));
        };
        let code = error.code.unwrap_or_default();
        let detail = format!(
            "WhatsApp error {code}: {}",
            error.message.as_deref().unwrap_or("no message")
        );
        Err(classify_error(answer.status.as_u16(), code, &detail)
            .unwrap_or_else(|| answer.refused(&detail)))
    }
}

/// The Cloud API's error codes that say more than the HTTP status: throttling is
/// back-pressure, a temporary failure is retried; `None` leaves it to the status.
pub fn classify_error(status: u16, code: u64, detail: &str) -> Option<ProviderError> {
    let reason = || format!("HTTP {status}: {}", classify::truncate(detail, 200));
    if THROTTLED.contains(&code) {
        Some(ProviderError::Transient {
            reason: reason(),
            retry_after: Some(THROTTLED_WAIT),
        })
    } else if TEMPORARY.contains(&code) {
        Some(ProviderError::Transient {
            reason: reason(),
            retry_after: None,
        })
    } else {
        None
    }
}
