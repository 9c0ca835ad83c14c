//! What the HTTP vendors share: the HTTP client every adapter uses, and the checks of the
//! settings they have in common (base URLs, callback URLs, timeouts).

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::time::Duration;

use super::kind::BuildError;
use super::{classify, ProviderError};

/// A provider's answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The classified error of an answer that is not a success; `detail` is what the
    /// vendor's error body says (never anything that may echo the message).
    pub fn refused(&self, detail: &str) -> ProviderError {
        classify::from_status(self.status, &self.headers, detail)
    }
}

/// Sends `request` and reads the whole answer; a transport failure comes back classified.
pub async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|error| classify::from_transport(&error))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|error| classify::from_transport(&error))?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Whether a sender is a phone number (digits, with or without a leading `+`) rather than a
/// name.
pub fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or(value);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The send timeout when a provider's settings give none, milliseconds.
pub fn default_timeout_ms() -> u64 {
    5_000
}

/// The HTTP client every HTTP adapter uses: rustls, `timeout` for the whole request and for
/// connecting, no redirects (a provider API never needs one), no retries.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("otpd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| BuildError::Client(error.to_string()))
}

/// What `by_locale` gives for `locale` (`pt-BR`), else for its language (`pt`).
pub fn by_locale<'a>(
    by_locale: &'a std::collections::BTreeMap<String, String>,
    locale: &str,
) -> Option<&'a str> {
    let language = locale.split(['-', '_']).next().unwrap_or_default();
    by_locale
        .get(locale)
        .or_else(|| by_locale.get(language))
        .map(String::as_str)
}

/// Checks that `url` (setting `name`) is an absolute http(s) URL.
pub fn validate_base_url(name: &str, url: &str, problems: &mut Vec<String>) {
    let name = if name.ends_with(".url") {
        name.to_owned()
    } else {
        format!("{name}.base_url")
    };
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
        _ => problems.push(format!(
            "{name} is '{url}'; it must be an absolute http(s) URL such as https://api.example.com"
        )),
    }
}

/// An optional callback URL must be http(s).
pub fn check_callback_url(problems: &mut Vec<String>, setting: &str, url: Option<&str>) {
    if let Some(url) = url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(format!("{setting} must be an http(s) URL, got '{url}'"));
        }
    }
}

/// A send timeout of zero would fail every send.
pub fn check_timeout(problems: &mut Vec<String>, prefix: &str, timeout_ms: u64) {
    if timeout_ms == 0 {
        problems.push(format!("{prefix}.timeout_ms must be at least 1"));
    }
}
