//! What one node asks of a partition's owner, and the answers, in no transport's terms.
//! Each command carries what the owner needs to act and nothing it must not see: a code to
//! check travels sealed with the cluster's sealing key.

use serde::{Deserialize, Serialize};

use crate::access::{AdminError, BlocklistAction, BlocklistAnswer};
use crate::delivery::recorder::SendOutcome;
use crate::domain::counters::{Count, Tallied};
use crate::domain::fraud::Block;
use crate::domain::{
    DeliveryState, DestinationKey, IssueReceipt, Presented, StepTrigger, Timestamp, Verification,
    VerificationId,
};
use crate::issuance::{IssueError, IssueOtp, RefusalKind};
use crate::providers::receipts::ReceiptStatus;
use crate::store::{MessageOwner, StoreError};
use crate::telemetry::platform::ErrorObject;
use crate::verify::{CheckError, CheckOutcome, Closing};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Issue(IssueOtp),
    Check {
        tenant: String,
        target: CheckTarget,
        /// The candidate code, sealed to `check_binding(tenant)`.
        sealed_code: Vec<u8>,
        presented: Presented,
        at: Timestamp,
    },
    Get {
        tenant: String,
        id: VerificationId,
    },
    Close {
        tenant: String,
        id: VerificationId,
        closing: Closing,
        at: Timestamp,
    },
    /// Send the next step of a verification's workflow: asked by `tenant`, or by the clock
    /// (`None`: whichever tenant the verification is of).
    Step {
        tenant: Option<String>,
        id: VerificationId,
        trigger: StepTrigger,
    },
    Outcome(SendOutcome),
    Receipt {
        owner: MessageOwner,
        provider: String,
        status: ReceiptStatus,
        error_code: Option<String>,
        at: Timestamp,
    },
    /// A change to a counter the cluster shares (a tenant's caps, a provider's quota).
    Count(Count),
    /// A look at or an edit of the blocklist, by tenant `by`.
    Blocklist {
        by: String,
        action: BlocklistAction,
    },
    /// Lift the fraud block of `prefix`, by admin tenant `by`.
    LiftFraudBlock {
        by: String,
        prefix: String,
    },
    /// Keep a fraud block some node decided, for every node to enforce.
    KeepFraudBlock(Block),
}

/// The verification a check is for: by id, or the pending one of a destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CheckTarget {
    Id(VerificationId),
    Destination(DestinationKey),
}

impl CheckTarget {
    /// The slot of the partition holding the verification.
    pub fn slot(&self) -> u32 {
        match self {
            CheckTarget::Id(id) => id.slot(),
            CheckTarget::Destination(key) => key.slot(),
        }
    }
}

/// What a sealed check code is bound to, so it opens for that tenant's check only.
pub fn check_binding(tenant: &str) -> String {
    format!("check:{tenant}")
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Issue(IssueAnswer),
    Check(Result<(Verification, CheckOutcome), CheckError>),
    Verification(Result<Verification, CheckError>),
    /// A step's send as a create's, or why there is no verification to move on.
    Step(Result<IssueAnswer, CheckError>),
    Outcome(Result<(), StoreError>),
    Receipt(Result<Option<(Verification, DeliveryState)>, StoreError>),
    Count(Result<Tallied, StoreError>),
    Blocklist(Result<BlocklistAnswer, AdminError>),
    FraudBlock(Result<Block, AdminError>),
    Kept(Result<(), StoreError>),
    /// The node that took the command no longer owns the partition (it is handing it to
    /// another): send it again.
    Moved,
}

/// How an issue ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum IssueAnswer {
    Issued(IssueReceipt),
    Refused(IssueRefused),
}

/// A refused issue as the caller is told: the error object, the kind of refusal, and
/// whether nothing was done for a passing reason (a retry may succeed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRefused {
    pub kind: RefusalKind,
    pub error: ErrorObject,
    pub transient: bool,
}

impl From<&IssueError> for IssueRefused {
    fn from(error: &IssueError) -> Self {
        let refusal = error.refusal();
        IssueRefused {
            kind: refusal.kind,
            transient: matches!(error, IssueError::Store(_) | IssueError::Unavailable(_)),
            error: refusal.to_error_object(),
        }
    }
}

impl IssueRefused {
    /// Nothing was done: the partition's owner could not be reached.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        (&IssueError::Unavailable(detail.to_string())).into()
    }
}

/// A reply of the wrong kind for its command: a bug, or nodes of different versions.
pub fn mismatched(command: &str) -> StoreError {
    StoreError::Io(format!(
        "the partition's owner answered a {command} with another kind of reply; are all nodes the same otpd version?"
    ))
}
