//! What a partition's owner runs for a command: the same issuer, checker and ledger a
//! single node uses, on this node's store; and before an issue of a tenant with caps, the
//! count of its send against the tenant's counter (wherever that is kept).

use actix::Addr;
use async_trait::async_trait;
use std::sync::{Arc, Weak};

use super::command::{CheckTarget, Command, IssueAnswer, IssueRefused, Reply};
use super::counters::CounterBook;
use crate::access::caps::{self, CapTable};
use crate::access::{AccessDenied, AdminError};
use crate::delivery::recorder::{Ledger, StoreLedger};
use crate::domain::counters::{Change, Count, Counter, Tallied, Tally, Usage};
use crate::domain::{StepTrigger, Timestamp, VerificationId};
use crate::fraud::FraudGate;
use crate::issuance::{
    DueStepRefused, EditBlocklist, IssuanceActor, IssueError, IssueOtp, LiftFraudBlock, StepRefusal,
};
use crate::secrets::Sealer;
use crate::store::StoreError;
use crate::verify::rules::ensure_pending;
use crate::verify::{CheckError, Checker};

/// Runs commands for the partitions this node owns.
#[async_trait]
pub trait Executor: Send + Sync {
    async fn execute(&self, command: Command) -> Reply;
}

pub struct Owner {
    pub issuer: Addr<IssuanceActor>,
    pub checker: Checker,
    pub ledger: Arc<StoreLedger>,
    pub sealer: Sealer,
    /// The counters of this node's partitions.
    pub counters: CounterBook,
    /// Which tenants' sends are counted, at what cost.
    pub caps: CapTable,
    /// Where a tenant's send is counted: the gateway, which holds this owner (so weakly).
    pub tally: Weak<dyn Tally>,
    /// The fraud blocks this node enforces, and keeps when it owns the lists' partition.
    pub fraud: FraudGate,
}

impl Owner {
    /// Counts the send against the tenant's caps first when it has any; gives the count back
    /// when nothing new was sent (a refusal, an idempotent retry).
    async fn issue(&self, message: IssueOtp) -> IssueAnswer {
        let request = &message.request;
        let charge = self
            .caps
            .charge(&message.tenant, request.channel, &request.destination);
        let Some(cost) = charge else {
            return self.issue_counted(message).await.0;
        };
        let Some(tally) = self.tally.upgrade() else {
            return IssueAnswer::Refused(IssueRefused::unavailable("otpd is stopping"));
        };
        let counter = Counter::Tenant(message.tenant.clone());
        let taken = match tally
            .count(Count {
                counter: counter.clone(),
                change: Change::Take { cost },
            })
            .await
        {
            Ok(taken) => taken,
            Err(error) => return IssueAnswer::Refused(IssueRefused::unavailable(error)),
        };
        if !taken.granted {
            return IssueAnswer::Refused(self.cap_reached(&message.tenant, cost, &taken));
        }
        let (answer, sent) = self.issue_counted(message).await;
        if !sent {
            let given_back = Count {
                counter,
                change: Change::GiveBack {
                    cost,
                    taken_at: taken.at,
                },
            };
            if let Err(error) = tally.count(given_back).await {
                tracing::warn!(%error, "Could not give back a send counted against a tenant's caps; it stays counted.");
            }
        }
        answer
    }

    /// The issue's answer, and whether it sent something new.
    async fn issue_counted(&self, message: IssueOtp) -> (IssueAnswer, bool) {
        match self.issuer.send(message).await {
            Ok(Ok(issued)) => (IssueAnswer::Issued(issued.receipt), !issued.replayed),
            Ok(Err(error)) => (IssueAnswer::Refused((&error).into()), false),
            Err(error) => (
                IssueAnswer::Refused(IssueRefused::unavailable(error)),
                false,
            ),
        }
    }

    /// Sends the next step of verification `id`'s workflow, counted like a create. A step the
    /// clock found due that cannot go out for a lasting reason leaves the schedule, recorded
    /// skipped when it was still the step to take (so the one after it goes next).
    async fn step(
        &self,
        tenant: Option<String>,
        id: VerificationId,
        trigger: StepTrigger,
    ) -> Result<IssueAnswer, CheckError> {
        let answer = self.send_step(tenant.as_deref(), &id, trigger).await;
        if let (StepTrigger::Due(due), Some(refusal)) = (trigger, lasting_refusal(&answer)) {
            let settled = self.issuer.send(DueStepRefused { id, due, refusal }).await;
            if let Err(error) = settled.map_err(stopped).and_then(|settled| Ok(settled?)) {
                tracing::warn!(%error, "Could not take a workflow step that cannot go out off the schedule; the clock offers it again.");
            }
        }
        answer
    }

    async fn send_step(
        &self,
        tenant: Option<&str>,
        id: &VerificationId,
        trigger: StepTrigger,
    ) -> Result<IssueAnswer, CheckError> {
        let record = self.checker.find(tenant, id)?;
        ensure_pending(&record, Timestamp::now()).map_err(CheckError::Refused)?;
        Ok(match IssueOtp::for_step(&record, trigger) {
            Ok(message) => self.issue(message).await,
            Err(no_step) => IssueAnswer::Refused((&IssueError::from(no_step)).into()),
        })
    }

    /// The refusal of a send its tenant's counter did not take, naming the cap it reached.
    fn cap_reached(&self, tenant: &str, cost: u64, refused: &Tallied) -> IssueRefused {
        let Usage::Tenant(usage) = refused.usage else {
            return IssueRefused::unavailable(super::command::mismatched("tenant count"));
        };
        match caps::admit(&usage, &self.caps.caps(tenant), cost, refused.at) {
            Err(cap) => {
                let error = IssueError::Access(AccessDenied::CapReached {
                    tenant: tenant.to_owned(),
                    cap,
                });
                crate::telemetry::events::IssueRefused {
                    tenant,
                    reason: error.reason(),
                }
                .emit();
                (&error).into()
            }
            Ok(_) => IssueRefused::unavailable(
                "the node keeping the tenant's counter has other caps for it; do all nodes have the same settings?",
            ),
        }
    }
}

#[async_trait]
impl Executor for Owner {
    async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::Issue(message) => Reply::Issue(self.issue(message).await),
            Command::Check {
                tenant,
                target,
                code,
                presented,
                at,
            } => {
                let Ok(code) = code.open(&self.sealer, &tenant) else {
                    return Reply::Check(Err(CheckError::Store(StoreError::Io(
                        "a forwarded code did not open: do all nodes have the same sealing key?"
                            .into(),
                    ))));
                };
                let id = match target {
                    CheckTarget::Id(id) => Ok(id),
                    CheckTarget::Destination(key) => self.checker.pending_for(&key),
                };
                Reply::Check(match id {
                    Ok(id) => {
                        self.checker
                            .check(&tenant, &id, &code, &presented, at)
                            .await
                    }
                    Err(error) => Err(error),
                })
            }
            Command::Get { tenant, id } => Reply::Verification(self.checker.get(&tenant, &id)),
            Command::Close {
                tenant,
                id,
                closing,
                at,
            } => Reply::Verification(self.checker.close(&tenant, &id, closing, at).await),
            Command::Step {
                tenant,
                id,
                trigger,
            } => Reply::Step(self.step(tenant, id, trigger).await),
            Command::Outcome(outcome) => Reply::Outcome(self.ledger.record(outcome).await),
            Command::Receipt {
                owner,
                provider,
                status,
                error_code,
                at,
            } => Reply::Receipt(
                self.ledger
                    .apply_receipt(owner, provider, status, error_code, at)
                    .await,
            ),
            Command::Count(count) => Reply::Count(self.counters.apply(count).await),
            Command::Blocklist { by, action } => Reply::Blocklist(
                self.issuer
                    .send(EditBlocklist { by, action })
                    .await
                    .unwrap_or_else(|error| Err(stopped(error))),
            ),
            Command::LiftFraudBlock { by, prefix } => Reply::FraudBlock(
                self.issuer
                    .send(LiftFraudBlock { by, prefix })
                    .await
                    .unwrap_or_else(|error| Err(stopped(error))),
            ),
            Command::KeepFraudBlock(block) => Reply::Kept(self.fraud.keep(block).await),
        }
    }
}

/// Why a step's send did not go out, when the reason lasts (a refusal, a verification that
/// is over or gone); `None` when it went out or may go out in a moment.
fn lasting_refusal(answer: &Result<IssueAnswer, CheckError>) -> Option<StepRefusal> {
    let refusal = |reason: &str, retry_after: Option<u64>| StepRefusal {
        reason: reason.to_owned(),
        retry_after: retry_after.map(std::time::Duration::from_secs),
    };
    match answer {
        Ok(IssueAnswer::Issued(_)) | Err(CheckError::Store(_)) => None,
        Ok(IssueAnswer::Refused(refused)) if refused.transient => None,
        Ok(IssueAnswer::Refused(refused)) => Some(refusal(
            refused
                .error
                .reason
                .as_deref()
                .unwrap_or(&refused.error.code),
            refused.error.retry_after_seconds,
        )),
        Err(CheckError::NotFound) => Some(refusal("not_found", None)),
        Err(CheckError::Refused(_)) => Some(refusal("over", None)),
    }
}

/// The issuer stopped before it answered.
fn stopped(error: actix::MailboxError) -> AdminError {
    AdminError::Store(StoreError::Io(format!(
        "the issuer did not answer: {error}"
    )))
}
