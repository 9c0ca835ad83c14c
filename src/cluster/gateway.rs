//! Where every request that touches a destination's state enters: it runs here when this
//! node owns the destination's partition (always, in embedded mode), and goes to the owner
//! otherwise. The HTTP API, the broker's requests consumer and the senders all call it.

use async_trait::async_trait;
use std::sync::{Arc, OnceLock};

use super::command::{
    mismatched, CandidateCode, CheckTarget, Command, IssueAnswer, IssueRefused, Reply,
};
use super::owner::Executor;
use super::ownership::Entered;
use super::ClusterUnavailable;
use crate::access::{AdminError, BlocklistAction, BlocklistAnswer};
use crate::delivery::recorder::{Ledger, SendOutcome};
use crate::domain::counters::{Count, CountFailed, Tallied, Tally};
use crate::domain::fraud::Block;
use crate::domain::slot::lists_slot;
use crate::domain::{
    DeliveryState, OtpCode, Presented, StepTrigger, Timestamp, Verification, VerificationId,
};
use crate::fraud::BlockKeeper;
use crate::issuance::IssueOtp;
use crate::providers::receipts::ReceiptStatus;
use crate::secrets::Sealer;
use crate::store::{MessageOwner, StoreError};
use crate::verify::{CheckError, CheckOutcome, Closing};

/// The way to the other nodes: whether this node serves a partition now, and how a command
/// reaches the one that does.
#[async_trait]
pub trait Forwarder: Send + Sync {
    /// Lets a command in when this node owns `partition` and has caught up on it; the
    /// partition stays this node's while the `Entered` lives.
    fn enter(&self, partition: u16) -> Option<Entered>;

    /// Sends `command` to the owner of `partition` and waits for its reply.
    async fn forward(&self, partition: u16, command: &Command)
        -> Result<Reply, ClusterUnavailable>;
}

/// How often a command sent back by a partition changing hands is sent again, and the
/// pause before each.
const MOVED_RETRIES: u32 = 50;
const MOVED_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub struct Gateway {
    partitions: u16,
    cluster: Option<Arc<dyn Forwarder>>,
    /// This node's executor, set once the issuer runs.
    local: OnceLock<Arc<dyn Executor>>,
    sealer: Sealer,
}

impl Gateway {
    /// `cluster` is `None` in embedded mode: every command runs here.
    pub fn new(partitions: u16, cluster: Option<Arc<dyn Forwarder>>, sealer: Sealer) -> Self {
        Gateway {
            partitions: partitions.max(1),
            cluster,
            local: OnceLock::new(),
            sealer,
        }
    }

    /// Makes `executor` run the commands of the partitions this node serves.
    pub fn serve_with(&self, executor: Arc<dyn Executor>) {
        let _ = self.local.set(executor);
    }

    /// The partition a slot belongs to.
    pub fn partition_of(&self, slot: u32) -> u16 {
        super::partition_of(slot, self.partitions)
    }

    /// Lets this node in to the partition of `slot` when it serves it (never in embedded
    /// mode, where nothing is shared); the partition stays its own while the guard lives.
    pub fn enter_served(&self, slot: u32) -> Option<Entered> {
        self.cluster.as_ref()?.enter(self.partition_of(slot))
    }

    /// Whether this node acts for the destination in `slot` now: always in embedded mode;
    /// in a cluster, when it owns the slot's partition and has caught up on it.
    pub fn serves(&self, slot: u32) -> bool {
        match &self.cluster {
            None => true,
            Some(cluster) => cluster.enter(self.partition_of(slot)).is_some(),
        }
    }

    /// Runs `command` for the destination in `slot`, here or on its owner.
    pub async fn run(&self, slot: u32, command: Command) -> Result<Reply, ClusterUnavailable> {
        let partition = self.partition_of(slot);
        let Some(cluster) = &self.cluster else {
            return self.execute_here(command).await;
        };
        // A partition changing hands sends a command back; it goes again to the queue,
        // which the next owner takes within moments. Run here, a command is never sent
        // back, so it is handed over rather than copied.
        for _ in 0..MOVED_RETRIES {
            let reply = match cluster.enter(partition) {
                Some(_entered) => return self.execute_here(command).await,
                None => {
                    cluster
                        .forward(partition, &command.to_send(&self.sealer))
                        .await?
                }
            };
            if !matches!(reply, Reply::Moved) {
                return Ok(reply);
            }
            tokio::time::sleep(MOVED_PAUSE).await;
        }
        Err(ClusterUnavailable::Moving)
    }

    /// Runs `command` on this node.
    pub async fn execute_here(&self, command: Command) -> Result<Reply, ClusterUnavailable> {
        let local = self.local.get().ok_or(ClusterUnavailable::Starting)?;
        Ok(local.execute(command).await)
    }

    pub async fn issue(&self, message: IssueOtp) -> IssueAnswer {
        let slot = message.destination_key().slot();
        match self.run(slot, Command::Issue(message)).await {
            Ok(Reply::Issue(answer)) => answer,
            Ok(_) => IssueAnswer::Refused(IssueRefused::unavailable(mismatched("create"))),
            Err(error) => IssueAnswer::Refused(IssueRefused::unavailable(error)),
        }
    }

    pub async fn check(
        &self,
        tenant: &str,
        target: CheckTarget,
        code: &OtpCode,
        presented: Presented,
        at: Timestamp,
    ) -> Result<(Verification, CheckOutcome), CheckError> {
        let command = Command::Check {
            tenant: tenant.to_owned(),
            code: CandidateCode::Clear(code.clone()),
            presented,
            at,
            target: target.clone(),
        };
        match self.run(target.slot(), command).await {
            Ok(Reply::Check(result)) => result,
            Ok(_) => Err(mismatched("check").into()),
            Err(error) => Err(unavailable(error).into()),
        }
    }

    pub async fn get(&self, tenant: &str, id: &VerificationId) -> Result<Verification, CheckError> {
        let command = Command::Get {
            tenant: tenant.to_owned(),
            id: id.clone(),
        };
        self.verification(id, command, "read").await
    }

    /// Sends the next step of verification `id`'s workflow, asked by `tenant` (or by the
    /// clock: `None`).
    pub async fn next_step(
        &self,
        tenant: Option<&str>,
        id: &VerificationId,
        trigger: StepTrigger,
    ) -> Result<IssueAnswer, CheckError> {
        let command = Command::Step {
            tenant: tenant.map(str::to_owned),
            id: id.clone(),
            trigger,
        };
        match self.run(id.slot(), command).await {
            Ok(Reply::Step(result)) => result,
            Ok(_) => Err(mismatched("workflow step").into()),
            Err(error) => Err(unavailable(error).into()),
        }
    }

    /// Cancels or approves a pending verification.
    pub async fn close(
        &self,
        tenant: &str,
        id: &VerificationId,
        closing: Closing,
        at: Timestamp,
    ) -> Result<Verification, CheckError> {
        let command = Command::Close {
            tenant: tenant.to_owned(),
            id: id.clone(),
            closing,
            at,
        };
        let what = match closing {
            Closing::Cancel => "cancel",
            Closing::Approve => "approval",
        };
        self.verification(id, command, what).await
    }

    /// Looks at or edits the blocklist, on the owner of the lists' partition.
    pub async fn edit_blocklist(
        &self,
        by: &str,
        action: BlocklistAction,
    ) -> Result<BlocklistAnswer, AdminError> {
        let command = Command::Blocklist {
            by: by.to_owned(),
            action,
        };
        match self.run(lists_slot(), command).await {
            Ok(Reply::Blocklist(result)) => result,
            Ok(_) => Err(mismatched("blocklist edit").into()),
            Err(error) => Err(unavailable(error).into()),
        }
    }

    /// Lifts a fraud block, on the owner of the lists' partition.
    pub async fn lift_fraud_block(&self, by: &str, prefix: &str) -> Result<Block, AdminError> {
        let command = Command::LiftFraudBlock {
            by: by.to_owned(),
            prefix: prefix.to_owned(),
        };
        match self.run(lists_slot(), command).await {
            Ok(Reply::FraudBlock(result)) => result,
            Ok(_) => Err(mismatched("fraud block lift").into()),
            Err(error) => Err(unavailable(error).into()),
        }
    }

    async fn verification(
        &self,
        id: &VerificationId,
        command: Command,
        what: &str,
    ) -> Result<Verification, CheckError> {
        match self.run(id.slot(), command).await {
            Ok(Reply::Verification(result)) => result,
            Ok(_) => Err(mismatched(what).into()),
            Err(error) => Err(unavailable(error).into()),
        }
    }
}

fn unavailable(error: ClusterUnavailable) -> StoreError {
    StoreError::Io(format!("the partition's owner did not answer: {error}"))
}

/// How often a send's outcome or receipt is offered again when its partition's owner did
/// not answer (it may have died: the next owner takes over within moments), and the pause
/// before each. Recording one twice changes nothing; not recording it sends the code again.
const RECORD_TRIES: u32 = 10;
const RECORD_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);

impl Gateway {
    /// Runs a command that may safely run twice, offering it again while the partition's
    /// owner does not answer.
    async fn run_until_recorded(
        &self,
        slot: u32,
        command: Command,
    ) -> Result<Reply, ClusterUnavailable> {
        let mut tries = 1;
        loop {
            match self.run(slot, command.clone()).await {
                Err(error) if tries < RECORD_TRIES && error.is_passing() => {
                    tries += 1;
                    tokio::time::sleep(RECORD_PAUSE).await;
                }
                answered => return answered,
            }
        }
    }
}

/// Outcomes and receipts go to the owner of their verification's partition.
#[async_trait]
impl Ledger for Gateway {
    async fn record(&self, outcome: SendOutcome) -> Result<(), StoreError> {
        let slot = outcome.job.verification_id.slot();
        match self
            .run_until_recorded(slot, Command::Outcome(outcome))
            .await
        {
            Ok(Reply::Outcome(result)) => result,
            Ok(_) => Err(mismatched("send outcome")),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn apply_receipt(
        &self,
        owner: MessageOwner,
        provider: String,
        status: ReceiptStatus,
        error_code: Option<String>,
        at: Timestamp,
    ) -> Result<Option<(Verification, DeliveryState)>, StoreError> {
        let slot = owner.verification_id.slot();
        let command = Command::Receipt {
            owner,
            provider,
            status,
            error_code,
            at,
        };
        match self.run_until_recorded(slot, command).await {
            Ok(Reply::Receipt(result)) => result,
            Ok(_) => Err(mismatched("delivery receipt")),
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// Fraud blocks are kept by the owner of the lists' partition.
#[async_trait]
impl BlockKeeper for Gateway {
    async fn keep(&self, block: Block) -> Result<(), StoreError> {
        match self.run(lists_slot(), Command::KeepFraudBlock(block)).await {
            Ok(Reply::Kept(result)) => result,
            Ok(_) => Err(mismatched("fraud block")),
            Err(error) => Err(unavailable(error)),
        }
    }
}

/// Counts go to the owner of their counter's partition.
#[async_trait]
impl Tally for Gateway {
    async fn count(&self, count: Count) -> Result<Tallied, CountFailed> {
        let failed = |error: StoreError| CountFailed(error.to_string());
        match self.run(count.counter.slot(), Command::Count(count)).await {
            Ok(Reply::Count(result)) => result.map_err(failed),
            Ok(_) => Err(failed(mismatched("count"))),
            Err(error) => Err(failed(unavailable(error))),
        }
    }
}
