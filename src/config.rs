//! Settings: config/default.toml, then config/$OTPD_ENV.toml, then `--config FILE`, then
//! `OTPD__SECTION__KEY` environment variables; validated as a whole before anything starts.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::delivery::breaker::BreakerConfig;
use crate::domain::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::providers::ProviderSettings;
use crate::quota::QuotaLimits;

/// The defaults, compiled in so the binary starts from any directory.
pub const DEFAULT_SETTINGS: &str = include_str!("../config/default.toml");

/// Shortest and longest lifetime a caller may ask for, in seconds.
pub const MIN_TTL_SECONDS: u64 = 30;
pub const MAX_TTL_SECONDS: u64 = 900;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the settings: {0}")]
    Load(String),
    #[error("the settings have {} problem(s):\n{}", .0.len(), bullet_list(.0))]
    Invalid(Vec<String>),
}

fn bullet_list(problems: &[String]) -> String {
    problems
        .iter()
        .map(|problem| format!("  - {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub store: StoreSettings,
    #[serde(default)]
    pub amqp: AmqpSettings,
    #[serde(default)]
    pub secrets: SecretSettings,
    pub verification: VerificationSettings,
    pub rate_limits: RateLimitSettings,
    pub delivery: DeliverySettings,
    pub sandbox: SandboxSettings,
    pub regions: RegionSettings,
    /// Tenants: the SHA-256 hashes of their API keys and what each may send. Default: none
    /// (then the first start creates tenant `dev`).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
    /// Message texts: template name → locale → text with `{code}` and `{minutes}`.
    pub templates: BTreeMap<String, BTreeMap<String, String>>,
    /// Providers besides the built-in `sandbox`, by id. Default none.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Region (or `default`) → channel → provider ids in order of preference.
    /// Default: `default` sends both channels through the sandbox.
    pub routing: BTreeMap<String, ChannelRoutes>,
    /// Circuit breaker of every provider. Defaults: see `BreakerConfig`.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Provider id → daily and monthly message caps. Default: no caps.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaLimits>,
    /// ISO 3166 country code → sender ID and template that country requires (e.g. registered
    /// sender IDs and templates). Default none.
    #[serde(default)]
    pub countries: BTreeMap<String, CountryOverrides>,
    /// Provider id → its own limits (messages per second, messages in flight). Default none.
    #[serde(default)]
    pub provider_limits: BTreeMap<String, ProviderLimits>,
    /// Provider id → the shared secret its delivery receipts carry (`?secret=` or the
    /// `X-Otpd-Receipt-Secret` header), for providers without signatures (vonage, http).
    /// Give them by environment: `OTPD__RECEIPT_SECRETS__<ID>`. Default none.
    #[serde(default)]
    pub receipt_secrets: BTreeMap<String, SecretString>,
    /// Cost of one message, in cost units, for the tenants' spend caps. Defaults: see
    /// `PricingSettings` (1 per SMS, 0 per email).
    #[serde(default)]
    pub pricing: crate::access::PricingSettings,
    /// The SMS-pumping guard. Defaults: see `FraudSettings`.
    #[serde(default)]
    pub fraud: crate::fraud::FraudSettings,
}

/// What one country requires of messages sent to it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryOverrides {
    /// Sender ID used for this country instead of the provider's `from`. Default unset.
    #[serde(default)]
    pub sender_id: Option<String>,
    /// Template used for this country instead of the request's. Default unset.
    #[serde(default)]
    pub template: Option<String>,
}

/// Limits of one provider.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderLimits {
    /// Messages per second the provider may be sent. Default unlimited.
    #[serde(default)]
    pub messages_per_second: Option<f64>,
    /// Messages in flight to this provider. Default `delivery.concurrency`.
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// The providers of one region, per channel, in order of preference.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRoutes {
    /// Default none (then the `default` routing applies).
    #[serde(default)]
    pub sms: Vec<String>,
    /// Default none (then the `default` routing applies).
    #[serde(default)]
    pub email: Vec<String>,
}

impl ChannelRoutes {
    pub fn for_channel(&self, channel: crate::domain::Channel) -> &[String] {
        match channel {
            crate::domain::Channel::Sms => &self.sms,
            crate::domain::Channel::Email => &self.email,
        }
    }
}

/// The routing entry used for regions without one of their own.
pub const DEFAULT_ROUTE: &str = "default";
/// The id of the built-in sandbox provider.
pub const SANDBOX: &str = "sandbox";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the API listens on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Worker threads; 0 means one per core. Default 0.
    pub workers: usize,
    /// The URL providers call otpd at (e.g. `https://otpd.example.com`), for checking
    /// Twilio's receipt signatures behind a proxy. Default unset: taken from the request.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `[http.tls]`: certificate and key for HTTPS. Default unset: plain HTTP.
    #[serde(default)]
    pub tls: crate::tls::HttpTlsSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// State directory. Default `./data`.
    pub dir: PathBuf,
    /// Seconds between sweeps of expired records. Default 60.
    pub sweep_interval_seconds: u64,
    /// Seconds a finished verification stays readable. Default 86400.
    pub retention_seconds: u64,
    /// Bytes of page cache sled may use, as sled counts them. Default 16 MiB.
    pub cache_capacity_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// Broker URL (`amqp://user:pass@host:5672/%2f`); unset means embedded mode. Default unset.
    pub url: Option<String>,
    /// Prefix of every exchange and queue name (`<namespace>.requests`, …). Default `otp`.
    pub namespace: String,
    /// `quorum` or `classic`, for the requests and region queues. Default `quorum`.
    pub requests_queue_type: String,
    /// Unacknowledged messages per consumer. Default 256.
    pub prefetch: u16,
    /// Longest wait for any broker operation, milliseconds. Default 5000.
    pub timeout_ms: u64,
    /// Pause before reconnecting after the connection dropped, milliseconds. Default 1000.
    pub reconnect_delay_ms: u64,
    /// Deliveries of one message before the broker dead-letters it. Default 20.
    pub delivery_limit: u32,
    /// Regions whose queues this node consumes; empty means all. Default empty.
    pub consume_regions: Vec<String>,
    /// Region queue name → routing-key patterns bound to it on the route exchange.
    /// Default: eu, americas, apac, world for SMS, and email.
    pub region_queues: BTreeMap<String, Vec<String>>,
    /// `[amqp.tls]`: the CA trusted for an `amqps://` broker and an optional client
    /// certificate. Default: the system's roots, no client certificate.
    pub tls: crate::tls::AmqpTlsSettings,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: None,
            namespace: "otp".into(),
            requests_queue_type: "quorum".into(),
            prefetch: 256,
            timeout_ms: 5000,
            reconnect_delay_ms: 1000,
            delivery_limit: 20,
            consume_regions: Vec::new(),
            region_queues: BTreeMap::new(),
            tls: crate::tls::AmqpTlsSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// HMAC pepper, hex. Default unset.
    pub pepper: Option<SecretString>,
    /// File holding the HMAC pepper in hex. Default unset.
    pub pepper_file: Option<PathBuf>,
    /// Key that seals codes in delivery jobs, 32 bytes in hex. Default unset.
    pub sealing_key: Option<SecretString>,
    /// File holding the sealing key in hex. Default unset.
    pub sealing_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSettings {
    /// Default code length (4–10). Default 6.
    pub code_length: u8,
    /// Default lifetime in seconds (30–900). Default 300.
    pub ttl_seconds: u64,
    /// Checks allowed per verification. Default 5.
    pub max_attempts: u32,
    /// Seconds before a destination may get a new code. Default 30.
    pub resend_cooldown_seconds: u64,
    /// Codes per destination within `send_window_seconds`. Default 5.
    pub sends_per_destination: u32,
    /// Window of the per-destination send limit, seconds. Default 600.
    pub send_window_seconds: u64,
    /// How long an Idempotency-Key is remembered, seconds. Default 86400.
    pub idempotency_ttl_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Creates per second per tenant. Default 200.
    pub tenant_per_second: f64,
    /// Burst per tenant. Default 400.
    pub tenant_burst: u32,
    /// Creates per second per client IP. Default 20.
    pub client_ip_per_second: f64,
    /// Burst per client IP. Default 40.
    pub client_ip_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Messages in flight per provider. Default 256.
    pub concurrency: usize,
    /// Mailbox capacity of each actor. Default 1024.
    pub mailbox_capacity: usize,
    /// Tries on one provider (first send and retries) before failing over. Default 3.
    pub attempts_per_provider: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Whether the sandbox provider delivers messages. Default true.
    pub enabled: bool,
    /// Milliseconds the sandbox waits before writing a message. Default 0.
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSettings {
    /// Region of email and of countries not listed. Default `world`.
    pub default: String,
    /// Region → ISO 3166 country codes. Default: eu, americas, apac.
    pub countries: BTreeMap<String, Vec<String>>,
}

/// A tenant's keys and access settings; see `crate::access::settings`.
pub use crate::access::TenantSettings;

impl Settings {
    /// Loads and validates the settings; `extra_file` is `otpd serve --config FILE`.
    pub fn load(extra_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_SETTINGS,
            config::FileFormat::Toml,
        ));
        if let Ok(environment) = std::env::var("OTPD_ENV") {
            builder = builder.add_source(
                config::File::with_name(&format!("config/{environment}")).required(false),
            );
        }
        if let Some(path) = extra_file {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "the settings file {} does not exist or is not a file",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("OTPD")
                .prefix_separator("__")
                .separator("__"),
        );
        let settings: Settings = builder
            .build()
            .and_then(|raw| raw.try_deserialize())
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every setting and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.validate_http(&mut problems);
        self.validate_verification(&mut problems);
        self.validate_rate_limits(&mut problems);
        self.validate_regions(&mut problems);
        self.validate_templates(&mut problems);
        self.validate_tenants(&mut problems);
        problems.extend(crate::access::validate(self));
        if self.delivery.concurrency == 0 {
            problems.push("delivery.concurrency must be at least 1".into());
        }
        if self.delivery.mailbox_capacity == 0 {
            problems.push("delivery.mailbox_capacity must be at least 1".into());
        }
        if self.store.sweep_interval_seconds == 0 {
            problems.push("store.sweep_interval_seconds must be at least 1".into());
        }
        self.validate_amqp(&mut problems);
        self.validate_providers(&mut problems);
        problems.extend(self.fraud.validate("fraud"));
        crate::tls::validate(self, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The provider ids that exist: the configured ones, and the sandbox when enabled.
    pub fn provider_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.providers.keys().cloned().collect();
        if self.sandbox.enabled {
            ids.push(SANDBOX.to_owned());
        }
        ids
    }

    fn validate_providers(&self, problems: &mut Vec<String>) {
        if self.providers.contains_key(SANDBOX) {
            problems.push(format!(
                "providers.{SANDBOX}: the sandbox is built in; configure it under [sandbox]"
            ));
        }
        for (id, provider) in &self.providers {
            if !is_name(id) {
                problems.push(format!(
                    "providers.{id}: a provider id is lower-case letters, digits and '-'"
                ));
            }
            problems.extend(provider.validate(id));
        }
        problems.extend(self.breaker.validate("breaker"));
        let ids = self.provider_ids();
        for (id, limits) in &self.quotas {
            if !ids.contains(id) {
                problems.push(format!("quotas.{id}: there is no provider '{id}'"));
            }
            problems.extend(limits.validate(&format!("quotas.{id}")));
        }
        for (country, overrides) in &self.countries {
            if country.parse::<phonenumber::country::Id>().is_err() {
                problems.push(format!(
                    "countries.{country}: not an ISO 3166 country code such as DE"
                ));
            }
            if let Some(template) = &overrides.template {
                if !self.templates.contains_key(template) {
                    problems.push(format!(
                        "countries.{country}.template names '{template}', which is not under [templates]"
                    ));
                }
            }
        }
        for (id, limits) in &self.provider_limits {
            if !ids.contains(id) {
                problems.push(format!("provider_limits.{id}: there is no provider '{id}'"));
            }
            if limits
                .messages_per_second
                .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
            {
                problems.push(format!(
                    "provider_limits.{id}.messages_per_second must be a positive number"
                ));
            }
            if limits.concurrency == Some(0) {
                problems.push(format!(
                    "provider_limits.{id}.concurrency must be at least 1"
                ));
            }
        }
        if self.delivery.attempts_per_provider == 0 {
            problems.push("delivery.attempts_per_provider must be at least 1".into());
        }
        let regions: Vec<&String> = self.regions.countries.keys().collect();
        for (region, routes) in &self.routing {
            let known = region == DEFAULT_ROUTE
                || *region == self.regions.default
                || regions.contains(&region);
            if !known {
                problems.push(format!(
                    "routing.{region}: no such region; use '{DEFAULT_ROUTE}' or a region of regions.countries"
                ));
            }
            for (channel, list) in [("sms", &routes.sms), ("email", &routes.email)] {
                for id in list {
                    if !ids.contains(id) {
                        problems.push(format!(
                            "routing.{region}.{channel} names '{id}', which is not a configured provider (configured: {})",
                            ids.join(", ")
                        ));
                    }
                }
            }
        }
        let default = self.routing.get(DEFAULT_ROUTE);
        for channel in [crate::domain::Channel::Sms, crate::domain::Channel::Email] {
            if default.is_none_or(|routes| routes.for_channel(channel).is_empty()) {
                problems.push(format!(
                    "routing.{DEFAULT_ROUTE}.{channel} is empty; every channel needs at least one provider"
                ));
            }
        }
    }

    fn validate_amqp(&self, problems: &mut Vec<String>) {
        let amqp = &self.amqp;
        if let Some(url) = &amqp.url {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                problems.push(
                    "amqp.url must start with amqp:// or amqps://, e.g. amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                );
            }
        }
        if amqp.namespace.is_empty()
            || !amqp
                .namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            problems.push(format!(
                "amqp.namespace is '{}'; use letters, digits, '-', '_' and '.'",
                amqp.namespace
            ));
        }
        if !["quorum", "classic"].contains(&amqp.requests_queue_type.as_str()) {
            problems.push(format!(
                "amqp.requests_queue_type is '{}'; allowed: quorum, classic",
                amqp.requests_queue_type
            ));
        }
        if amqp.prefetch == 0 {
            problems.push("amqp.prefetch must be at least 1".into());
        }
        if amqp.timeout_ms == 0 {
            problems.push("amqp.timeout_ms must be at least 1".into());
        }
        for region in &amqp.consume_regions {
            if !amqp.region_queues.contains_key(region) {
                problems.push(format!(
                    "amqp.consume_regions names '{region}', which is not a key of amqp.region_queues"
                ));
            }
        }
        let topology = crate::bus::amqp::topology::Topology::from_settings(amqp);
        problems.extend(topology.check_routing(&self.regions));
    }

    fn validate_http(&self, problems: &mut Vec<String>) {
        if self.http.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen is '{}'; it must be an IP address and port such as 127.0.0.1:8080",
                self.http.listen
            ));
        }
    }

    fn validate_verification(&self, problems: &mut Vec<String>) {
        let v = &self.verification;
        if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&v.code_length) {
            problems.push(format!(
                "verification.code_length is {}; allowed: {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH}",
                v.code_length
            ));
        }
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&v.ttl_seconds) {
            problems.push(format!(
                "verification.ttl_seconds is {}; allowed: {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}",
                v.ttl_seconds
            ));
        }
        if !(1..=100).contains(&v.max_attempts) {
            problems.push(format!(
                "verification.max_attempts is {}; allowed: 1 to 100",
                v.max_attempts
            ));
        }
        if v.sends_per_destination == 0 {
            problems.push("verification.sends_per_destination must be at least 1".into());
        }
        if v.send_window_seconds == 0 {
            problems.push("verification.send_window_seconds must be at least 1".into());
        }
    }

    fn validate_rate_limits(&self, problems: &mut Vec<String>) {
        let limits = &self.rate_limits;
        for (name, rate) in [
            ("tenant_per_second", limits.tenant_per_second),
            ("client_ip_per_second", limits.client_ip_per_second),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                problems.push(format!(
                    "rate_limits.{name} is {rate}; it must be a positive number"
                ));
            }
        }
        for (name, burst) in [
            ("tenant_burst", limits.tenant_burst),
            ("client_ip_burst", limits.client_ip_burst),
        ] {
            if burst == 0 {
                problems.push(format!("rate_limits.{name} must be at least 1"));
            }
        }
    }

    fn validate_regions(&self, problems: &mut Vec<String>) {
        if !is_name(&self.regions.default) {
            problems.push(format!(
                "regions.default is '{}'; a region name is lower-case letters, digits and '-'",
                self.regions.default
            ));
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (region, countries) in &self.regions.countries {
            if !is_name(region) {
                problems.push(format!(
                    "regions.countries.{region}: a region name is lower-case letters, digits and '-'"
                ));
            }
            for country in countries {
                if country.parse::<phonenumber::country::Id>().is_err() {
                    problems.push(format!(
                        "regions.countries.{region}: '{country}' is not an ISO 3166 country code such as DE"
                    ));
                }
                if let Some(other) = seen.insert(country, region) {
                    problems.push(format!(
                        "regions.countries: {country} is listed in both '{other}' and '{region}'; a country belongs to one region"
                    ));
                }
            }
        }
    }

    fn validate_templates(&self, problems: &mut Vec<String>) {
        if !self.templates.contains_key(DEFAULT_TEMPLATE) {
            problems.push(format!(
                "templates.{DEFAULT_TEMPLATE} is missing; it is used when a request names no template"
            ));
        }
        for (name, texts) in &self.templates {
            if !texts.contains_key(FALLBACK_LOCALE) {
                problems.push(format!(
                    "templates.{name} has no '{FALLBACK_LOCALE}' text; it is the fallback for other locales"
                ));
            }
            for (locale, text) in texts {
                if !text.contains("{code}") {
                    problems.push(format!(
                        "templates.{name}.{locale} does not contain {{code}}; the message would not carry the code"
                    ));
                }
            }
        }
    }

    fn validate_tenants(&self, problems: &mut Vec<String>) {
        let mut names = BTreeSet::new();
        for (name, tenant) in &self.tenants {
            names.insert(name);
            if !is_name(name) {
                problems.push(format!(
                    "tenants.{name}: a tenant name is lower-case letters, digits and '-'"
                ));
            }
            for hash in &tenant.api_key_sha256 {
                if hash.len() != 64 || hex::decode(hash).is_err() {
                    problems.push(format!(
                        "tenants.{name}.api_key_sha256: each entry must be 64 hex digits (the SHA-256 of a key, as `otpd tenant add` stores it)"
                    ));
                }
            }
        }
    }
}

/// The template used when a request names none.
pub const DEFAULT_TEMPLATE: &str = "default";
/// The locale every template has, used when a request's locale is missing.
pub const FALLBACK_LOCALE: &str = "en";

/// Lower-case ASCII letters, digits and '-', 1 to 64 of them: safe in routing keys and labels.
pub fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_SETTINGS,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        defaults().validate().unwrap();
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut settings = defaults();
        settings.http.listen = "nowhere".into();
        settings.verification.code_length = 3;
        settings.verification.ttl_seconds = 5;
        settings
            .regions
            .countries
            .insert("extra".into(), vec!["DE".into(), "XX".into()]);
        settings.templates.insert(
            "broken".into(),
            BTreeMap::from([("de".into(), "kein Code".into())]),
        );
        let Err(ConfigError::Invalid(problems)) = settings.validate() else {
            panic!("invalid settings passed validation");
        };
        let text = problems.join("\n");
        for expected in [
            "http.listen",
            "verification.code_length",
            "verification.ttl_seconds",
            "'XX' is not an ISO 3166",
            "DE is listed in both",
            "templates.broken has no 'en'",
            "templates.broken.de does not contain {code}",
        ] {
            assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
        }
    }

    #[test]
    fn names_are_restricted() {
        assert!(is_name("eu-west-1"));
        assert!(!is_name("EU"));
        assert!(!is_name("a.b"));
        assert!(!is_name(""));
    }
}
