//! Records otpd keeps besides verifications: per-destination history, remembered idempotent
//! requests, blocklist entries, and tenants' and providers' usage. Plain data: the logic that
//! reads and counts them lives with the component that owns it (`access`, `quota`).

use super::period::PeriodCounter;
use super::{Channel, Timestamp, VerificationId};
use serde::{Deserialize, Serialize};

/// Identifies one destination of one tenant: a number or an address, kept under the
/// channel `Channel::destination_channel` names, whichever channel reaches it. Made by
/// `DestinationKey::new`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DestinationKey {
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
}

impl DestinationKey {
    /// The destination `to` of `tenant`, reached on `channel`.
    pub fn new(tenant: &str, channel: Channel, to: &str) -> Self {
        DestinationKey {
            tenant: tenant.to_owned(),
            channel: channel.destination_channel(),
            to: to.to_owned(),
        }
    }
}

/// What otpd remembers of a destination: its pending verification and its recent sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationState {
    pub pending: Option<VerificationId>,
    /// Send times within the send-limit window, oldest first.
    pub recent_sends: Vec<Timestamp>,
    /// When nothing in this record matters any more.
    pub purge_at: Timestamp,
    /// The destination's latest verifications, oldest first (at most
    /// `issuance::policy::RECENT_VERIFICATIONS`), for a support desk that has a number and
    /// nothing else. Last, so a record stored before it existed reads with none
    /// (`store::records`).
    pub recent: Vec<VerificationId>,
}

/// Identifies an `Idempotency-Key` of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub tenant: String,
    pub key: String,
}

/// The answer given to a create request, kept so an idempotent retry gets it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueReceipt {
    /// True for a new verification (201), false for a resend (200).
    pub created: bool,
    pub id: VerificationId,
    pub channel: Channel,
    pub to_masked: String,
    pub expires_at: Timestamp,
    pub resend_available_at: Timestamp,
    pub attempts_remaining: u32,
}

/// A remembered idempotent request: the hash of its body and the answer it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub body_hash: [u8; 32],
    pub receipt: IssueReceipt,
    pub expires_at: Timestamp,
}

impl IdempotencyRecord {
    /// Whether its key still stands for this request at `now`: until its time, however
    /// late the sweep comes.
    pub fn holds_at(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }
}

/// One blocked number or prefix of the operator's blocklist, with who added it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// `+` and 2 to 15 digits: a whole number or a prefix of numbers.
    pub entry: String,
    pub note: Option<String>,
    pub added_at: Timestamp,
    /// The tenant whose admin key added it.
    pub added_by: String,
}

/// A tenant's sends and the cost units they spent, within one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendsAndSpend {
    pub sends: u64,
    pub spend: u64,
}

impl SendsAndSpend {
    /// These counts with one more send costing `cost`.
    pub fn plus_send(self, cost: u64) -> Self {
        SendsAndSpend {
            sends: self.sends.saturating_add(1),
            spend: self.spend.saturating_add(cost),
        }
    }

    /// These counts with one send costing `cost` taken back out.
    pub fn minus_send(self, cost: u64) -> Self {
        SendsAndSpend {
            sends: self.sends.saturating_sub(1),
            spend: self.spend.saturating_sub(cost),
        }
    }
}

/// A tenant's usage in the current UTC clock hour and day, as stored; `access::caps` counts
/// it. Stored as each period's start, sends, spend: the layout of the windows before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUsage {
    pub hour: PeriodCounter<SendsAndSpend>,
    pub day: PeriodCounter<SendsAndSpend>,
}

/// A provider's messages within one period of its quota, and the alerts fired in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCount {
    pub used: u64,
    /// Bit `i` set: `quota::THRESHOLDS[i]` already fired in this period.
    pub fired: u8,
}

/// A provider's usage in the current UTC day and month, as stored; `quota` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub day: PeriodCounter<QuotaCount>,
    pub month: PeriodCounter<QuotaCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_record_holds_until_its_time() {
        let expires_at = Timestamp(1_800_000_000_000);
        let record = IdempotencyRecord {
            body_hash: [7; 32],
            receipt: IssueReceipt {
                created: true,
                id: VerificationId::generate(),
                channel: Channel::Sms,
                to_masked: "+234*****0000".into(),
                expires_at,
                resend_available_at: expires_at,
                attempts_remaining: 5,
            },
            expires_at,
        };
        assert!(record.holds_at(Timestamp(expires_at.0 - 1)));
        assert!(!record.holds_at(expires_at));
    }
}
