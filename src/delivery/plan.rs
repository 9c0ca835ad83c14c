//! Whether a job should still be sent, decided from the job, its verification and `now`.

use crate::domain::{DeliveryJob, DeliveryState, Status, Timestamp, Verification};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Send it.
    Send,
    /// A newer code was issued; this one is dead.
    Stale,
    /// The code has expired: it must never be sent.
    Expired,
    /// The verification was approved, canceled or locked: nobody needs the code.
    Finished,
    /// The verification no longer exists.
    Gone,
    /// This send's outcome is already recorded (a redelivered or resumed job).
    AlreadyDone,
}

impl Disposition {
    /// The label used in logs and metrics for a job not sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Send => "send",
            Disposition::Stale => "stale",
            Disposition::Expired => "expired",
            Disposition::Finished => "finished",
            Disposition::Gone => "gone",
            Disposition::AlreadyDone => "already_done",
        }
    }
}

impl Disposition {
    /// For a job whose verification this node has not seen: send it unless it expired.
    pub fn or_send_unseen(self, job: &DeliveryJob, now: Timestamp) -> Disposition {
        match self {
            Disposition::Gone if now < job.expires_at => Disposition::Send,
            Disposition::Gone => Disposition::Expired,
            other => other,
        }
    }
}

/// Whether a node's view of the job's verification, `found`, is older than the job: missing,
/// or at an earlier send (the owner wrote a resend a moment ago).
pub fn view_trails(found: Option<&Verification>, job: &DeliveryJob) -> bool {
    found.is_none_or(|verification| verification.send_seq < job.send_seq)
}

pub fn disposition(
    job: &DeliveryJob,
    verification: Option<&Verification>,
    now: Timestamp,
) -> Disposition {
    let Some(verification) = verification else {
        return Disposition::Gone;
    };
    if verification.send_seq != job.send_seq {
        return Disposition::Stale;
    }
    if verification.delivery != DeliveryState::Queued {
        return Disposition::AlreadyDone;
    }
    if now >= job.expires_at || verification.is_expired(now) {
        return Disposition::Expired;
    }
    if verification.status != Status::Pending {
        return Disposition::Finished;
    }
    Disposition::Send
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rules::tests::{pending, START};

    fn job_for(verification: &Verification) -> DeliveryJob {
        DeliveryJob::for_send(verification, "eu", |_| Vec::new(), verification.created_at)
    }

    #[test]
    fn a_view_trails_a_job_until_it_has_the_job_s_send() {
        let mut verification = pending(None);
        let job = job_for(&verification);
        assert!(view_trails(None, &job));
        assert!(!view_trails(Some(&verification), &job));
        let mut resent = verification.clone();
        resent.send_seq = 2;
        let resend_job = job_for(&resent);
        assert!(
            view_trails(Some(&verification), &resend_job),
            "the view has send 1 only"
        );
        verification.send_seq = 3;
        assert!(
            !view_trails(Some(&verification), &resend_job),
            "a later send: stale, not trailing"
        );
    }

    #[test]
    fn sends_a_current_pending_job() {
        let verification = pending(None);
        let job = job_for(&verification);
        assert_eq!(
            disposition(&job, Some(&verification), START),
            Disposition::Send
        );
    }

    #[test]
    fn never_sends_at_or_after_expiry() {
        let verification = pending(None);
        let job = job_for(&verification);
        assert_eq!(
            disposition(&job, Some(&verification), verification.expires_at),
            Disposition::Expired
        );
    }

    #[test]
    fn drops_stale_finished_and_gone_jobs() {
        let mut verification = pending(None);
        let job = job_for(&verification);
        assert_eq!(disposition(&job, None, START), Disposition::Gone);
        verification.status = Status::Canceled;
        assert_eq!(
            disposition(&job, Some(&verification), START),
            Disposition::Finished
        );
        verification.send_seq = 2;
        assert_eq!(
            disposition(&job, Some(&verification), START),
            Disposition::Stale
        );
    }
}
