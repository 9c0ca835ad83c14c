//! Names that go into routing keys, metric labels and settings keys, and country codes.

/// Lower-case ASCII letters, digits and '-', 1 to 64 of them: safe in routing keys and labels.
pub fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An ISO 3166 alpha-2 country code as libphonenumber knows it, in upper case (`DE`).
pub fn is_country_code(code: &str) -> bool {
    code.parse::<phonenumber::country::Id>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted() {
        assert!(is_name("eu-west-1"));
        assert!(!is_name("EU"));
        assert!(!is_name("a.b"));
        assert!(!is_name(""));
        assert!(is_country_code("DE"));
        assert!(!is_country_code("XX"));
    }
}
