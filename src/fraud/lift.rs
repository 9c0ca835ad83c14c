//! The IssuanceActor's side of lifting a fraud block by hand: an admin's decision, ordered
//! with creates and flushed before it is answered.

use actix::prelude::*;

use super::guard::Block;
use crate::access::AdminError;
use crate::domain::Timestamp;
use crate::issuance::IssuanceActor;
use crate::store::when_durable;

/// Lift the block of `prefix` on behalf of tenant `by` (an admin).
#[derive(Message)]
#[rtype(result = "Result<Block, AdminError>")]
pub struct LiftFraudBlock {
    pub by: String,
    pub prefix: String,
}

impl Handler<LiftFraudBlock> for IssuanceActor {
    type Result = ResponseFuture<Result<Block, AdminError>>;

    fn handle(&mut self, message: LiftFraudBlock, _: &mut Self::Context) -> Self::Result {
        let lifted = self.access.require_admin(&message.by).and_then(|()| {
            self.fraud
                .lift(&message.prefix, &message.by, Timestamp::now())?
                .ok_or(AdminError::NoFraudBlock(message.prefix))
        });
        when_durable(lifted, self.store.flush())
    }
}
