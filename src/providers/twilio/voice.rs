//! Twilio Programmable Voice: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Calls.json`,
//! form-encoded, HTTP basic auth; the call reads the text with TwiML `<Say>`, given inline
//! (`Twiml`), so Twilio never fetches anything from otpd.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

use super::adapter::{account_problems, account_url, error_detail, DEFAULT_BASE_URL};
use crate::providers::kind::BuildError;
use crate::providers::support::{
    check_callback_url, check_timeout, default_timeout_ms, exchange, http_client,
};
use crate::providers::voice::{check_repeat, default_repeat, spoken_language};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// Settings of one Twilio account placing calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioVoiceConfig {
    /// API base URL, without a trailing path. Default `https://api.twilio.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Account SID (`AC…`), also the basic-auth user. Required.
    pub account_sid: String,
    /// Auth Token, the basic-auth password and the key of `X-Twilio-Signature`. Required.
    pub auth_token: SecretString,
    /// The calling number, E.164, voice-enabled in the account. Required.
    pub from: String,
    /// URL Twilio posts the call's status to (`StatusCallback`). Default unset.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// The `<Say>` voice, e.g. `Polly.Joanna`. Default unset (Twilio's default voice).
    #[serde(default)]
    pub voice: Option<String>,
    /// Locale or language → the `<Say>` language, e.g. `de = "de-DE"`. A locale with a
    /// region is used as it is. Default none.
    #[serde(default)]
    pub languages: BTreeMap<String, String>,
    /// Times the call reads the text, 1–5. Default 2.
    #[serde(default = "default_repeat")]
    pub repeat: u8,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl TwilioVoiceConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems =
            account_problems(prefix, &self.base_url, &self.account_sid, &self.auth_token);
        if !self.from.starts_with('+') {
            problems.push(format!(
                "{prefix}.from is '{}'; set the calling number in E.164, such as +15005550006",
                self.from
            ));
        }
        check_callback_url(
            &mut problems,
            &format!("{prefix}.status_callback"),
            self.status_callback.as_deref(),
        );
        check_repeat(&mut problems, prefix, self.repeat);
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

/// Places calls that read the code through Twilio.
pub struct TwilioVoiceProvider {
    id: String,
    config: TwilioVoiceConfig,
    calls_url: String,
    client: reqwest::Client,
}

/// The part of Twilio's Call resource otpd reads.
#[derive(Debug, Deserialize)]
struct CallResource {
    sid: Option<String>,
}

impl TwilioVoiceProvider {
    pub fn new(id: &str, config: TwilioVoiceConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let calls_url = account_url(&config.base_url, &config.account_sid, "Calls.json");
        let client = http_client(Duration::from_millis(config.timeout_ms))?;
        Ok(TwilioVoiceProvider {
            id: id.to_owned(),
            config,
            calls_url,
            client,
        })
    }

    /// The call's TwiML: the text read `repeat` times, in the locale's language.
    fn twiml(&self, message: &OutboundMessage) -> String {
        let mut attributes = format!(" loop=\"{}\"", self.config.repeat);
        if let Some(voice) = &self.config.voice {
            attributes.push_str(&format!(" voice=\"{}\"", xml_escape(voice)));
        }
        if let Some(language) = spoken_language(&self.config.languages, message.locale.as_deref()) {
            attributes.push_str(&format!(" language=\"{}\"", xml_escape(language)));
        }
        format!(
            "<Response><Say{attributes}>{}</Say></Response>",
            xml_escape(&message.body)
        )
    }
}

#[async_trait]
impl Provider for TwilioVoiceProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let twiml = self.twiml(message);
        let mut form = vec![
            ("To", message.to.as_str()),
            ("From", self.config.from.as_str()),
            ("Twiml", twiml.as_str()),
        ];
        if let Some(callback) = &self.config.status_callback {
            form.push(("StatusCallback", callback));
        }
        let request = self
            .client
            .post(&self.calls_url)
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose_secret()),
            )
            .form(&form);
        let answer = exchange(request).await?;
        if answer.status.is_success() {
            // The call was placed: an unreadable answer must not cause a second call.
            let resource: Option<CallResource> = serde_json::from_slice(&answer.body).ok();
            return Ok(SendReceipt {
                provider_message_id: resource.and_then(|resource| resource.sid),
            });
        }
        Err(answer.refused(&error_detail(&answer.body)))
    }
}

/// `text` safe inside an XML element or a quoted attribute.
fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            xml_escape(r#"Tom & "Jerry" <3 'x'"#),
            "Tom &amp; &quot;Jerry&quot; &lt;3 &apos;x&apos;"
        );
    }
}
