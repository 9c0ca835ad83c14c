//! Settings: config/default.toml, then config/$OTPD_ENV.toml, then `--config FILE`, then
//! `OTPD__SECTION__KEY` environment variables. Each component owns its section and checks
//! it; this module composes them and checks how they fit together, all before anything starts.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::access::{PricingSettings, TenantSettings};
use crate::api::settings::HttpSettings;
use crate::bus::amqp::settings::AmqpSettings;
use crate::bus::amqp::topology::Topology;
use crate::cluster::ClusterSettings;
use crate::delivery::breaker::BreakerConfig;
use crate::delivery::quota::QuotaLimits;
use crate::delivery::region::every_routing_key;
use crate::delivery::settings::validate_registrations;
use crate::delivery::settings::{
    validate_countries, validate_templates, CountrySettings, DeliverySettings, ProviderLimits,
    RegionSettings, RoutingSettings, TemplateSettings,
};
use crate::delivery::sms_text::{validate_sms_texts, AutofillLines};
use crate::domain::{is_name, Channel};
use crate::fraud::FraudSettings;
use crate::issuance::settings::{RateLimitSettings, VerificationSettings};
use crate::providers::receipts::{InboxReceipt, ReceiptInbox};
use crate::providers::{
    BuildContext, BuildError, BuiltProvider, ProviderSettings, SandboxSettings,
};
use crate::runtime::RuntimeSettings;
use crate::secrets::SecretSettings;
use crate::store::StoreSettings;
use crate::tls::{AmqpTls, TlsError};

/// The defaults, compiled in so the binary starts from any directory.
pub const DEFAULT_SETTINGS: &str = include_str!("../config/default.toml");

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
    /// `[log]`: text or JSON lines. Default text.
    #[serde(default)]
    pub log: crate::telemetry::LogSettings,
    pub store: StoreSettings,
    /// `[runtime]`: the threads the actors share. Default: chosen by the number of cores.
    #[serde(default)]
    pub runtime: RuntimeSettings,
    #[serde(default)]
    pub amqp: AmqpSettings,
    /// `[cluster]`: partitions and this node's name, for broker mode. Defaults: see
    /// `ClusterSettings`.
    #[serde(default)]
    pub cluster: ClusterSettings,
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
    pub templates: TemplateSettings,
    /// Providers besides the built-in `sandbox`, by id. Default none.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Region (or `default`) → channel → provider ids in order of preference.
    /// Default: `default` sends every channel through the sandbox.
    pub routing: RoutingSettings,
    /// Circuit breaker of every provider. Defaults: see `BreakerConfig`.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Provider id → daily and monthly message caps. Default: no caps.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaLimits>,
    /// ISO 3166 country code → sender ID and template that country requires (e.g. registered
    /// sender IDs and templates). Default none.
    #[serde(default)]
    pub countries: CountrySettings,
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
    pub pricing: PricingSettings,
    /// The SMS-pumping guard. Defaults: see `FraudSettings`.
    #[serde(default)]
    pub fraud: FraudSettings,
    /// `[webhooks]`: how the tenants' webhooks are retried. Defaults: see `WebhookSettings`.
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhookSettings,
}

/// What the settings name on disk, read and checked once: the TLS material and the built
/// providers. `Settings::validate` makes it; the application starts from it.
pub struct Prepared {
    /// The HTTPS listener's configuration, when `[http.tls]` is set.
    pub https: Option<rustls::ServerConfig>,
    /// What an `amqps://` connection trusts and shows.
    pub amqp_tls: AmqpTls,
    /// Every provider (the configured ones and the sandbox when enabled), built.
    pub providers: Vec<BuiltProvider>,
    /// The receipts that arrive on providers' own connections (SMPP), to be recorded.
    pub receipt_inbox: tokio::sync::mpsc::Receiver<InboxReceipt>,
    /// The tenants' webhooks, their secrets read.
    pub webhook_targets: crate::webhooks::WebhookTargets,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("https", &self.https.is_some())
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Loads the settings and checks everything that needs no file; `extra_file` is
    /// `otpd serve --config FILE`. Files the settings name are read by [`Settings::validate`].
    pub fn load(extra_file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with(extra_file, None)
    }

    /// `load`, with the environment given (`None`: the process's own).
    fn load_with(
        extra_file: Option<&Path>,
        environment: Option<config::Map<String, String>>,
    ) -> Result<Settings, ConfigError> {
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
                .separator("__")
                .source(environment),
        );
        let settings: Settings = builder
            .build()
            .and_then(|raw| raw.try_deserialize())
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        into_result(settings.check())?;
        Ok(settings)
    }

    /// Checks every setting, reading each file they name once (TLS certificates and keys,
    /// CA bundles), and builds the providers; reports every problem at once.
    pub fn validate(&self) -> Result<Prepared, ConfigError> {
        let mut problems = self.check();
        let https = crate::tls::server_config(&self.http.tls)
            .map_err(|error| problems.push(error.to_string()))
            .ok()
            .flatten();
        let amqp_tls = crate::tls::amqp_tls(&self.amqp.tls)
            .map_err(|error: TlsError| problems.push(error.to_string()))
            .unwrap_or_default();
        let mut providers = Vec::new();
        let (inbox, receipt_inbox) = ReceiptInbox::new();
        for (id, settings) in self.provider_settings() {
            let context = BuildContext {
                store_dir: self.store.dir.clone(),
                receipt_secret: self.receipt_secrets.get(&id).cloned(),
                receipt_inbox: Some(inbox.clone()),
            };
            match settings.build(&id, &context) {
                Ok(built) => providers.push(built),
                Err(BuildError::Invalid(found)) => problems.extend(found),
                Err(error) => problems.push(format!("providers.{id}: {error}")),
            }
        }
        let webhook_targets = crate::webhooks::WebhookTargets::from_settings(&self.tenants)
            .map_err(|found| problems.extend(found))
            .unwrap_or_default();
        into_result(problems)?;
        Ok(Prepared {
            https,
            amqp_tls,
            providers,
            receipt_inbox,
            webhook_targets,
        })
    }

    /// Every problem that needs no file: each section's own, then how they fit together.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(self.http.validate());
        problems.extend(self.store.validate());
        problems.extend(self.runtime.validate());
        problems.extend(self.verification.validate());
        problems.extend(self.rate_limits.validate());
        problems.extend(self.regions.validate());
        problems.extend(validate_templates(&self.templates));
        problems.extend(validate_sms_texts(&self.templates, &self.autofill_lines()));
        problems.extend(crate::access::validate_tenants(&self.tenants));
        problems.extend(self.pricing.validate());
        problems.extend(self.delivery.validate());
        problems.extend(self.amqp.validate());
        problems.extend(self.cluster.validate());
        problems.extend(self.fraud.validate("fraud"));
        problems.extend(self.webhooks.validate());
        problems.extend(self.breaker.validate("breaker"));
        problems.extend(validate_countries(&self.countries, &self.templates));
        problems.extend(validate_registrations(
            &self.countries,
            &self.templates,
            |country| {
                self.tenants
                    .values()
                    .any(|tenant| tenant.countries.iter().any(|listed| listed == country))
            },
        ));
        problems.extend(self.routing.validate(&self.regions));
        problems.extend(self.check_workflows_routed());
        problems.extend(self.check_providers());
        let topology = Topology::from_settings(&self.amqp, &self.cluster);
        problems.extend(
            topology.check_routing(&every_routing_key(&self.regions, &self.routing.offered())),
        );
        problems
    }

    /// The lines each tenant's SMS carry so phones fill the code in, for the tenants that set
    /// any (`tenants.<name>.webotp_domain`, `android_app_hash`).
    pub fn autofill_lines(&self) -> BTreeMap<String, AutofillLines> {
        self.tenants
            .iter()
            .map(|(name, tenant)| {
                let lines = AutofillLines {
                    webotp_domain: tenant.webotp_domain.clone(),
                    android_app_hash: tenant.android_app_hash.clone(),
                };
                (name.clone(), lines)
            })
            .filter(|(_, lines)| !lines.is_empty())
            .collect()
    }

    /// The channels of the tenants' default workflows, each routed to a provider.
    fn check_workflows_routed(&self) -> Vec<String> {
        let offered = self.routing.offered();
        let mut problems = Vec::new();
        for (name, tenant) in &self.tenants {
            let Ok(Some(steps)) = tenant.default_workflow() else {
                continue;
            };
            let unrouted: BTreeSet<Channel> = steps
                .iter()
                .map(|step| step.channel)
                .filter(|channel| !offered.contains(channel))
                .collect();
            for channel in unrouted {
                problems.push(format!(
                    "tenants.{name}.workflow has a {channel} step, but no provider is routed for {channel} (routing.default.{channel}); route one, or take the step out"
                ));
            }
        }
        problems
    }

    /// Every provider's settings by id: the configured ones, and the sandbox when enabled.
    pub fn provider_settings(&self) -> Vec<(String, ProviderSettings)> {
        let mut all: Vec<(String, ProviderSettings)> = self
            .providers
            .iter()
            .map(|(id, settings)| (id.clone(), settings.clone()))
            .collect();
        if let Some(sandbox) = self.sandbox.as_provider() {
            all.push((crate::providers::SANDBOX.to_owned(), sandbox));
        }
        all
    }

    /// How the providers fit the rest: ids, the channels routed to them, their limits.
    fn check_providers(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.providers.contains_key(crate::providers::SANDBOX) {
            problems.push(format!(
                "providers.{}: the sandbox is built in; configure it under [sandbox]",
                crate::providers::SANDBOX
            ));
        }
        for id in self.providers.keys() {
            if !is_name(id) {
                problems.push(format!(
                    "providers.{id}: a provider id is lower-case letters, digits and '-'"
                ));
            }
        }
        let all = self.provider_settings();
        let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        let find = |id: &str| all.iter().find(|(known, _)| known == id).map(|(_, s)| s);
        for (region, channel, id) in self.routing.entries() {
            match find(id) {
                None => problems.push(format!(
                    "routing.{region}.{channel} names '{id}', which is not a configured provider (configured: {})",
                    ids.join(", ")
                )),
                Some(provider) if !provider.channels().contains(&channel) => {
                    problems.push(format!(
                        "routing.{region}.{channel} names '{id}', a {} provider, which cannot send {channel}; it serves {}",
                        provider.kind(),
                        provider
                            .channels()
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        for (id, limits) in &self.quotas {
            if !ids.contains(id) {
                problems.push(format!("quotas.{id}: there is no provider '{id}'"));
            }
            problems.extend(limits.validate(&format!("quotas.{id}")));
        }
        for (id, limits) in &self.provider_limits {
            if !ids.contains(id) {
                problems.push(format!("provider_limits.{id}: there is no provider '{id}'"));
            }
            problems.extend(limits.validate(id));
        }
        problems
    }
}

fn into_result(problems: Vec<String>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems))
    }
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
    fn stores_are_written_uncompressed_by_default() {
        // Every store created before the setting existed is uncompressed, and sled opens a
        // store only the way it was created: a default of true would refuse them all.
        assert!(!defaults().store.compression);
    }

    #[test]
    fn no_engine_is_named_by_default_and_compression_is_sled_s_alone() {
        // Every store created before the setting existed is sled's, and an engine opens only
        // the stores it made: unnamed, a store opens with the engine that made it.
        let mut settings = defaults();
        assert_eq!(settings.store.engine, None);
        settings.store.compression = true;
        settings
            .validate()
            .expect("sled's compression, which makes a new store sled's");
        settings.store.compression = false;
        settings.store.engine = Some(crate::store::EngineKind::Lsm);
        settings
            .validate()
            .expect("the lsm engine with its defaults");
        settings.store.compression = true;
        let Err(ConfigError::Invalid(problems)) = settings.validate() else {
            panic!("sled's compression was accepted for the lsm engine");
        };
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("store.compression is sled's setting")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_channel_routed_with_no_region_queue_for_its_keys_is_refused() {
        use crate::domain::Channel;
        let mut settings = defaults();
        // A deployment's own region queues, from before calls: fine while calls are not
        // routed, refused with the keys to add once they are.
        settings.amqp.region_queues = BTreeMap::from([
            ("everywhere".to_owned(), vec!["sms.#".to_owned()]),
            ("email".to_owned(), vec!["email.#".to_owned()]),
        ]);
        settings.validate().expect("calls are not routed yet");
        settings
            .routing
            .regions
            .get_mut("default")
            .unwrap()
            .insert(Channel::Voice, vec![crate::providers::SANDBOX.to_owned()]);
        let Err(ConfigError::Invalid(problems)) = settings.validate() else {
            panic!("routing calls without a queue for them was accepted");
        };
        assert!(
            problems.iter().any(|problem| problem
                .contains("amqp.region_queues: routing key 'voice.eu.de' reaches no region queue")),
            "{problems:?}"
        );
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
    fn a_tenant_s_default_workflow_must_be_permitted_routed_and_well_formed() {
        use crate::access::settings::WorkflowStepSettings;
        use crate::domain::Channel;
        let step = |channel, channel_timeout_seconds| WorkflowStepSettings {
            channel,
            channel_timeout_seconds,
        };
        let mut settings = defaults();
        let with_workflow = |steps| TenantSettings {
            workflow: Some(steps),
            ..TenantSettings::default()
        };
        settings.tenants.insert(
            "fine".into(),
            with_workflow(vec![step(Channel::Sms, Some(30)), step(Channel::Sms, None)]),
        );
        assert_eq!(settings.check(), Vec::<String>::new());
        settings.tenants.insert(
            "calls".into(),
            with_workflow(vec![step(Channel::Sms, None), step(Channel::Voice, None)]),
        );
        settings.tenants.insert(
            "quick".into(),
            with_workflow(vec![step(Channel::Sms, Some(5)), step(Channel::Sms, None)]),
        );
        let problems = settings.check().join("\n");
        for expected in [
            "tenants.calls.workflow: its workflow has a voice step, but 'channels' does not list voice",
            "tenants.quick.workflow: 'channel_timeout_seconds' of step 1 is 5",
        ] {
            assert!(problems.contains(expected), "missing '{expected}' in:\n{problems}");
        }
        settings
            .tenants
            .get_mut("calls")
            .unwrap()
            .channels
            .push(Channel::Voice);
        settings.tenants.remove("quick");
        assert_eq!(
            settings.check(),
            vec!["tenants.calls.workflow has a voice step, but no provider is routed for voice (routing.default.voice); route one, or take the step out".to_owned()]
        );
    }

    #[test]
    fn the_default_templates_fit_one_segment_with_a_tenant_s_autofill_lines_and_a_long_one_is_refused(
    ) {
        let mut settings = defaults();
        settings.tenants.insert(
            "acme".into(),
            TenantSettings {
                webotp_domain: Some("login.example.com".into()),
                android_app_hash: Some("FA+9qCX9VSu".into()),
                ..TenantSettings::default()
            },
        );
        assert_eq!(settings.check(), Vec::<String>::new());
        settings.templates.get_mut("login").unwrap().insert(
            "nl".into(),
            "{code} is je inlogcode. Hij verloopt over {minutes} minuten. Deel hem nooit met iemand, ook niet met onze medewerkers aan de telefoon.".into(),
        );
        let problems = settings.check().join("\n");
        assert!(
            problems.contains("templates.login.nl takes 2 segment(s)")
                && problems.contains("tenants.acme"),
            "{problems}"
        );
    }

    #[test]
    fn a_tenant_that_sends_to_india_needs_the_dlt_registration_of_every_template() {
        let mut settings = defaults();
        assert_eq!(
            settings.check(),
            Vec::<String>::new(),
            "nobody asked for IN"
        );
        settings.tenants.insert(
            "acme".into(),
            TenantSettings {
                countries: vec!["IN".into(), "DE".into()],
                ..TenantSettings::default()
            },
        );
        let problems = settings.check().join("\n");
        assert!(
            problems.contains("SMS to IN need a DLT registration (TRAI): set countries.IN.entity_id, countries.IN.template_ids.default, countries.IN.template_ids.login"),
            "{problems}"
        );
        let india = settings.countries.entry("IN".into()).or_default();
        india.entity_id = Some("1101234567890123456".into());
        india.template_ids = BTreeMap::from([
            ("default".into(), "1107160000000000001".into()),
            ("login".into(), "1107160000000000002".into()),
        ]);
        assert_eq!(settings.check(), Vec::<String>::new());
        assert_eq!(
            settings.countries["IN"].registration("login"),
            Some(crate::providers::Registration {
                entity_id: "1101234567890123456".into(),
                template_id: "1107160000000000002".into(),
            })
        );
    }

    #[test]
    fn a_route_to_a_provider_that_cannot_serve_the_channel_is_refused() {
        let mut settings = defaults();
        let smtp: ProviderSettings = serde_json::from_value(serde_json::json!({
            "kind": "smtp", "host": "smtp.example.com", "from": "a@example.com"
        }))
        .unwrap();
        settings.providers.insert("mail".into(), smtp);
        settings
            .routing
            .regions
            .get_mut("default")
            .unwrap()
            .insert(crate::domain::Channel::Sms, vec!["mail".into()]);
        let problems = settings.check().join("\n");
        assert!(
            problems.contains("routing.default.sms names 'mail', a smtp provider, which cannot send sms; it serves email"),
            "{problems}"
        );
    }

    #[test]
    fn list_settings_take_comma_separated_environment_values() {
        let environment = config::Map::from([
            (
                "OTPD__AMQP__CONSUME_REGIONS".to_owned(),
                "eu, apac".to_owned(),
            ),
            (
                "OTPD__TENANTS__ACME__API_KEY_SHA256".to_owned(),
                format!("{},{}", "a".repeat(64), "b".repeat(64)),
            ),
            ("OTPD__ROUTING__EU__SMS".to_owned(), "sandbox".to_owned()),
        ]);
        let settings = Settings::load_with(None, Some(environment)).unwrap();
        assert_eq!(settings.amqp.consume_regions, ["eu", "apac"]);
        assert_eq!(settings.tenants["acme"].api_key_sha256.len(), 2);
        assert_eq!(
            settings.routing.listed("eu", crate::domain::Channel::Sms),
            ["sandbox"]
        );
    }
}
