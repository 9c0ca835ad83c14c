//! Decoding what arrives on the broker, as pure functions: OTP requests from platforms, and
//! delivery jobs between nodes. A refusal names the `x-otpd-reason` of its dead letter.

use serde::Deserialize;

use crate::caller_json;
use crate::domain::DeliveryJob;
use crate::issuance::request::{canonical_hash, validate, CreateFields, RequestDefaults};
use crate::issuance::IssueRequest;

/// The largest request message otpd accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
const MAX_REQUEST_ID_LENGTH: usize = 255;

/// A request ready to issue.
#[derive(Debug, Clone)]
pub struct BrokerRequest {
    pub request_id: String,
    pub tenant: String,
    pub request: IssueRequest,
    /// SHA-256 of the canonical JSON, so a republished request is recognised.
    pub body_hash: [u8; 32],
}

/// A message otpd will not process; it goes to the dead-letter queue once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The `x-otpd-reason` header and the error code of the rejected event.
    pub reason: &'static str,
    pub message: String,
    pub request_id: Option<String>,
    /// The tenant as the message named it, if it is a well-formed name.
    pub tenant: Option<String>,
}

/// Refuses a request whose `reply_to` names one of otpd's own queues (`is_own`): otpd would
/// read its own answer as a message.
pub fn check_reply_to(
    reply_to: Option<&str>,
    is_own: impl Fn(&str) -> bool,
) -> Result<(), Refusal> {
    match reply_to {
        Some(queue) if is_own(queue) => Err(Refusal {
            reason: "reply_to_own_queue",
            message: format!(
                "reply_to names '{queue}', one of otpd's own queues; name a queue of the platform's, or amq.rabbitmq.reply-to."
            ),
            request_id: None,
            tenant: None,
        }),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct Envelope {
    request_id: Option<serde_json::Value>,
    tenant: Option<serde_json::Value>,
}

/// Decodes and validates a request message. `is_tenant` says whether a tenant exists.
pub fn decode_request(
    bytes: &[u8],
    is_tenant: impl Fn(&str) -> bool,
    defaults: &RequestDefaults,
) -> Result<BrokerRequest, Refusal> {
    let refuse =
        |reason, message: String, request_id: Option<&str>, tenant: Option<&str>| Refusal {
            reason,
            message,
            request_id: request_id.map(str::to_owned),
            tenant: tenant
                .filter(|t| crate::domain::is_name(t))
                .map(str::to_owned),
        };
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(refuse(
            "too_large",
            format!("The message is larger than {MAX_MESSAGE_BYTES} bytes."),
            None,
            None,
        ));
    }
    let tree = caller_json::parse(bytes).map_err(|refusal| {
        refuse(
            "invalid_json",
            format!("The message is not valid JSON: {refusal}."),
            None,
            None,
        )
    })?;
    let not_an_object = || {
        refuse(
            "invalid_request",
            "The message must be a JSON object.".into(),
            None,
            None,
        )
    };
    if !tree.is_object() {
        return Err(not_an_object());
    }
    let envelope = Envelope::deserialize(&tree).map_err(|_| not_an_object())?;
    let tenant = envelope
        .tenant
        .as_ref()
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let request_id = envelope
        .request_id
        .as_ref()
        .and_then(|id| id.as_str())
        .filter(|id| !id.is_empty() && id.chars().count() <= MAX_REQUEST_ID_LENGTH)
        .map(str::to_owned)
        .ok_or_else(|| {
            refuse(
                "missing_request_id",
                format!("'request_id' must be a string of 1 to {MAX_REQUEST_ID_LENGTH} characters; it makes the request idempotent."),
                None,
                tenant.as_deref(),
            )
        })?;
    let tenant = tenant.filter(|t| is_tenant(t)).ok_or_else(|| {
        refuse(
            "unknown_tenant",
            "'tenant' must name a configured tenant (see `otpd tenant add`).".into(),
            Some(&request_id),
            None,
        )
    })?;
    let body_hash = canonical_hash(&tree);
    let fields: CreateFields = caller_json::fields(tree).map_err(|refusal| {
        refuse(
            "invalid_request",
            format!("The message does not have the expected fields: {refusal}."),
            Some(&request_id),
            Some(&tenant),
        )
    })?;
    let request = validate(fields, defaults).map_err(|error| {
        refuse(
            error.code(),
            error.to_string(),
            Some(&request_id),
            Some(&tenant),
        )
    })?;
    Ok(BrokerRequest {
        request_id,
        tenant,
        request,
        body_hash,
    })
}

pub fn encode_job(job: &DeliveryJob) -> Vec<u8> {
    postcard::to_stdvec(job).unwrap_or_default()
}

pub fn decode_job(bytes: &[u8]) -> Option<DeliveryJob> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reply_to_one_of_otpds_queues_is_refused_and_any_other_is_not() {
        let is_own = |queue: &str| queue == "otp.requests";
        let refusal = super::check_reply_to(Some("otp.requests"), is_own).unwrap_err();
        assert_eq!(refusal.reason, "reply_to_own_queue");
        assert!(refusal.message.contains("otp.requests"));
        assert!(super::check_reply_to(Some("platform.replies"), is_own).is_ok());
        assert!(super::check_reply_to(None, is_own).is_ok());
    }

    use super::*;

    const DEFAULTS: RequestDefaults = RequestDefaults {
        code_length: 6,
        ttl_seconds: 300,
    };

    fn decode(bytes: &[u8]) -> Result<BrokerRequest, Refusal> {
        decode_request(bytes, |t| t == "acme", &DEFAULTS)
    }

    #[test]
    fn decodes_a_valid_request() {
        let request = decode(
            br#"{"request_id":"r-1","tenant":"acme","to":"+4915112345678","channel":"sms","ttl_seconds":60}"#,
        )
        .unwrap();
        assert_eq!(request.request_id, "r-1");
        assert_eq!(request.request.ttl.as_secs(), 60);
    }

    #[test]
    fn each_fault_has_its_reason() {
        let cases: [(&[u8], &str); 8] = [
            (b"not json", "invalid_json"),
            (
                br#"{"request_id":"r","tenant":"acme","to":"+4915112345678","to":"+4915112345679","channel":"sms"}"#,
                "invalid_json",
            ),
            (b"[1,2]", "invalid_request"),
            (
                br#"{"tenant":"acme","to":"+4915112345678","channel":"sms"}"#,
                "missing_request_id",
            ),
            (
                br#"{"request_id":"r","tenant":"ghost","to":"+4915112345678","channel":"sms"}"#,
                "unknown_tenant",
            ),
            (
                br#"{"request_id":"r","tenant":"acme","channel":"sms"}"#,
                "invalid_request",
            ),
            (
                br#"{"request_id":"r","tenant":"acme","to":"+49123","channel":"sms"}"#,
                "invalid_destination",
            ),
            (
                br#"{"request_id":"r","tenant":"acme","to":"+4915112345678","channel":"fax"}"#,
                "invalid_request",
            ),
        ];
        for (bytes, reason) in cases {
            let refusal = decode(bytes).unwrap_err();
            assert_eq!(refusal.reason, reason, "{}", String::from_utf8_lossy(bytes));
        }
        let oversized = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(decode(&oversized).unwrap_err().reason, "too_large");
    }

    #[test]
    fn a_refusal_never_repeats_a_value_the_message_held() {
        let refusal = decode(
            br#"{"request_id":"r","tenant":"acme","to":4915112345678,"channel":"sms","ttl_seconds":"779017"}"#,
        )
        .unwrap_err();
        assert_eq!(refusal.reason, "invalid_request");
        assert!(
            refusal.message.contains("'to' must be a string"),
            "{}",
            refusal.message
        );
        assert!(
            !refusal.message.contains("4915112345678"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn refusals_keep_what_is_known_for_the_rejected_event() {
        let refusal =
            decode(br#"{"request_id":"r-9","tenant":"acme","to":"+49123","channel":"sms"}"#)
                .unwrap_err();
        assert_eq!(refusal.request_id.as_deref(), Some("r-9"));
        assert_eq!(refusal.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn the_same_request_hashes_the_same_whatever_the_key_order() {
        let a =
            decode(br#"{"request_id":"r","tenant":"acme","to":"+4915112345678","channel":"sms"}"#)
                .unwrap();
        let b =
            decode(br#"{"channel":"sms","to":"+4915112345678","tenant":"acme","request_id":"r"}"#)
                .unwrap();
        assert_eq!(a.body_hash, b.body_hash);
    }
}
