//! What one check or cancel does to a verification, as pure functions of the record and `now`.

use subtle::ConstantTimeEq;

use crate::domain::{CodeHash, Presented, Status, Timestamp, Verification};

/// The answer to an evaluated check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckOutcome {
    pub valid: bool,
    pub status: Status,
    pub attempts_remaining: u32,
}

/// Why a check or cancel is refused without evaluating anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CheckRefusal {
    AlreadyApproved,
    MaxAttemptsReached,
    Canceled,
    Expired,
}

/// Refuses what can no longer be checked, canceled or sent again at `now`.
pub fn ensure_pending(record: &Verification, now: Timestamp) -> Result<(), CheckRefusal> {
    match record.status_at(now) {
        Status::Pending if record.attempts_remaining() > 0 => Ok(()),
        Status::Pending | Status::MaxAttemptsReached => Err(CheckRefusal::MaxAttemptsReached),
        Status::Approved => Err(CheckRefusal::AlreadyApproved),
        Status::Canceled => Err(CheckRefusal::Canceled),
        Status::Expired => Err(CheckRefusal::Expired),
    }
}

/// Evaluates one check: uses one attempt, approves on the right code (and the same session
/// and transaction, when the verification is bound to them), and turns the status to
/// `MaxAttemptsReached` on the last failed attempt. A refusal leaves the record untouched.
pub fn apply_check(
    record: &mut Verification,
    candidate: &CodeHash,
    presented: &Presented,
    now: Timestamp,
) -> Result<CheckOutcome, CheckRefusal> {
    ensure_pending(record, now)?;
    let code_matches = record.code_hash.matches(candidate);
    let session_matches = match &record.session_id {
        Some(bound) => {
            let given = presented.session_id.as_deref().unwrap_or_default();
            bool::from(bound.as_bytes().ct_eq(given.as_bytes()))
        }
        None => true,
    };
    let transaction_matches = record
        .transaction
        .as_ref()
        .is_none_or(|bound| bound.admits(presented.transaction.as_ref()));
    record.attempts_used += 1;
    record.updated_at = now;
    let valid = code_matches & session_matches & transaction_matches;
    if valid {
        record.status = Status::Approved;
    } else if record.attempts_remaining() == 0 {
        record.status = Status::MaxAttemptsReached;
    }
    if record.status != Status::Pending {
        record.close_out();
    }
    Ok(CheckOutcome {
        valid,
        status: record.status,
        attempts_remaining: record.attempts_remaining(),
    })
}

/// How a pending verification is closed without a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Closing {
    /// Its code no longer verifies.
    Cancel,
    /// The person was verified some other way (an operator's or the platform's decision).
    Approve,
}

/// Closes a pending verification: cancels or approves it.
pub fn apply_close(
    record: &mut Verification,
    closing: Closing,
    now: Timestamp,
) -> Result<(), CheckRefusal> {
    ensure_pending(record, now)?;
    record.status = match closing {
        Closing::Cancel => Status::Canceled,
        Closing::Approve => Status::Approved,
    };
    record.close_out();
    record.updated_at = now;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Channel, DeliveryState, Transaction, VerificationId, Workflow};

    pub const START: Timestamp = Timestamp(1_800_000_000_000);
    const RIGHT: CodeHash = CodeHash([7; 32]);
    const WRONG: CodeHash = CodeHash([8; 32]);

    pub fn pending(session_id: Option<&str>) -> Verification {
        Verification {
            id: VerificationId::generate(),
            tenant: "acme".into(),
            channel: Channel::Sms,
            to: "+4915112345678".into(),
            country: Some("DE".into()),
            locale: None,
            template: "default".into(),
            session_id: session_id.map(str::to_owned),
            code_hash: RIGHT,
            code_length: 6,
            send_seq: 1,
            status: Status::Pending,
            attempts_used: 0,
            max_attempts: 5,
            created_at: START,
            expires_at: START.plus_secs(300),
            last_sent_at: START,
            updated_at: START,
            delivery: DeliveryState::Queued,
            provider: None,
            sent_at: None,
            delivered_at: None,
            transaction: None,
            kept_code: None,
            timeline: Vec::new(),
            workflow: None,
        }
    }

    fn with_session(session_id: Option<&str>) -> Presented {
        Presented {
            session_id: session_id.map(str::to_owned),
            transaction: None,
        }
    }

    const NOTHING: Presented = Presented {
        session_id: None,
        transaction: None,
    };

    #[test]
    fn right_code_approves_once() {
        let mut record = pending(None);
        let outcome = apply_check(&mut record, &RIGHT, &NOTHING, START).unwrap();
        assert_eq!(
            outcome,
            CheckOutcome {
                valid: true,
                status: Status::Approved,
                attempts_remaining: 4
            }
        );
        assert_eq!(
            apply_check(&mut record, &RIGHT, &NOTHING, START),
            Err(CheckRefusal::AlreadyApproved)
        );
    }

    #[test]
    fn last_failed_attempt_locks_the_verification() {
        let mut record = pending(None);
        for remaining in (1..5).rev() {
            let outcome = apply_check(&mut record, &WRONG, &NOTHING, START).unwrap();
            assert_eq!((outcome.valid, outcome.status), (false, Status::Pending));
            assert_eq!(outcome.attempts_remaining, remaining);
        }
        let last = apply_check(&mut record, &WRONG, &NOTHING, START).unwrap();
        assert_eq!(last.status, Status::MaxAttemptsReached);
        assert_eq!(last.attempts_remaining, 0);
        assert_eq!(
            apply_check(&mut record, &RIGHT, &NOTHING, START),
            Err(CheckRefusal::MaxAttemptsReached)
        );
        assert_eq!(record.attempts_used, 5);
    }

    #[test]
    fn expiry_is_exclusive_of_its_instant() {
        let mut record = pending(None);
        let last_moment = record.expires_at.plus(std::time::Duration::ZERO);
        let before = Timestamp(last_moment.0 - 1);
        let mut early = record.clone();
        assert!(
            apply_check(&mut early, &RIGHT, &NOTHING, before)
                .unwrap()
                .valid
        );
        assert_eq!(
            apply_check(&mut record, &RIGHT, &NOTHING, last_moment),
            Err(CheckRefusal::Expired)
        );
        assert_eq!(record.attempts_used, 0);
    }

    #[test]
    fn session_binding_is_enforced() {
        let mut record = pending(Some("s-123"));
        let missing = apply_check(&mut record, &RIGHT, &NOTHING, START).unwrap();
        assert!(!missing.valid);
        let other = apply_check(&mut record, &RIGHT, &with_session(Some("s-999")), START).unwrap();
        assert!(!other.valid);
        let bound = apply_check(&mut record, &RIGHT, &with_session(Some("s-123")), START).unwrap();
        assert!(bound.valid);
        assert_eq!(bound.attempts_remaining, 2);
    }

    #[test]
    fn transaction_binding_is_enforced() {
        let mut record = pending(None);
        record.transaction = Transaction::of(Some("42.00 EUR".into()), Some("Acme".into()));
        let presenting = |amount: &str| Presented {
            session_id: None,
            transaction: Transaction::of(Some(amount.into()), Some("Acme".into())),
        };
        let missing = apply_check(&mut record, &RIGHT, &NOTHING, START).unwrap();
        assert!(!missing.valid);
        let other = apply_check(&mut record, &RIGHT, &presenting("4200 EUR"), START).unwrap();
        assert!(!other.valid);
        let same = apply_check(&mut record, &RIGHT, &presenting("42.00 EUR"), START).unwrap();
        assert!(same.valid);
        assert_eq!(same.attempts_remaining, 2);
    }

    #[test]
    fn a_kept_code_and_the_next_workflow_step_are_let_go_once_the_verification_is_over() {
        let steps =
            crate::domain::workflow::plan(&[(Channel::Sms, None), (Channel::Voice, None)]).unwrap();
        let with_workflow = |mut record: Verification| {
            record.workflow = Some(Workflow::start(&steps, 1, START, record.expires_at));
            record
        };
        let next_at = |record: &Verification| record.workflow.as_ref().unwrap().next_at;
        let mut wrong_last = with_workflow(pending(None));
        wrong_last.kept_code = Some(vec![1, 2, 3]);
        wrong_last.attempts_used = 4;
        apply_check(&mut wrong_last, &WRONG, &NOTHING, START).unwrap();
        assert_eq!(
            (wrong_last.kept_code.clone(), next_at(&wrong_last)),
            (None, None)
        );
        let mut approved = with_workflow(pending(None));
        approved.kept_code = Some(vec![1, 2, 3]);
        let mut canceled = approved.clone();
        apply_check(&mut approved, &WRONG, &NOTHING, START).unwrap();
        assert!(
            approved.kept_code.is_some() && next_at(&approved).is_some(),
            "still pending: a resend or the next step may need it"
        );
        apply_check(&mut approved, &RIGHT, &NOTHING, START).unwrap();
        assert_eq!(
            (approved.kept_code.clone(), next_at(&approved)),
            (None, None)
        );
        apply_close(&mut canceled, Closing::Cancel, START).unwrap();
        assert_eq!(
            (canceled.kept_code.clone(), next_at(&canceled)),
            (None, None)
        );
    }

    #[test]
    fn approve_closes_like_a_right_code() {
        let mut record = pending(None);
        apply_close(&mut record, Closing::Approve, START).unwrap();
        assert_eq!(record.status, Status::Approved);
        assert_eq!(record.attempts_used, 0);
        assert_eq!(
            apply_close(&mut record, Closing::Cancel, START),
            Err(CheckRefusal::AlreadyApproved)
        );
    }

    #[test]
    fn cancel_only_pending() {
        let mut record = pending(None);
        apply_close(&mut record, Closing::Cancel, START).unwrap();
        assert_eq!(record.status, Status::Canceled);
        assert_eq!(
            apply_close(&mut record, Closing::Cancel, START),
            Err(CheckRefusal::Canceled)
        );
        assert_eq!(
            apply_check(&mut record, &RIGHT, &NOTHING, START),
            Err(CheckRefusal::Canceled)
        );
        let mut expired = pending(None);
        assert_eq!(
            apply_close(&mut expired, Closing::Cancel, START.plus_secs(300)),
            Err(CheckRefusal::Expired)
        );
    }
}
