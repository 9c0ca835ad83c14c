//! What the voice vendors share: the language a text is read in, and how many times it is
//! read. The text itself, its code spelled digit by digit, comes from the templates.

use std::collections::BTreeMap;

use super::support::by_locale;

/// Times a call reads the text when the settings give none: a person who missed the code
/// the first time hears it again.
pub fn default_repeat() -> u8 {
    2
}

/// Most times a call may read the text.
pub const MAX_REPEAT: u8 = 5;

/// A call must read the text at least once, and at most `MAX_REPEAT` times.
pub fn check_repeat(problems: &mut Vec<String>, prefix: &str, repeat: u8) {
    if !(1..=MAX_REPEAT).contains(&repeat) {
        problems.push(format!(
            "{prefix}.repeat is {repeat}; a call reads the text 1 to {MAX_REPEAT} times"
        ));
    }
}

/// The vendor's language for `locale`: `languages` by the locale (`pt-BR`), then by its
/// language (`pt`); a locale with a region (`de-DE`) as it is; otherwise none (the vendor's
/// default voice, usually American English).
pub fn spoken_language<'a>(
    languages: &'a BTreeMap<String, String>,
    locale: Option<&'a str>,
) -> Option<&'a str> {
    let locale = locale?;
    let has_region = locale.contains(['-', '_']);
    by_locale(languages, locale).or_else(|| has_region.then_some(locale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_the_locale_s_own_setting_or_its_language_s_or_the_locale() {
        let languages = BTreeMap::from([
            ("de".to_owned(), "de-DE".to_owned()),
            ("pt-BR".to_owned(), "pt-BR".to_owned()),
        ]);
        assert_eq!(spoken_language(&languages, Some("de")), Some("de-DE"));
        assert_eq!(spoken_language(&languages, Some("de-AT")), Some("de-DE"));
        assert_eq!(spoken_language(&languages, Some("pt-BR")), Some("pt-BR"));
        assert_eq!(spoken_language(&languages, Some("fr-CA")), Some("fr-CA"));
        assert_eq!(spoken_language(&languages, Some("fr")), None);
        assert_eq!(spoken_language(&languages, None), None);
    }

    #[test]
    fn a_call_reads_the_text_one_to_five_times() {
        let mut problems = Vec::new();
        for repeat in [1, default_repeat(), MAX_REPEAT] {
            check_repeat(&mut problems, "providers.call", repeat);
        }
        assert!(problems.is_empty(), "{problems:?}");
        check_repeat(&mut problems, "providers.call", 0);
        check_repeat(&mut problems, "providers.call", 6);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].contains("providers.call.repeat is 0"));
    }
}
