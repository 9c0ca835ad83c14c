//! Delivery receipts: parses Twilio status callbacks and Vonage DLRs into a vendor-neutral
//! `Receipt`, and authenticates them (Twilio's `X-Twilio-Signature`; a shared secret for
//! Vonage).
//!
//! Vonage DLRs are authenticated by a shared secret that otpd puts in the callback URL it
//! gives Vonage, e.g. `https://otpd.example/v1/providers/vonage/receipts?secret=…`; the route
//! passes the `secret` query parameter (or, for a proxy that moves it, the
//! `X-Otpd-Receipt-Secret` header) to [`verify_shared_secret`].

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The header Twilio signs its callbacks with.
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";
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

fn field<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// Twilio's signature of a request: base64 of HMAC-SHA1, keyed by the Auth Token, over the
/// full URL Twilio called (scheme through query string) followed by each POST parameter's
/// name and value, no separators, parameters sorted by name (byte order, case-sensitive).
pub fn twilio_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `X-Twilio-Signature` (`signature`) in constant time.
pub fn verify_twilio_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<(), ReceiptError> {
    let given = signature.ok_or(ReceiptError::Unauthenticated)?.trim();
    let expected = twilio_signature(auth_token, url, params);
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(ReceiptError::Unauthenticated)
    }
}

/// Reads a Twilio status callback: `MessageSid`, `MessageStatus` (queued, sending, sent,
/// delivered, undelivered, failed, …), `ErrorCode`.
pub fn parse_twilio(params: &[(String, String)]) -> Result<Receipt, ReceiptError> {
    let sid = field(params, "MessageSid")
        .or_else(|| field(params, "SmsSid"))
        .ok_or(ReceiptError::MissingField("MessageSid"))?;
    let state = field(params, "MessageStatus")
        .or_else(|| field(params, "SmsStatus"))
        .ok_or(ReceiptError::MissingField("MessageStatus"))?;
    let status = match state {
        "delivered" | "read" => ReceiptStatus::Delivered,
        "undelivered" | "failed" | "canceled" => ReceiptStatus::Failed,
        "accepted" | "scheduled" | "queued" | "sending" | "sent" => ReceiptStatus::Pending,
        other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
    };
    Ok(Receipt {
        provider_message_id: sid.to_owned(),
        status,
        error_code: field(params, "ErrorCode")
            .filter(|code| *code != "0")
            .map(str::to_owned),
    })
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

/// Reads a Vonage SMS delivery receipt (query string, form or JSON turned into pairs):
/// `messageId`, `status` (delivered, expired, failed, rejected, accepted, buffered,
/// unknown), `err-code`.
pub fn parse_vonage(params: &[(String, String)]) -> Result<Receipt, ReceiptError> {
    let id = field(params, "messageId").ok_or(ReceiptError::MissingField("messageId"))?;
    let state = field(params, "status").ok_or(ReceiptError::MissingField("status"))?;
    let status = match state {
        "delivered" => ReceiptStatus::Delivered,
        "expired" | "failed" | "rejected" => ReceiptStatus::Failed,
        "accepted" | "buffered" | "unknown" => ReceiptStatus::Pending,
        other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
    };
    Ok(Receipt {
        provider_message_id: id.to_owned(),
        status,
        error_code: field(params, "err-code")
            .filter(|code| *code != "0")
            .map(str::to_owned),
    })
}

/// Reads otpd's own receipt format, for the generic HTTP provider and the sandbox:
/// `message_id`, `status` (delivered, failed or pending), optional `error_code`.
pub fn parse_generic(params: &[(String, String)]) -> Result<Receipt, ReceiptError> {
    let id = field(params, "message_id").ok_or(ReceiptError::MissingField("message_id"))?;
    let state = field(params, "status").ok_or(ReceiptError::MissingField("status"))?;
    let status = match state {
        "delivered" => ReceiptStatus::Delivered,
        "failed" => ReceiptStatus::Failed,
        "pending" => ReceiptStatus::Pending,
        other => return Err(ReceiptError::UnknownStatus(other.to_owned())),
    };
    Ok(Receipt {
        provider_message_id: id.to_owned(),
        status,
        error_code: field(params, "error_code").map(str::to_owned),
    })
}

/// Turns a JSON DLR body (Vonage can POST JSON) into the pairs `parse_vonage` reads.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    const URL: &str = "https://otpd.example.com/v1/providers/twilio/receipts?tenant=acme";

    fn callback() -> Vec<(String, String)> {
        pairs(&[
            ("MessageStatus", "delivered"),
            ("To", "+4915112345678"),
            ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("ErrorCode", "0"),
        ])
    }

    /// The documented algorithm spelled out by hand: URL, then sorted name+value pairs.
    fn reference_signature(token: &str) -> String {
        let data = format!(
            "{URL}AccountSidAC0123456789abcdef0123456789abcdef\
             ErrorCode0\
             MessageSidSM0123456789abcdef0123456789abcdef\
             MessageStatusdelivered\
             To+4915112345678"
        );
        let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(data.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn twilio_signature_follows_the_documented_algorithm() {
        let token = SecretString::from("12345");
        let expected = reference_signature("12345");
        assert_eq!(twilio_signature(&token, URL, &callback()), expected);
        assert_eq!(expected.len(), 28, "base64 of 20 bytes");
        assert!(verify_twilio_signature(&token, URL, &callback(), Some(&expected)).is_ok());
    }

    #[test]
    fn twilio_signature_matches_a_known_vector() {
        // Twilio's documented example: URL with query, five POST params, token 12345.
        let token = SecretString::from("12345");
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            twilio_signature(&token, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn tampered_twilio_callbacks_fail() {
        let token = SecretString::from("12345");
        let good = reference_signature("12345");
        let mut tampered = callback();
        tampered[0].1 = "failed".into();
        assert_eq!(
            verify_twilio_signature(&token, URL, &tampered, Some(&good)),
            Err(ReceiptError::Unauthenticated)
        );
        let other_url = "https://otpd.example.com/v1/providers/twilio/receipts";
        assert!(verify_twilio_signature(&token, other_url, &callback(), Some(&good)).is_err());
        let wrong_token = SecretString::from("54321");
        assert!(verify_twilio_signature(&wrong_token, URL, &callback(), Some(&good)).is_err());
        assert!(verify_twilio_signature(&token, URL, &callback(), None).is_err());
    }

    #[test]
    fn twilio_statuses_map_to_receipts() {
        let receipt = parse_twilio(&callback()).unwrap();
        assert_eq!(
            receipt.provider_message_id,
            "SM0123456789abcdef0123456789abcdef"
        );
        assert_eq!(receipt.status, ReceiptStatus::Delivered);
        assert_eq!(receipt.error_code, None);
        for (state, status) in [
            ("queued", ReceiptStatus::Pending),
            ("sent", ReceiptStatus::Pending),
            ("undelivered", ReceiptStatus::Failed),
            ("failed", ReceiptStatus::Failed),
        ] {
            let params = pairs(&[
                ("MessageSid", "SM1"),
                ("MessageStatus", state),
                ("ErrorCode", "30003"),
            ]);
            let receipt = parse_twilio(&params).unwrap();
            assert_eq!(receipt.status, status);
            assert_eq!(receipt.error_code.as_deref(), Some("30003"));
        }
        assert_eq!(
            parse_twilio(&pairs(&[("MessageStatus", "sent")])),
            Err(ReceiptError::MissingField("MessageSid"))
        );
        assert!(matches!(
            parse_twilio(&pairs(&[("MessageSid", "SM1"), ("MessageStatus", "lost")])),
            Err(ReceiptError::UnknownStatus(_))
        ));
    }

    #[test]
    fn vonage_receipts_map_and_need_the_secret() {
        let body = b"msisdn=4915112345678&to=Acme&messageId=0C000000217B7F02&status=rejected&err-code=6&scts=2001011400";
        let params = parse_form(body).unwrap();
        let receipt = parse_vonage(&params).unwrap();
        assert_eq!(receipt.provider_message_id, "0C000000217B7F02");
        assert_eq!(receipt.status, ReceiptStatus::Failed);
        assert_eq!(receipt.error_code.as_deref(), Some("6"));

        let json =
            br#"{"messageId":"0C01","status":"delivered","err-code":"0","msisdn":"4915112345678"}"#;
        let receipt = parse_vonage(&params_from_json(json).unwrap()).unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Delivered);
        assert_eq!(receipt.error_code, None);
        for (state, status) in [
            ("buffered", ReceiptStatus::Pending),
            ("expired", ReceiptStatus::Failed),
        ] {
            let params = pairs(&[("messageId", "1"), ("status", state)]);
            assert_eq!(parse_vonage(&params).unwrap().status, status);
        }

        let secret = SecretString::from("s3cret");
        assert!(verify_shared_secret(&secret, Some("s3cret")).is_ok());
        assert!(verify_shared_secret(&secret, Some("s3cre")).is_err());
        assert!(verify_shared_secret(&secret, None).is_err());
        assert!(verify_shared_secret(&SecretString::from(""), Some("")).is_err());
    }
}
