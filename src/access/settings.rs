//! The access settings: what each tenant may send (`tenants.<name>`) and the price table
//! spend caps count in (`pricing`), with their validation.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::domain::workflow::{self, PlannedStep};
use crate::domain::{is_country_code, is_name, Channel};
use crate::lists::array_or_commas;

/// One tenant: its API key hashes and what it may send. Every field may be left out; the
/// defaults allow everything, with no caps (otpd's behaviour before these settings existed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Hex SHA-256 hashes of the tenant's API keys (keys may also, or instead, be in
    /// `<store dir>/api-keys`, written by `otpd tenant add`). Default none.
    #[serde(default, deserialize_with = "array_or_commas")]
    pub api_key_sha256: Vec<String>,
    /// Channels the tenant may send through. Default every channel but the opt-in ones:
    /// `["sms", "email", "whatsapp"]` (calls only when listed).
    #[serde(default = "default_channels", deserialize_with = "array_or_commas")]
    pub channels: Vec<Channel>,
    /// ISO 3166 codes of the countries whose numbers the tenant may send to. Default empty: every
    /// country.
    #[serde(default, deserialize_with = "array_or_commas")]
    pub countries: Vec<String>,
    /// Number types the tenant may send to, as libphonenumber names them (`mobile`,
    /// `fixed_line`, `fixed_line_or_mobile`, `voip`, `toll_free`, …). Default empty: any type.
    #[serde(default, deserialize_with = "array_or_commas")]
    pub number_types: Vec<phonenumber::Type>,
    /// Sends (new codes and resends, every channel) per clock hour (UTC). Default unset: no cap.
    #[serde(default)]
    pub sends_per_hour: Option<u64>,
    /// Sends per UTC day. Default unset: no cap.
    #[serde(default)]
    pub sends_per_day: Option<u64>,
    /// Spend, in the cost units of `[pricing]`, per clock hour (UTC). Default unset: no cap.
    #[serde(default)]
    pub spend_per_hour: Option<u64>,
    /// Spend, in the cost units of `[pricing]`, per UTC day. Default unset: no cap.
    #[serde(default)]
    pub spend_per_day: Option<u64>,
    /// Whether the tenant's keys may use the admin routes (`/v1/admin/…`). Default false.
    #[serde(default)]
    pub admin: bool,
    /// Whether a resend within the code's lifetime sends the same code again, so that the
    /// first message, arriving late, still works. Default unset: yes on the Twilio-compatible
    /// routes, no on the native API.
    #[serde(default)]
    pub resend_keeps_code: Option<bool>,
    /// Where the tenant's signed webhooks go. Default unset: none.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The webhooks' signing secret; give it by environment
    /// (`OTPD__TENANTS__<NAME>__WEBHOOK_SECRET`) or as a file (`webhook_secret_file`).
    #[serde(default)]
    pub webhook_secret: Option<secrecy::SecretString>,
    #[serde(default)]
    pub webhook_secret_file: Option<std::path::PathBuf>,
    /// The site's domain, for the W3C WebOTP line `@<domain> #<code>` at the end of each
    /// SMS, so browsers offer the code on that site only. Default unset: no such line.
    #[serde(default)]
    pub webotp_domain: Option<String>,
    /// The Android app's 11-character SMS Retriever hash, on a line of its own in each SMS,
    /// so the app reads the code itself. Default unset.
    #[serde(default)]
    pub android_app_hash: Option<String>,
    /// A fallback workflow for the tenant's creates on the native API and the broker that
    /// name its first step's channel and give no `workflow` of their own, e.g.
    /// `[{ channel = "whatsapp", channel_timeout_seconds = 45 }, { channel = "sms" }]`.
    /// Default unset: a create follows a workflow only when it gives one.
    #[serde(default)]
    pub workflow: Option<Vec<WorkflowStepSettings>>,
}

/// One step of a tenant's default workflow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepSettings {
    pub channel: Channel,
    /// The wait after this step before the next, 15 to 900 seconds. Default 60.
    #[serde(default)]
    pub channel_timeout_seconds: Option<u64>,
}

impl TenantSettings {
    /// The tenant's default workflow, checked; `None` when it has none.
    pub fn default_workflow(&self) -> Result<Option<Vec<PlannedStep>>, String> {
        let Some(steps) = &self.workflow else {
            return Ok(None);
        };
        let steps: Vec<_> = steps
            .iter()
            .map(|step| (step.channel, step.channel_timeout_seconds))
            .collect();
        let planned = workflow::plan(&steps).map_err(|invalid| invalid.to_string())?;
        if let Some(step) = planned
            .iter()
            .find(|step| !self.channels.contains(&step.channel))
        {
            return Err(format!(
                "its workflow has a {} step, but 'channels' does not list {}: add it there, or take the step out",
                step.channel, step.channel
            ));
        }
        Ok(Some(planned))
    }
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings {
            api_key_sha256: Vec::new(),
            channels: default_channels(),
            countries: Vec::new(),
            number_types: Vec::new(),
            sends_per_hour: None,
            sends_per_day: None,
            spend_per_hour: None,
            spend_per_day: None,
            admin: false,
            resend_keeps_code: None,
            webhook_url: None,
            webhook_secret: None,
            webotp_domain: None,
            android_app_hash: None,
            webhook_secret_file: None,
            workflow: None,
        }
    }
}

fn default_channels() -> Vec<Channel> {
    Channel::by_default().collect()
}

/// What one message costs, in cost units of the operator's choosing (e.g. tenths of a cent),
/// for the tenants' `spend_per_hour` / `spend_per_day` caps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingSettings {
    /// Cost of one SMS to a country without its own price. Default 1.
    pub sms_default: u64,
    /// ISO 3166 code → cost of one SMS to that country. Default none.
    pub sms: BTreeMap<String, u64>,
    /// Cost of one email. Default 0.
    pub email: u64,
    /// Cost of one voice call to a country without its own price. Default 1.
    pub voice_default: u64,
    /// ISO 3166 code → cost of one voice call to that country. Default none.
    pub voice: BTreeMap<String, u64>,
    /// Cost of one WhatsApp message to a country without its own price. Default 1.
    pub whatsapp_default: u64,
    /// ISO 3166 code → cost of one WhatsApp message to that country. Default none.
    pub whatsapp: BTreeMap<String, u64>,
}

impl Default for PricingSettings {
    fn default() -> Self {
        PricingSettings {
            sms_default: 1,
            sms: BTreeMap::new(),
            email: 0,
            voice_default: 1,
            voice: BTreeMap::new(),
            whatsapp_default: 1,
            whatsapp: BTreeMap::new(),
        }
    }
}

impl PricingSettings {
    /// The cost of one message on `channel` to `country` (`None` for email).
    pub fn cost(&self, channel: Channel, country: Option<&str>) -> u64 {
        let (by_country, default) = match channel {
            Channel::Email => return self.email,
            Channel::Sms => (&self.sms, self.sms_default),
            Channel::Voice => (&self.voice, self.voice_default),
            Channel::Whatsapp => (&self.whatsapp, self.whatsapp_default),
        };
        country
            .and_then(|country| {
                by_country
                    .iter()
                    .find(|(code, _)| code.eq_ignore_ascii_case(country))
                    .map(|(_, price)| *price)
            })
            .unwrap_or(default)
    }

    /// The per-country price lists, by their setting's name.
    fn by_country(&self) -> [(&'static str, &BTreeMap<String, u64>); 3] {
        [
            ("sms", &self.sms),
            ("voice", &self.voice),
            ("whatsapp", &self.whatsapp),
        ]
    }
}

/// Tenants and prices may name countries in either case.
fn is_country(code: &str) -> bool {
    is_country_code(&code.to_ascii_uppercase())
}

/// The configured tenants by name.
pub type Tenants = BTreeMap<String, TenantSettings>;

/// Every problem with the tenants' settings (`tenants.<name>`).
pub fn validate_tenants(tenants: &Tenants) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, tenant) in tenants {
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
        if tenant.channels.is_empty() {
            problems.push(format!(
                "tenants.{name}.channels is empty; list {} (leave it out to allow every channel)",
                Channel::names()
            ));
        }
        if let Err(problem) = tenant.default_workflow() {
            problems.push(format!("tenants.{name}.workflow: {problem}"));
        }
        for country in &tenant.countries {
            if !is_country(country) {
                problems.push(format!(
                    "tenants.{name}.countries: '{country}' is not an ISO 3166 country code such as DE"
                ));
            }
        }
        for (field, cap) in [
            ("sends_per_hour", tenant.sends_per_hour),
            ("sends_per_day", tenant.sends_per_day),
            ("spend_per_hour", tenant.spend_per_hour),
            ("spend_per_day", tenant.spend_per_day),
        ] {
            if cap == Some(0) {
                problems.push(format!(
                    "tenants.{name}.{field} must be at least 1, or left out for no cap"
                ));
            }
        }
        for (hour, day, what) in [
            (tenant.sends_per_hour, tenant.sends_per_day, "sends"),
            (tenant.spend_per_hour, tenant.spend_per_day, "spend"),
        ] {
            if let (Some(hour), Some(day)) = (hour, day) {
                if hour > day {
                    problems.push(format!(
                        "tenants.{name}.{what}_per_hour ({hour}) is above tenants.{name}.{what}_per_day ({day})"
                    ));
                }
            }
        }
    }
    problems
}

impl PricingSettings {
    /// Every problem with `[pricing]`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (list, prices) in self.by_country() {
            for country in prices.keys() {
                if !is_country(country) {
                    problems.push(format!(
                        "pricing.{list}.{country}: not an ISO 3166 country code such as DE"
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_allow_everything_without_caps() {
        let tenant: TenantSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(
            tenant.channels,
            [Channel::Sms, Channel::Email, Channel::Whatsapp],
            "calls are opt-in"
        );
        assert!(tenant.countries.is_empty() && tenant.number_types.is_empty());
        assert!(tenant.sends_per_hour.is_none() && tenant.spend_per_day.is_none());
        assert!(!tenant.admin);
    }

    #[test]
    fn number_types_use_libphonenumber_names() {
        let tenant: TenantSettings =
            serde_json::from_str(r#"{"number_types": ["mobile", "fixed_line_or_mobile"]}"#)
                .unwrap();
        assert_eq!(
            tenant.number_types,
            vec![
                phonenumber::Type::Mobile,
                phonenumber::Type::FixedLineOrMobile
            ]
        );
        assert!(serde_json::from_str::<TenantSettings>(r#"{"number_types": ["cell"]}"#).is_err());
    }

    #[test]
    fn prices_by_channel_and_country() {
        let pricing = PricingSettings {
            sms_default: 5,
            sms: BTreeMap::from([("DE".to_owned(), 7)]),
            email: 1,
            voice_default: 9,
            voice: BTreeMap::from([("de".to_owned(), 20)]),
            whatsapp_default: 2,
            whatsapp: BTreeMap::new(),
        };
        assert_eq!(pricing.cost(Channel::Sms, Some("DE")), 7);
        assert_eq!(pricing.cost(Channel::Sms, Some("FR")), 5);
        assert_eq!(pricing.cost(Channel::Email, None), 1);
        assert_eq!(pricing.cost(Channel::Voice, Some("DE")), 20);
        assert_eq!(pricing.cost(Channel::Voice, Some("FR")), 9);
        assert_eq!(pricing.cost(Channel::Whatsapp, Some("DE")), 2);
        let bad = PricingSettings {
            voice: BTreeMap::from([("Germany".to_owned(), 20)]),
            ..PricingSettings::default()
        };
        assert_eq!(
            bad.validate(),
            ["pricing.voice.Germany: not an ISO 3166 country code such as DE"]
        );
    }

    #[test]
    fn reports_bad_access_settings() {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "acme".into(),
            TenantSettings {
                channels: Vec::new(),
                countries: vec!["XX".into()],
                sends_per_hour: Some(10),
                sends_per_day: Some(5),
                spend_per_day: Some(0),
                ..TenantSettings::default()
            },
        );
        let mut pricing = PricingSettings::default();
        pricing.sms.insert("ZZ".into(), 3);
        let mut problems = validate_tenants(&tenants);
        problems.extend(pricing.validate());
        let text = problems.join("\n");
        for expected in [
            "tenants.acme.channels is empty",
            "'XX' is not an ISO 3166",
            "tenants.acme.sends_per_hour (10) is above",
            "tenants.acme.spend_per_day must be at least 1",
            "pricing.sms.ZZ",
        ] {
            assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
        }
    }
}
