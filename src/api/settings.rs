//! `[http]`: where the API listens, with how many workers, and over what TLS.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

use crate::tls::HttpTlsSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the API listens on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Worker threads; 0 means one per core. Default 0.
    pub workers: usize,
    /// Seconds a request's body may take to arrive; a slower one gets 408. Default 5.
    pub body_timeout_seconds: u64,
    /// The URL providers call otpd at (e.g. `https://otpd.example.com`), for checking
    /// Twilio's receipt signatures behind a proxy. Default unset: taken from the request.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `[http.tls]`: certificate and key for HTTPS. Default unset: plain HTTP.
    #[serde(default)]
    pub tls: HttpTlsSettings,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` names the client, for the
    /// per-IP rate limits. Default none: the peer is the client.
    #[serde(default, deserialize_with = "crate::lists::array_or_commas")]
    pub trusted_proxies: Vec<String>,
}

impl HttpSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen is '{}'; it must be an IP address and port such as 127.0.0.1:8080",
                self.listen
            ));
        }
        if self.body_timeout_seconds == 0 {
            problems.push("http.body_timeout_seconds must be at least 1".into());
        }
        if let Err(problem) = super::client_ip::TrustedProxies::parse(&self.trusted_proxies) {
            problems.push(problem);
        }
        problems
    }

    /// How long a request's body may take to arrive.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_seconds)
    }

    /// The number of worker threads: the setting, or one per core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}
