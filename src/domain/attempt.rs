//! A verification's delivery timeline: every try to send its codes, in order, with what the
//! provider answered and what otpd did next, then the delivery receipt. It never holds the
//! code or the message body; a provider's answer is what the provider said of the request.

use serde::{Deserialize, Serialize};

use super::{Channel, DeliveryState, Timestamp};

/// How many entries a verification keeps: the latest ones (`number` shows what was dropped).
pub const TIMELINE_LENGTH: usize = 32;

/// One try to send a code, or a moment when it could not be tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// 1 for the verification's first entry, +1 for each after it (set when it is kept).
    pub number: u32,
    /// Which send of the verification (1 for the first code, +1 per resend).
    pub send: u32,
    pub channel: Channel,
    /// The provider tried; `None` when no provider could be.
    pub provider: Option<String>,
    pub region: String,
    pub started_at: Timestamp,
    /// How long the provider took to answer, milliseconds (0 when it was not called).
    pub took_ms: u32,
    pub outcome: AttemptOutcome,
    /// What the provider answered when it refused (its HTTP status, its own error code and
    /// message), or why otpd could not try it.
    pub detail: Option<String>,
    /// What otpd did next.
    pub next: NextStep,
    /// The provider's delivery receipt, on the entry of the send it reports.
    pub receipt: Option<AttemptReceipt>,
    /// How many times the same refusal came again before anything else happened (a
    /// breaker open for minutes is one entry, not one per round).
    pub repeats: u32,
}

/// How a try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider took the message.
    Sent,
    /// The provider failed in a way that may pass.
    Transient,
    /// The provider refused the message for good.
    Permanent,
    /// The provider did not answer in time; it may have taken the message.
    Timeout,
    /// The provider's breaker was open.
    BreakerOpen,
    /// The provider's quota was used up.
    QuotaExhausted,
    /// The provider asked otpd to wait, or its pace allowed no call yet.
    Paused,
    /// The code expired before any provider could send it.
    ExpiredBeforeSend,
}

impl AttemptOutcome {
    /// A provider that could not be called, rather than a call that failed.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            AttemptOutcome::BreakerOpen | AttemptOutcome::QuotaExhausted | AttemptOutcome::Paused
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Transient => "transient",
            AttemptOutcome::Permanent => "permanent",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::BreakerOpen => "breaker_open",
            AttemptOutcome::QuotaExhausted => "quota_exhausted",
            AttemptOutcome::Paused => "paused",
            AttemptOutcome::ExpiredBeforeSend => "expired_before_send",
        }
    }
}

/// What otpd did after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NextStep {
    /// Nothing more: the message went out, or the send failed for good.
    Done,
    /// The same provider again after `after_ms`.
    Retry { after_ms: u32 },
    /// The next provider of the region's list.
    Failover,
    /// Every provider was unavailable: the job waits until `until`.
    Wait { until: Timestamp },
}

/// A provider's delivery receipt for a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReceipt {
    /// `Delivered` or `Failed`.
    pub status: DeliveryState,
    pub at: Timestamp,
    /// The provider's error code, when it reported the message undelivered.
    pub error_code: Option<String>,
}

impl DeliveryAttempt {
    /// Whether `other` reports the same try (a report offered again after its write failed,
    /// or a command run twice).
    fn is_same_try(&self, other: &DeliveryAttempt) -> bool {
        (
            self.send,
            &self.provider,
            self.started_at,
            self.outcome,
            self.took_ms,
        ) == (
            other.send,
            &other.provider,
            other.started_at,
            other.outcome,
            other.took_ms,
        )
    }
}

/// Keeps `attempts` on `timeline` in the order they started (reports may arrive out of
/// order; of those that started in the same millisecond, one that ended its send last), numbered on from its first entry, dropping the oldest past `TIMELINE_LENGTH`. A
/// try kept already is not kept again; a refusal already kept since the last call (same
/// send, provider and reason) is counted on its entry rather than kept again.
pub fn keep(timeline: &mut Vec<DeliveryAttempt>, attempts: &[DeliveryAttempt]) {
    let first = timeline.first().map_or(1, |first| first.number);
    for attempt in attempts {
        if timeline.iter().any(|kept| kept.is_same_try(attempt)) {
            continue;
        }
        let same_refusal = timeline
            .iter_mut()
            .rev()
            .take_while(|kept| kept.outcome.is_refusal())
            .find(|kept| {
                (kept.send, kept.outcome, &kept.provider)
                    == (attempt.send, attempt.outcome, &attempt.provider)
            });
        if let Some(kept) = same_refusal {
            kept.repeats += 1;
            kept.next = attempt.next;
            kept.detail.clone_from(&attempt.detail);
            continue;
        }
        timeline.push(attempt.clone());
    }
    // A try that ended its send goes after whatever started in the same millisecond.
    timeline.sort_by_key(|attempt| (attempt.started_at, attempt.next == NextStep::Done));
    for (number, attempt) in (first..).zip(timeline.iter_mut()) {
        attempt.number = number;
    }
    let excess = timeline.len().saturating_sub(TIMELINE_LENGTH);
    timeline.drain(..excess);
}

/// Puts `receipt` on the latest entry that sent send `send` through `provider`; false when
/// no entry did, or it has its receipt already.
pub fn note_receipt(
    timeline: &mut [DeliveryAttempt],
    send: u32,
    provider: &str,
    receipt: AttemptReceipt,
) -> bool {
    let sent = timeline.iter_mut().rev().find(|attempt| {
        attempt.send == send
            && attempt.outcome == AttemptOutcome::Sent
            && attempt.provider.as_deref() == Some(provider)
    });
    match sent {
        // The first final receipt stands, as it does for the verification's delivery.
        Some(attempt) if attempt.receipt.is_none() => {
            attempt.receipt = Some(receipt);
            true
        }
        _ => false,
    }
}

/// How far one send got, as its timeline entries tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProgress {
    /// No try has ended it yet.
    Queued,
    /// A provider took the message; no receipt yet.
    Sent,
    /// The provider reported it delivered.
    Delivered,
    /// The provider reported it undelivered.
    Undelivered,
    /// It ended without a provider taking it.
    Failed,
}

/// One send's entries on a timeline: how far it got, the entry that sent it, how many tries.
#[derive(Debug, Clone, Copy)]
pub struct SendSummary<'a> {
    pub progress: SendProgress,
    pub sent: Option<&'a DeliveryAttempt>,
    pub tries: usize,
}

/// What `timeline` says of send `send`.
pub fn summarize(timeline: &[DeliveryAttempt], send: u32) -> SendSummary<'_> {
    let tries = timeline.iter().filter(|attempt| attempt.send == send);
    let last = tries.clone().next_back();
    let sent = tries
        .clone()
        .rev()
        .find(|attempt| attempt.outcome == AttemptOutcome::Sent);
    let receipt = sent.and_then(|attempt| attempt.receipt.as_ref());
    let progress = match (receipt, sent, last) {
        (Some(receipt), _, _) if receipt.status == DeliveryState::Delivered => {
            SendProgress::Delivered
        }
        (Some(_), _, _) => SendProgress::Undelivered,
        (None, Some(_), _) => SendProgress::Sent,
        (None, None, Some(last)) if last.next == NextStep::Done => SendProgress::Failed,
        _ => SendProgress::Queued,
    };
    SendSummary {
        progress,
        sent,
        tries: tries.count(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An entry of send `send` through `provider`, numbered when kept.
    pub(crate) fn attempt(send: u32, provider: &str, outcome: AttemptOutcome) -> DeliveryAttempt {
        DeliveryAttempt {
            number: 0,
            send,
            channel: Channel::Sms,
            provider: Some(provider.into()),
            region: "eu".into(),
            started_at: Timestamp(1_000),
            took_ms: 12,
            outcome,
            detail: None,
            next: NextStep::Done,
            receipt: None,
            repeats: 0,
        }
    }

    #[test]
    fn entries_are_numbered_in_order_and_only_the_latest_are_kept() {
        let mut timeline = Vec::new();
        keep(&mut timeline, &[attempt(1, "a", AttemptOutcome::Transient)]);
        keep(&mut timeline, &[attempt(1, "a", AttemptOutcome::Sent)]);
        assert_eq!(
            timeline.iter().map(|a| a.number).collect::<Vec<_>>(),
            [1, 2]
        );
        let many: Vec<_> = (0..TIMELINE_LENGTH as u64 + 5)
            .map(|n| DeliveryAttempt {
                started_at: Timestamp(2_000 + n),
                ..attempt(2, "a", AttemptOutcome::Timeout)
            })
            .collect();
        keep(&mut timeline, &many);
        assert_eq!(timeline.len(), TIMELINE_LENGTH);
        assert_eq!(timeline.first().unwrap().number, 8);
        assert_eq!(timeline.last().unwrap().number, TIMELINE_LENGTH as u32 + 7);
    }

    #[test]
    fn a_refusal_repeated_while_nothing_else_happens_is_counted_once() {
        let mut timeline = Vec::new();
        let open = |provider, at| DeliveryAttempt {
            started_at: Timestamp(at),
            ..attempt(1, provider, AttemptOutcome::BreakerOpen)
        };
        keep(&mut timeline, &[attempt(1, "a", AttemptOutcome::Transient)]);
        for round in 0..5 {
            let at = 2_000 + round * 1_000;
            keep(&mut timeline, &[open("a", at), open("b", at)]);
        }
        let seen: Vec<_> = timeline
            .iter()
            .map(|a| (a.number, a.outcome, a.repeats))
            .collect();
        assert_eq!(
            seen,
            [
                (1, AttemptOutcome::Transient, 0),
                (2, AttemptOutcome::BreakerOpen, 4),
                (3, AttemptOutcome::BreakerOpen, 4)
            ]
        );
        // After a call, the same refusal is a new entry.
        let timeout = DeliveryAttempt {
            started_at: Timestamp(9_000),
            ..attempt(1, "c", AttemptOutcome::Timeout)
        };
        keep(&mut timeline, &[timeout, open("a", 9_500)]);
        assert_eq!(timeline.len(), 5);
        assert_eq!(timeline[4].repeats, 0);
    }

    #[test]
    fn a_report_offered_twice_is_kept_once_and_late_reports_take_their_place() {
        let mut timeline = Vec::new();
        let at = |ms, outcome| DeliveryAttempt {
            started_at: Timestamp(ms),
            ..attempt(1, "a", outcome)
        };
        keep(&mut timeline, &[at(3_000, AttemptOutcome::Sent)]);
        keep(&mut timeline, &[at(3_000, AttemptOutcome::Sent)]);
        keep(&mut timeline, &[at(1_000, AttemptOutcome::Transient)]);
        let seen: Vec<_> = timeline
            .iter()
            .map(|a| (a.number, a.started_at.0, a.outcome))
            .collect();
        assert_eq!(
            seen,
            [
                (1, 1_000, AttemptOutcome::Transient),
                (2, 3_000, AttemptOutcome::Sent)
            ]
        );
    }

    #[test]
    fn a_send_is_summarized_from_its_own_entries() {
        let at = |send, provider, outcome, ms, next| DeliveryAttempt {
            started_at: Timestamp(ms),
            next,
            ..attempt(send, provider, outcome)
        };
        let mut timeline = Vec::new();
        keep(
            &mut timeline,
            &[
                at(1, "a", AttemptOutcome::Transient, 1_000, NextStep::Failover),
                at(1, "b", AttemptOutcome::Sent, 2_000, NextStep::Done),
                at(
                    2,
                    "a",
                    AttemptOutcome::Transient,
                    3_000,
                    NextStep::Retry { after_ms: 5 },
                ),
                at(
                    3,
                    "b",
                    AttemptOutcome::ExpiredBeforeSend,
                    4_000,
                    NextStep::Done,
                ),
            ],
        );
        let first = summarize(&timeline, 1);
        assert_eq!((first.progress, first.tries), (SendProgress::Sent, 2));
        assert_eq!(first.sent.unwrap().provider.as_deref(), Some("b"));
        assert_eq!(summarize(&timeline, 2).progress, SendProgress::Queued);
        assert_eq!(summarize(&timeline, 3).progress, SendProgress::Failed);
        assert_eq!(summarize(&timeline, 4).tries, 0);
        let receipt = |status| AttemptReceipt {
            status,
            at: Timestamp(9_000),
            error_code: None,
        };
        assert!(note_receipt(
            &mut timeline,
            1,
            "b",
            receipt(DeliveryState::Failed)
        ));
        assert_eq!(summarize(&timeline, 1).progress, SendProgress::Undelivered);
        timeline[1].receipt = Some(receipt(DeliveryState::Delivered));
        assert_eq!(summarize(&timeline, 1).progress, SendProgress::Delivered);
    }

    #[test]
    fn a_receipt_lands_on_the_send_it_reports() {
        let mut timeline = Vec::new();
        keep(
            &mut timeline,
            &[
                attempt(1, "a", AttemptOutcome::Sent),
                attempt(2, "a", AttemptOutcome::Transient),
                attempt(2, "b", AttemptOutcome::Sent),
            ],
        );
        let receipt = AttemptReceipt {
            status: DeliveryState::Delivered,
            at: Timestamp(5_000),
            error_code: None,
        };
        assert!(!note_receipt(&mut timeline, 2, "a", receipt.clone()));
        assert!(note_receipt(&mut timeline, 2, "b", receipt.clone()));
        let later = AttemptReceipt {
            status: DeliveryState::Failed,
            ..receipt.clone()
        };
        assert!(
            !note_receipt(&mut timeline, 2, "b", later),
            "the first stands"
        );
        assert_eq!(timeline[2].receipt, Some(receipt));
        assert_eq!(timeline[0].receipt, None);
        assert_eq!(timeline[1].receipt, None);
    }
}
