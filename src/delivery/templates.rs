//! Message texts per template and locale, from the settings.

use std::collections::{BTreeMap, HashMap};

/// The template used when a request names none.
pub const DEFAULT_TEMPLATE: &str = "default";
/// The locale every template has, used when a request's locale is missing.
pub const FALLBACK_LOCALE: &str = "en";
use crate::domain::channel::MessageForm;
use crate::domain::OtpCode;

/// Message texts: template name → locale → text with `{code}` and `{minutes}`.
pub type TemplateSettings = BTreeMap<String, BTreeMap<String, String>>;

/// Every problem with the templates.
pub fn validate_templates(templates: &TemplateSettings) -> Vec<String> {
    let mut problems = Vec::new();
    if !templates.contains_key(DEFAULT_TEMPLATE) {
        problems.push(format!(
            "templates.{DEFAULT_TEMPLATE} is missing; it is used when a request names no template"
        ));
    }
    for (name, texts) in templates {
        if !texts.contains_key(FALLBACK_LOCALE) {
            problems.push(format!(
                "templates.{name} has no '{FALLBACK_LOCALE}' text; it is the fallback for other locales"
            ));
        }
        for (locale, text) in texts {
            if !text.contains("{code}") {
                problems.push(format!(
                    "templates.{name}.{locale} does not contain {{code}}; the message would not carry the code"
                ));
            }
        }
    }
    problems
}

#[derive(Debug, Clone)]
pub struct Templates {
    texts: HashMap<String, HashMap<String, String>>,
}

impl Templates {
    pub fn from_settings(settings: &TemplateSettings) -> Self {
        let texts = settings
            .iter()
            .map(|(name, locales)| {
                let locales = locales
                    .iter()
                    .map(|(locale, text)| (locale.to_ascii_lowercase(), text.clone()))
                    .collect();
                (name.clone(), locales)
            })
            .collect();
        Templates { texts }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.texts.contains_key(name)
    }

    /// The configured template names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.texts.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The text of `name` in `locale` (`pt-BR` falls back to `pt`, then to English), with
    /// the code, as `form` shows it, and lifetime filled in. `None` for an unknown template.
    pub fn render(
        &self,
        name: &str,
        locale: Option<&str>,
        code: &OtpCode,
        form: MessageForm,
        minutes: u64,
    ) -> Option<String> {
        let locales = self.texts.get(name)?;
        let wanted = locale.unwrap_or(FALLBACK_LOCALE).to_ascii_lowercase();
        let language = wanted.split(['-', '_']).next().unwrap_or_default();
        let text = locales
            .get(&wanted)
            .or_else(|| locales.get(language))
            .or_else(|| locales.get(FALLBACK_LOCALE))?;
        Some(
            text.replace("{minutes}", &minutes.to_string())
                .replace("{code}", &shown(code, form)),
        )
    }
}

/// The code as a message of `form` shows it: spelled out to be read aloud, as it is
/// otherwise.
fn shown(code: &OtpCode, form: MessageForm) -> std::borrow::Cow<'_, str> {
    match form {
        MessageForm::Spoken => code.spelled_out().into(),
        MessageForm::Text | MessageForm::CodeAlone => code.reveal().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn templates() -> Templates {
        Templates::from_settings(&BTreeMap::from([(
            "login".to_string(),
            BTreeMap::from([
                ("en".to_string(), "Code {code}, {minutes} min".to_string()),
                ("de".to_string(), "Code {code}, {minutes} Min.".to_string()),
            ]),
        )]))
    }

    #[test]
    fn renders_the_locale_or_its_language_or_english() {
        let code = OtpCode::parse("123456").unwrap();
        let t = templates();
        assert_eq!(
            t.render("login", Some("de"), &code, MessageForm::Text, 5)
                .unwrap(),
            "Code 123456, 5 Min."
        );
        assert_eq!(
            t.render("login", Some("de-AT"), &code, MessageForm::Text, 5)
                .unwrap(),
            "Code 123456, 5 Min."
        );
        assert_eq!(
            t.render("login", Some("ja"), &code, MessageForm::Text, 5)
                .unwrap(),
            "Code 123456, 5 min"
        );
        assert_eq!(
            t.render("login", None, &code, MessageForm::Text, 2)
                .unwrap(),
            "Code 123456, 2 min"
        );
        assert!(t
            .render("signup", None, &code, MessageForm::Text, 5)
            .is_none());
    }

    #[test]
    fn a_text_to_be_read_out_spells_the_code() {
        let code = OtpCode::parse("123456").unwrap();
        assert_eq!(
            templates()
                .render("login", None, &code, MessageForm::Spoken, 5)
                .unwrap(),
            "Code 1, 2, 3, 4, 5, 6, 5 min"
        );
    }
}
