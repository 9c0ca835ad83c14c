//! Turns HTTP answers and transport errors into classified `ProviderError`s, one rule for all
//! HTTP adapters: connection errors, 408, 429 and 5xx are transient; a timeout or an unreadable
//! answer leaves the message perhaps taken (unanswered); other 4xx are
//! permanent. Only a 429 carries `retry_after` (back-pressure, not failure).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use std::time::{Duration, SystemTime};

use super::ProviderError;

/// The longest wait taken from a `Retry-After` header; longer asks are capped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a 429 without a usable `Retry-After` header implies.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Classifies a non-success HTTP status. `detail` is what the vendor said (never the message
/// body we sent); it goes into the reason.
pub fn from_status(status: StatusCode, headers: &HeaderMap, detail: &str) -> ProviderError {
    let reason = if detail.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), truncate(detail, 200))
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()))
            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT);
        ProviderError::Transient {
            reason,
            retry_after: Some(retry_after),
        }
    } else if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        ProviderError::Transient {
            reason,
            retry_after: None,
        }
    } else {
        ProviderError::Permanent { reason }
    }
}

/// Classifies a transport error. Timeouts and connection failures are transient; a request
/// we could not even build is permanent.
pub fn from_transport(error: &reqwest::Error) -> ProviderError {
    // reqwest's Display may include the URL; ours hold no secret (credentials go in headers).
    if error.is_builder() {
        return ProviderError::Permanent {
            reason: format!("could not build the request: {}", without_url(error)),
        };
    }
    let detail = without_url(error);
    if error.is_connect() {
        return ProviderError::Transient {
            reason: format!("could not connect: {detail}"),
            retry_after: None,
        };
    }
    // Past the connection the request may have been taken: a timeout, or an answer that
    // could not be read.
    if error.is_timeout() {
        return ProviderError::Unanswered {
            reason: format!("timed out: {detail}"),
        };
    }
    if error.is_decode() || error.is_body() {
        return ProviderError::Unanswered {
            reason: format!("could not read the answer: {detail}"),
        };
    }
    ProviderError::Transient {
        reason: format!("request failed: {detail}"),
        retry_after: None,
    }
}

/// The error an adapter returns when its own deadline passes with the request sent.
pub fn timed_out(timeout: Duration) -> ProviderError {
    ProviderError::Unanswered {
        reason: format!("timed out after {} ms", timeout.as_millis()),
    }
}

fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// At most `max` characters of `text`, cut on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn statuses_are_classified() {
        let none = headers(None);
        for code in [408, 500, 502, 503, 504] {
            let error = from_status(StatusCode::from_u16(code).unwrap(), &none, "");
            assert!(error.is_transient(), "{code}");
            assert_eq!(error.retry_after(), None, "{code}");
        }
        for code in [400, 401, 403, 404, 422] {
            let error = from_status(StatusCode::from_u16(code).unwrap(), &none, "x");
            assert!(!error.is_transient(), "{code}");
        }
    }

    #[test]
    fn a_429_carries_its_retry_after() {
        let error = from_status(StatusCode::TOO_MANY_REQUESTS, &headers(Some("7")), "");
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        let error = from_status(StatusCode::TOO_MANY_REQUESTS, &headers(None), "");
        assert_eq!(error.retry_after(), Some(DEFAULT_RATE_LIMIT_WAIT));
        let error = from_status(StatusCode::TOO_MANY_REQUESTS, &headers(Some("soon")), "");
        assert_eq!(error.retry_after(), Some(DEFAULT_RATE_LIMIT_WAIT));
    }

    #[test]
    fn retry_after_accepts_http_dates_and_caps_long_waits() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("äöü", 2), "äö…");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
