//! Vonage SMS delivery receipts (DLRs): form, query or JSON fields, authenticated by the shared
//! secret otpd puts in the callback URL it gives Vonage.

use secrecy::SecretString;

use crate::providers::receipts::{
    check_shared_secret, error_code, field, Receipt, ReceiptCall, ReceiptError, ReceiptHead,
    ReceiptReader, ReceiptStatus,
};

/// Reads one Vonage account's DLRs; `secret` is `receipt_secrets.<id>`.
pub struct VonageReceipts {
    pub secret: Option<SecretString>,
}

impl ReceiptReader for VonageReceipts {
    fn admit(&self, head: &ReceiptHead<'_>) -> Result<(), ReceiptError> {
        check_shared_secret(self.secret.as_ref(), head)
    }

    fn read(&self, call: &ReceiptCall<'_>) -> Result<Vec<Receipt>, ReceiptError> {
        let params = call.pairs()?;
        if field(&params, "uuid").is_some() && field(&params, "messageId").is_none() {
            return Ok(parse_vonage_call(&params).into_iter().collect());
        }
        parse_vonage(&params).map(|receipt| vec![receipt])
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
        error_code: error_code(params, "err-code"),
    })
}

/// Reads a call's event: `uuid`, `status`. An answered call had the text read: delivered.
/// Busy, unanswered, rejected, timed out, failed or cancelled: failed. An event without a
/// status otpd knows (Vonage posts every event of a call) says nothing of delivery: `None`,
/// taken and ignored.
pub fn parse_vonage_call(params: &[(String, String)]) -> Option<Receipt> {
    let status = match field(params, "status")? {
        "answered" | "completed" => ReceiptStatus::Delivered,
        "busy" | "cancelled" | "failed" | "rejected" | "timeout" | "unanswered" => {
            ReceiptStatus::Failed
        }
        "started" | "ringing" | "machine" | "human" => ReceiptStatus::Pending,
        _ => return None,
    };
    Some(Receipt {
        provider_message_id: field(params, "uuid")?.to_owned(),
        status,
        error_code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::receipts::pairs;
    use crate::providers::receipts::{params_from_json, parse_form, verify_shared_secret};

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

    #[test]
    fn a_call_s_events_map_to_receipts() {
        let body = br#"{"uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356", "status": "answered",
            "direction": "outbound", "conversation_uuid": "CON-1", "timestamp": "2026-12-04T13:00:00.000Z"}"#;
        let receipt = parse_vonage_call(&params_from_json(body).unwrap()).unwrap();
        assert_eq!(
            receipt.provider_message_id,
            "63f61863-4a51-4f6b-86e1-46edebcf9356"
        );
        assert_eq!(receipt.status, ReceiptStatus::Delivered);
        for (state, status) in [
            ("ringing", ReceiptStatus::Pending),
            ("unanswered", ReceiptStatus::Failed),
            ("busy", ReceiptStatus::Failed),
        ] {
            let params = pairs(&[("uuid", "u1"), ("status", state)]);
            assert_eq!(
                parse_vonage_call(&params).unwrap().status,
                status,
                "{state}"
            );
        }
        assert_eq!(parse_vonage_call(&pairs(&[("uuid", "u1")])), None);
        let odd = pairs(&[("uuid", "u1"), ("status", "transfer")]);
        assert_eq!(parse_vonage_call(&odd), None);
    }
}
