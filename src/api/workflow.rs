//! Fallback workflows on the API: each step as a verification shows it, and
//! `POST /v1/verifications/{id}/next`, which sends the next step at once.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::Tenant;
use super::verifications::created_response;
use super::AppState;
use crate::cluster::command::IssueAnswer;
use crate::domain::workflow::{Reached, StepOutcome};
use crate::domain::{Channel, StepTrigger, Timestamp, Verification, VerificationId, Workflow};

/// A verification's fallback workflow: its steps in order, and when the next goes out.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WorkflowView {
    steps: Vec<WorkflowStepView>,
    /// When the next step goes out by itself, unless the code is verified first; absent
    /// once the workflow has ended.
    next_step_at: Option<String>,
}

/// One step of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WorkflowStepView {
    channel: Channel,
    /// The wait after this step before the next.
    channel_timeout_seconds: u16,
    /// `sent`; `skipped` (it could not send: `reason` says why); `scheduled` (the next, at
    /// `next_step_at`); `waiting` (not scheduled yet: after the next, or when the code
    /// expires before the timeout; `…/next` sends it); `not_reached` (the verification ended
    /// first).
    #[schema(pattern = "^(sent|skipped|scheduled|waiting|not_reached)$")]
    status: &'static str,
    /// When the step was reached.
    at: Option<String>,
    /// What moved the workflow to it: `create`, `timeout` or `asked` (`…/next`).
    #[schema(pattern = "^(create|timeout|asked)$")]
    by: Option<&'static str>,
    /// The send its code went out as: the `send` of its delivery timeline's entries.
    send: Option<u32>,
    /// Why it was skipped (the refusal's code, such as `too_many_sends`).
    reason: Option<String>,
}

impl WorkflowView {
    /// The workflow of `record` as it stands at `now`, if it follows one.
    pub(super) fn of_record(record: &Verification, now: Timestamp) -> Option<Self> {
        let workflow = record.workflow.as_ref()?;
        Some(Self::of(workflow, record.is_pending(now)))
    }

    /// `workflow` of a verification that is `pending` or not.
    pub(super) fn of(workflow: &Workflow, pending: bool) -> Self {
        let mut scheduled = workflow.next_at.is_some();
        let steps = workflow
            .steps
            .iter()
            .map(|step| {
                let status = match &step.reached {
                    Some(Reached {
                        outcome: StepOutcome::Sent { .. },
                        ..
                    }) => "sent",
                    Some(_) => "skipped",
                    None if !pending => "not_reached",
                    None if std::mem::take(&mut scheduled) => "scheduled",
                    None => "waiting",
                };
                let reached = step.reached.as_ref();
                WorkflowStepView {
                    channel: step.channel,
                    channel_timeout_seconds: step.timeout_seconds,
                    status,
                    at: reached.map(|reached| reached.at.to_rfc3339()),
                    by: reached.map(|reached| reached.by.as_str()),
                    send: reached.and_then(|reached| match reached.outcome {
                        StepOutcome::Sent { send } => Some(send),
                        StepOutcome::Skipped { .. } => None,
                    }),
                    reason: reached.and_then(|reached| match &reached.outcome {
                        StepOutcome::Skipped { reason } => Some(reason.clone()),
                        StepOutcome::Sent { .. } => None,
                    }),
                }
            })
            .collect();
        WorkflowView {
            steps,
            next_step_at: workflow
                .next_at
                .filter(|_| pending)
                .map(Timestamp::to_rfc3339),
        }
    }
}

/// Sends the next step of a verification's workflow now, with the same code, rather than
/// after the current step's timeout.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/next", operation_id = "next_workflow_step",
    tag = "verifications",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    responses(
        (status = 200, description = "The next step's send is on its way: the verification, on the step's channel", body = super::verifications::CreatedView),
        (status = 403, description = "The tenant may not send on the step's channel, or the destination is blocked", body = ErrorEnvelope),
        (status = 404, description = "No such verification for this tenant", body = ErrorEnvelope),
        (status = 409, description = "No step is left (`no_next_step`), the verification is over (`already_approved`, `canceled`, `max_attempts_reached`), or its code can no longer be sent (`code_not_kept`)", body = ErrorEnvelope),
        (status = 410, description = "The code has expired", body = ErrorEnvelope),
        (status = 429, description = "The destination's send limit or a cap; wait Retry-After", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn next(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VerificationId::parse(&id).ok_or_else(ApiError::not_found)?;
    match state
        .gateway
        .next_step(Some(&tenant.0), &id, StepTrigger::Asked)
        .await?
    {
        IssueAnswer::Issued(receipt) => Ok(created_response(&receipt)),
        IssueAnswer::Refused(refused) => Err(refused.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workflow::{plan, StepTrigger};

    const START: Timestamp = Timestamp(1_800_000_000_000);
    const EXPIRES: Timestamp = Timestamp(1_800_000_600_000);

    fn statuses(workflow: &Workflow, pending: bool) -> Vec<&'static str> {
        WorkflowView::of(workflow, pending)
            .steps
            .iter()
            .map(|step| step.status)
            .collect()
    }

    #[test]
    fn each_step_shows_how_it_went_and_what_comes_next() {
        let steps = plan(&[
            (Channel::Whatsapp, Some(30)),
            (Channel::Sms, None),
            (Channel::Voice, None),
        ])
        .unwrap();
        let mut workflow = Workflow::start(&steps, 1, START, EXPIRES);
        assert_eq!(statuses(&workflow, true), ["sent", "scheduled", "waiting"]);
        let due = workflow.next_at.unwrap();
        let next = workflow.next_step(StepTrigger::Due(due)).unwrap();
        workflow.skipped(next, "too_many_sends", due, EXPIRES);
        let view = WorkflowView::of(&workflow, true);
        assert_eq!(statuses(&workflow, true), ["sent", "skipped", "scheduled"]);
        assert_eq!(view.steps[1].reason.as_deref(), Some("too_many_sends"));
        assert_eq!(view.steps[1].by, Some("timeout"));
        assert_eq!(
            (view.steps[0].send, view.steps[0].by),
            (Some(1), Some("create"))
        );
        workflow.end();
        assert_eq!(
            statuses(&workflow, false),
            ["sent", "skipped", "not_reached"]
        );
        assert_eq!(WorkflowView::of(&workflow, false).next_step_at, None);
    }
}
