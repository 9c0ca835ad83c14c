//! IssuanceActor: puts creates and admin edits in one order, one at a time, through the
//! `Issuer`; then — outside the actor — waits for the flush and hands the job on, so nothing
//! is answered before it is durable.

use actix::prelude::*;
use std::net::IpAddr;

use super::error::IssueError;
use super::issuer::Issuer;
use super::policy::IssueRequest;
use crate::access::{AdminError, BlocklistAction, BlocklistAnswer};
use crate::domain::workflow::NoNextStep;
use crate::domain::{
    Destination, DestinationKey, IssueReceipt, StepTrigger, Timestamp, Verification, VerificationId,
};
use crate::fraud::Block;
use crate::store::{when_durable, StoreError};
use crate::telemetry::events::{BlocklistEdited, IssueRefused};

/// Issue (or resend) a code.
#[derive(Debug, Clone, Message, serde::Serialize, serde::Deserialize)]
#[rtype(result = "Result<Issued, IssueError>")]
pub struct IssueOtp {
    pub tenant: String,
    pub source: RequestSource,
    /// The API the request came by, which decides what a tenant's settings leave open.
    pub surface: Surface,
    pub request: IssueRequest,
    pub idempotency: Option<IdempotencyInput>,
}

/// The API a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Surface {
    /// otpd's own: HTTP `/v1/…` and AMQP requests.
    Native,
    /// The Twilio Verify v2 compatible routes.
    TwilioCompatible,
}

impl Surface {
    /// Whether a resend sends the same code when the tenant's settings do not say: as
    /// Twilio does on its routes, a new code on otpd's own.
    pub fn resend_keeps_code_by_default(self) -> bool {
        self == Surface::TwilioCompatible
    }
}

impl IssueOtp {
    /// The send of `record`'s next workflow step that `trigger` asks for: its channel, to
    /// the same address, with the record's locale and template and its kept code.
    pub fn for_step(record: &Verification, trigger: StepTrigger) -> Result<Self, NoNextStep> {
        let workflow = record.workflow.as_ref().ok_or(NoNextStep::NoWorkflow)?;
        let step = workflow.next_step(trigger)?;
        let Ok(destination) = Destination::parse(step.channel, &record.to) else {
            // Every step goes to the same kind of address, so this is a record otpd did not
            // write.
            tracing::warn!(verification = %record.id, channel = %step.channel, "A workflow step's channel cannot send to its verification's address; the workflow ends.");
            return Err(NoNextStep::Ended);
        };
        Ok(IssueOtp {
            tenant: record.tenant.clone(),
            source: RequestSource::Workflow {
                verification: record.id.clone(),
                trigger,
            },
            surface: Surface::Native,
            request: IssueRequest {
                channel: step.channel,
                destination,
                locale: record.locale.clone(),
                template: record.template.clone(),
                // A step keeps the verification's own session and transaction.
                session_id: None,
                transaction: None,
                code_length: record.code_length,
                ttl: record.created_at.until(record.expires_at),
                workflow: None,
            },
            idempotency: None,
        })
    }

    /// The destination the code goes to, as its state is kept.
    pub fn destination_key(&self) -> DestinationKey {
        DestinationKey::new(
            &self.tenant,
            self.request.channel,
            self.request.destination.as_str(),
        )
    }
}

/// An issue's answer, and whether it repeats an earlier one (an idempotent retry, which
/// sends nothing new).
#[derive(Debug, Clone)]
pub struct Issued {
    pub receipt: IssueReceipt,
    pub replayed: bool,
}

/// Where a request came from: HTTP requests are rate limited per tenant and client IP;
/// broker requests are paced by the queue's prefetch instead.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RequestSource {
    Http {
        client_ip: Option<IpAddr>,
    },
    Broker,
    /// The next step of verification `verification`'s workflow, its timeout passed or the
    /// tenant asking.
    Workflow {
        verification: VerificationId,
        trigger: StepTrigger,
    },
}

/// An idempotency key (namespaced by its source) and the hash of the request body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyInput {
    pub key: String,
    pub body_hash: [u8; 32],
}

/// List, add or remove blocklist entries on behalf of tenant `by`.
#[derive(Message)]
#[rtype(result = "Result<BlocklistAnswer, AdminError>")]
pub struct EditBlocklist {
    pub by: String,
    pub action: BlocklistAction,
}

/// The workflow step of verification `id` due at `due` could not be sent, for `refusal`:
/// take it off the schedule, and try it again later or record it skipped.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct DueStepRefused {
    pub id: VerificationId,
    pub due: Timestamp,
    pub refusal: StepRefusal,
}

/// Why a due step was not sent, when the reason lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRefusal {
    /// The refusal's stable code (`too_many_sends`, `fraud_suspected`, …).
    pub reason: String,
    /// When the refusal may no longer hold, if it said.
    pub retry_after: Option<std::time::Duration>,
}

/// Lift the block of `prefix` on behalf of tenant `by` (an admin).
#[derive(Message)]
#[rtype(result = "Result<Block, AdminError>")]
pub struct LiftFraudBlock {
    pub by: String,
    pub prefix: String,
}

pub struct IssuanceActor {
    issuer: Issuer,
    mailbox_capacity: usize,
}

impl IssuanceActor {
    pub fn new(issuer: Issuer, mailbox_capacity: usize) -> Self {
        IssuanceActor {
            issuer,
            mailbox_capacity,
        }
    }
}

impl Actor for IssuanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<IssueOtp> for IssuanceActor {
    type Result = ResponseFuture<Result<Issued, IssueError>>;

    fn handle(&mut self, message: IssueOtp, _: &mut Self::Context) -> Self::Result {
        let decided = self.issuer.issue(&message, Timestamp::now());
        if let Err(error) = &decided {
            IssueRefused {
                tenant: &message.tenant,
                reason: error.reason(),
            }
            .emit();
        }
        self.issuer.complete(decided)
    }
}

impl Handler<EditBlocklist> for IssuanceActor {
    type Result = ResponseFuture<Result<BlocklistAnswer, AdminError>>;

    fn handle(&mut self, message: EditBlocklist, _: &mut Self::Context) -> Self::Result {
        let answer = self
            .issuer
            .edit_blocklist(&message.by, message.action, Timestamp::now());
        let durable = when_durable(answer, self.issuer.flush());
        Box::pin(async move {
            let answer = durable.await?;
            // Told only once the edit is on disk, like the answer.
            if let Some(action) = answer.edit() {
                BlocklistEdited {
                    by: &message.by,
                    action,
                }
                .emit();
            }
            Ok(answer)
        })
    }
}

impl Handler<DueStepRefused> for IssuanceActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, message: DueStepRefused, _: &mut Self::Context) -> Self::Result {
        let settled = self.issuer.due_step_refused(
            &message.id,
            message.due,
            &message.refusal,
            Timestamp::now(),
        );
        when_durable(settled, self.issuer.flush())
    }
}

impl Handler<LiftFraudBlock> for IssuanceActor {
    type Result = ResponseFuture<Result<Block, AdminError>>;

    fn handle(&mut self, message: LiftFraudBlock, _: &mut Self::Context) -> Self::Result {
        let lifted = self
            .issuer
            .lift_fraud_block(&message.by, &message.prefix, Timestamp::now());
        when_durable(lifted, self.issuer.flush())
    }
}
