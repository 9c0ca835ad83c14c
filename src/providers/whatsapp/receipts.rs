//! WhatsApp's webhooks: message statuses (sent, delivered, read, failed), batched in one JSON
//! call, signed with `X-Hub-Signature-256` (HMAC-SHA256 of the body, keyed by the app's
//! secret); and the subscription check, a `GET` whose `hub.verify_token` must match.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::providers::receipts::{
    Receipt, ReceiptCall, ReceiptError, ReceiptHead, ReceiptReader, ReceiptStatus,
};

/// The header WhatsApp signs its webhooks with: `sha256=<hex>`.
pub const WHATSAPP_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Reads the webhooks of one WhatsApp app.
pub struct WhatsappReceipts {
    /// The app's secret; without it every webhook is refused.
    pub app_secret: Option<SecretString>,
    /// What the subscription check must give as `hub.verify_token`; without it every check
    /// is refused.
    pub verify_token: Option<SecretString>,
}

impl ReceiptReader for WhatsappReceipts {
    fn admit(&self, head: &ReceiptHead<'_>) -> Result<(), ReceiptError> {
        match (&self.app_secret, (head.header)(WHATSAPP_SIGNATURE_HEADER)) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(ReceiptError::Unauthenticated),
        }
    }

    fn read(&self, call: &ReceiptCall<'_>) -> Result<Vec<Receipt>, ReceiptError> {
        let secret = self
            .app_secret
            .as_ref()
            .ok_or(ReceiptError::Unauthenticated)?;
        let signature = (call.head.header)(WHATSAPP_SIGNATURE_HEADER);
        verify_whatsapp_signature(secret, call.body, signature.as_deref())?;
        parse_whatsapp(call.body)
    }

    fn confirm_subscription(
        &self,
        query: &[(String, String)],
    ) -> Option<Result<String, ReceiptError>> {
        let given = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let confirmed = match (&self.verify_token, given("hub.verify_token")) {
            (Some(expected), Some(token))
                if given("hub.mode") == Some("subscribe")
                    && bool::from(expected.expose_secret().as_bytes().ct_eq(token.as_bytes())) =>
            {
                given("hub.challenge")
                    .map(str::to_owned)
                    .ok_or(ReceiptError::MissingField("hub.challenge"))
            }
            _ => Err(ReceiptError::Unauthenticated),
        };
        Some(confirmed)
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body`, keyed by the app's secret.
pub fn whatsapp_signature(app_secret: &SecretString, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `X-Hub-Signature-256` (`signature`) in constant time.
pub fn verify_whatsapp_signature(
    app_secret: &SecretString,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), ReceiptError> {
    let given = signature.ok_or(ReceiptError::Unauthenticated)?.trim();
    let expected = whatsapp_signature(app_secret, body);
    if bool::from(
        expected
            .as_bytes()
            .ct_eq(given.to_ascii_lowercase().as_bytes()),
    ) {
        Ok(())
    } else {
        Err(ReceiptError::Unauthenticated)
    }
}

/// The parts of a webhook otpd reads: `entry[].changes[].value.statuses[]`.
#[derive(Deserialize)]
struct Webhook {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Default, Deserialize)]
struct ChangeValue {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    code: Option<u64>,
}

/// Every status a webhook carries that says where a message stands, in order; none for a
/// webhook about something else (an incoming message). `read` counts as delivered: the
/// person saw it. A status of another kind is passed over rather than refusing the batch,
/// which WhatsApp would post again and again.
pub fn parse_whatsapp(body: &[u8]) -> Result<Vec<Receipt>, ReceiptError> {
    let webhook: Webhook = serde_json::from_slice(body)
        .map_err(|error| ReceiptError::Unreadable(error.to_string()))?;
    Ok(webhook
        .entry
        .into_iter()
        .flat_map(|entry| entry.changes)
        .flat_map(|change| change.value.statuses)
        .filter_map(|status| {
            let state = match status.status.as_str() {
                "delivered" | "read" => ReceiptStatus::Delivered,
                "failed" => ReceiptStatus::Failed,
                "sent" => ReceiptStatus::Pending,
                _ => return None,
            };
            Some(Receipt {
                provider_message_id: status.id,
                status: state,
                error_code: status
                    .errors
                    .first()
                    .and_then(|error| error.code)
                    .map(|code| code.to_string()),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "app-secret-1";

    fn webhook() -> Vec<u8> {
        serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "statuses": [
                    {"id": "wamid.A", "status": "delivered", "timestamp": "1750263773",
                     "recipient_id": "4915112345678"},
                    {"id": "wamid.B", "status": "failed", "timestamp": "1750263774",
                     "recipient_id": "4915112345679",
                     "errors": [{"code": 131026, "title": "Message undeliverable"}]},
                    {"id": "wamid.C", "status": "read", "timestamp": "1750263775",
                     "recipient_id": "4915112345670"}
                ]}}]}]
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn every_status_of_a_batch_is_read() {
        let receipts = parse_whatsapp(&webhook()).unwrap();
        let read: Vec<(&str, ReceiptStatus, Option<&str>)> = receipts
            .iter()
            .map(|r| {
                (
                    r.provider_message_id.as_str(),
                    r.status,
                    r.error_code.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("wamid.A", ReceiptStatus::Delivered, None),
                ("wamid.B", ReceiptStatus::Failed, Some("131026")),
                ("wamid.C", ReceiptStatus::Delivered, None),
            ]
        );
        let incoming = br#"{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"messages": [{"from": "4915112345678", "type": "text"}]}}]}]}"#;
        assert!(parse_whatsapp(incoming).unwrap().is_empty());
        let unknown = br#"{"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.D", "status": "deleted"}]}}]}]}"#;
        assert!(parse_whatsapp(unknown).unwrap().is_empty());
        assert!(parse_whatsapp(b"not json").is_err());
    }

    #[test]
    fn the_signature_is_the_body_s_hmac_under_the_app_secret() {
        let secret = SecretString::from(SECRET);
        let body = webhook();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(whatsapp_signature(&secret, &body), expected);
        assert!(verify_whatsapp_signature(&secret, &body, Some(&expected)).is_ok());
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify_whatsapp_signature(&secret, &tampered, Some(&expected)),
            Err(ReceiptError::Unauthenticated)
        );
        assert!(
            verify_whatsapp_signature(&SecretString::from("other"), &body, Some(&expected))
                .is_err()
        );
        assert!(verify_whatsapp_signature(&secret, &body, None).is_err());
    }

    #[test]
    fn the_subscription_check_answers_the_challenge_only_to_the_right_token() {
        let reader = WhatsappReceipts {
            app_secret: None,
            verify_token: Some(SecretString::from("verify-1")),
        };
        let query = |mode: &str, token: &str| {
            vec![
                ("hub.mode".to_owned(), mode.to_owned()),
                ("hub.verify_token".to_owned(), token.to_owned()),
                ("hub.challenge".to_owned(), "1158201444".to_owned()),
            ]
        };
        assert_eq!(
            reader.confirm_subscription(&query("subscribe", "verify-1")),
            Some(Ok("1158201444".to_owned()))
        );
        assert_eq!(
            reader.confirm_subscription(&query("subscribe", "verify-2")),
            Some(Err(ReceiptError::Unauthenticated))
        );
        assert_eq!(
            reader.confirm_subscription(&query("unsubscribe", "verify-1")),
            Some(Err(ReceiptError::Unauthenticated))
        );
        let unset = WhatsappReceipts {
            app_secret: None,
            verify_token: None,
        };
        assert_eq!(
            unset.confirm_subscription(&query("subscribe", "")),
            Some(Err(ReceiptError::Unauthenticated))
        );
    }
}
