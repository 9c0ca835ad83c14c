//! Fallback workflows: a verification's code goes out on one channel, and when it is not
//! verified within that step's timeout, on the next, with the same code, until the steps
//! run out or the code expires. The steps and how each went live on the verification; the
//! rules here are plain functions of the record and `now`.

use serde::{Deserialize, Serialize};

use super::channel::AddressKind;
use super::{Channel, Timestamp};

/// The shortest and longest wait before the next step, in seconds.
pub const MIN_CHANNEL_TIMEOUT_SECONDS: u64 = 15;
pub const MAX_CHANNEL_TIMEOUT_SECONDS: u64 = 900;
/// The wait when a step does not say.
pub const DEFAULT_CHANNEL_TIMEOUT_SECONDS: u64 = 60;
/// The most steps a workflow may have.
pub const MAX_STEPS: usize = 5;
/// The least life a code must have left for a step to go out by itself: a message the
/// person has no time to type is not worth its cost.
pub const MIN_LIFE_LEFT_SECONDS: u64 = 15;

/// Whether a step due at `at` leaves the code's person time to use it.
pub fn worth_sending(at: Timestamp, expires_at: Timestamp) -> bool {
    at.plus_secs(MIN_LIFE_LEFT_SECONDS) <= expires_at
}

/// One step as a create (or a tenant's default) plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub channel: Channel,
    /// How long to wait after this step's send before the next step goes out.
    pub timeout_seconds: u16,
}

/// Why a planned workflow cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidWorkflow {
    #[error("'workflow' must have 1 to {MAX_STEPS} steps; it has {0}.")]
    StepCount(usize),
    #[error(
        "'channel_timeout_seconds' of step {step} is {seconds}; it must be from {MIN_CHANNEL_TIMEOUT_SECONDS} to {MAX_CHANNEL_TIMEOUT_SECONDS}."
    )]
    Timeout { step: usize, seconds: u64 },
    #[error(
        "Step {step} of 'workflow' is {channel}, which sends to {kind}, but the workflow starts with {first}: every step goes to the same 'to'. Start another verification for another address."
    )]
    MixedAddresses {
        step: usize,
        channel: Channel,
        kind: &'static str,
        first: Channel,
    },
}

/// The steps of a workflow, checked: 1 to `MAX_STEPS` steps, each timeout within bounds,
/// every channel sending to the same kind of address. Steps are numbered from 1 in errors.
pub fn plan(steps: &[(Channel, Option<u64>)]) -> Result<Vec<PlannedStep>, InvalidWorkflow> {
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(InvalidWorkflow::StepCount(steps.len()));
    }
    let first = steps[0].0;
    steps
        .iter()
        .enumerate()
        .map(|(index, &(channel, timeout))| {
            let step = index + 1;
            let seconds = timeout.unwrap_or(DEFAULT_CHANNEL_TIMEOUT_SECONDS);
            if !(MIN_CHANNEL_TIMEOUT_SECONDS..=MAX_CHANNEL_TIMEOUT_SECONDS).contains(&seconds) {
                return Err(InvalidWorkflow::Timeout { step, seconds });
            }
            if channel.address_kind() != first.address_kind() {
                return Err(InvalidWorkflow::MixedAddresses {
                    step,
                    channel,
                    kind: match channel.address_kind() {
                        AddressKind::Phone => "a phone number",
                        AddressKind::Email => "an email address",
                    },
                    first,
                });
            }
            Ok(PlannedStep {
                channel,
                timeout_seconds: u16::try_from(seconds).expect("at most 900"),
            })
        })
        .collect()
}

/// A verification's workflow: its steps and when the next one is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    pub steps: Vec<Step>,
    /// When the next step goes out by itself; `None` once the workflow has ended (no step
    /// left, the code verified, canceled or due to expire first).
    pub next_at: Option<Timestamp>,
}

/// One step and, once it was reached, how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub channel: Channel,
    pub timeout_seconds: u16,
    pub reached: Option<Reached>,
}

impl Step {
    /// Whether this step's code went out as send number `send`.
    fn was_sent_as(&self, send: u32) -> bool {
        matches!(
            self.reached,
            Some(Reached { outcome: StepOutcome::Sent { send: sent }, .. }) if sent == send
        )
    }
}

/// A step reached at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    pub at: Timestamp,
    pub by: MovedBy,
    pub outcome: StepOutcome,
}

/// What moved a workflow on to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MovedBy {
    /// The create that started the workflow.
    Create,
    /// The previous step's timeout passed.
    Timeout,
    /// `POST /v1/verifications/{id}/next`.
    Asked,
}

impl MovedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MovedBy::Create => "create",
            MovedBy::Timeout => "timeout",
            MovedBy::Asked => "asked",
        }
    }
}

/// How a reached step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepOutcome {
    /// The code went out as the verification's send number `send`.
    Sent { send: u32 },
    /// The step could not send (the stable code of the refusal: `too_many_sends`,
    /// `fraud_suspected`, `destination_blocked`, …); the workflow went on to the next.
    Skipped { reason: String },
}

/// What asks a workflow to move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepTrigger {
    /// The clock found the step due at this time (the time the workflow recorded, so a
    /// late or repeated reminder of an older schedule is told apart).
    Due(Timestamp),
    /// The tenant asked for the next step now.
    Asked,
}

impl StepTrigger {
    fn moved_by(self) -> MovedBy {
        match self {
            StepTrigger::Due(_) => MovedBy::Timeout,
            StepTrigger::Asked => MovedBy::Asked,
        }
    }
}

/// Why a workflow does not move on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NoNextStep {
    #[error("this verification has no fallback workflow")]
    NoWorkflow,
    #[error("every step of this verification's workflow has been taken")]
    Finished,
    #[error("this verification's workflow has ended (it is no longer pending)")]
    Ended,
    #[error("the step this reminder was for is no longer due")]
    NotDue,
    #[error("the code has too little life left for another step")]
    TooLate,
}

/// The step the workflow moves to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMove {
    pub index: usize,
    pub channel: Channel,
    pub by: MovedBy,
}

impl Workflow {
    /// A workflow of `steps` whose first step is the create's send number `send`, at `now`;
    /// the next step is due after the first's timeout, unless the code expires first.
    pub fn start(steps: &[PlannedStep], send: u32, now: Timestamp, expires_at: Timestamp) -> Self {
        let mut workflow = Workflow {
            steps: steps
                .iter()
                .map(|planned| Step {
                    channel: planned.channel,
                    timeout_seconds: planned.timeout_seconds,
                    reached: None,
                })
                .collect(),
            next_at: None,
        };
        workflow.reach(
            0,
            MovedBy::Create,
            StepOutcome::Sent { send },
            now,
            expires_at,
        );
        workflow
    }

    /// The step `trigger` moves to, if any. Whether the verification is still pending is
    /// the caller's to check.
    pub fn next_step(&self, trigger: StepTrigger) -> Result<StepMove, NoNextStep> {
        let Some(index) = self.steps.iter().position(|step| step.reached.is_none()) else {
            return Err(NoNextStep::Finished);
        };
        // The clock's reminder counts only for the schedule it was made for; the tenant may
        // move on whenever a step is left (also one the code would expire before).
        if let StepTrigger::Due(due) = trigger {
            if self.next_at != Some(due) {
                return Err(NoNextStep::NotDue);
            }
        }
        Ok(StepMove {
            index,
            channel: self.steps[index].channel,
            by: trigger.moved_by(),
        })
    }

    /// Records step `next` sent as send number `send`.
    pub fn sent(&mut self, next: StepMove, send: u32, now: Timestamp, expires_at: Timestamp) {
        self.reach(
            next.index,
            next.by,
            StepOutcome::Sent { send },
            now,
            expires_at,
        );
    }

    /// Records step `next` skipped for `reason`; the step after it is due at once.
    pub fn skipped(&mut self, next: StepMove, reason: &str, now: Timestamp, expires_at: Timestamp) {
        let outcome = StepOutcome::Skipped {
            reason: reason.to_owned(),
        };
        self.reach(next.index, next.by, outcome, now, expires_at);
        let has_more = next.index + 1 < self.steps.len();
        self.next_at = Some(now).filter(|now| has_more && worth_sending(*now, expires_at));
    }

    /// Takes back the step sent as send number `send` (its message never went out): it is
    /// due again at `retry_at`, if the code outlives that.
    pub fn take_back(&mut self, send: u32, retry_at: Timestamp, expires_at: Timestamp) {
        if let Some(step) = self.steps.iter_mut().find(|step| step.was_sent_as(send)) {
            step.reached = None;
            self.next_at = Some(retry_at).filter(|at| worth_sending(*at, expires_at));
        }
    }

    /// The step sent as send number `send` was refused by the broker at `now`: skipped, and
    /// the next step is due at once.
    pub fn refused_after_sending(&mut self, send: u32, now: Timestamp, expires_at: Timestamp) {
        let Some(index) = self.steps.iter().position(|step| step.was_sent_as(send)) else {
            return;
        };
        let by = self.steps[index]
            .reached
            .as_ref()
            .map_or(MovedBy::Timeout, |reached| reached.by);
        let next = StepMove {
            index,
            channel: self.steps[index].channel,
            by,
        };
        self.skipped(next, "refused_by_broker", now, expires_at);
    }

    /// Step `next` was refused at `now` for `reason`: it is due again at `again_at` (when the
    /// refusal passes) if that leaves the code time to be used; else it is skipped and the
    /// step after it is due at once.
    pub fn refused(
        &mut self,
        next: StepMove,
        reason: &str,
        again_at: Option<Timestamp>,
        now: Timestamp,
        expires_at: Timestamp,
    ) {
        match again_at.filter(|at| worth_sending(*at, expires_at)) {
            Some(at) => self.next_at = Some(at),
            None => self.skipped(next, reason, now, expires_at),
        }
    }

    /// Whether a step has not been reached yet (scheduled, or left for `…/next`).
    pub fn has_steps_left(&self) -> bool {
        self.steps.iter().any(|step| step.reached.is_none())
    }

    /// Ends the workflow: no step goes out any more.
    pub fn end(&mut self) {
        self.next_at = None;
    }

    fn reach(
        &mut self,
        index: usize,
        by: MovedBy,
        outcome: StepOutcome,
        now: Timestamp,
        expires_at: Timestamp,
    ) {
        let timeout = u64::from(self.steps[index].timeout_seconds);
        self.steps[index].reached = Some(Reached {
            at: now,
            by,
            outcome,
        });
        let has_more = index + 1 < self.steps.len();
        self.next_at =
            Some(now.plus_secs(timeout)).filter(|due| has_more && worth_sending(*due, expires_at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = Timestamp(1_800_000_000_000);
    const EXPIRES: Timestamp = Timestamp(1_800_000_300_000);

    fn three_steps() -> Vec<PlannedStep> {
        plan(&[
            (Channel::Whatsapp, Some(30)),
            (Channel::Sms, None),
            (Channel::Voice, Some(900)),
        ])
        .unwrap()
    }

    #[test]
    fn a_plan_is_checked_step_by_step() {
        assert_eq!(three_steps()[1].timeout_seconds, 60, "the default timeout");
        assert_eq!(plan(&[]), Err(InvalidWorkflow::StepCount(0)));
        assert_eq!(
            plan(&[(Channel::Sms, None); 6]),
            Err(InvalidWorkflow::StepCount(6))
        );
        for (seconds, ok) in [(14, false), (15, true), (900, true), (901, false)] {
            let planned = plan(&[(Channel::Sms, None), (Channel::Voice, Some(seconds))]);
            assert_eq!(planned.is_ok(), ok, "{seconds} s");
        }
        let mixed = plan(&[(Channel::Sms, None), (Channel::Email, None)]).unwrap_err();
        assert!(
            mixed.to_string().contains("Step 2 of 'workflow' is email"),
            "{mixed}"
        );
    }

    #[test]
    fn each_step_follows_the_last_after_its_timeout_until_none_is_left() {
        let mut workflow = Workflow::start(&three_steps(), 1, START, EXPIRES);
        let first_due = START.plus_secs(30);
        assert_eq!(workflow.next_at, Some(first_due));

        let next = workflow.next_step(StepTrigger::Due(first_due)).unwrap();
        assert_eq!(
            (next.index, next.channel, next.by),
            (1, Channel::Sms, MovedBy::Timeout)
        );
        workflow.sent(next, 2, first_due, EXPIRES);
        assert_eq!(workflow.next_at, Some(first_due.plus_secs(60)));

        let asked_at = first_due.plus_secs(20);
        let next = workflow.next_step(StepTrigger::Asked).unwrap();
        assert_eq!((next.index, next.channel), (2, Channel::Voice));
        workflow.sent(next, 3, asked_at, EXPIRES);
        assert_eq!(workflow.next_at, None, "no step left");
        assert_eq!(
            workflow.next_step(StepTrigger::Asked),
            Err(NoNextStep::Finished)
        );
        let reached: Vec<_> = workflow
            .steps
            .iter()
            .map(|step| step.reached.as_ref().map(|r| (r.by, r.outcome.clone())))
            .collect();
        assert_eq!(
            reached,
            vec![
                Some((MovedBy::Create, StepOutcome::Sent { send: 1 })),
                Some((MovedBy::Timeout, StepOutcome::Sent { send: 2 })),
                Some((MovedBy::Asked, StepOutcome::Sent { send: 3 })),
            ]
        );
    }

    #[test]
    fn a_step_due_with_under_15_s_of_the_code_s_life_left_is_never_scheduled() {
        let expires_soon = START.plus_secs(30);
        let workflow = Workflow::start(&three_steps(), 1, START, expires_soon);
        assert_eq!(
            workflow.next_at, None,
            "due exactly at expiry: not scheduled"
        );
        let too_late = Workflow::start(&three_steps(), 1, START, START.plus_secs(44));
        assert_eq!(too_late.next_at, None, "14 s left when due: not scheduled");
        let in_time = Workflow::start(&three_steps(), 1, START, START.plus_secs(45));
        assert_eq!(in_time.next_at, Some(START.plus_secs(30)));
        assert_eq!(
            workflow.next_step(StepTrigger::Due(expires_soon)),
            Err(NoNextStep::NotDue)
        );
        let asked = workflow.next_step(StepTrigger::Asked).unwrap();
        assert_eq!(asked.channel, Channel::Sms, "the tenant may still move on");
    }

    #[test]
    fn a_reminder_of_another_schedule_moves_nothing() {
        let mut workflow = Workflow::start(&three_steps(), 1, START, EXPIRES);
        let due = workflow.next_at.unwrap();
        let asked = workflow.next_step(StepTrigger::Asked).unwrap();
        workflow.sent(asked, 2, START.plus_secs(5), EXPIRES);
        // The clock's reminder for the first schedule comes after the tenant moved on.
        assert_eq!(
            workflow.next_step(StepTrigger::Due(due)),
            Err(NoNextStep::NotDue)
        );
        workflow.end();
        assert_eq!(
            workflow.next_step(StepTrigger::Due(due)),
            Err(NoNextStep::NotDue)
        );
    }

    #[test]
    fn a_skipped_step_makes_the_next_due_at_once() {
        let mut workflow = Workflow::start(&three_steps(), 1, START, EXPIRES);
        let due = workflow.next_at.unwrap();
        let next = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.skipped(next, "too_many_sends", due, EXPIRES);
        assert_eq!(workflow.next_at, Some(due));
        let last = workflow.next_step(StepTrigger::Due(due)).unwrap();
        assert_eq!(last.channel, Channel::Voice);
        workflow.skipped(last, "fraud_suspected", due, EXPIRES);
        assert_eq!(workflow.next_at, None);
    }

    #[test]
    fn a_refused_step_waits_for_its_refusal_to_pass_only_if_the_code_lasts() {
        let mut workflow = Workflow::start(&three_steps(), 1, START, EXPIRES);
        let due = workflow.next_at.unwrap();
        let next = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.refused(
            next,
            "too_many_sends",
            Some(due.plus_secs(20)),
            due,
            EXPIRES,
        );
        assert_eq!(workflow.next_at, Some(due.plus_secs(20)));
        assert_eq!(workflow.steps[1].reached, None, "held, not skipped");
        let again = workflow
            .next_step(StepTrigger::Due(due.plus_secs(20)))
            .unwrap();
        let too_late = Some(EXPIRES.plus_secs(1));
        workflow.refused(
            again,
            "too_many_sends",
            too_late,
            due.plus_secs(20),
            EXPIRES,
        );
        assert!(workflow.steps[1].reached.is_some(), "skipped");
        assert_eq!(
            workflow.next_at,
            Some(due.plus_secs(20)),
            "the next at once"
        );
        assert!(workflow.has_steps_left());
    }

    #[test]
    fn a_step_taken_back_is_due_again() {
        let mut workflow = Workflow::start(&three_steps(), 1, START, EXPIRES);
        let due = workflow.next_at.unwrap();
        let next = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.sent(next, 2, due, EXPIRES);
        workflow.take_back(7, due.plus_secs(1), EXPIRES);
        assert!(
            workflow.steps[1].reached.is_some(),
            "another send: nothing taken back"
        );
        workflow.take_back(2, due.plus_secs(1), EXPIRES);
        assert_eq!(workflow.steps[1].reached, None);
        assert_eq!(workflow.next_at, Some(due.plus_secs(1)));
        let again = workflow
            .next_step(StepTrigger::Due(due.plus_secs(1)))
            .unwrap();
        assert_eq!(again.channel, Channel::Sms);
    }

    #[test]
    fn a_step_skipped_near_expiry_still_makes_the_next_due_at_once() {
        // The skipped step's own 900 s would end after the code: the next goes at once all
        // the same.
        let steps = plan(&[
            (Channel::Sms, Some(15)),
            (Channel::Whatsapp, Some(900)),
            (Channel::Voice, None),
        ])
        .unwrap();
        let mut workflow = Workflow::start(&steps, 1, START, EXPIRES);
        let due = workflow.next_at.unwrap();
        let next = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.skipped(next, "too_many_sends", due, EXPIRES);
        assert_eq!(workflow.next_at, Some(due));
        let last = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.skipped(last, "fraud_suspected", EXPIRES, EXPIRES);
        assert_eq!(workflow.next_at, None, "nothing after expiry");
    }
}
