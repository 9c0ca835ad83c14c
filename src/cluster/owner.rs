//! What a partition's owner runs for a command: the same issuer, checker and ledger a
//! single node uses, on this node's store.

use actix::Addr;
use async_trait::async_trait;
use std::sync::Arc;

use super::command::{check_binding, CheckTarget, Command, IssueAnswer, IssueRefused, Reply};
use crate::delivery::recorder::{Ledger, StoreLedger};
use crate::issuance::IssuanceActor;
use crate::secrets::Sealer;
use crate::store::StoreError;
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
}

#[async_trait]
impl Executor for Owner {
    async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::Issue(message) => Reply::Issue(match self.issuer.send(message).await {
                Ok(Ok(receipt)) => IssueAnswer::Issued(receipt),
                Ok(Err(error)) => IssueAnswer::Refused((&error).into()),
                Err(error) => IssueAnswer::Refused(IssueRefused::unavailable(error)),
            }),
            Command::Check {
                tenant,
                target,
                sealed_code,
                session_id,
                at,
            } => {
                let Ok(code) = self
                    .sealer
                    .open_bound(&check_binding(&tenant), &sealed_code)
                else {
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
                            .check(&tenant, &id, &code, session_id.as_deref(), at)
                            .await
                    }
                    Err(error) => Err(error),
                })
            }
            Command::Get { tenant, id } => Reply::Verification(self.checker.get(&tenant, &id)),
            Command::Cancel { tenant, id, at } => {
                Reply::Verification(self.checker.cancel(&tenant, &id, at).await)
            }
            Command::Outcome(outcome) => Reply::Outcome(self.ledger.record(outcome).await),
            Command::Receipt {
                owner,
                provider,
                status,
                at,
            } => Reply::Receipt(self.ledger.apply_receipt(owner, provider, status, at).await),
        }
    }
}
