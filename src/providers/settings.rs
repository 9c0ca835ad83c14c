//! Provider settings as they appear in the config (`kind` = twilio | vonage | http | smtp |
//! sandbox), their validation, and building a `Provider` from them.

use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::http::{HttpConfig, HttpProvider};
use super::smtp::{SmtpConfig, SmtpProvider};
use super::twilio::{TwilioConfig, TwilioProvider};
use super::vonage::{VonageConfig, VonageProvider};
use super::{Provider, SandboxProvider};

/// Why a provider could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("the provider settings have {} problem(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    #[error("could not set up the provider's client: {0}")]
    Client(String),
}

/// Settings of the sandbox provider, which writes messages to `<store dir>/sandbox/outbox.jsonl`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Milliseconds to wait before writing each message. Default 0.
    #[serde(default)]
    pub delay_ms: u64,
}

/// One configured provider, tagged by `kind`, e.g. in TOML:
///
/// ```toml
/// [providers.twilio-eu]
/// kind = "twilio"
/// account_sid = "AC…"
/// auth_token = "…"          # better: OTPD__PROVIDERS__TWILIO_EU__AUTH_TOKEN
/// from = "+15005550006"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderSettings {
    Twilio(TwilioConfig),
    Vonage(VonageConfig),
    Http(HttpConfig),
    Smtp(SmtpConfig),
    Sandbox(SandboxConfig),
}

impl ProviderSettings {
    /// The `kind` as written in the settings.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderSettings::Twilio(_) => "twilio",
            ProviderSettings::Vonage(_) => "vonage",
            ProviderSettings::Http(_) => "http",
            ProviderSettings::Smtp(_) => "smtp",
            ProviderSettings::Sandbox(_) => "sandbox",
        }
    }

    /// Every problem with the settings of provider `id`, each naming its setting as
    /// `providers.<id>.<setting>`. Empty when the settings are usable.
    pub fn validate(&self, id: &str) -> Vec<String> {
        let prefix = format!("providers.{id}");
        let mut problems = Vec::new();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!(
                "{prefix}: a provider id may hold only letters, digits, '-' and '_'"
            ));
        }
        problems.extend(match self {
            ProviderSettings::Twilio(config) => config.validate(&prefix),
            ProviderSettings::Vonage(config) => config.validate(&prefix),
            ProviderSettings::Http(config) => config.validate(&prefix),
            ProviderSettings::Smtp(config) => config.validate(&prefix),
            ProviderSettings::Sandbox(_) => Vec::new(),
        });
        problems
    }
}

/// Builds provider `id` from its settings. `store_dir` is where the sandbox writes.
pub fn build(
    id: &str,
    settings: &ProviderSettings,
    store_dir: &Path,
) -> Result<Arc<dyn Provider>, BuildError> {
    let problems = settings.validate(id);
    if !problems.is_empty() {
        return Err(BuildError::Invalid(problems));
    }
    let prefixed = format!("providers.{id}");
    Ok(match settings {
        ProviderSettings::Twilio(config) => {
            Arc::new(TwilioProvider::new(id, config.clone()).map_err(|e| rename(e, id, &prefixed))?)
        }
        ProviderSettings::Vonage(config) => {
            Arc::new(VonageProvider::new(id, config.clone()).map_err(|e| rename(e, id, &prefixed))?)
        }
        ProviderSettings::Http(config) => {
            Arc::new(HttpProvider::new(id, config.clone()).map_err(|e| rename(e, id, &prefixed))?)
        }
        ProviderSettings::Smtp(config) => {
            Arc::new(SmtpProvider::new(id, config.clone()).map_err(|e| rename(e, id, &prefixed))?)
        }
        ProviderSettings::Sandbox(config) => Arc::new(SandboxProvider::new(
            store_dir,
            Duration::from_millis(config.delay_ms),
        )),
    })
}

fn rename(error: BuildError, id: &str, prefixed: &str) -> BuildError {
    match error {
        BuildError::Invalid(problems) => BuildError::Invalid(
            problems
                .into_iter()
                .map(|problem| match problem.strip_prefix(id) {
                    Some(rest) => format!("{prefixed}{rest}"),
                    None => problem,
                })
                .collect(),
        ),
        other => other,
    }
}

/// The HTTP client every HTTP adapter uses: rustls, `timeout` for the whole request and for
/// connecting, no redirects (a provider API never needs one), no retries.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| BuildError::Client(error.to_string()))
}

/// Checks that `url` (setting `name`) is an absolute http(s) URL.
pub(crate) fn validate_base_url(name: &str, url: &str, problems: &mut Vec<String>) {
    let name = if name.ends_with(".url") {
        name.to_owned()
    } else {
        format!("{name}.base_url")
    };
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        _ => problems.push(format!(
            "{name} is '{url}'; it must be an absolute http(s) URL such as https://api.example.com"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ProviderSettings, String> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .build()
            .map_err(|e| e.to_string())?;
        raw.try_deserialize().map_err(|e| e.to_string())
    }

    #[test]
    fn parses_each_kind_with_defaults() {
        let twilio = parse(
            "kind = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"+15005550006\"",
        )
        .unwrap();
        let ProviderSettings::Twilio(config) = &twilio else {
            panic!("not twilio")
        };
        assert_eq!(config.base_url, "https://api.twilio.com");
        assert_eq!(config.timeout_ms, 5_000);
        assert!(twilio.validate("tw").is_empty());

        let vonage =
            parse("kind = \"vonage\"\napi_key = \"k\"\napi_secret = \"s\"\nfrom = \"Acme\"")
                .unwrap();
        assert_eq!(vonage.kind(), "vonage");
        assert!(vonage.validate("vo").is_empty());

        let smtp = parse("kind = \"smtp\"\nhost = \"smtp.example.com\"\nfrom = \"a@example.com\"")
            .unwrap();
        let ProviderSettings::Smtp(config) = &smtp else {
            panic!("not smtp")
        };
        assert_eq!(config.tls, crate::providers::smtp::SmtpTls::Starttls);
        assert_eq!(config.subject, "Your verification code");
        assert!(smtp.validate("mail").is_empty());

        let http = parse(
            "kind = \"http\"\nurl = \"https://sms.example.com/send\"\nbody_template = '{\"to\":\"{to}\",\"text\":\"{body}\"}'\n[headers]\nAuthorization = \"Bearer x\"",
        )
        .unwrap();
        let ProviderSettings::Http(config) = &http else {
            panic!("not http")
        };
        assert_eq!(config.method, "POST");
        assert!(http.validate("gw").is_empty());

        let sandbox = parse("kind = \"sandbox\"").unwrap();
        assert_eq!(sandbox.kind(), "sandbox");
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        assert!(parse(
            "kind = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nfrom = \"x\"\ntypo = 1"
        )
        .is_err());
        assert!(parse("kind = \"carrier-pigeon\"").is_err());
    }

    #[test]
    fn validate_names_every_problem() {
        let settings = parse(
            "kind = \"twilio\"\nbase_url = \"nope\"\naccount_sid = \"\"\nauth_token = \"\"\ntimeout_ms = 0",
        )
        .unwrap();
        let problems = settings.validate("tw");
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.iter().all(|p| p.starts_with("providers.tw")));
        let error = build("tw", &settings, Path::new("/tmp")).err().unwrap();
        assert!(matches!(error, BuildError::Invalid(found) if found == problems));
    }

    #[test]
    fn smtp_without_tls_is_for_loopback_only() {
        let settings =
            parse("kind = \"smtp\"\nhost = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"a@example.com\"")
                .unwrap();
        assert_eq!(settings.validate("mail").len(), 1);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let settings =
            parse("kind = \"vonage\"\napi_key = \"k\"\napi_secret = \"hunter2\"\nfrom = \"Acme\"")
                .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
