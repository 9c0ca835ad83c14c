//! The issuance rules as plain functions: resend cooldown, the per-destination send limit,
//! and how a new or resent verification looks.

use std::time::Duration;

use crate::domain::workflow::{worth_sending, NoNextStep, StepMove};
use crate::domain::{
    Channel, CodeHash, DeliveryState, Destination, DestinationState, IssueReceipt, PlannedStep,
    Status, StepTrigger, Timestamp, Transaction, Verification, VerificationId, Workflow,
};

/// How many of a destination's latest verifications its state lists.
pub const RECENT_VERIFICATIONS: usize = 10;

/// Limits on sending to one destination.
#[derive(Debug, Clone, Copy)]
pub struct SendLimits {
    pub cooldown: Duration,
    pub sends_per_window: u32,
    pub window: Duration,
    pub max_attempts: u32,
    /// How long after its code expires a verification is still listed under its destination
    /// (the store keeps it that long).
    pub findable_for: Duration,
}

/// A validated create request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IssueRequest {
    pub channel: Channel,
    pub destination: Destination,
    pub locale: Option<String>,
    pub template: String,
    pub session_id: Option<String>,
    /// The transaction the code confirms, if any (PSD2 dynamic linking).
    pub transaction: Option<Transaction>,
    pub code_length: u8,
    pub ttl: Duration,
    /// The fallback workflow the create gave, if any (its first step is `channel`).
    pub workflow: Option<Vec<PlannedStep>>,
}

/// What to do with a create request for a destination.
#[derive(Debug, Clone, PartialEq)]
pub enum SendPlan {
    /// No verification is pending: start one.
    New,
    /// One is pending and may get a new code.
    Resend(VerificationId),
}

/// Why no code may be sent now; each says how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    Cooldown { retry_after: Duration },
    TooManySends { retry_after: Duration },
}

/// Decides between a new verification, a resend, or a refusal. `pending` is the
/// verification the destination's state points at, if it still exists.
pub fn plan_send(
    state: &DestinationState,
    pending: Option<&Verification>,
    limits: &SendLimits,
    now: Timestamp,
) -> Result<SendPlan, SendRefusal> {
    let pending = pending.filter(|v| v.is_pending(now));
    if let Some(verification) = pending {
        let available_at = verification.last_sent_at.plus(limits.cooldown);
        if now < available_at {
            return Err(SendRefusal::Cooldown {
                retry_after: now.until(available_at),
            });
        }
    }
    within_send_budget(state, limits, now)?;
    Ok(match pending {
        Some(verification) => SendPlan::Resend(verification.id.clone()),
        None => SendPlan::New,
    })
}

/// Whether the destination's send window allows one more send at `now`. A workflow's step
/// asks only this: the resend cooldown is for callers, and a step waits its timeout.
pub fn within_send_budget(
    state: &DestinationState,
    limits: &SendLimits,
    now: Timestamp,
) -> Result<(), SendRefusal> {
    let recent = sends_within_window(&state.recent_sends, limits.window, now);
    if recent.len() >= limits.sends_per_window as usize {
        let oldest = recent[0];
        return Err(SendRefusal::TooManySends {
            retry_after: now.until(oldest.plus(limits.window)),
        });
    }
    Ok(())
}

/// Why a workflow's step may not be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepRefused {
    NoStep(NoNextStep),
    Send(SendRefusal),
}

/// The step of `existing`'s workflow that `trigger` sends now on `channel` (the channel the
/// request for it was made for): `existing` must still be pending, the step still the one
/// to take, and the destination's send window must allow one more. A step the tenant asks
/// for waits out the cooldown, like a resend, so a doubled request moves one step; one that
/// came due must leave the code time to be used.
pub fn plan_step(
    state: &DestinationState,
    existing: &Verification,
    channel: Channel,
    trigger: StepTrigger,
    limits: &SendLimits,
    now: Timestamp,
) -> Result<StepMove, StepRefused> {
    if !existing.is_pending(now) {
        return Err(StepRefused::NoStep(NoNextStep::Ended));
    }
    let workflow = existing
        .workflow
        .as_ref()
        .ok_or(StepRefused::NoStep(NoNextStep::NoWorkflow))?;
    let step = workflow.next_step(trigger).map_err(StepRefused::NoStep)?;
    if step.channel != channel {
        // The workflow moved on since the request for this step was made.
        return Err(StepRefused::NoStep(NoNextStep::NotDue));
    }
    match trigger {
        StepTrigger::Due(_) if !worth_sending(now, existing.expires_at) => {
            // Come due late (otpd was down, the partition moved): too late to be of use.
            return Err(StepRefused::NoStep(NoNextStep::TooLate));
        }
        StepTrigger::Due(_) => within_send_budget(state, limits, now),
        StepTrigger::Asked => plan_send(state, Some(existing), limits, now).map(|_| ()),
    }
    .map_err(StepRefused::Send)?;
    Ok(step)
}

/// The pending verification sending its code again as its workflow's step `step`.
pub fn send_step(
    existing: &Verification,
    step: StepMove,
    request: &IssueRequest,
    now: Timestamp,
) -> Verification {
    let mut verification = resend_same_code(existing, request, now);
    let (send, expires_at) = (verification.send_seq, verification.expires_at);
    if let Some(workflow) = &mut verification.workflow {
        workflow.sent(step, send, now, expires_at);
    }
    verification
}

/// What becomes of a workflow step whose message could not be handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHandedOn {
    /// The broker was away or slow: the step is due again at this time.
    Retry(Timestamp),
    /// The broker refused the message (no queue takes it): the step is skipped, at this
    /// time, and the next is due.
    Refused(Timestamp),
}

/// Takes back the workflow step sent as send number `send`, whose message could not be
/// handed on, while nothing else happened to the verification since (no check closed it,
/// no outcome of the send came back). The verification stays pending, with the code its
/// earlier steps sent.
pub fn take_back_step(verification: &mut Verification, send: u32, not_handed_on: NotHandedOn) {
    let untouched = verification.send_seq == send
        && verification.status == Status::Pending
        && verification.delivery == DeliveryState::Queued;
    let expires_at = verification.expires_at;
    let Some(workflow) = verification.workflow.as_mut().filter(|_| untouched) else {
        return;
    };
    match not_handed_on {
        NotHandedOn::Retry(at) => workflow.take_back(send, at, expires_at),
        NotHandedOn::Refused(at) => workflow.refused_after_sending(send, at, expires_at),
    }
    verification.delivery = DeliveryState::Failed;
}

/// `verification` following the workflow of `steps` from its current send, the first step.
pub fn start_workflow(verification: &mut Verification, steps: &[PlannedStep], now: Timestamp) {
    verification.workflow = Some(Workflow::start(
        steps,
        verification.send_seq,
        now,
        verification.expires_at,
    ));
}

fn sends_within_window(sends: &[Timestamp], window: Duration, now: Timestamp) -> &[Timestamp] {
    let first_recent = sends
        .iter()
        .position(|sent| sent.plus(window) > now)
        .unwrap_or(sends.len());
    &sends[first_recent..]
}

/// The destination's state after a send at `now` of `verification`.
pub fn record_send(
    state: &DestinationState,
    verification: &Verification,
    limits: &SendLimits,
    now: Timestamp,
) -> DestinationState {
    let mut recent_sends = sends_within_window(&state.recent_sends, limits.window, now).to_vec();
    recent_sends.push(now);
    let mut recent = state.recent.clone();
    if recent.last() != Some(&verification.id) {
        recent.push(verification.id.clone());
    }
    let excess = recent.len().saturating_sub(RECENT_VERIFICATIONS);
    recent.drain(..excess);
    DestinationState {
        pending: Some(verification.id.clone()),
        recent_sends,
        purge_at: now
            .plus(limits.window)
            .max(verification.expires_at.plus(limits.findable_for)),
        recent,
    }
}

/// A new verification for `request`, holding `code_hash`.
pub fn new_verification(
    id: VerificationId,
    tenant: &str,
    request: &IssueRequest,
    code_hash: CodeHash,
    limits: &SendLimits,
    now: Timestamp,
) -> Verification {
    Verification {
        id,
        tenant: tenant.to_owned(),
        channel: request.channel,
        to: request.destination.as_str().to_owned(),
        country: request.destination.country().map(str::to_owned),
        locale: request.locale.clone(),
        template: request.template.clone(),
        session_id: request.session_id.clone(),
        code_hash,
        code_length: request.code_length,
        send_seq: 1,
        status: Status::Pending,
        attempts_used: 0,
        max_attempts: limits.max_attempts,
        created_at: now,
        // Whole seconds, so the expiry the API shows is the one that applies.
        expires_at: now.plus(request.ttl).floor_secs(),
        last_sent_at: now,
        updated_at: now,
        delivery: DeliveryState::Queued,
        provider: None,
        sent_at: None,
        delivered_at: None,
        transaction: request.transaction.clone(),
        kept_code: None,
        timeline: Vec::new(),
        workflow: None,
    }
}

/// The pending verification with a new code: the old code dies, used attempts stay used,
/// the lifetime starts again.
pub fn resend(
    existing: &Verification,
    request: &IssueRequest,
    code_hash: CodeHash,
    now: Timestamp,
) -> Verification {
    Verification {
        code_hash,
        code_length: request.code_length,
        expires_at: now.plus(request.ttl).floor_secs(),
        kept_code: None,
        ..resend_same_code(existing, request, now)
    }
}

/// Whether a resend of `existing` for `request` may send the same code: only when it names
/// no other transaction and no other session, so a kept code never comes to confirm what
/// it was not sent for (a new amount or payee needs a new code).
pub fn may_keep_code(existing: &Verification, request: &IssueRequest) -> bool {
    fn same_or_unsaid<T: PartialEq>(asked: Option<&T>, bound: Option<&T>) -> bool {
        asked.is_none_or(|asked| Some(asked) == bound)
    }
    same_or_unsaid(request.transaction.as_ref(), existing.transaction.as_ref())
        && same_or_unsaid(request.session_id.as_ref(), existing.session_id.as_ref())
}

/// The pending verification sending its code again (the tenant's resends keep the code):
/// both messages carry a code that works, used attempts stay used, and the lifetime stays
/// the first send's, so a resend never makes a code live longer.
pub fn resend_same_code(
    existing: &Verification,
    request: &IssueRequest,
    now: Timestamp,
) -> Verification {
    Verification {
        channel: request.channel,
        send_seq: existing.send_seq + 1,
        last_sent_at: now,
        updated_at: now,
        locale: request.locale.clone(),
        template: request.template.clone(),
        session_id: request
            .session_id
            .clone()
            .or_else(|| existing.session_id.clone()),
        transaction: request
            .transaction
            .clone()
            .or_else(|| existing.transaction.clone()),
        delivery: DeliveryState::Queued,
        provider: None,
        sent_at: None,
        delivered_at: None,
        ..existing.clone()
    }
}

/// The answer to a create request that sent `verification`'s current code.
pub fn receipt(verification: &Verification, created: bool, limits: &SendLimits) -> IssueReceipt {
    IssueReceipt {
        created,
        id: verification.id.clone(),
        channel: verification.channel,
        to_masked: crate::domain::destination::mask(&verification.to),
        expires_at: verification.expires_at,
        // Rounded up: a resend at the time shown is never refused by the cooldown.
        resend_available_at: verification.last_sent_at.plus(limits.cooldown).ceil_secs(),
        attempts_remaining: verification.attempts_remaining(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = Timestamp(1_800_000_000_000);

    fn limits() -> SendLimits {
        SendLimits {
            cooldown: Duration::from_secs(30),
            sends_per_window: 5,
            window: Duration::from_secs(600),
            max_attempts: 5,
            findable_for: Duration::ZERO,
        }
    }

    fn request() -> IssueRequest {
        IssueRequest {
            channel: Channel::Sms,
            destination: Destination::parse(Channel::Sms, "+4915112345678").unwrap(),
            locale: None,
            template: "default".into(),
            session_id: Some("s-1".into()),
            transaction: None,
            code_length: 6,
            ttl: Duration::from_secs(300),
            workflow: None,
        }
    }

    fn issued_at(now: Timestamp) -> (Verification, DestinationState) {
        let verification = new_verification(
            VerificationId::generate(),
            "acme",
            &request(),
            CodeHash([1; 32]),
            &limits(),
            now,
        );
        let state = record_send(&DestinationState::default(), &verification, &limits(), now);
        (verification, state)
    }

    #[test]
    fn first_request_starts_a_verification() {
        let plan = plan_send(&DestinationState::default(), None, &limits(), START);
        assert_eq!(plan, Ok(SendPlan::New));
    }

    #[test]
    fn cooldown_holds_until_its_last_millisecond() {
        let (verification, state) = issued_at(START);
        let just_before = START.plus(Duration::from_millis(29_999));
        assert_eq!(
            plan_send(&state, Some(&verification), &limits(), just_before),
            Err(SendRefusal::Cooldown {
                retry_after: Duration::from_millis(1)
            })
        );
        let at_end = START.plus_secs(30);
        assert_eq!(
            plan_send(&state, Some(&verification), &limits(), at_end),
            Ok(SendPlan::Resend(verification.id.clone()))
        );
    }

    #[test]
    fn an_expired_pending_verification_is_replaced_not_resent() {
        let (verification, state) = issued_at(START);
        let after_expiry = verification.expires_at;
        assert_eq!(
            plan_send(&state, Some(&verification), &limits(), after_expiry),
            Ok(SendPlan::New)
        );
    }

    #[test]
    fn send_limit_counts_sends_within_the_window() {
        let (mut verification, mut state) = issued_at(START);
        let mut now = START;
        for _ in 1..5 {
            now = now.plus_secs(30);
            assert!(plan_send(&state, Some(&verification), &limits(), now).is_ok());
            verification = resend(&verification, &request(), CodeHash([2; 32]), now);
            state = record_send(&state, &verification, &limits(), now);
        }
        let sixth = now.plus_secs(30);
        assert_eq!(
            plan_send(&state, Some(&verification), &limits(), sixth),
            Err(SendRefusal::TooManySends {
                retry_after: sixth.until(START.plus_secs(600))
            })
        );
        // Once the first send leaves the window, one more is allowed.
        assert!(plan_send(&state, Some(&verification), &limits(), START.plus_secs(600)).is_ok());
    }

    #[test]
    fn resend_replaces_the_code_and_keeps_used_attempts_and_the_timeline() {
        let (mut verification, _) = issued_at(START);
        verification.attempts_used = 2;
        verification.timeline = vec![crate::domain::attempt::tests::attempt(
            1,
            "sandbox",
            crate::domain::AttemptOutcome::Sent,
        )];
        let later = START.plus_secs(40);
        let resent = resend(&verification, &request(), CodeHash([9; 32]), later);
        assert_eq!(resent.id, verification.id);
        assert_eq!(resent.send_seq, 2);
        assert_eq!(resent.attempts_used, 2);
        assert_eq!(resent.timeline, verification.timeline);
        assert!(resent.code_hash.matches(&CodeHash([9; 32])));
        assert_eq!(resent.expires_at, later.plus_secs(300));
        assert_eq!(resent.delivery, DeliveryState::Queued);
    }

    #[test]
    fn a_resend_of_the_same_code_keeps_its_hash_and_its_expiry() {
        let (mut verification, _) = issued_at(START);
        verification.attempts_used = 1;
        verification.kept_code = Some(vec![4, 2]);
        verification.delivery = DeliveryState::Delivered;
        let later = START.plus_secs(40);
        let resent = resend_same_code(&verification, &request(), later);
        assert_eq!(resent.send_seq, 2);
        assert!(resent.code_hash.matches(&verification.code_hash));
        assert_eq!(resent.kept_code, verification.kept_code);
        assert_eq!(resent.expires_at, verification.expires_at);
        assert_eq!(resent.last_sent_at, later);
        assert_eq!(resent.attempts_used, 1);
        assert_eq!(resent.delivery, DeliveryState::Queued);
        // A resend with a new code lets the kept one go (the issuer seals the new one).
        let renewed = resend(&verification, &request(), CodeHash([9; 32]), later);
        assert_eq!(renewed.kept_code, None);
    }

    #[test]
    fn a_step_is_planned_only_while_it_is_due_allowed_and_worth_sending() {
        let steps =
            crate::domain::workflow::plan(&[(Channel::Sms, Some(15)), (Channel::Voice, None)])
                .unwrap();
        let (mut existing, state) = issued_at(START);
        start_workflow(&mut existing, &steps, START);
        let due = START.plus_secs(15);
        let plan = |existing: &Verification, channel, trigger, state: &DestinationState, now| {
            plan_step(state, existing, channel, trigger, &limits(), now)
        };
        // The voice step, come due, as the clock offers it.
        let due_voice = |existing: &Verification, state: &DestinationState, now| {
            plan(existing, Channel::Voice, StepTrigger::Due(due), state, now)
        };
        let step = due_voice(&existing, &state, due).unwrap();
        assert_eq!(
            step.channel,
            Channel::Voice,
            "no cooldown for a step come due"
        );
        assert_eq!(
            plan(&existing, Channel::Sms, StepTrigger::Due(due), &state, due),
            Err(StepRefused::NoStep(NoNextStep::NotDue)),
            "made for another channel: the workflow moved on"
        );
        assert!(matches!(
            plan(&existing, Channel::Voice, StepTrigger::Asked, &state, due),
            Err(StepRefused::Send(SendRefusal::Cooldown { .. }))
        ));
        let late = existing.expires_at.0 - 10_000;
        assert_eq!(
            due_voice(&existing, &state, Timestamp(late)),
            Err(StepRefused::NoStep(NoNextStep::TooLate))
        );
        let spent = DestinationState {
            recent_sends: vec![START; 5],
            ..state.clone()
        };
        assert!(matches!(
            due_voice(&existing, &spent, due),
            Err(StepRefused::Send(SendRefusal::TooManySends { .. }))
        ));
        existing.status = Status::Approved;
        assert_eq!(
            due_voice(&existing, &state, due),
            Err(StepRefused::NoStep(NoNextStep::Ended))
        );
    }

    #[test]
    fn a_step_not_handed_on_is_taken_back_only_while_nothing_else_happened() {
        let steps = crate::domain::workflow::plan(&[
            (Channel::Sms, Some(15)),
            (Channel::Voice, Some(15)),
            (Channel::Whatsapp, None),
        ])
        .unwrap();
        let (mut verification, _) = issued_at(START);
        start_workflow(&mut verification, &steps, START);
        let due = START.plus_secs(15);
        let step = verification
            .workflow
            .as_ref()
            .unwrap()
            .next_step(crate::domain::StepTrigger::Due(due))
            .unwrap();
        let sent = send_step(&verification, step, &request(), due);
        let retry_at = due.plus_secs(5);

        let mut approved = sent.clone();
        approved.status = Status::Approved;
        take_back_step(&mut approved, 2, NotHandedOn::Retry(retry_at));
        assert_eq!(
            approved.delivery,
            DeliveryState::Queued,
            "closed: left alone"
        );
        let mut delivered = sent.clone();
        delivered.delivery = DeliveryState::Sent;
        take_back_step(&mut delivered, 2, NotHandedOn::Retry(retry_at));
        assert_eq!(delivered.delivery, DeliveryState::Sent, "it went after all");

        let mut retried = sent.clone();
        take_back_step(&mut retried, 2, NotHandedOn::Retry(retry_at));
        let workflow = retried.workflow.as_ref().unwrap();
        assert_eq!(workflow.steps[1].reached, None);
        assert_eq!(workflow.next_at, Some(retry_at));
        assert_eq!(
            retried.status,
            Status::Pending,
            "the first code still works"
        );

        let mut refused = sent;
        take_back_step(&mut refused, 2, NotHandedOn::Refused(due));
        let workflow = refused.workflow.as_ref().unwrap();
        assert!(matches!(
            &workflow.steps[1].reached.as_ref().unwrap().outcome,
            crate::domain::workflow::StepOutcome::Skipped { reason } if reason == "refused_by_broker"
        ));
        assert_eq!(workflow.next_at, Some(due), "the next step is due at once");
    }

    #[test]
    fn a_resend_on_another_channel_to_the_number_goes_out_on_that_channel() {
        let (verification, _) = issued_at(START);
        let by_call = IssueRequest {
            channel: Channel::Voice,
            ..request()
        };
        let resent = resend_same_code(&verification, &by_call, START.plus_secs(40));
        assert_eq!(
            (resent.id, resent.channel),
            (verification.id, Channel::Voice)
        );
        assert!(resent.code_hash.matches(&verification.code_hash));
    }

    #[test]
    fn a_code_is_kept_only_for_the_same_transaction_and_session() {
        let (verification, _) = issued_at(START);
        let bound = |amount: &str| Transaction::of(Some(amount.into()), Some("Acme".into()));
        let mut existing = verification.clone();
        existing.transaction = bound("10.00");
        let asking = |transaction, session_id: Option<&str>| IssueRequest {
            transaction,
            session_id: session_id.map(str::to_owned),
            ..request()
        };
        assert!(may_keep_code(&existing, &asking(None, None)));
        assert!(may_keep_code(
            &existing,
            &asking(bound("10.00"), Some("s-1"))
        ));
        assert!(!may_keep_code(&existing, &asking(bound("5000.00"), None)));
        assert!(!may_keep_code(&existing, &asking(None, Some("s-2"))));
    }

    #[test]
    fn state_lists_the_latest_verifications_while_the_store_keeps_them() {
        let limits = SendLimits {
            findable_for: Duration::from_secs(86_400),
            ..limits()
        };
        let mut state = DestinationState::default();
        let mut ids = Vec::new();
        for n in 0..RECENT_VERIFICATIONS as u64 + 3 {
            let now = START.plus_secs(n * 1_000);
            let (verification, _) = issued_at(now);
            state = record_send(&state, &verification, &limits, now);
            // A resend of the same verification is listed once.
            state = record_send(&state, &verification, &limits, now.plus_secs(40));
            assert_eq!(
                state.purge_at,
                verification.expires_at.plus_secs(86_400),
                "listed as long as the store keeps it"
            );
            ids.push(verification.id);
        }
        assert_eq!(state.recent, ids[3..]);
    }

    #[test]
    fn state_keeps_only_recent_sends_and_outlives_the_verification() {
        let (verification, state) = issued_at(START);
        let later = START.plus_secs(700);
        let next = record_send(&state, &verification, &limits(), later);
        assert_eq!(next.recent_sends, vec![later]);
        assert_eq!(next.purge_at, later.plus_secs(600));
    }

    #[test]
    fn receipt_masks_the_destination() {
        let (verification, _) = issued_at(START);
        let receipt = receipt(&verification, true, &limits());
        assert_eq!(receipt.to_masked, "+49151*****678");
        assert_eq!(receipt.resend_available_at, START.plus_secs(30));
        assert_eq!(receipt.attempts_remaining, 5);
    }
}
