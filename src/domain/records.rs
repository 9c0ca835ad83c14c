//! Records the issuance policy keeps besides verifications: per-destination history and
//! remembered idempotent requests.

use super::{Channel, Timestamp, VerificationId};
use serde::{Deserialize, Serialize};

/// Identifies one destination of one tenant on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DestinationKey {
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
}

/// What otpd remembers of a destination: its pending verification and its recent sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DestinationState {
    pub pending: Option<VerificationId>,
    /// Send times within the send-limit window, oldest first.
    pub recent_sends: Vec<Timestamp>,
    /// When nothing in this record matters any more.
    pub purge_at: Timestamp,
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
