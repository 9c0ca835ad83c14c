//! The IssuanceActor's side of access control: the `EditBlocklist` message, so blocklist
//! edits are ordered with creates and flushed before they are answered.

use actix::prelude::*;

use super::gate::{AdminError, AdmitError, BlocklistAction, BlocklistAnswer};
use crate::domain::Timestamp;
use crate::issuance::{IssuanceActor, IssueError};
use crate::store::when_durable;
use crate::telemetry::events::BlocklistEdited;

/// List, add or remove blocklist entries on behalf of tenant `by`.
#[derive(Message)]
#[rtype(result = "Result<BlocklistAnswer, AdminError>")]
pub struct EditBlocklist {
    pub by: String,
    pub action: BlocklistAction,
}

impl Handler<EditBlocklist> for IssuanceActor {
    type Result = ResponseFuture<Result<BlocklistAnswer, AdminError>>;

    fn handle(&mut self, message: EditBlocklist, _: &mut Self::Context) -> Self::Result {
        let answer = self
            .access
            .blocklist(&message.by, message.action, Timestamp::now());
        let durable = when_durable(answer, self.store.flush());
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

impl From<AdmitError> for IssueError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Denied(denied) => IssueError::Access(denied),
            AdmitError::Store(error) => IssueError::Store(error),
        }
    }
}
