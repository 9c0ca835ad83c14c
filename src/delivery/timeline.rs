//! The entries of a verification's delivery timeline, made from what a sender or the router
//! saw: a provider's answer, a provider that could not be used, a code that expired first.

use std::time::Duration;

use super::health::NotNow;
use crate::domain::destination::mask;
use crate::domain::{AttemptOutcome, DeliveryAttempt, DeliveryJob, NextStep, Timestamp};
use crate::providers::ProviderError;

/// A call to `provider` that ended at `finished` after `took`: sent when `error` is `None`.
pub fn called(
    job: &DeliveryJob,
    provider: &str,
    finished: Timestamp,
    took: Duration,
    error: Option<&ProviderError>,
    next: NextStep,
) -> DeliveryAttempt {
    let took_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
    let outcome = match error {
        None => AttemptOutcome::Sent,
        Some(ProviderError::Transient { .. }) => AttemptOutcome::Transient,
        Some(ProviderError::Permanent { .. }) => AttemptOutcome::Permanent,
        Some(ProviderError::Unanswered { .. }) => AttemptOutcome::Timeout,
    };
    DeliveryAttempt {
        started_at: Timestamp(finished.0.saturating_sub(u64::from(took_ms))),
        took_ms,
        ..entry(
            job,
            Some(provider),
            finished,
            outcome,
            error.map(|error| masked(&error.to_string(), &job.to)),
            next,
        )
    }
}

/// `provider` could not be called at `at`, for the reason `not_now` gives.
pub fn refused(
    job: &DeliveryJob,
    provider: &str,
    not_now: NotNow,
    at: Timestamp,
    next: NextStep,
) -> DeliveryAttempt {
    let detail = not_now
        .until
        .map(|until| format!("unavailable until {}", until.to_rfc3339()));
    entry(job, Some(provider), at, not_now.why, detail, next)
}

/// The code expired before it could be sent (`provider`: the one that was to send it).
pub fn expired(
    job: &DeliveryJob,
    provider: Option<&str>,
    at: Timestamp,
    why: &str,
) -> DeliveryAttempt {
    entry(
        job,
        provider,
        at,
        AttemptOutcome::ExpiredBeforeSend,
        Some(why.to_owned()),
        NextStep::Done,
    )
}

/// The message could not be made for `provider` (a template gone, a seal that no longer
/// opens): refused for good without a call.
pub fn unsendable(job: &DeliveryJob, provider: &str, at: Timestamp, why: &str) -> DeliveryAttempt {
    entry(
        job,
        Some(provider),
        at,
        AttemptOutcome::Permanent,
        Some(why.to_owned()),
        NextStep::Done,
    )
}

/// What each refused provider of a round said, the round then waiting until `until`.
pub fn waited(
    job: &DeliveryJob,
    refused_by: &[(String, NotNow)],
    at: Timestamp,
    next: NextStep,
) -> Vec<DeliveryAttempt> {
    refused_by
        .iter()
        .map(|(provider, not_now)| refused(job, provider, *not_now, at, next))
        .collect()
}

/// `text` with the destination masked wherever a provider repeated it (with or without its
/// `+`), as otpd shows destinations everywhere else.
fn masked(text: &str, to: &str) -> String {
    let shown = mask(to);
    let bare = to.trim_start_matches('+');
    let text = text.replace(to, &shown);
    if bare.is_empty() {
        text
    } else {
        text.replace(bare, shown.trim_start_matches('+'))
    }
}

fn entry(
    job: &DeliveryJob,
    provider: Option<&str>,
    at: Timestamp,
    outcome: AttemptOutcome,
    detail: Option<String>,
    next: NextStep,
) -> DeliveryAttempt {
    DeliveryAttempt {
        number: 0,
        send: job.send_seq,
        channel: job.channel,
        provider: provider.map(str::to_owned),
        region: job.region.clone(),
        started_at: at,
        took_ms: 0,
        outcome,
        detail,
        next,
        receipt: None,
        repeats: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, JobId, VerificationId};

    fn job() -> DeliveryJob {
        let id = VerificationId::generate();
        DeliveryJob {
            job_id: JobId::new(&id, 2),
            verification_id: id,
            send_seq: 2,
            tenant: "acme".into(),
            channel: Channel::Sms,
            to: "+4915112345678".into(),
            country: Some("DE".into()),
            region: "eu".into(),
            locale: None,
            template: "default".into(),
            expires_at: Timestamp(900_000),
            created_at: Timestamp(100_000),
            sealed_code: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_call_says_how_the_provider_answered_and_when_it_started() {
        let error = ProviderError::Transient {
            reason: "HTTP 503: Twilio error 20500: Internal error".into(),
            retry_after: None,
        };
        let attempt = called(
            &job(),
            "twilio",
            Timestamp(200_250),
            Duration::from_millis(250),
            Some(&error),
            NextStep::Retry { after_ms: 400 },
        );
        assert_eq!(attempt.outcome, AttemptOutcome::Transient);
        assert_eq!(attempt.started_at, Timestamp(200_000));
        assert_eq!(attempt.took_ms, 250);
        assert_eq!((attempt.send, attempt.region.as_str()), (2, "eu"));
        assert!(attempt
            .detail
            .unwrap()
            .contains("HTTP 503: Twilio error 20500"));
        let timeout = ProviderError::Unanswered {
            reason: "timed out after 2000 ms".into(),
        };
        let attempt = called(
            &job(),
            "twilio",
            Timestamp(200_250),
            Duration::from_secs(2),
            Some(&timeout),
            NextStep::Failover,
        );
        assert_eq!(attempt.outcome, AttemptOutcome::Timeout);
        let sent = called(
            &job(),
            "twilio",
            Timestamp(200_250),
            Duration::ZERO,
            None,
            NextStep::Done,
        );
        assert_eq!((sent.outcome, sent.detail), (AttemptOutcome::Sent, None));
    }

    #[test]
    fn a_provider_that_repeats_the_number_gets_it_masked() {
        let error = ProviderError::Permanent {
            reason: "HTTP 400: Twilio error 21211: The 'To' number +4915112345678 is not valid (4915112345678)".into(),
        };
        let attempt = called(
            &job(),
            "twilio",
            Timestamp(1_000),
            Duration::ZERO,
            Some(&error),
            NextStep::Failover,
        );
        let detail = attempt.detail.unwrap();
        assert!(!detail.contains("4915112345678"), "{detail}");
        assert!(
            detail.contains("+49151*****678") && detail.contains("Twilio error 21211"),
            "{detail}"
        );
    }

    #[test]
    fn a_refusal_names_its_reason_and_its_end() {
        let not_now = NotNow {
            why: AttemptOutcome::QuotaExhausted,
            until: Some(Timestamp(0)),
        };
        let attempt = refused(&job(), "vonage", not_now, Timestamp(5), NextStep::Failover);
        assert_eq!(attempt.outcome, AttemptOutcome::QuotaExhausted);
        assert_eq!(
            attempt.detail.as_deref(),
            Some("unavailable until 1970-01-01T00:00:00Z")
        );
    }
}
