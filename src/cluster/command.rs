//! What one node asks of a partition's owner, and the answers, in no transport's terms.
//! Each command carries what the owner needs to act and nothing it must not see: a code to
//! check travels sealed with the cluster's sealing key.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

use crate::access::{AdminError, BlocklistAction, BlocklistAnswer};
use crate::delivery::recorder::SendOutcome;
use crate::domain::counters::{Count, Tallied};
use crate::domain::fraud::Block;
use crate::domain::{
    DeliveryState, DestinationKey, IssueReceipt, OtpCode, Presented, StepTrigger, Timestamp,
    Verification, VerificationId,
};
use crate::issuance::{IssueError, IssueOtp, RefusalKind};
use crate::providers::receipts::ReceiptStatus;
use crate::secrets::{Sealer, UnsealError};
use crate::store::{MessageOwner, StoreError};
use crate::telemetry::platform::ErrorObject;
use crate::verify::{CheckError, CheckOutcome, Closing};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Issue(IssueOtp),
    Check {
        tenant: String,
        target: CheckTarget,
        /// The candidate code; sealed on the wire, under the name it has always had there.
        #[serde(rename = "sealed_code")]
        code: CandidateCode,
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

/// A check's candidate code: in clear while its check stays on the node it came to, sealed
/// to `check_binding(tenant)` once it goes to another. Only a sealed code is written out (a
/// code in clear refuses to be), and one read in is sealed; on the wire it is the sealed
/// bytes alone.
#[derive(Debug, Clone)]
pub enum CandidateCode {
    Clear(OtpCode),
    Sealed(Vec<u8>),
}

impl CandidateCode {
    /// The code in clear, opened with `sealer` if it came sealed.
    pub fn open(self, sealer: &Sealer, tenant: &str) -> Result<OtpCode, UnsealError> {
        match self {
            CandidateCode::Clear(code) => Ok(code),
            CandidateCode::Sealed(sealed) => sealer.open_bound(&check_binding(tenant), &sealed),
        }
    }
}

impl Serialize for CandidateCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CandidateCode::Sealed(sealed) => sealed.serialize(serializer),
            CandidateCode::Clear(_) => Err(serde::ser::Error::custom(
                "a check's code is sealed before it leaves its node",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for CandidateCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(CandidateCode::Sealed)
    }
}

impl Command {
    /// This command as it may leave the node: a check's code sealed with `sealer`.
    pub fn to_send(&self, sealer: &Sealer) -> Cow<'_, Command> {
        match self {
            Command::Check {
                tenant,
                target,
                code: CandidateCode::Clear(code),
                presented,
                at,
            } => Cow::Owned(Command::Check {
                tenant: tenant.clone(),
                target: target.clone(),
                code: CandidateCode::Sealed(sealer.seal_bound(&check_binding(tenant), code)),
                presented: presented.clone(),
                at: *at,
            }),
            _ => Cow::Borrowed(self),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretSlice;

    fn sealer() -> Sealer {
        Sealer::new(&SecretSlice::from(vec![7u8; 32]))
    }

    fn check(code: CandidateCode) -> Command {
        Command::Check {
            tenant: "acme".into(),
            target: CheckTarget::Id(VerificationId::generate()),
            code,
            presented: Presented::default(),
            at: Timestamp::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn a_check_code_in_clear_is_never_written_out() {
        let code = OtpCode::parse("482913").unwrap();

        let written = serde_json::to_string(&check(CandidateCode::Clear(code)));

        let error = written.expect_err("a code in clear does not serialize");
        assert!(!error.to_string().contains("482913"), "{error}");
    }

    #[test]
    fn a_check_sent_to_another_node_carries_its_code_sealed_as_before() {
        let sealer = sealer();
        let code = OtpCode::parse("482913").unwrap();
        let here = check(CandidateCode::Clear(code.clone()));

        let sent = serde_json::to_value(here.to_send(&sealer).as_ref()).unwrap();

        let wire = &sent["Check"]["sealed_code"];
        let sealed: Vec<u8> = serde_json::from_value(wire.clone()).expect("bytes, as before");
        assert_eq!(
            sealer.open_bound(&check_binding("acme"), &sealed).unwrap(),
            code
        );
        assert!(!sent.to_string().contains("482913"), "{sent}");
        let Command::Check { code: taken, .. } = serde_json::from_value(sent).unwrap() else {
            panic!("a check reads back as a check");
        };
        assert!(matches!(taken, CandidateCode::Sealed(_)));
        assert_eq!(taken.clone().open(&sealer, "acme").unwrap(), code);
        assert!(
            taken.open(&sealer, "another").is_err(),
            "bound to its tenant"
        );
    }
}
