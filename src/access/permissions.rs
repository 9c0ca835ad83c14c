//! Where a tenant may send: its channels, countries and number types, decided by a pure
//! function whose refusal names the setting that would allow the send.

use crate::domain::{Channel, Destination};

use super::settings::TenantSettings;

/// What one tenant may send to, as settings resolve it.
#[derive(Debug, Clone, PartialEq)]
pub struct Permissions {
    pub channels: Vec<Channel>,
    /// Upper-case ISO codes; empty means every country.
    pub countries: Vec<String>,
    /// Empty means any number type.
    pub number_types: Vec<phonenumber::Type>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::from_settings(&TenantSettings::default())
    }
}

impl Permissions {
    pub fn from_settings(settings: &TenantSettings) -> Self {
        Permissions {
            channels: settings.channels.clone(),
            countries: settings
                .countries
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
            number_types: settings.number_types.clone(),
        }
    }
}

/// Why a tenant may not send to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPermitted {
    Channel {
        channel: Channel,
    },
    Country {
        country: String,
    },
    NumberType {
        country: String,
        number_type: phonenumber::Type,
    },
}

impl NotPermitted {
    /// A message for the caller, naming the setting of `tenant` to change.
    pub fn message(&self, tenant: &str) -> String {
        match self {
            NotPermitted::Channel { channel } => format!(
                "Tenant {tenant} may not send {channel} codes; add \"{channel}\" to tenants.{tenant}.channels to allow it."
            ),
            NotPermitted::Country { country } => format!(
                "Tenant {tenant} may not send codes to {country} numbers; add \"{country}\" to tenants.{tenant}.countries to allow it."
            ),
            NotPermitted::NumberType {
                country,
                number_type,
            } => {
                let name = type_name(*number_type);
                format!(
                    "Tenant {tenant} may not send codes to this {country} number, which is of type {name}; add \"{name}\" to tenants.{tenant}.number_types to allow it."
                )
            }
        }
    }
}

/// The settings name of a number type (`fixed_line`, `mobile`, …).
pub fn type_name(number_type: phonenumber::Type) -> String {
    serde_json::to_value(number_type)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The number type of an E.164 number by libphonenumber's data (`Unknown` if it cannot tell).
pub fn number_type(e164: &str) -> phonenumber::Type {
    match phonenumber::parse(None, e164) {
        Ok(number) => number.number_type(&phonenumber::metadata::DATABASE),
        Err(_) => phonenumber::Type::Unknown,
    }
}

/// Whether `permissions` let the tenant send on `channel` to `destination`. `number_type`
/// is asked only when number types are restricted.
pub fn check(
    permissions: &Permissions,
    channel: Channel,
    destination: &Destination,
    number_type: impl FnOnce(&str) -> phonenumber::Type,
) -> Result<(), NotPermitted> {
    if !permissions.channels.contains(&channel) {
        return Err(NotPermitted::Channel { channel });
    }
    let Destination::Phone { e164, country } = destination else {
        return Ok(());
    };
    if !permissions.countries.is_empty() && !permissions.countries.contains(country) {
        return Err(NotPermitted::Country {
            country: country.clone(),
        });
    }
    if !permissions.number_types.is_empty() {
        let found = number_type(e164);
        if !permissions.number_types.contains(&found) {
            return Err(NotPermitted::NumberType {
                country: country.clone(),
                number_type: found,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DE_MOBILE: &str = "+4915112345678";
    /// Berlin, a fixed line.
    const DE_LANDLINE: &str = "+493012345678";

    fn sms(to: &str) -> Destination {
        Destination::parse(Channel::Sms, to).unwrap()
    }

    fn restricted(countries: &[&str], types: &[phonenumber::Type]) -> Permissions {
        Permissions {
            countries: countries.iter().map(|c| c.to_string()).collect(),
            number_types: types.to_vec(),
            ..Permissions::default()
        }
    }

    #[test]
    fn defaults_allow_everything() {
        let all = Permissions::default();
        assert_eq!(
            check(&all, Channel::Sms, &sms(DE_LANDLINE), number_type),
            Ok(())
        );
        let email = Destination::parse(Channel::Email, "a@example.com").unwrap();
        assert_eq!(check(&all, Channel::Email, &email, number_type), Ok(()));
    }

    #[test]
    fn refuses_channels_not_listed() {
        let sms_only = Permissions {
            channels: vec![Channel::Sms],
            ..Permissions::default()
        };
        let email = Destination::parse(Channel::Email, "a@example.com").unwrap();
        let refusal = check(&sms_only, Channel::Email, &email, number_type).unwrap_err();
        assert_eq!(
            refusal.message("acme"),
            "Tenant acme may not send email codes; add \"email\" to tenants.acme.channels to allow it."
        );
    }

    #[test]
    fn refuses_countries_not_listed_and_names_the_setting() {
        let permissions = restricted(&["FR"], &[]);
        let refusal = check(&permissions, Channel::Sms, &sms(DE_MOBILE), number_type).unwrap_err();
        assert_eq!(
            refusal,
            NotPermitted::Country {
                country: "DE".into()
            }
        );
        assert_eq!(
            refusal.message("acme"),
            "Tenant acme may not send codes to DE numbers; add \"DE\" to tenants.acme.countries to allow it."
        );
        let email = Destination::parse(Channel::Email, "a@example.com").unwrap();
        assert_eq!(
            check(&permissions, Channel::Email, &email, number_type),
            Ok(())
        );
    }

    #[test]
    fn classifies_german_numbers() {
        assert_eq!(number_type(DE_MOBILE), phonenumber::Type::Mobile);
        assert_eq!(number_type(DE_LANDLINE), phonenumber::Type::FixedLine);
    }

    #[test]
    fn mobile_only_refuses_a_landline() {
        let permissions = restricted(&[], &[phonenumber::Type::Mobile]);
        assert_eq!(
            check(&permissions, Channel::Sms, &sms(DE_MOBILE), number_type),
            Ok(())
        );
        let refusal =
            check(&permissions, Channel::Sms, &sms(DE_LANDLINE), number_type).unwrap_err();
        let message = refusal.message("acme");
        assert!(message.contains("fixed_line"), "{message}");
        assert!(message.contains("tenants.acme.number_types"), "{message}");
        assert!(
            !message.contains("12345678"),
            "the number leaked: {message}"
        );
    }

    #[test]
    fn number_type_is_not_looked_up_without_a_restriction() {
        let permissions = Permissions::default();
        let result = check(&permissions, Channel::Sms, &sms(DE_MOBILE), |_| {
            panic!("looked up")
        });
        assert_eq!(result, Ok(()));
    }
}
