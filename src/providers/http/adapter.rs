//! A generic HTTP provider: one request per message to a configured URL, with configured
//! headers and a JSON body built from a template.

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

use super::body::{BodyTemplate, Field};
use crate::providers::kind::BuildError;
use crate::providers::support::{
    check_timeout, default_timeout_ms, exchange, http_client, validate_base_url,
};
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

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
        match BodyTemplate::parse(&self.body_template) {
            Ok(template) => {
                if !template.mentions(Field::To) || !template.mentions(Field::Body) {
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

/// Sends each message as one HTTP request.
pub struct HttpProvider {
    id: String,
    url: Url,
    method: Method,
    headers: HeaderMap,
    template: BodyTemplate,
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
        let template = BodyTemplate::parse(&config.body_template)
            .map_err(|error| invalid(format!("{id}.body_template: {error}")))?;
        let url = Url::parse(&config.url).map_err(|error| invalid(format!("{id}.url: {error}")))?;
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
            url,
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
        let body = self
            .template
            .write(message)
            .map_err(|error| ProviderError::Permanent {
                reason: format!("could not encode the request body: {error}"),
            })?;
        let request = self
            .client
            .request(self.method.clone(), self.url.clone())
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
