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
    /// Seconds between heartbeats each way; a broker heard nothing from for twice this is
    /// taken as gone (a network gone silent), and the connection is made again. A
    /// `heartbeat=` in the URL wins. Default 10.
    pub heartbeat_seconds: u16,
    /// Deliveries of one message before the broker dead-letters it. Default 20.
    pub delivery_limit: u32,
    /// Regions whose queues this node consumes; empty means all. Default empty.
    #[serde(deserialize_with = "array_or_commas")]
    pub consume_regions: Vec<String>,
    /// Region queue name → routing-key patterns bound to it on the route exchange.
    /// Default: eu, americas, apac, world for SMS, calls and WhatsApp, and email.
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
            heartbeat_seconds: 10,
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

    /// The broker's URL as lapin takes it, with `heartbeat_seconds` unless the URL names its
    /// own heartbeat. (The error never repeats the URL: it holds a password.)
    pub fn broker_uri(&self) -> Result<lapin::uri::AMQPUri, String> {
        let mut uri: lapin::uri::AMQPUri = self
            .url
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| "amqp.url is not a valid AMQP URL".to_owned())?;
        uri.query.heartbeat.get_or_insert(self.heartbeat_seconds);
        Ok(uri)
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
        if self.url.is_some() && self.broker_uri().is_err() {
            problems.push(
                "amqp.url is not a valid AMQP URL; the form is amqp://user:password@host:5672/vhost (%2f for the vhost /)".into(),
            );
        }
        if self.heartbeat_seconds == 0 {
            problems.push("amqp.heartbeat_seconds must be at least 1: without heartbeats a broker gone silent is never noticed".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> AmqpSettings {
        AmqpSettings {
            url: Some(url.into()),
            ..AmqpSettings::default()
        }
    }

    #[test]
    fn the_heartbeat_setting_applies_unless_the_url_names_one() {
        let settings = with_url("amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(settings.broker_uri().unwrap().query.heartbeat, Some(10));
        let settings = with_url("amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=3");
        assert_eq!(settings.broker_uri().unwrap().query.heartbeat, Some(3));
    }

    #[test]
    fn a_bad_url_or_no_heartbeat_is_refused_without_repeating_the_password() {
        let problems = with_url("amqp://otpd:s3cret@127.0.0.1:notaport/%2f").validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].contains("s3cret"), "{problems:?}");
        let problems = AmqpSettings {
            heartbeat_seconds: 0,
            ..with_url("amqp://127.0.0.1")
        }
        .validate();
        assert!(problems[0].contains("heartbeat_seconds"), "{problems:?}");
    }
}
