//! What an SMS that carries a code looks like on the air: the lines phones read to fill the
//! code in by themselves (WebOTP's origin-bound line, Android's SMS Retriever app hash), and
//! how many segments the text takes (GSM 7-bit with its extension table, else UCS-2).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::templates::TemplateSettings;
use crate::domain::code::MAX_CODE_LENGTH;
use crate::issuance::settings::MAX_TTL_SECONDS;

/// GSM 03.38's default alphabet (without the escape to the extension table).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each takes two septets (the escape, then the character).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// How many units one segment holds.
    fn single(self) -> usize {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE,
            Encoding::Ucs2 => UCS2_SINGLE,
        }
    }
}

/// The segments a text takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM 7-bit) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub count: usize,
}

impl fmt::Display for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.encoding {
            Encoding::Gsm7 => "GSM 7-bit characters",
            Encoding::Ucs2 => "UCS-2 characters",
        };
        write!(
            f,
            "{} segment(s): {} of the {} {name} one segment holds",
            self.count,
            self.units,
            self.encoding.single()
        )
    }
}

/// The septets each ASCII character takes in GSM 7-bit (0: none, it is not in the
/// alphabet), looked up by its byte: a text is mostly ASCII, and finding each of its
/// characters in the alphabet's string was about 1 % of otpd's CPU per OTP (BENCHMARKS.md,
/// thirty-fourth session).
const ASCII_SEPTETS: [u8; 128] = ascii_septets();

const fn ascii_septets() -> [u8; 128] {
    let mut table = [0; 128];
    let alphabets = [(GSM7_BASIC.as_bytes(), 1), (GSM7_EXTENSION.as_bytes(), 2)];
    let mut a = 0;
    while a < alphabets.len() {
        let (bytes, septets) = alphabets[a];
        let mut i = 0;
        while i < bytes.len() {
            // Every byte of a character outside ASCII is 0x80 or above.
            if bytes[i] < 128 {
                table[bytes[i] as usize] = septets;
            }
            i += 1;
        }
        a += 1;
    }
    table
}

/// The septets `c` takes in GSM 7-bit (an extension character two), or `None` if it is not
/// in the alphabet.
fn septets(c: char) -> Option<usize> {
    let septets = if c.is_ascii() {
        ASCII_SEPTETS[c as usize]
    } else if GSM7_BASIC.contains(c) {
        1
    } else if GSM7_EXTENSION.contains(c) {
        2
    } else {
        0
    };
    (septets > 0).then_some(usize::from(septets))
}

/// The segments `text` takes: GSM 7-bit when every character is in its alphabet (an
/// extension character counts twice), else UCS-2.
pub fn segments(text: &str) -> Segments {
    let in_gsm7 = text
        .chars()
        .try_fold(0usize, |units, c| Some(units + septets(c)?));
    let (encoding, units, part) = match in_gsm7 {
        Some(units) => (Encoding::Gsm7, units, GSM7_PART),
        None => (Encoding::Ucs2, text.encode_utf16().count(), UCS2_PART),
    };
    let count = if units <= encoding.single() {
        1
    } else {
        units.div_ceil(part)
    };
    Segments {
        encoding,
        units,
        count,
    }
}

/// A tenant's lines that let phones fill its codes in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutofillLines {
    /// The site's domain: the SMS ends with `@<domain> #<code>` (W3C WebOTP), which browsers
    /// read to offer the code on that site only.
    pub webotp_domain: Option<String>,
    /// The 11-character hash of the Android app (SMS Retriever API), on its own line, so the
    /// app reads the code without asking.
    pub android_app_hash: Option<String>,
}

impl AutofillLines {
    pub fn is_empty(&self) -> bool {
        self.webotp_domain.is_none() && self.android_app_hash.is_none()
    }

    /// `body` with the app hash on a line of its own, then a blank line and the WebOTP line,
    /// which must be last.
    pub fn apply(&self, body: &str, code: &str) -> String {
        let mut text = body.trim_end().to_owned();
        if let Some(hash) = &self.android_app_hash {
            text.push('\n');
            text.push_str(hash);
        }
        if let Some(domain) = &self.webotp_domain {
            text.push_str("\n\n@");
            text.push_str(domain);
            text.push_str(" #");
            text.push_str(code);
        }
        text
    }

    /// Every problem with these settings of tenant `tenant`.
    pub fn validate(&self, tenant: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(domain) = &self.webotp_domain {
            let labels_ok = domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
            if !labels_ok || !domain.contains('.') {
                problems.push(format!(
                    "tenants.{tenant}.webotp_domain is '{domain}'; give the site's host name alone, in lower case, such as login.example.com (no scheme, port or path)"
                ));
            }
        }
        if let Some(hash) = &self.android_app_hash {
            let well_formed = hash.len() == 11
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
            if !well_formed {
                problems.push(format!(
                    "tenants.{tenant}.android_app_hash is '{hash}'; it is the 11-character hash Android's SMS Retriever API computes for the app (letters, digits, + and /)"
                ));
            }
        }
        problems
    }
}

/// Whether a template's text, with the longest code and lifetime and `lines`, still fits one
/// segment; if not, what it takes.
pub fn fits_one_segment(text: &str, lines: &AutofillLines) -> Result<(), Segments> {
    let code = "0".repeat(usize::from(MAX_CODE_LENGTH));
    let minutes = MAX_TTL_SECONDS.div_ceil(60).to_string();
    let body = text.replace("{minutes}", &minutes).replace("{code}", &code);
    let taken = segments(&lines.apply(&body, &code));
    if taken.count == 1 {
        Ok(())
    } else {
        Err(taken)
    }
}

/// Every tenant's autofill lines that phones would not read, and every template text that
/// would not fit one segment with the longest code, alone or with a tenant's lines.
pub fn validate_sms_texts(
    templates: &TemplateSettings,
    autofill: &BTreeMap<String, AutofillLines>,
) -> Vec<String> {
    let mut problems: Vec<String> = autofill
        .iter()
        .flat_map(|(tenant, lines)| lines.validate(tenant))
        .collect();
    if !problems.is_empty() {
        return problems;
    }
    let plain = AutofillLines::default();
    let variants = std::iter::once((None, &plain)).chain(
        autofill
            .iter()
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(tenant, lines)| (Some(tenant), lines)),
    );
    for (tenant, lines) in variants {
        for (name, texts) in templates {
            for (locale, text) in texts {
                if let Err(taken) = fits_one_segment(text, lines) {
                    let with = tenant.map_or(String::new(), |tenant| {
                        format!(" and the autofill lines of tenants.{tenant}")
                    });
                    problems.push(format!(
                        "templates.{name}.{locale} takes {taken} with a {MAX_CODE_LENGTH}-digit code{with}; shorten it: an SMS that carries a code must stay one segment (each more costs as much again, and parts may arrive apart)"
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_says_what_the_alphabets_say() {
        let in_alphabets = |c: char| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        };
        let ascii = (0u8..128).map(char::from);
        let latin1 = "çÇ`ÿ¤£¥§¡¿ÄäΔ€".chars();
        let alphabets = GSM7_BASIC.chars().chain(GSM7_EXTENSION.chars());
        for c in ascii.chain(latin1).chain(alphabets) {
            assert_eq!(septets(c), in_alphabets(c), "{c:?}");
        }
        // Both tables hold ASCII in and out of the alphabet, so a table of all or none fails.
        assert_eq!(septets('a'), Some(1));
        assert_eq!(septets('['), Some(2));
        assert_eq!(septets('`'), None);
    }

    #[test]
    fn gsm_text_takes_160_septets_a_segment_and_153_in_parts() {
        assert_eq!(
            segments(&"a".repeat(160)),
            Segments {
                encoding: Encoding::Gsm7,
                units: 160,
                count: 1
            }
        );
        assert_eq!(segments(&"a".repeat(161)).count, 2);
        assert_eq!(segments(&"a".repeat(306)).count, 2);
        assert_eq!(segments(&"a".repeat(307)).count, 3);
        // Accented letters of the default alphabet stay GSM; an extension character counts twice.
        let text = format!("Ihr Code: 123456 Ä é ü €{}", "x".repeat(100));
        let taken = segments(&text);
        assert_eq!(taken.encoding, Encoding::Gsm7);
        assert_eq!(taken.units, text.chars().count() + 1);
    }

    #[test]
    fn any_other_character_makes_it_ucs2_with_70_a_segment() {
        let taken = segments("Ваш код 123456");
        assert_eq!((taken.encoding, taken.count), (Encoding::Ucs2, 1));
        assert_eq!(segments(&"к".repeat(70)).count, 1);
        assert_eq!(segments(&"к".repeat(71)).count, 2);
        assert_eq!(segments(&"к".repeat(135)).count, 3);
        // An emoji is two UTF-16 units.
        assert_eq!(segments(&format!("{}🔐", "a".repeat(68))).units, 70);
        // `ç` (lower case) is not in the alphabet, only `Ç`.
        assert_eq!(segments("ç").encoding, Encoding::Ucs2);
    }

    #[test]
    fn the_webotp_line_comes_last_and_the_app_hash_on_its_own_line() {
        let lines = AutofillLines {
            webotp_domain: Some("login.example.com".into()),
            android_app_hash: Some("FA+9qCX9VSu".into()),
        };
        assert_eq!(
            lines.apply("Your code is 123456.\n", "123456"),
            "Your code is 123456.\nFA+9qCX9VSu\n\n@login.example.com #123456"
        );
        let web_only = AutofillLines {
            webotp_domain: Some("example.com".into()),
            android_app_hash: None,
        };
        assert_eq!(
            web_only.apply("Code 42", "42"),
            "Code 42\n\n@example.com #42"
        );
        assert_eq!(AutofillLines::default().apply("Code 42", "42"), "Code 42");
    }

    #[test]
    fn settings_that_phones_would_not_read_are_refused() {
        for (domain, hash) in [
            ("https://example.com", "FA+9qCX9VSu"),
            ("Example.com", "FA+9qCX9VSu"),
            ("localhost", "FA+9qCX9VSu"),
            ("example.com", "short"),
            ("example.com", "FA+9qCX9VS!"),
        ] {
            let lines = AutofillLines {
                webotp_domain: Some(domain.into()),
                android_app_hash: Some(hash.into()),
            };
            assert_eq!(lines.validate("acme").len(), 1, "{domain} {hash}");
        }
        let good = AutofillLines {
            webotp_domain: Some("login.example-bank.co.uk".into()),
            android_app_hash: Some("FA+9qCX9VSu".into()),
        };
        assert!(good.validate("acme").is_empty());
    }

    #[test]
    fn settings_name_the_template_and_the_tenant_that_do_not_fit() {
        let templates = TemplateSettings::from([(
            "login".to_string(),
            BTreeMap::from([
                ("en".to_string(), format!("{{code}} {}", "x".repeat(130))),
                ("ru".to_string(), "Ваш код {code}".to_string()),
            ]),
        )]);
        let autofill = BTreeMap::from([(
            "acme".to_string(),
            AutofillLines {
                webotp_domain: Some("login.example.com".into()),
                android_app_hash: Some("FA+9qCX9VSu".into()),
            },
        )]);
        let problems = validate_sms_texts(&templates, &autofill);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("templates.login.en takes 2 segment(s)")
                && problems[0].contains("tenants.acme"),
            "{problems:?}"
        );
        assert!(validate_sms_texts(&templates, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_template_must_fit_one_segment_with_the_longest_code_and_the_lines() {
        let template = format!("{{code}} is your code. {}", "x".repeat(120));
        assert_eq!(
            fits_one_segment(&template, &AutofillLines::default()),
            Ok(())
        );
        let lines = AutofillLines {
            webotp_domain: Some("login.example.com".into()),
            android_app_hash: None,
        };
        let taken = fits_one_segment(&template, &lines).unwrap_err();
        assert_eq!(taken.count, 2);
        assert!(
            taken.to_string().contains("of the 160 GSM 7-bit"),
            "{taken}"
        );
    }
}
