//! Delivery receipts, vendor-neutral: the `Receipt` every vendor's parser makes, the
//! `ReceiptCall` a transport hands it (body, URL, headers, query), the `ReceiptReader` each
//! provider kind implements, and what several vendors share (form and JSON pairs, a shared
//! secret).
//!
//! Providers without signatures are authenticated by a shared secret that otpd puts in the
//! callback URL it gives them, e.g. `https://otpd.example/v1/providers/vonage/receipts?secret=…`;
//! the `secret` query parameter (or, for a proxy that moves it, the `X-Otpd-Receipt-Secret`
//! header) is checked by [`verify_shared_secret`].

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The query parameter that carries the shared receipt secret.
pub const SECRET_QUERY_PARAM: &str = "secret";
/// The header that may carry the shared receipt secret instead.
pub const SECRET_HEADER: &str = "X-Otpd-Receipt-Secret";

/// Where a message stands according to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Delivered,
    Failed,
    /// Accepted, queued, sent to the carrier or buffered: not final yet.
    Pending,
}

/// A delivery receipt, whatever provider sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The id the provider gave when it accepted the message (`SendReceipt`).
    pub provider_message_id: String,
    pub status: ReceiptStatus,
    /// The provider's error code, when it gave one other than "no error".
    pub error_code: Option<String>,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt's signature or secret is missing or wrong")]
    Unauthenticated,
    #[error("the receipt has no {0}")]
    MissingField(&'static str),
    #[error("the receipt's status '{0}' is unknown")]
    UnknownStatus(String),
    #[error("the receipt could not be read: {0}")]
    Unreadable(String),
}

/// Decodes an `application/x-www-form-urlencoded` body (or query string) into pairs.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ReceiptError> {
    serde_urlencoded::from_bytes(body).map_err(|error| ReceiptError::Unreadable(error.to_string()))
}

pub(crate) fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// The provider's error code in field `name`, unless it is absent or "0" (no error).
pub(crate) fn error_code(params: &[(String, String)], name: &str) -> Option<String> {
    field(params, name)
        .filter(|code| *code != "0")
        .map(str::to_owned)
}

/// Owned pairs from literals, for tests of the receipt parsers.
#[cfg(test)]
pub(crate) fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Where receipts that arrive on a provider's own connection (SMPP's `deliver_sm`) go, to be
/// recorded like those posted to otpd. `take` returns once the receipt is recorded, so the
/// provider acknowledges it to the vendor only then.
#[derive(Debug, Clone)]
pub struct ReceiptInbox {
    sender: tokio::sync::mpsc::Sender<InboxReceipt>,
}

/// A receipt in the inbox: its provider, and who waits to hear whether it was recorded.
pub struct InboxReceipt {
    pub provider: String,
    pub receipt: Receipt,
    pub recorded: tokio::sync::oneshot::Sender<bool>,
}

/// Receipts waiting to be recorded, at most; beyond, the provider's connection waits.
const INBOX: usize = 1024;

impl ReceiptInbox {
    /// An inbox, and the end the recorder reads.
    pub fn new() -> (ReceiptInbox, tokio::sync::mpsc::Receiver<InboxReceipt>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(INBOX);
        (ReceiptInbox { sender }, receiver)
    }

    /// Hands `receipt` of `provider` on and waits until it is recorded: whether it was (not
    /// when the store failed, or the recorder has stopped).
    pub async fn take(&self, provider: &str, receipt: Receipt) -> bool {
        let (recorded, done) = tokio::sync::oneshot::channel();
        let item = InboxReceipt {
            provider: provider.to_owned(),
            receipt,
            recorded,
        };
        self.sender.send(item).await.is_ok() && done.await.unwrap_or(false)
    }
}

/// Checks a shared receipt secret in constant time.
pub fn verify_shared_secret(
    expected: &SecretString,
    given: Option<&str>,
) -> Result<(), ReceiptError> {
    let given = given.ok_or(ReceiptError::Unauthenticated)?;
    let expected = expected.expose_secret().as_bytes();
    if !expected.is_empty() && bool::from(expected.ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(ReceiptError::Unauthenticated)
    }
}

/// Turns a JSON receipt body (Vonage can POST JSON) into pairs.
pub fn params_from_json(body: &[u8]) -> Result<Vec<(String, String)>, ReceiptError> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|error| ReceiptError::Unreadable(error.to_string()))?;
    Ok(object
        .into_iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::String(text) => Some((key, text)),
            serde_json::Value::Number(number) => Some((key, number.to_string())),
            serde_json::Value::Bool(flag) => Some((key, flag.to_string())),
            _ => None,
        })
        .collect())
}

/// What a receipt call shows before its body is read.
pub struct ReceiptHead<'a> {
    /// The URL the provider called, as it signed it (scheme through query string).
    pub url: &'a str,
    /// A request header by name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The query string's pairs.
    pub query: &'a [(String, String)],
}

impl ReceiptHead<'_> {
    /// The shared receipt secret the call carries, by header or query parameter.
    pub fn shared_secret(&self) -> Option<String> {
        (self.header)(SECRET_HEADER).or_else(|| {
            self.query
                .iter()
                .find(|(key, _)| key == SECRET_QUERY_PARAM)
                .map(|(_, value)| value.clone())
        })
    }
}

/// A delivery receipt as it reached otpd, whatever transport carried it.
pub struct ReceiptCall<'a> {
    pub head: ReceiptHead<'a>,
    pub body: &'a [u8],
    /// Whether the body is JSON (by its content type).
    pub is_json: bool,
}

impl ReceiptCall<'_> {
    /// The body's pairs: JSON fields or form fields, by the content type.
    pub fn pairs(&self) -> Result<Vec<(String, String)>, ReceiptError> {
        if self.is_json {
            params_from_json(self.body)
        } else {
            parse_form(self.body)
        }
    }
}

/// Reads and authenticates one provider's delivery receipts.
pub trait ReceiptReader: Send + Sync {
    /// Refuses a call whose URL and headers already show it is not the provider's, before
    /// its body is read: an unauthenticated caller is never waited on for a body.
    fn admit(&self, head: &ReceiptHead<'_>) -> Result<(), ReceiptError>;

    /// Reads an admitted call's receipts, checking what only its body can show. Most calls
    /// carry one; a vendor may batch several, or call about no message at all (none).
    fn read(&self, call: &ReceiptCall<'_>) -> Result<Vec<Receipt>, ReceiptError>;

    /// Answers a vendor's check that the receipt URL is its subscriber (a `GET` with a
    /// challenge, as WhatsApp's webhooks make): the text to answer with, or why not. `None`
    /// for vendors that make no such check.
    fn confirm_subscription(
        &self,
        _query: &[(String, String)],
    ) -> Option<Result<String, ReceiptError>> {
        None
    }

    /// Whether the caller must show a tenant API key instead of a provider's credentials
    /// (the sandbox's receipts, for development).
    fn needs_tenant_key(&self) -> bool {
        false
    }
}

/// Checks the call's shared secret against `expected`; no configured secret refuses all.
pub fn check_shared_secret(
    expected: Option<&SecretString>,
    head: &ReceiptHead<'_>,
) -> Result<(), ReceiptError> {
    match expected {
        Some(secret) => verify_shared_secret(secret, head.shared_secret().as_deref()),
        None => Err(ReceiptError::Unauthenticated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_secrets_are_checked_in_constant_time_and_never_empty() {
        let secret = SecretString::from("s3cret");
        assert!(verify_shared_secret(&secret, Some("s3cret")).is_ok());
        assert!(verify_shared_secret(&secret, Some("s3cre")).is_err());
        assert!(verify_shared_secret(&secret, None).is_err());
        assert!(verify_shared_secret(&SecretString::from(""), Some("")).is_err());
    }
}
