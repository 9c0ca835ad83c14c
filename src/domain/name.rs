//! Names that go into routing keys, metric labels and settings keys.

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

    #[test]
    fn names_are_restricted() {
        assert!(is_name("eu-west-1"));
        assert!(!is_name("EU"));
        assert!(!is_name("a.b"));
        assert!(!is_name(""));
    }
}
