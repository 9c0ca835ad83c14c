//! Where a number belongs for the guard: its country, its prefix (calling code and the first
//! national digits) and its national number as an integer, so neighbours can be told apart.

use serde::{Deserialize, Serialize};

pub use crate::domain::fraud::Prefix;

/// One phone number as the guard sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// ISO 3166 country, e.g. `NG`.
    pub country: String,
    pub prefix: Prefix,
    /// The national number's digits as an integer: consecutive numbers differ by one.
    pub national: u64,
}

/// The target of the E.164 number `e164` of `country`, or `None` if it is not one (the
/// country's calling code is not where it should be, or a prefix would cover the whole number).
pub fn target(e164: &str, country: &str, prefix_digits: u8) -> Option<Target> {
    let calling_code = phonenumber::metadata::DATABASE
        .by_id(country)?
        .country_code()
        .to_string();
    let national = e164
        .strip_prefix('+')?
        .strip_prefix(calling_code.as_str())?;
    let digits = usize::from(prefix_digits);
    if national.len() <= digits || !national.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Target {
        country: country.to_owned(),
        prefix: Prefix::new(format!("+{calling_code}{}", &national[..digits])),
        national: national.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_calling_code_prefix_and_national_number() {
        let t = target("+2348031234567", "NG", 4).unwrap();
        assert_eq!(t.prefix.as_str(), "+2348031");
        assert_eq!(t.national, 8_031_234_567);
        assert_eq!(t.country, "NG");
        let de = target("+4915112345678", "DE", 3).unwrap();
        assert_eq!(de.prefix.as_str(), "+49151");
        assert_eq!(de.national, 15_112_345_678);
        let us = target("+14155552671", "US", 4).unwrap();
        assert_eq!(us.prefix.as_str(), "+14155");
    }

    #[test]
    fn consecutive_numbers_are_one_apart() {
        let a = target("+2348031234567", "NG", 4).unwrap();
        let b = target("+2348031234568", "NG", 4).unwrap();
        assert_eq!(a.prefix, b.prefix);
        assert_eq!(b.national - a.national, 1);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(target("+4915112345678", "XX", 4), None);
        assert_eq!(target("+4915112345678", "FR", 4), None);
        assert_eq!(target("+4915112345678", "DE", 11), None);
        assert_eq!(target("4915112345678", "DE", 4), None);
    }
}
