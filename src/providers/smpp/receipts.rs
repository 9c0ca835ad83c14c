//! SMPP delivery receipts: a `deliver_sm` whose `esm_class` says "MC delivery receipt",
//! read from its `receipted_message_id` and `message_state` TLVs, or, where the SMSC gives
//! only the text, from `id:… stat:… err:…` (SMPP 3.4, appendix B).

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::values::MessageState;

use crate::providers::receipts::{Receipt, ReceiptStatus};

/// The `esm_class` bits of a message type, and the one of a delivery receipt.
const MESSAGE_TYPE_BITS: u8 = 0b0011_1100;
const DELIVERY_RECEIPT: u8 = 0b0000_0100;

/// The receipt `delivered` carries; `None` when it is no receipt (a message from a person)
/// or names no message.
pub fn receipt_of(delivered: &DeliverSm) -> Option<Receipt> {
    if !is_receipt(delivered) {
        return None;
    }
    let text = String::from_utf8_lossy(delivered.short_message().as_ref()).into_owned();
    let mut id = text_field(&text, "id:").map(str::to_owned);
    let mut status = text_field(&text, "stat:").and_then(status_of_text);
    for tlv in delivered.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(receipted)) => {
                id = Some(receipted.as_str().to_owned())
            }
            Some(TlvValue::MessageState(state)) => status = Some(status_of_state(*state)),
            _ => {}
        }
    }
    Some(Receipt {
        provider_message_id: id.filter(|id| !id.is_empty())?,
        status: status?,
        error_code: text_field(&text, "err:")
            .filter(|code| code.bytes().any(|b| b != b'0'))
            .map(str::to_owned),
    })
}

/// Whether `delivered` says it is a delivery receipt (its `esm_class`).
pub fn is_receipt(delivered: &DeliverSm) -> bool {
    u8::from(delivered.esm_class) & MESSAGE_TYPE_BITS == DELIVERY_RECEIPT
}

/// The word after `name` in a receipt's text.
fn text_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let at = text.find(name)? + name.len();
    text[at..].split_whitespace().next()
}

fn status_of_text(stat: &str) -> Option<ReceiptStatus> {
    Some(match stat {
        "DELIVRD" => ReceiptStatus::Delivered,
        "EXPIRED" | "DELETED" | "UNDELIV" | "REJECTD" => ReceiptStatus::Failed,
        "ACCEPTD" | "ENROUTE" | "UNKNOWN" => ReceiptStatus::Pending,
        _ => return None,
    })
}

fn status_of_state(state: MessageState) -> ReceiptStatus {
    match state {
        MessageState::Delivered => ReceiptStatus::Delivered,
        MessageState::Expired
        | MessageState::Deleted
        | MessageState::Undeliverable
        | MessageState::Rejected => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::EsmClass;
    use std::str::FromStr;

    fn receipt(text: &str, esm_class: u8) -> DeliverSm {
        DeliverSm::builder()
            .esm_class(EsmClass::from(esm_class))
            .short_message(OctetString::from_str(text).unwrap())
            .build()
    }

    #[test]
    fn the_text_form_is_read() {
        let text = "id:0A1B sub:001 dlvrd:001 submit date:2612041300 done date:2612041300 stat:UNDELIV err:034 text:";
        let read = receipt_of(&receipt(text, 0x04)).unwrap();
        assert_eq!(read.provider_message_id, "0A1B");
        assert_eq!(read.status, ReceiptStatus::Failed);
        assert_eq!(read.error_code.as_deref(), Some("034"));
        let delivered = receipt_of(&receipt("id:7 stat:DELIVRD err:000", 0x04)).unwrap();
        assert_eq!(
            (delivered.status, delivered.error_code),
            (ReceiptStatus::Delivered, None)
        );
    }

    #[test]
    fn the_tlvs_win_over_the_text_and_a_message_from_a_person_is_no_receipt() {
        let mut delivered = receipt("id:WRONG stat:ENROUTE", 0x04);
        delivered.push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
            COctetString::from_str("0A1B").unwrap(),
        ));
        delivered.push_tlv(MessageDeliveryRequestTlvValue::MessageState(
            MessageState::Delivered,
        ));
        let read = receipt_of(&delivered).unwrap();
        assert_eq!(read.provider_message_id, "0A1B");
        assert_eq!(read.status, ReceiptStatus::Delivered);
        assert_eq!(receipt_of(&receipt("STOP", 0x00)), None);
        assert_eq!(receipt_of(&receipt("id:1 stat:LOST", 0x04)), None);
    }
}
