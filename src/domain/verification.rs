//! A verification: one destination's pending code, its attempts, its status and its delivery.

use super::random::OsRandom;
use super::{Channel, CodeHash, DeliveryAttempt, Timestamp, Workflow};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// `ver_` followed by 32 hex digits: 8 of the destination's slot (which partition of a
/// cluster holds it: `crate::domain::slot`), 8 of the second it was made (by which the store
/// keeps it), then 16 of OS randomness — unguessable, safe in URLs, and a check by id finds
/// its partition without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VerificationId(String);

/// `ver_` and the 32 hex digits.
const ID_LENGTH: usize = 4 + HEX_DIGITS;
const HEX_DIGITS: usize = 32;

impl VerificationId {
    /// A new id in `slot`, made at `now`: `ver_`, the slot, the second it was made (both
    /// eight hex digits) and sixteen random hex digits.
    pub fn generate_in(slot: u32, now: Timestamp) -> Self {
        let random = OsRandom.next_u64();
        // Seconds fit eight hex digits until 2106.
        let second = (now.0 / 1000) as u32;
        let mut id = String::with_capacity(ID_LENGTH);
        // Writing to a String cannot fail.
        let _ = write!(id, "ver_{slot:08x}{second:08x}{random:016x}");
        VerificationId(id)
    }

    /// A new id in a random slot (for tests and examples).
    pub fn generate() -> Self {
        Self::generate_in(OsRandom.next_u32(), Timestamp::now())
    }

    /// The slot the id was made in.
    pub fn slot(&self) -> u32 {
        self.0
            .get(4..12)
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .unwrap_or(0)
    }

    /// The eight hex digits after the slot: the second the id was made, in ids made since
    /// they carry it (the store keeps the records of a time together by them); random in
    /// ids made before. Empty for an id of another form (one read from a message).
    pub fn made(&self) -> &str {
        self.0.get(12..20).unwrap_or_default()
    }

    /// Accepts a caller's id if it has the form otpd gives ids; anything else cannot exist.
    pub fn parse(raw: &str) -> Option<Self> {
        let hex_part = raw.strip_prefix("ver_")?;
        let well_formed = hex_part.len() == HEX_DIGITS
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        well_formed.then(|| VerificationId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What follows `ver_`: the 32 hex digits of an id otpd made (all of an id of another
    /// form, one read from a message).
    pub fn digits(&self) -> &str {
        self.0.strip_prefix("ver_").unwrap_or(&self.0)
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
    /// The transaction the code confirms, if the create named one (PSD2 dynamic linking).
    /// Kept after the fields before it: a record stored before it existed reads with `None`
    /// (`store::records`).
    pub transaction: Option<Transaction>,
    /// The current code, sealed with the sealing key and bound to this verification, while
    /// it is pending and its tenant's resends send the same code (`resend_keeps_code`);
    /// never the code in clear. Last, for the same reason as `transaction`.
    pub kept_code: Option<Vec<u8>>,
    /// Every try to send its codes, the latest `attempt::TIMELINE_LENGTH`. Last, for the same
    /// reason as `transaction`.
    pub timeline: Vec<DeliveryAttempt>,
    /// The fallback workflow its code follows, if the create gave one (or its tenant has a
    /// default). Last, for the same reason as `transaction`.
    pub workflow: Option<Workflow>,
}

/// The transaction a code confirms (PSD2 dynamic linking): the amount and the payee the
/// person was shown. A verification bound to one approves only a check that names the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub amount: Option<String>,
    pub payee: Option<String>,
}

impl Transaction {
    /// `None` when neither part is given: a verification bound to nothing.
    pub fn of(amount: Option<String>, payee: Option<String>) -> Option<Self> {
        (amount.is_some() || payee.is_some()).then_some(Transaction { amount, payee })
    }

    /// Whether a check naming `given` names this transaction: every part bound here must be
    /// given, and the same.
    pub fn admits(&self, given: Option<&Transaction>) -> bool {
        let part_matches = |bound: &Option<String>, given: Option<&String>| match bound {
            Some(bound) => given == Some(bound),
            None => true,
        };
        part_matches(&self.amount, given.and_then(|g| g.amount.as_ref()))
            & part_matches(&self.payee, given.and_then(|g| g.payee.as_ref()))
    }
}

/// What a check presents besides the code, for the verifications bound to a session or a
/// transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presented {
    pub session_id: Option<String>,
    pub transaction: Option<Transaction>,
}

impl Verification {
    /// What a kept code is sealed to: this verification, and nothing else.
    pub fn kept_code_binding(&self) -> String {
        format!("kept:{}", self.id)
    }

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

    /// Lets go of what a verification that is over no longer needs: its kept code (nothing
    /// will send it again) and its workflow's next step.
    pub fn close_out(&mut self) {
        self.kept_code = None;
        if let Some(workflow) = &mut self.workflow {
            workflow.end();
        }
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
        let id = VerificationId::generate_in(0xdead_beef, Timestamp::now());
        assert!(id.as_str().starts_with("ver_deadbeef"));
        assert_eq!(id.slot(), 0xdead_beef);
        assert_eq!(VerificationId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn an_id_carries_the_second_it_was_made() {
        let id = VerificationId::generate_in(7, Timestamp::from_secs(0x6b49_d200));
        assert_eq!(id.made(), "6b49d200");
        assert_eq!(id.slot(), 7);
        let read: VerificationId = serde_json::from_str("\"ver_short\"").unwrap();
        assert_eq!((read.made(), read.slot()), ("", 0), "an id of another form");
    }

    #[test]
    fn a_transaction_admits_only_checks_naming_each_bound_part() {
        let both = Transaction::of(Some("10.00".into()), Some("Acme".into())).unwrap();
        let same = both.clone();
        assert!(both.admits(Some(&same)));
        assert!(!both.admits(None));
        let other_amount = Transaction::of(Some("10.01".into()), Some("Acme".into()));
        assert!(!both.admits(other_amount.as_ref()));
        let amount_only = Transaction::of(Some("10.00".into()), None);
        assert!(!both.admits(amount_only.as_ref()));
        let payee_bound = amount_only.unwrap();
        assert!(
            payee_bound.admits(Some(&same)),
            "an unbound part may be anything"
        );
        assert_eq!(Transaction::of(None, None), None);
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
