//! What a delivery receipt does to a verification, as a pure function.

use crate::domain::{DeliveryState, Timestamp, Verification};
use crate::providers::receipts::ReceiptStatus;
use crate::telemetry::platform::{at, Event};

/// Records a final receipt for send `send_seq` on `record`. Returns the new delivery state,
/// or `None` when the receipt changes nothing (not final, for an older send, or already final).
pub fn apply_receipt(
    record: &mut Verification,
    send_seq: u32,
    status: ReceiptStatus,
    now: Timestamp,
) -> Option<DeliveryState> {
    let state = match status {
        ReceiptStatus::Delivered => DeliveryState::Delivered,
        ReceiptStatus::Failed => DeliveryState::Failed,
        ReceiptStatus::Pending => return None,
    };
    let open = matches!(record.delivery, DeliveryState::Queued | DeliveryState::Sent);
    if record.send_seq != send_seq || !open {
        return None;
    }
    record.delivery = state;
    record.delivered_at = Some(now);
    record.updated_at = now;
    Some(state)
}

/// The event that tells the platform what a receipt recorded.
pub fn receipt_event(
    record: &Verification,
    provider: &str,
    state: DeliveryState,
    error_code: Option<&str>,
    now: Timestamp,
) -> Event {
    if state == DeliveryState::Delivered {
        Event::DeliveryDelivered {
            id: record.id.to_string(),
            tenant: record.tenant.clone(),
            channel: record.channel,
            provider: provider.to_owned(),
            at: at(now),
        }
    } else {
        Event::DeliveryFailed {
            id: record.id.to_string(),
            tenant: record.tenant.clone(),
            channel: record.channel,
            provider: provider.to_owned(),
            reason: format!(
                "the provider reported the message undelivered (error {})",
                error_code.unwrap_or("unknown")
            ),
            at: at(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rules::tests::{pending, START};

    #[test]
    fn a_delivered_receipt_marks_the_current_send() {
        let mut record = pending(None);
        record.delivery = DeliveryState::Sent;
        let state = apply_receipt(&mut record, 1, ReceiptStatus::Delivered, START);
        assert_eq!(state, Some(DeliveryState::Delivered));
        assert_eq!(record.delivered_at, Some(START));
    }

    #[test]
    fn receipts_for_older_sends_or_after_a_final_one_change_nothing() {
        let mut record = pending(None);
        record.send_seq = 2;
        assert_eq!(
            apply_receipt(&mut record, 1, ReceiptStatus::Failed, START),
            None
        );
        record.delivery = DeliveryState::Delivered;
        assert_eq!(
            apply_receipt(&mut record, 2, ReceiptStatus::Failed, START),
            None
        );
        assert_eq!(record.delivery, DeliveryState::Delivered);
    }

    #[test]
    fn a_failed_receipt_tells_the_platform_the_provider_error() {
        let record = pending(None);
        let event = receipt_event(&record, "vonage", DeliveryState::Failed, Some("6"), START);
        assert_eq!(event.routing_key(), "delivery.failed.acme");
        assert!(String::from_utf8(event.to_json())
            .unwrap()
            .contains("error 6"));
        let delivered = receipt_event(&record, "vonage", DeliveryState::Delivered, None, START);
        assert_eq!(delivered.routing_key(), "delivery.delivered.acme");
    }

    #[test]
    fn pending_receipts_are_not_final() {
        let mut record = pending(None);
        assert_eq!(
            apply_receipt(&mut record, 1, ReceiptStatus::Pending, START),
            None
        );
    }
}
