//! A generic HTTP provider: one request per message to a configured URL, with configured
//! headers and a JSON body built from a template.

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::providers::kind::BuildError;
use crate::providers::support::{
    check_timeout, default_timeout_ms, exchange, http_client, validate_base_url,
};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

/// The placeholders a body template may use, inside its JSON strings.
pub const PLACEHOLDERS: [&str; 6] = [
    "{to}",
    "{body}",
    "{channel}",
    "{verification_id}",
    "{entity_id}",
    "{template_id}",
];

fn default_method() -> String {
    "POST".to_owned()
}

/// Settings of a generic HTTP provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where each message is sent. Required.
    pub url: String,
    /// HTTP method: `POST`, `PUT` or `PATCH`. Default `POST`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers; values are secrets (API keys, bearer tokens). Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// The JSON body. Every string in it (keys too) may hold `{to}`, `{body}`, `{channel}`,
    /// `{verification_id}`, and `{entity_id}` and `{template_id}` (the destination country's
    /// registration, such as India's DLT ids; empty where it needs none), replaced by the
    /// message's values and JSON-escaped, e.g. `{"to": "{to}", "text": "{body}"}`. Required.
    pub body_template: String,
    /// JSON pointer to the provider's message id in a success answer, e.g. `/id`. Default
    /// unset (no id kept).
    #[serde(default)]
    pub message_id_pointer: Option<String>,
    /// Milliseconds a send may take, connecting included. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl HttpConfig {
    /// Every problem with these settings, each naming the setting under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        validate_base_url(&format!("{prefix}.url"), &self.url, &mut problems);
        if parse_method(&self.method).is_none() {
            problems.push(format!(
                "{prefix}.method is '{}'; use POST, PUT or PATCH",
                self.method
            ));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!(
                    "{prefix}.headers: '{name}' is not a valid header name"
                ));
            }
            if HeaderValue::from_str(value.expose_secret()).is_err() {
                problems.push(format!(
                    "{prefix}.headers.{name}: the value holds characters a header cannot carry"
                ));
            }
        }
        match serde_json::from_str::<Value>(&self.body_template) {
            Ok(template) => {
                if !mentions(&template, "{to}") || !mentions(&template, "{body}") {
                    problems.push(format!(
                        "{prefix}.body_template must use both {{to}} and {{body}}"
                    ));
                }
            }
            Err(error) => problems.push(format!(
                "{prefix}.body_template is not valid JSON ({error}); placeholders go inside strings, e.g. {{\"to\": \"{{to}}\"}}"
            )),
        }
        if let Some(pointer) = &self.message_id_pointer {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                problems.push(format!(
                    "{prefix}.message_id_pointer must be a JSON pointer starting with '/', e.g. /id"
                ));
            }
        }
        check_timeout(&mut problems, prefix, self.timeout_ms);
        problems
    }
}

fn parse_method(method: &str) -> Option<Method> {
    match method.to_ascii_uppercase().as_str() {
        "POST" => Some(Method::POST),
        "PUT" => Some(Method::PUT),
        "PATCH" => Some(Method::PATCH),
        _ => None,
    }
}

fn mentions(value: &Value, placeholder: &str) -> bool {
    match value {
        Value::String(text) => text.contains(placeholder),
        Value::Array(items) => items.iter().any(|item| mentions(item, placeholder)),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains(placeholder) || mentions(item, placeholder)),
        _ => false,
    }
}

/// Replaces the placeholders in every string of `template`; serialising the result escapes
/// the values, so a message can never break out of its string.
pub fn render(template: &Value, message: &OutboundMessage) -> Value {
    let fill = |text: &str| {
        if !text.contains('{') {
            return text.to_owned();
        }
        let registration = message.registration.as_ref();
        text.replace("{to}", &message.to)
            .replace("{channel}", message.channel.as_str())
            .replace("{verification_id}", message.verification_id.as_str())
            .replace(
                "{entity_id}",
                registration.map_or("", |r| r.entity_id.as_str()),
            )
            .replace(
                "{template_id}",
                registration.map_or("", |r| r.template_id.as_str()),
            )
            // Last, so a body that contains a placeholder's text is not expanded again.
            .replace("{body}", &message.body)
    };
    match template {
        Value::String(text) => Value::String(fill(text)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| render(item, message)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (fill(key), render(item, message)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Sends each message as one HTTP request.
pub struct HttpProvider {
    id: String,
    url: String,
    method: Method,
    headers: HeaderMap,
    template: Value,
    message_id_pointer: Option<String>,
    client: reqwest::Client,
}

impl HttpProvider {
    pub fn new(id: &str, config: HttpConfig) -> Result<Self, BuildError> {
        let problems = config.validate(id);
        if !problems.is_empty() {
            return Err(BuildError::Invalid(problems));
        }
        let invalid = |problem: String| BuildError::Invalid(vec![problem]);
        let method = parse_method(&config.method)
            .ok_or_else(|| invalid(format!("{id}.method is not supported")))?;
        let template: Value = serde_json::from_str(&config.body_template)
            .map_err(|error| invalid(format!("{id}.body_template: {error}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("{id}.headers: invalid name '{name}'")))?;
            let mut value = HeaderValue::from_str(value.expose_secret())
                .map_err(|_| invalid(format!("{id}.headers.{name}: invalid value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(HttpProvider {
            id: id.to_owned(),
            url: config.url,
            method,
            headers,
            template,
            message_id_pointer: config.message_id_pointer.filter(|p| !p.is_empty()),
            client: http_client(Duration::from_millis(config.timeout_ms))?,
        })
    }
}

#[async_trait]
impl Provider for HttpProvider {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&self, message: &OutboundMessage) -> Result<SendReceipt, ProviderError> {
        let body = serde_json::to_vec(&render(&self.template, message)).map_err(|error| {
            ProviderError::Permanent {
                reason: format!("could not encode the request body: {error}"),
            }
        })?;
        let request = self
            .client
            .request(self.method.clone(), &self.url)
            .headers(self.headers.clone())
            .body(body);
        let answer = exchange(request).await?;
        // The answer may echo the request, code included: it never goes into a reason.
        if !answer.status.is_success() {
            return Err(answer.refused(""));
        }
        let provider_message_id = self.message_id_pointer.as_ref().and_then(|pointer| {
            let answer: Value = serde_json::from_slice(&answer.body).ok()?;
            match answer.pointer(pointer)? {
                Value::String(id) => Some(id.clone()),
                Value::Number(id) => Some(id.to_string()),
                _ => None,
            }
        });
        Ok(SendReceipt {
            provider_message_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, JobId, VerificationId};

    fn message(body: &str) -> OutboundMessage {
        let verification_id = VerificationId::generate();
        OutboundMessage {
            job_id: JobId::new(&verification_id, 1),
            verification_id,
            tenant: "acme".into(),
            channel: Channel::Sms,
            to: "+4915112345678".into(),
            body: body.into(),
            locale: None,
            code: crate::domain::OtpCode::parse("123456").unwrap(),
            sender_id: None,
            registration: None,
        }
    }

    #[test]
    fn render_escapes_values_inside_strings() {
        let template: Value =
            serde_json::from_str(r#"{"to":"{to}","text":"Code: {body}","n":[1,"{channel}"]}"#)
                .unwrap();
        let message = message("12\"34\n{to}");
        let rendered = serde_json::to_string(&render(&template, &message)).unwrap();
        let back: Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(back["to"], "+4915112345678");
        assert_eq!(back["text"], "Code: 12\"34\n{to}");
        assert_eq!(back["n"][1], "sms");
        assert_eq!(back["n"][0], 1);
    }

    #[test]
    fn a_registration_fills_its_placeholders_and_none_leaves_them_empty() {
        let template: Value = serde_json::from_str(
            r#"{"dlt":{"pe_id":"{entity_id}","template_id":"{template_id}"}}"#,
        )
        .unwrap();
        let mut message = message("Code 123456");
        assert_eq!(render(&template, &message)["dlt"]["pe_id"], "");
        message.registration = Some(crate::providers::Registration {
            entity_id: "1101234567890123456".into(),
            template_id: "1107161234567890123".into(),
        });
        let rendered = render(&template, &message);
        assert_eq!(rendered["dlt"]["pe_id"], "1101234567890123456");
        assert_eq!(rendered["dlt"]["template_id"], "1107161234567890123");
    }

    #[test]
    fn validate_lists_every_problem() {
        let config = HttpConfig {
            url: "ftp://x".into(),
            method: "GET".into(),
            headers: BTreeMap::from([("bad name".to_owned(), SecretString::from("v"))]),
            body_template: "{to}".into(),
            message_id_pointer: Some("id".into()),
            timeout_ms: 0,
        };
        let problems = config.validate("providers.custom");
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems
            .iter()
            .all(|problem| problem.starts_with("providers.custom")));
    }
}
