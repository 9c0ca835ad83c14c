//! The registry of provider kinds: the `kind = "…"` of `[providers.<id>]` names one of them.
//! A new kind is a folder under `providers/` (settings, adapter, receipts, channels), its
//! `pub mod` line in `providers/mod.rs`, and one line in `registry!` below.

use serde::Deserialize;
use std::sync::Arc;

use super::kind::{BuildContext, BuildError, ProviderKind};
use super::receipts::ReceiptReader;
use super::{sandbox, Provider};
use crate::domain::Channel;

/// The id of the built-in sandbox provider.
pub const SANDBOX: &str = "sandbox";

/// Declares `ProviderSettings`, tagged by `kind`, with one variant per registered kind.
macro_rules! registry {
    ($($kind:literal => $variant:ident($config:ty),)*) => {
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
        #[serde(tag = "kind")]
        pub enum ProviderSettings {
            $(#[serde(rename = $kind)] $variant($config),)*
        }

        impl ProviderSettings {
            /// The `kind` as written in the settings.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ProviderSettings::$variant(_) => $kind,)*
                }
            }

            fn spec(&self) -> &dyn ProviderKind {
                match self {
                    $(ProviderSettings::$variant(config) => config,)*
                }
            }
        }
    };
}

registry! {
    "twilio" => Twilio(super::twilio::TwilioConfig),
    "twilio_voice" => TwilioVoice(super::twilio::TwilioVoiceConfig),
    "vonage" => Vonage(super::vonage::VonageConfig),
    "vonage_voice" => VonageVoice(super::vonage::VonageVoiceConfig),
    "whatsapp" => Whatsapp(super::whatsapp::WhatsappConfig),
    "http" => Http(super::http::HttpConfig),
    "smtp" => Smtp(super::smtp::SmtpConfig),
    "smpp" => Smpp(super::smpp::SmppConfig),
    "sandbox" => Sandbox(super::sandbox::SandboxConfig),
}

/// A provider ready to send, with what the rest of otpd needs to know of it.
pub struct BuiltProvider {
    pub id: String,
    pub kind: &'static str,
    pub adapter: Arc<dyn Provider>,
    /// How its delivery receipts are read, when it posts them to otpd.
    pub receipts: Option<Arc<dyn ReceiptReader>>,
}

impl ProviderSettings {
    /// The channels this provider can deliver.
    pub fn channels(&self) -> Vec<Channel> {
        self.spec().channels()
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
        problems.extend(self.spec().validate(&prefix));
        problems
    }

    /// Builds provider `id`: its adapter, and its receipt reader if it has one.
    pub fn build(&self, id: &str, context: &BuildContext) -> Result<BuiltProvider, BuildError> {
        let problems = self.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let adapter = self
            .spec()
            .build(id, context)
            .map_err(|error| rename(error, id, &format!("providers.{id}")))?;
        Ok(BuiltProvider {
            id: id.to_owned(),
            kind: self.kind(),
            adapter,
            receipts: self.spec().receipts(context),
        })
    }
}

/// `[sandbox]`: the built-in stand-in phone, provider id `sandbox`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Whether the sandbox provider delivers messages. Default true.
    pub enabled: bool,
    /// Milliseconds the sandbox waits before writing a message. Default 0.
    pub delay_ms: u64,
}

impl SandboxSettings {
    /// The built-in sandbox as a provider's settings, when it is enabled.
    pub fn as_provider(&self) -> Option<ProviderSettings> {
        self.enabled.then(|| {
            ProviderSettings::Sandbox(sandbox::SandboxConfig {
                delay_ms: self.delay_ms,
            })
        })
    }
}

/// Problems an adapter names by its id alone, named by their full setting instead.
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
        let context = BuildContext {
            store_dir: "/tmp".into(),
            receipt_secret: None,
            ..BuildContext::default()
        };
        let error = settings.build("tw", &context).err().unwrap();
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
