//! Vonage Voice API: `POST {base_url}/v1/calls`, JSON, authenticated by a JWT (RS256) that
//! the application's private key signs; the call reads the text with an NCCO `talk` action.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::providers::kind::BuildError;
use crate::providers::support::{
    self, check_callback_url, check_timeout, default_timeout_ms, exchange, http_client,
    validate_base_url,
};
use crate::providers::voice::{check_repeat, default_repeat, spoken_language};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};
use crate::sync::LockUnpoisoned;

/// Vonage's Voice API host.
pub const DEFAULT_VOICE_BASE_URL: &str = "https://api.nexmo.com";

/// How long a signed token is valid, and how long it is used before a fresh one is signed.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const TOKEN_REUSE: Duration = Duration::from_secs(10 * 60);
/// How far back a token says it was issued, so a clock a little ahead of Vonage's does not
/// make it a token from the future.
const CLOCK_LEEWAY: Duration = Duration::from_secs(30);

fn default_base_url() -> String {
    DEFAULT_VOICE_BASE_URL.to_owned()
}

/// Settings of one Vonage application placing calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageVoiceConfig {
    /// API base URL. Default `https://api.nexmo.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Vonage application's id (a UUID). Required.
    pub application_id: String,
    /// The application's private key, PEM. Required: give it by the environment
    /// (`OTPD__PROVIDERS__<ID>__PRIVATE_KEY`), never in a settings file.
    pub private_key: SecretString,
    /// The calling number, E.164 (the `+` is optional). Required.
    pub from: String,
    /// URL Vonage posts the call's events to (`event_url`); carry the receipt secret in it.
    /// Default unset (the application's own).
    #[serde(default)]
    pub event_url: Option<String>,
    /// Locale or language → the `talk` language, e.g. `de = "de-DE"`. A locale with a region
    /// is used as it is. Default none.
    #[serde(default)]
    pub languages: BTreeMap<String, String>,
    /// Times the call reads the text, 1–5. Default 2.
    #[serde(default = "default_repeat")]
    pub repeat: u8,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl VonageVoiceConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        validate_base_url(prefix, &self.base_url, &mut problems);
        if self.application_id.trim().is_empty() {
            problems.push(format!(
                "{prefix}.application_id is empty; set the Vonage application's id"
            ));
        }
        let signs = EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
            .is_ok_and(|key| sign(&key, &self.application_id, SystemTime::now()).is_ok());
        if !signs {
            problems.push(format!(
                "{prefix}.private_key is not an RSA private key in PEM that signs; set the application's private key (the file Vonage gave when the application was made)"
            ));
        }
        if !support::is_number(&self.from) {
            problems.push(format!(
                "{prefix}.from is '{}'; set the calling number in E.164, such as +447700900000",
                self.from
            ));
        }
        check_callback_url(
            &mut problems,
            &format!("{prefix}.event_url"),
            self.event_url.as_deref(),
        );
        check_repeat(&mut problems, prefix, self.repeat);
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

/// A token for `application_id`, signed at `now` (its `iat` a little earlier).
fn sign(
    key: &EncodingKey,
    application_id: &str,
    now: SystemTime,
) -> Result<String, jsonwebtoken::errors::Error> {
    let iat = now
        .checked_sub(CLOCK_LEEWAY)
        .unwrap_or(now)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        application_id,
        iat,
        exp: iat + TOKEN_LIFETIME.as_secs(),
        jti: format!("{:032x}", rand::random::<u128>()),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
}

/// Places calls that read the code through Vonage.
pub struct VonageVoiceProvider {
    id: String,
    config: VonageVoiceConfig,
    calls_url: String,
    key: EncodingKey,
    client: reqwest::Client,
    /// The token in use and when it was signed.
    token: Mutex<Option<(SystemTime, String)>>,
}

/// The claims of a Vonage application's JWT.
#[derive(Serialize)]
struct Claims<'a> {
    application_id: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The part of Vonage's answer to a call otpd reads.
#[derive(Debug, Deserialize)]
struct CallAnswer {
    uuid: Option<String>,
}

/// Vonage's error body: `{"type": "…", "title": "Bad Request", "detail": "…"}` (or
/// `error_title` on older endpoints). Only the title is kept: the detail may quote the
/// request, and the request holds the code.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    title: Option<String>,
    error_title: Option<String>,
}

impl VonageVoiceProvider {
    pub fn new(id: &str, config: VonageVoiceConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let key = EncodingKey::from_rsa_pem(config.private_key.expose_secret().as_bytes())
            .map_err(|error| BuildError::Client(format!("the private key: {error}")))?;
        let calls_url = format!("{}/v1/calls", config.base_url.trim_end_matches('/'));
        let client = http_client(Duration::from_millis(config.timeout_ms))?;
        Ok(VonageVoiceProvider {
            id: id.to_owned(),
            config,
            calls_url,
            key,
            client,
            token: Mutex::new(None),
        })
    }

    /// A token signed within `TOKEN_REUSE`, or a fresh one.
    fn token(&self) -> Result<String, ProviderError> {
        let now = SystemTime::now();
        let mut held = self.token.lock_unpoisoned();
        if let Some((signed, token)) = held.as_ref() {
            if now.duration_since(*signed).unwrap_or(Duration::MAX) < TOKEN_REUSE {
                return Ok(token.clone());
            }
        }
        let token = sign(&self.key, &self.config.application_id, now).map_err(|error| {
            ProviderError::Permanent {
                reason: format!("could not sign the Vonage token: {error}"),
            }
        })?;
        *held = Some((now, token.clone()));
        Ok(token)
    }

    /// Forgets the token in use: Vonage refused it, and the next call signs a fresh one.
    fn forget_token(&self) {
        *self.token.lock_unpoisoned() = None;
    }

    fn call(&self, message: &OutboundMessage) -> serde_json::Value {
        let mut talk = serde_json::json!({
            "action": "talk",
            "text": message.body,
            "loop": self.config.repeat,
        });
        if let Some(language) = spoken_language(&self.config.languages, message.locale.as_deref()) {
            talk["language"] = language.into();
        }
        let mut call = serde_json::json!({
            "to": [{"type": "phone", "number": message.to.trim_start_matches('+')}],
            "from": {"type": "phone", "number": self.config.from.trim_start_matches('+')},
            "ncco": [talk],
        });
        if let Some(url) = &self.config.event_url {
            call["event_url"] = serde_json::json!([url]);
        }
        call
    }
}

#[async_trait]
impl Provider for VonageVoiceProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let request = self
            .client
            .post(&self.calls_url)
            .bearer_auth(self.token()?)
            .json(&self.call(message));
        let answer = exchange(request).await?;
        if answer.status == reqwest::StatusCode::UNAUTHORIZED {
            self.forget_token();
        }
        if answer.status.is_success() {
            // The call was placed: an unreadable answer must not cause a second call.
            let placed: Option<CallAnswer> = serde_json::from_slice(&answer.body).ok();
            return Ok(SendReceipt {
                provider_message_id: placed.and_then(|placed| placed.uuid),
            });
        }
        let detail = match serde_json::from_slice::<ErrorBody>(&answer.body) {
            Ok(body) => format!(
                "Vonage: {}",
                body.title
                    .or(body.error_title)
                    .unwrap_or_else(|| "no title".into())
            ),
            Err(_) => String::new(),
        };
        Err(answer.refused(&detail))
    }
}
