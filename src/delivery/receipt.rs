//! What a delivery receipt does to a verification, as a pure function.

use crate::domain::attempt::{self, AttemptReceipt};
use crate::domain::{DeliveryState, Timestamp, Verification};
use crate::providers::receipts::ReceiptStatus;
use crate::telemetry::platform::{at, Event};

/// A provider's delivery receipt for one send of a verification.
pub struct ProviderReceipt<'a> {
    pub provider: &'a str,
    pub send_seq: u32,
    pub status: ReceiptStatus,
    pub error_code: Option<&'a str>,
    pub at: Timestamp,
}

/// What a receipt changed on a verification.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptApplied {
    /// The new delivery state: the receipt was final and for the current send, not final yet.
    pub state: Option<DeliveryState>,
    /// Whether the record changed at all (its timeline keeps receipts of older sends too).
    pub changed: bool,
}

/// Records a final receipt on `record`: on the timeline entry of the send it reports and,
/// for the current send not yet final, as the verification's delivery state.
pub fn apply_receipt(record: &mut Verification, receipt: &ProviderReceipt) -> ReceiptApplied {
    let state = match receipt.status {
        ReceiptStatus::Delivered => DeliveryState::Delivered,
        ReceiptStatus::Failed => DeliveryState::Failed,
        ReceiptStatus::Pending => return ReceiptApplied::default(),
    };
    let noted = attempt::note_receipt(
        &mut record.timeline,
        receipt.send_seq,
        receipt.provider,
        AttemptReceipt {
            status: state,
            at: receipt.at,
            error_code: receipt.error_code.map(str::to_owned),
        },
    );
    let open = matches!(record.delivery, DeliveryState::Queued | DeliveryState::Sent);
    if record.send_seq != receipt.send_seq || !open {
        return ReceiptApplied {
            state: None,
            changed: noted,
        };
    }
    record.delivery = state;
    record.delivered_at = Some(receipt.at);
    record.updated_at = receipt.at;
    ReceiptApplied {
        state: Some(state),
        changed: true,
    }
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
    use crate::domain::AttemptOutcome;
    use crate::verify::rules::tests::{pending, START};

    fn receipt(send_seq: u32, status: ReceiptStatus) -> ProviderReceipt<'static> {
        ProviderReceipt {
            provider: "vonage",
            send_seq,
            status,
            error_code: None,
            at: START,
        }
    }

    #[test]
    fn a_delivered_receipt_marks_the_current_send() {
        let mut record = pending(None);
        record.delivery = DeliveryState::Sent;
        let applied = apply_receipt(&mut record, &receipt(1, ReceiptStatus::Delivered));
        assert_eq!(applied.state, Some(DeliveryState::Delivered));
        assert_eq!(record.delivered_at, Some(START));
    }

    #[test]
    fn receipts_for_older_sends_or_after_a_final_one_change_nothing() {
        let mut record = pending(None);
        record.send_seq = 2;
        assert_eq!(
            apply_receipt(&mut record, &receipt(1, ReceiptStatus::Failed)),
            ReceiptApplied::default()
        );
        record.delivery = DeliveryState::Delivered;
        assert_eq!(
            apply_receipt(&mut record, &receipt(2, ReceiptStatus::Failed)),
            ReceiptApplied::default()
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
            apply_receipt(&mut record, &receipt(1, ReceiptStatus::Pending)),
            ReceiptApplied::default()
        );
    }

    #[test]
    fn a_receipt_for_an_older_send_is_kept_on_its_timeline_entry_only() {
        let mut record = pending(None);
        let sent = |send| attempt::tests::attempt(send, "vonage", AttemptOutcome::Sent);
        let entries = [sent(1), sent(2)];
        attempt::keep(&mut record.timeline, &entries);
        record.send_seq = 2;
        record.delivery = DeliveryState::Sent;
        let applied = apply_receipt(&mut record, &receipt(1, ReceiptStatus::Delivered));
        assert_eq!(
            applied,
            ReceiptApplied {
                state: None,
                changed: true
            }
        );
        assert_eq!(
            record.delivery,
            DeliveryState::Sent,
            "the current send is still out"
        );
        assert_eq!(
            record.timeline[0].receipt.as_ref().map(|r| r.status),
            Some(DeliveryState::Delivered)
        );
        assert_eq!(record.timeline[1].receipt, None);
    }
}
