//! Where each tenant's webhooks go and how they are signed (`tenants.<name>.webhook_url`,
//! `webhook_secret` or `webhook_secret_file`), and how long they are retried (`[webhooks]`).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::access::TenantSettings;

/// `[webhooks]`: how sends are retried and timed.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// How long an event is offered again until a 2xx answer; then it is dropped, with a
    /// warning. Default 86400 (24 h).
    pub retry_for_seconds: u64,
    /// The first pause after a failed send, in ms; each next one doubles, up to
    /// `max_retry_ms`, with up to a fifth more at random. Default 1000.
    pub first_retry_ms: u64,
    /// The longest pause between two sends of an event, in ms. Default 600000 (10 min).
    pub max_retry_ms: u64,
    /// How long one send may take, in ms. Default 5000.
    pub timeout_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            retry_for_seconds: 86_400,
            first_retry_ms: 1_000,
            max_retry_ms: 600_000,
            timeout_ms: 5_000,
        }
    }
}

impl WebhookSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.first_retry_ms == 0 || self.max_retry_ms < self.first_retry_ms {
            problems.push(
                "webhooks.first_retry_ms must be at least 1 and webhooks.max_retry_ms at least that"
                    .into(),
            );
        }
        if self.timeout_ms == 0 || self.retry_for_seconds == 0 {
            problems.push(
                "webhooks.timeout_ms and webhooks.retry_for_seconds must be at least 1".into(),
            );
        }
        problems
    }
}

/// One tenant's webhook: its URL and signing secret.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub secret: Arc<SecretString>,
}

/// Every tenant's webhook, by tenant.
#[derive(Clone, Default)]
pub struct WebhookTargets(BTreeMap<String, Target>);

impl WebhookTargets {
    /// Reads each tenant's URL and secret (from the settings, the environment
    /// `OTPD__TENANTS__<NAME>__WEBHOOK_SECRET`, or the file `webhook_secret_file` names);
    /// reports every problem at once.
    pub fn from_settings(tenants: &BTreeMap<String, TenantSettings>) -> Result<Self, Vec<String>> {
        let mut targets = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, tenant) in tenants {
            let Some(url) = &tenant.webhook_url else {
                continue;
            };
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || reqwest::Url::parse(url).is_err()
            {
                problems.push(format!(
                    "tenants.{name}.webhook_url is '{url}'; give an http(s) URL"
                ));
                continue;
            }
            let secret = match (&tenant.webhook_secret, &tenant.webhook_secret_file) {
                (Some(secret), _) => Some(secret.expose_secret().to_owned()),
                (None, Some(path)) => match std::fs::read_to_string(path) {
                    Ok(text) => Some(text.trim().to_owned()),
                    Err(error) => {
                        problems.push(format!(
                            "tenants.{name}.webhook_secret_file {}: {error}",
                            path.display()
                        ));
                        continue;
                    }
                },
                (None, None) => None,
            };
            match secret.filter(|secret| secret.len() >= 16) {
                Some(secret) => {
                    targets.insert(
                        name.clone(),
                        Target {
                            url: url.clone(),
                            secret: Arc::new(SecretString::from(secret)),
                        },
                    );
                }
                None => problems.push(format!(
                    "tenants.{name}.webhook_url needs a signing secret of at least 16 characters: set OTPD__TENANTS__{}__WEBHOOK_SECRET or tenants.{name}.webhook_secret_file",
                    name.to_uppercase().replace('-', "_")
                )),
            }
        }
        if problems.is_empty() {
            Ok(WebhookTargets(targets))
        } else {
            Err(problems)
        }
    }

    pub fn has(&self, tenant: &str) -> bool {
        self.0.contains_key(tenant)
    }

    pub fn get(&self, tenant: &str) -> Option<&Target> {
        self.0.get(tenant)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
