//! Delivery's settings: `[delivery]`, `[regions]`, `[routing]`, `[templates]`, `[countries]`
//! and `[provider_limits]`, each with its own checks. How they fit the configured providers is
//! checked where the settings are composed.

use serde::Deserialize;
use std::collections::BTreeMap;

pub use super::templates::{validate_templates, TemplateSettings};
use crate::domain::{is_country_code, is_name, Channel};
use crate::lists::map_of_lists;
use crate::providers::Registration;

/// The routing entry used for regions without one of their own.
pub const DEFAULT_ROUTE: &str = "default";

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

impl DeliverySettings {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.concurrency == 0 {
            problems.push("delivery.concurrency must be at least 1".into());
        }
        if self.mailbox_capacity == 0 {
            problems.push("delivery.mailbox_capacity must be at least 1".into());
        }
        if self.attempts_per_provider == 0 {
            problems.push("delivery.attempts_per_provider must be at least 1".into());
        }
        problems
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSettings {
    /// Region of email and of countries not listed. Default `world`.
    pub default: String,
    /// Region → ISO 3166 country codes. Default: eu, americas, apac.
    #[serde(deserialize_with = "map_of_lists")]
    pub countries: BTreeMap<String, Vec<String>>,
}

impl RegionSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_name(&self.default) {
            problems.push(format!(
                "regions.default is '{}'; a region name is lower-case letters, digits and '-'",
                self.default
            ));
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (region, countries) in &self.countries {
            if !is_name(region) {
                problems.push(format!(
                    "regions.countries.{region}: a region name is lower-case letters, digits and '-'"
                ));
            }
            for country in countries {
                if !is_country_code(country) {
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
        problems
    }

    /// Whether `region` names a region (or the routing fallback).
    pub fn knows(&self, region: &str) -> bool {
        region == DEFAULT_ROUTE || region == self.default || self.countries.contains_key(region)
    }
}

/// The providers of one region, per channel, in order of preference.
pub type ChannelRoutes = BTreeMap<Channel, Vec<String>>;

/// Region (or `default`) → channel → provider ids in order of preference.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct RoutingSettings {
    #[serde(deserialize_with = "routes")]
    pub regions: BTreeMap<String, ChannelRoutes>,
}

fn routes<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, ChannelRoutes>, D::Error> {
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Region(#[serde(deserialize_with = "map_of_lists")] ChannelRoutes);
    let regions = BTreeMap::<String, Region>::deserialize(deserializer)?;
    Ok(regions
        .into_iter()
        .map(|(name, region)| (name, region.0))
        .collect())
}

impl RoutingSettings {
    /// The providers listed for `channel` in `region`, not falling back.
    pub fn listed(&self, region: &str, channel: Channel) -> &[String] {
        self.regions
            .get(region)
            .and_then(|routes| routes.get(&channel))
            .map_or(&[], Vec::as_slice)
    }

    /// The channels this deployment offers: those with a provider in `routing.default`.
    pub fn offered(&self) -> Vec<Channel> {
        Channel::all()
            .filter(|channel| !self.listed(DEFAULT_ROUTE, *channel).is_empty())
            .collect()
    }

    /// Every (region, channel, provider id) named, for checks against the providers.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Channel, &str)> {
        self.regions.iter().flat_map(|(region, routes)| {
            routes.iter().flat_map(move |(channel, ids)| {
                ids.iter()
                    .map(move |id| (region.as_str(), *channel, id.as_str()))
            })
        })
    }

    /// Every problem that needs only the routing and region settings.
    pub fn validate(&self, regions: &RegionSettings) -> Vec<String> {
        let mut problems = Vec::new();
        for region in self.regions.keys() {
            if !regions.knows(region) {
                problems.push(format!(
                    "routing.{region}: no such region; use '{DEFAULT_ROUTE}' or a region of regions.countries"
                ));
            }
        }
        let offered = self.offered();
        if offered.is_empty() {
            problems.push(format!(
                "routing.{DEFAULT_ROUTE} names no provider for any channel; route at least one, e.g. sms = [\"sandbox\"]"
            ));
        }
        for (region, routes) in &self.regions {
            for (channel, ids) in routes {
                if !ids.is_empty() && !offered.contains(channel) {
                    problems.push(format!(
                        "routing.{region}.{channel} is set but routing.{DEFAULT_ROUTE}.{channel} is empty; regions without a route of their own fall back to {DEFAULT_ROUTE}, so set routing.{DEFAULT_ROUTE}.{channel} too"
                    ));
                }
            }
        }
        problems
    }
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
    /// The sender's id with the country's regulator (India's DLT principal entity id).
    /// Default unset.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Each template's id as registered with the regulator (India's DLT content template
    /// id), by template name. Default none.
    #[serde(default)]
    pub template_ids: BTreeMap<String, String>,
}

impl CountryOverrides {
    /// The registration a message rendered from `template` carries, if the country's
    /// settings give one.
    pub fn registration(&self, template: &str) -> Option<Registration> {
        Some(Registration {
            entity_id: self.entity_id.clone()?,
            template_id: self.template_ids.get(template)?.clone(),
        })
    }
}

/// The countries whose regulator requires a registration with every SMS, and its name.
pub const REGISTRATION_REQUIRED: &[(&str, &str)] = &[("IN", "a DLT registration (TRAI)")];

/// Every country of `REGISTRATION_REQUIRED` that otpd is set up to send SMS to
/// (`sent_to(country)`: a tenant lists it, or its section gives part of a registration) and
/// whose settings lack the registration: its entity id, or the registered id of a template
/// its messages may be rendered from.
pub fn validate_registrations(
    countries: &CountrySettings,
    templates: &TemplateSettings,
    sent_to: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (country, regime) in REGISTRATION_REQUIRED {
        let overrides = countries.get(*country).cloned().unwrap_or_default();
        let partly_given = overrides.entity_id.is_some() || !overrides.template_ids.is_empty();
        if !(partly_given || sent_to(country)) {
            continue;
        }
        let used: Vec<&String> = match &overrides.template {
            Some(template) => vec![template],
            None => templates.keys().collect(),
        };
        let mut missing: Vec<String> = Vec::new();
        if overrides.entity_id.is_none() {
            missing.push(format!("countries.{country}.entity_id"));
        }
        missing.extend(
            used.iter()
                .filter(|template| !overrides.template_ids.contains_key(template.as_str()))
                .map(|template| format!("countries.{country}.template_ids.{template}")),
        );
        if !missing.is_empty() {
            problems.push(format!(
                "SMS to {country} need {regime}: set {} (a tenant lists {country} in its countries, or its registration is partly given)",
                missing.join(", ")
            ));
        }
    }
    problems
}

/// ISO 3166 country code → what that country requires.
pub type CountrySettings = BTreeMap<String, CountryOverrides>;

/// Every problem with `[countries]`, given the templates that exist.
pub fn validate_countries(
    countries: &CountrySettings,
    templates: &TemplateSettings,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (country, overrides) in countries {
        if !is_country_code(country) {
            problems.push(format!(
                "countries.{country}: not an ISO 3166 country code such as DE"
            ));
        }
        if let Some(template) = &overrides.template {
            if !templates.contains_key(template) {
                problems.push(format!(
                    "countries.{country}.template names '{template}', which is not under [templates]"
                ));
            }
        }
    }
    problems
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

impl ProviderLimits {
    /// Every problem with the limits of provider `id`.
    pub fn validate(&self, id: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self
            .messages_per_second
            .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
        {
            problems.push(format!(
                "provider_limits.{id}.messages_per_second must be a positive number"
            ));
        }
        if self.concurrency == Some(0) {
            problems.push(format!(
                "provider_limits.{id}.concurrency must be at least 1"
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(routes: &[(&str, Channel, &[&str])]) -> RoutingSettings {
        let mut regions = BTreeMap::<String, ChannelRoutes>::new();
        for (region, channel, ids) in routes {
            regions
                .entry(region.to_string())
                .or_default()
                .insert(*channel, ids.iter().map(|id| id.to_string()).collect());
        }
        RoutingSettings { regions }
    }

    fn regions() -> RegionSettings {
        RegionSettings {
            default: "world".into(),
            countries: BTreeMap::from([("eu".into(), vec!["DE".into()])]),
        }
    }

    #[test]
    fn a_channel_is_offered_when_the_default_route_names_a_provider() {
        let settings = routing(&[
            ("default", Channel::Sms, &["sandbox"]),
            ("default", Channel::Voice, &[]),
            ("eu", Channel::Sms, &["twilio"]),
        ]);
        assert_eq!(settings.offered(), [Channel::Sms]);
        assert!(settings.validate(&regions()).is_empty());
    }

    #[test]
    fn a_region_s_route_for_a_channel_the_default_lacks_is_refused() {
        let settings = routing(&[
            ("default", Channel::Sms, &["sandbox"]),
            ("eu", Channel::Voice, &["call"]),
        ]);
        assert_eq!(
            settings.validate(&regions()),
            ["routing.eu.voice is set but routing.default.voice is empty; regions without a route of their own fall back to default, so set routing.default.voice too"]
        );
        let nothing = routing(&[("default", Channel::Sms, &[])]);
        assert_eq!(
            nothing.validate(&regions()),
            ["routing.default names no provider for any channel; route at least one, e.g. sms = [\"sandbox\"]"]
        );
    }
}
