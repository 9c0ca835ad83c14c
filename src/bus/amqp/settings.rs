//! `[amqp]`: the broker connection, the names of otpd's queues and exchanges, and which
//! region queues this node consumes.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::lists::{array_or_commas, map_of_lists};
use crate::tls::AmqpTlsSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// Broker URL (`amqp://user:pass@host:5672/%2f`); unset means embedded mode. Default unset.
    pub url: Option<String>,
    /// Prefix of every exchange and queue name (`<namespace>.requests`, …). Default `otp`.
    pub namespace: String,
    /// `quorum` or `classic`, for the requests and region queues. Default `quorum`.
    pub requests_queue_type: String,
    /// Unacknowledged messages per consumer. Default 256.
    pub prefetch: u16,
    /// Longest wait for any broker operation, milliseconds. Default 5000.
    pub timeout_ms: u64,
    /// Pause before reconnecting after the connection dropped, milliseconds. Default 1000.
    pub reconnect_delay_ms: u64,
    /// Deliveries of one message before the broker dead-letters it. Default 20.
    pub delivery_limit: u32,
    /// Regions whose queues this node consumes; empty means all. Default empty.
    #[serde(deserialize_with = "array_or_commas")]
    pub consume_regions: Vec<String>,
    /// Region queue name → routing-key patterns bound to it on the route exchange.
    /// Default: eu, americas, apac, world for SMS, and email.
    #[serde(deserialize_with = "map_of_lists")]
    pub region_queues: BTreeMap<String, Vec<String>>,
    /// `[amqp.tls]`: the CA trusted for an `amqps://` broker and an optional client
    /// certificate. Default: the system's roots, no client certificate.
    pub tls: AmqpTlsSettings,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: None,
            namespace: "otp".into(),
            requests_queue_type: "quorum".into(),
            prefetch: 256,
            timeout_ms: 5000,
            reconnect_delay_ms: 1000,
            delivery_limit: 20,
            consume_regions: Vec::new(),
            region_queues: BTreeMap::new(),
            tls: AmqpTlsSettings::default(),
        }
    }
}

impl AmqpSettings {
    /// Whether otpd runs in broker mode.
    pub fn is_broker_mode(&self) -> bool {
        self.url.is_some()
    }

    /// Every problem that needs only `[amqp]`; TLS files are checked with the other TLS files.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.url {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                problems.push(
                    "amqp.url must start with amqp:// or amqps://, e.g. amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                );
            }
        }
        if self.namespace.is_empty()
            || !self
                .namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            problems.push(format!(
                "amqp.namespace is '{}'; use letters, digits, '-', '_' and '.'",
                self.namespace
            ));
        }
        if !["quorum", "classic"].contains(&self.requests_queue_type.as_str()) {
            problems.push(format!(
                "amqp.requests_queue_type is '{}'; allowed: quorum, classic",
                self.requests_queue_type
            ));
        }
        if self.prefetch == 0 {
            problems.push("amqp.prefetch must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            problems.push("amqp.timeout_ms must be at least 1".into());
        }
        for region in &self.consume_regions {
            if !self.region_queues.contains_key(region) {
                problems.push(format!(
                    "amqp.consume_regions names '{region}', which is not a key of amqp.region_queues"
                ));
            }
        }
        let amqps = self
            .url
            .as_deref()
            .is_some_and(|url| url.starts_with("amqps://"));
        for (name, file) in [
            ("ca_file", &self.tls.ca_file),
            ("cert_file", &self.tls.cert_file),
            ("key_file", &self.tls.key_file),
        ] {
            if file.is_some() && !amqps {
                problems.push(format!(
                    "amqp.tls.{name} is set but amqp.url is not an amqps:// URL; use amqps:// to connect over TLS, or remove amqp.tls.{name}"
                ));
            }
        }
        problems
    }
}
