//! Where a code goes: an E.164 phone number for SMS or an address for email, validated.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

use super::channel::AddressKind;
pub use super::channel::Channel;

/// A validated destination in its canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    /// An E.164 number (`+4915112345678`) and its ISO 3166 country (`DE`).
    Phone { e164: String, country: String },
    /// An email address with its domain in lower case.
    Email { address: String },
}

/// Why a destination was refused; the message tells the caller what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("'to' must be a phone number in E.164 format: '+', the country code and the subscriber number, digits only, e.g. +4915112345678")]
    NotE164,
    #[error("'to' is not a valid phone number for its country code; check the digits and send it in E.164 format, e.g. +4915112345678")]
    InvalidNumber,
    #[error("'to' must be an email address such as user@example.com")]
    InvalidEmail,
}

const MAX_EMAIL_LENGTH: usize = 254;

impl Destination {
    /// Reads `raw` as whatever channels take it (a number, or an address): those channels,
    /// and the destination as they read it; `None` when no channel does.
    pub fn read_any(raw: &str) -> Option<(Vec<Channel>, Destination)> {
        let mut channels = Vec::new();
        let mut destination = None;
        for channel in Channel::all() {
            if let Ok(read) = Destination::parse(channel, raw) {
                channels.push(channel);
                destination = Some(read);
            }
        }
        destination.map(|destination| (channels, destination))
    }

    /// Parses `raw` as a destination for `channel`.
    pub fn parse(channel: Channel, raw: &str) -> Result<Self, DestinationError> {
        match channel.address_kind() {
            AddressKind::Phone => parse_phone(raw),
            AddressKind::Email => parse_email(raw),
        }
    }

    /// The canonical text: the E.164 number or the normalised address.
    pub fn as_str(&self) -> &str {
        match self {
            Destination::Phone { e164, .. } => e164,
            Destination::Email { address } => address,
        }
    }

    /// The ISO 3166 country of a phone number; `None` for email.
    pub fn country(&self) -> Option<&str> {
        match self {
            Destination::Phone { country, .. } => Some(country),
            Destination::Email { .. } => None,
        }
    }

    /// The destination with most of it hidden, for responses and logs.
    pub fn masked(&self) -> String {
        mask(self.as_str())
    }
}

fn parse_phone(raw: &str) -> Result<Destination, DestinationError> {
    let digits = raw.strip_prefix('+').ok_or(DestinationError::NotE164)?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DestinationError::NotE164);
    }
    let number = phonenumber::parse(None, raw).map_err(|_| DestinationError::InvalidNumber)?;
    if !phonenumber::is_valid(&number) {
        return Err(DestinationError::InvalidNumber);
    }
    let country = number
        .country()
        .id()
        .or_else(|| main_country(number.country().code()))
        .ok_or(DestinationError::InvalidNumber)?;
    Ok(Destination::Phone {
        // What the formatter's E.164 mode writes, without the regional layout it looks up
        // first for the other modes.
        e164: format!("+{}{}", number.country().code(), number.national()),
        country: country.as_ref().to_owned(),
    })
}

/// The main country of calling code `code` (IT for 39), for a valid number the phone
/// library places in none: it reads the national number's leading zeros off before it
/// matches it to one of the countries that share a code, so an Italian landline (0…)
/// matches neither Italy nor the Vatican.
fn main_country(code: u16) -> Option<phonenumber::country::Id> {
    let countries = phonenumber::metadata::DATABASE.by_code(&code)?;
    countries.first()?.id().parse().ok()
}

fn parse_email(raw: &str) -> Result<Destination, DestinationError> {
    let trimmed = raw.trim();
    if trimmed.len() > MAX_EMAIL_LENGTH {
        return Err(DestinationError::InvalidEmail);
    }
    let parsed = email_address::EmailAddress::from_str(trimmed)
        .map_err(|_| DestinationError::InvalidEmail)?;
    let domain = parsed.domain().to_ascii_lowercase();
    if !domain.contains('.') || domain.starts_with('[') {
        return Err(DestinationError::InvalidEmail);
    }
    Ok(Destination::Email {
        address: format!("{}@{}", parsed.local_part(), domain),
    })
}

/// Hides the middle of a destination: `+4915112345678` → `+49151*****678`,
/// `jane@example.com` → `j***@example.com`.
pub fn mask(destination: &str) -> String {
    if let Some((local, domain)) = destination.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let count = destination.chars().count();
    let (head, tail) = if count > 10 { (6, 3) } else { (3, 2) };
    if count <= head + tail {
        return "*".repeat(count);
    }
    let byte_of = |nth: usize| {
        destination
            .char_indices()
            .nth(nth)
            .map_or(destination.len(), |(at, _)| at)
    };
    let mut masked = String::with_capacity(destination.len());
    masked.push_str(&destination[..byte_of(head)]);
    masked.extend(std::iter::repeat_n('*', count - head - tail));
    masked.push_str(&destination[byte_of(count - tail)..]);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_any_finds_the_channels_an_address_is_for() {
        let (channels, number) = Destination::read_any("+4915112345678").unwrap();
        assert_eq!(
            (channels, number.as_str()),
            (
                vec![Channel::Sms, Channel::Voice, Channel::Whatsapp],
                "+4915112345678"
            )
        );
        let (channels, address) = Destination::read_any("User@Example.com").unwrap();
        assert_eq!(channels, vec![Channel::Email]);
        assert_eq!(
            address.as_str(),
            Destination::parse(Channel::Email, "User@Example.com")
                .unwrap()
                .as_str()
        );
        assert!(Destination::read_any("12").is_none());
    }

    #[test]
    fn accepts_a_valid_german_mobile_number() {
        let destination = Destination::parse(Channel::Sms, "+4915112345678").unwrap();
        assert_eq!(destination.as_str(), "+4915112345678");
        assert_eq!(destination.country(), Some("DE"));
    }

    #[test]
    fn places_an_italian_landline_in_italy() {
        for raw in ["+390212345678", "+390669812345"] {
            let destination = Destination::parse(Channel::Voice, raw).expect(raw);
            assert_eq!(destination.country(), Some("IT"), "{raw}");
        }
        let mobile = Destination::parse(Channel::Sms, "+393471234567").unwrap();
        assert_eq!(mobile.country(), Some("IT"));
    }

    #[test]
    fn writes_the_number_as_the_formatter_writes_e164_leading_zeros_kept() {
        for raw in [
            "+4915112345678",
            "+390212345678",
            "+14155552671",
            "+447911123456",
            "+2348031999999",
            "+33612345678",
            "+5511987654321",
        ] {
            let number = phonenumber::parse(None, raw).unwrap();
            let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
            let destination = Destination::parse(Channel::Sms, raw).expect(raw);
            assert_eq!(destination.as_str(), e164, "{raw}");
            assert_eq!(destination.as_str(), raw, "{raw}");
        }
    }

    #[test]
    fn refuses_numbers_without_plus_or_with_letters() {
        for raw in ["4915112345678", "+49 151 12345678", "+49abc", "", "+"] {
            assert_eq!(
                Destination::parse(Channel::Sms, raw),
                Err(DestinationError::NotE164),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_impossible_numbers() {
        for raw in ["+49123", "+999123456789", "+1555"] {
            assert_eq!(
                Destination::parse(Channel::Sms, raw),
                Err(DestinationError::InvalidNumber),
                "{raw}"
            );
        }
    }

    #[test]
    fn normalises_email_domains() {
        let destination = Destination::parse(Channel::Email, "Jane.Doe@Example.COM").unwrap();
        assert_eq!(destination.as_str(), "Jane.Doe@example.com");
        assert_eq!(destination.country(), None);
    }

    #[test]
    fn refuses_malformed_email() {
        for raw in ["no-at-sign", "a@", "@example.com", "a@localhost"] {
            assert_eq!(
                Destination::parse(Channel::Email, raw),
                Err(DestinationError::InvalidEmail),
                "{raw}"
            );
        }
    }

    #[test]
    fn masks_phone_numbers_and_addresses() {
        assert_eq!(mask("+4915112345678"), "+49151*****678");
        assert_eq!(mask("jane@example.com"), "j***@example.com");
        assert_eq!(mask("+1234"), "*****");
        assert_eq!(mask("+123456"), "+12**56");
        assert_eq!(mask("äöü1234567"), "äöü*****67");
        assert_eq!(mask("ü@example.com"), "ü***@example.com");
    }
}
