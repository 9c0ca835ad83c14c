//! A verification: one destination's pending code, its attempts, its status and its delivery.

use super::{Channel, CodeHash, Timestamp};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `ver_` followed by 32 hex digits: 8 of the destination's slot (which partition of a
/// cluster holds it: `crate::domain::slot`), then 24 of OS randomness — unguessable, safe in
/// URLs, and a check by id finds its partition without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VerificationId(String);

impl VerificationId {
    /// A new id in `slot`.
    pub fn generate_in(slot: u32) -> Self {
        let mut random = [0u8; 12];
        OsRng.fill_bytes(&mut random);
        VerificationId(format!("ver_{slot:08x}{}", hex::encode(random)))
    }

    /// A new id in a random slot (for tests and examples).
    pub fn generate() -> Self {
        Self::generate_in(OsRng.next_u32())
    }

    /// The slot the id was made in.
    pub fn slot(&self) -> u32 {
        self.0
            .get(4..12)
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .unwrap_or(0)
    }

    /// Accepts a caller's id if it has the form otpd gives ids; anything else cannot exist.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex_part = raw.strip_prefix("ver_")?;
        let well_formed = hex_part.len() == 32
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| VerificationId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a verification stands. `Expired` is never stored: it is derived from `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Canceled => "canceled",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Expired => "expired",
        }
    }
}

/// How far the current code's message has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Queued,
    Sent,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// The stored record of a verification. It holds the code only as an HMAC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub id: VerificationId,
    pub tenant: String,
    pub channel: Channel,
    /// Canonical destination (E.164 or address).
    pub to: String,
    pub country: Option<String>,
    pub locale: Option<String>,
    pub template: String,
    pub session_id: Option<String>,
    pub code_hash: CodeHash,
    pub code_length: u8,
    /// Which send this is: 1 for the first code, +1 for each resend. A delivery job for an
    /// older send is stale: its code is dead.
    pub send_seq: u32,
    pub status: Status,
    pub attempts_used: u32,
    pub max_attempts: u32,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_sent_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivery: DeliveryState,
    pub provider: Option<String>,
    pub sent_at: Option<Timestamp>,
    /// When the provider reported the message delivered (or failed).
    pub delivered_at: Option<Timestamp>,
}

impl Verification {
    /// The status as a caller sees it at `now`: a pending one past its expiry is `Expired`.
    pub fn status_at(&self, now: Timestamp) -> Status {
        if self.status == Status::Pending && self.is_expired(now) {
            Status::Expired
        } else {
            self.status
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Whether this verification still waits for a code at `now`.
    pub fn is_pending(&self, now: Timestamp) -> bool {
        self.status_at(now) == Status::Pending
    }

    pub fn attempts_remaining(&self) -> u32 {
        self.max_attempts.saturating_sub(self.attempts_used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_parse_back() {
        let a = VerificationId::generate();
        let b = VerificationId::generate();
        assert_ne!(a, b);
        assert_eq!(VerificationId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn an_id_carries_its_slot() {
        let id = VerificationId::generate_in(0xdead_beef);
        assert!(id.as_str().starts_with("ver_deadbeef"));
        assert_eq!(id.slot(), 0xdead_beef);
        assert_eq!(VerificationId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn parse_refuses_foreign_ids() {
        for raw in [
            "",
            "ver_",
            "ver_xyz",
            "abc",
            "ver_0123456789ABCDEF0123456789abcdef",
        ] {
            assert!(VerificationId::parse(raw).is_none(), "{raw}");
        }
    }
}
