//! Country → region, from the settings' table; the region names a routing key's middle part.

use std::collections::HashMap;

use super::settings::RegionSettings;
use crate::domain::channel::AddressKind;
use crate::domain::{Channel, Destination};

#[derive(Debug, Clone)]
pub struct RegionTable {
    by_country: HashMap<String, String>,
    default_region: String,
}

impl RegionTable {
    pub fn from_settings(settings: &RegionSettings) -> Self {
        let by_country = settings
            .countries
            .iter()
            .flat_map(|(region, countries)| {
                countries
                    .iter()
                    .map(move |country| (country.to_ascii_uppercase(), region.clone()))
            })
            .collect();
        RegionTable {
            by_country,
            default_region: settings.default.clone(),
        }
    }

    /// The region of a destination: its country's, or the default (always for email).
    pub fn region_for(&self, destination: &Destination) -> &str {
        destination
            .country()
            .map_or(&self.default_region, |country| self.region_of(country))
    }

    /// The region of a country (ISO 3166 code): its own, or the default.
    pub fn region_of(&self, country: &str) -> &str {
        self.by_country.get(country).unwrap_or(&self.default_region)
    }
}

/// The routing key of a job: `<channel>.<region>.<country>` (`xx` where there is none).
pub fn routing_key(channel: Channel, region: &str, country: Option<&str>) -> String {
    let country = country.unwrap_or("xx").to_ascii_lowercase();
    format!("{channel}.{region}.{country}")
}

/// Every routing key the settings can produce for the `offered` channels: for channels to
/// phones, each listed country and an unlisted one in the default region; for the others,
/// the default region alone.
pub fn every_routing_key(regions: &RegionSettings, offered: &[Channel]) -> Vec<String> {
    let mut countries: Vec<(&str, Option<&str>)> = regions
        .countries
        .iter()
        .flat_map(|(region, listed)| {
            listed
                .iter()
                .map(move |c| (region.as_str(), Some(c.as_str())))
        })
        .collect();
    countries.push((regions.default.as_str(), None));
    offered
        .iter()
        .flat_map(|&channel| match channel.address_kind() {
            AddressKind::Phone => countries
                .iter()
                .map(|(region, country)| routing_key(channel, region, *country))
                .collect::<Vec<_>>(),
            AddressKind::Email => vec![routing_key(channel, &regions.default, None)],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn table() -> RegionTable {
        RegionTable::from_settings(&RegionSettings {
            default: "world".into(),
            countries: BTreeMap::from([
                ("eu".into(), vec!["DE".into(), "FR".into()]),
                ("apac".into(), vec!["AU".into()]),
            ]),
        })
    }

    #[test]
    fn maps_countries_to_their_region() {
        let german = Destination::parse(Channel::Sms, "+4915112345678").unwrap();
        assert_eq!(table().region_for(&german), "eu");
        let american = Destination::parse(Channel::Sms, "+14155552671").unwrap();
        assert_eq!(table().region_for(&american), "world");
        let email = Destination::parse(Channel::Email, "a@example.com").unwrap();
        assert_eq!(table().region_for(&email), "world");
    }

    #[test]
    fn builds_routing_keys() {
        assert_eq!(routing_key(Channel::Sms, "eu", Some("DE")), "sms.eu.de");
        assert_eq!(routing_key(Channel::Email, "world", None), "email.world.xx");
    }
}
