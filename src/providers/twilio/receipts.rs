//! Twilio status callbacks: form fields signed with `X-Twilio-Signature` (HMAC-SHA1 keyed by
//! the account's Auth Token), read into a `Receipt`.

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::providers::receipts::{
    error_code, field, parse_form, Receipt, ReceiptCall, ReceiptError, ReceiptHead, ReceiptReader,
    ReceiptStatus,
};

/// The header Twilio signs its callbacks with.
pub const TWILIO_SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Reads the status callbacks of one Twilio account.
pub struct TwilioReceipts {
    pub auth_token: SecretString,
}

impl ReceiptReader for TwilioReceipts {
    /// A call without Twilio's signature header is refused before its body is read; the
    /// signature itself covers the body, and is checked by `read`.
    fn admit(&self, head: &ReceiptHead<'_>) -> Result<(), ReceiptError> {
        (head.header)(TWILIO_SIGNATURE_HEADER)
            .map(|_| ())
            .ok_or(ReceiptError::Unauthenticated)
    }

    fn read(&self, call: &ReceiptCall<'_>) -> Result<Vec<Receipt>, ReceiptError> {
        let params = parse_form(call.body)?;
        let signature = (call.head.header)(TWILIO_SIGNATURE_HEADER);
        verify_twilio_signature(
            &self.auth_token,
            call.head.url,
            &params,
            signature.as_deref(),
        )?;
        if is_call(&params) {
            return Ok(parse_twilio_call(&params).into_iter().collect());
        }
        parse_twilio(&params).map(|receipt| vec![receipt])
    }
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

/// Whether a callback is about a call rather than a message.
fn is_call(params: &[(String, String)]) -> bool {
    field(params, "CallSid").is_some() && field(params, "MessageSid").is_none()
}

/// Reads a Twilio message status callback: `MessageSid`, `MessageStatus` (queued, sending,
/// sent, delivered, undelivered, failed, …), `ErrorCode`.
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
        error_code: error_code(params, "ErrorCode"),
    })
}

/// Reads a call's status callback: `CallSid`, `CallStatus`. A completed call was answered
/// and the text read: delivered. Busy, unanswered, failed or canceled: failed. A callback
/// without a status otpd knows says nothing of delivery: `None`, taken and ignored.
pub fn parse_twilio_call(params: &[(String, String)]) -> Option<Receipt> {
    let status = match field(params, "CallStatus")? {
        "completed" => ReceiptStatus::Delivered,
        "busy" | "no-answer" | "failed" | "canceled" => ReceiptStatus::Failed,
        "queued" | "initiated" | "ringing" | "in-progress" => ReceiptStatus::Pending,
        _ => return None,
    };
    Some(Receipt {
        provider_message_id: field(params, "CallSid")?.to_owned(),
        status,
        error_code: error_code(params, "ErrorCode"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::receipts::pairs;

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
    fn a_call_s_status_maps_to_a_receipt() {
        for (state, status) in [
            ("ringing", ReceiptStatus::Pending),
            ("in-progress", ReceiptStatus::Pending),
            ("completed", ReceiptStatus::Delivered),
            ("no-answer", ReceiptStatus::Failed),
            ("busy", ReceiptStatus::Failed),
        ] {
            let params = pairs(&[
                ("CallSid", "CA1"),
                ("CallStatus", state),
                ("AccountSid", "AC1"),
            ]);
            let receipt = parse_twilio_call(&params).unwrap();
            assert_eq!(receipt.provider_message_id, "CA1");
            assert_eq!(receipt.status, status, "{state}");
        }
        assert_eq!(parse_twilio_call(&pairs(&[("CallSid", "CA1")])), None);
        let odd = pairs(&[("CallSid", "CA1"), ("CallStatus", "transferred")]);
        assert_eq!(parse_twilio_call(&odd), None);
    }
}
