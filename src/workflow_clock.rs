//! The workflow clock: every tick it reads the workflow steps that have come due from the
//! store's schedule and has each sent by the owner of its verification's partition. The
//! schedule lives with the verifications (in a cluster, in the changelog with them), so a
//! step due while otpd was down, or while its partition changed hands, goes out as soon as a
//! node serves the partition again.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::command::IssueAnswer;
use crate::cluster::Gateway;
use crate::domain::{StepTrigger, Timestamp};
use crate::store::{DueStep, Store};
use crate::verify::CheckError;

/// How often the clock looks for due steps.
pub const TICK: Duration = Duration::from_secs(1);
/// The most due steps read at one tick (of every partition: a node sends its own); the rest
/// wait for the next.
const BATCH: usize = 10_000;
/// Steps sent at once.
const CONCURRENT: usize = 16;

/// Runs the clock until the process ends.
pub fn spawn(store: Arc<dyn Store>, gateway: Arc<Gateway>) {
    actix_rt::spawn(async move {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let reading = Arc::clone(&store);
            let due =
                tokio::task::spawn_blocking(move || reading.due_steps(Timestamp::now(), BATCH))
                    .await;
            let due = match due {
                Ok(Ok(due)) => due,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "Could not read the workflow steps due; trying at the next tick.");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "The read of the workflow steps due failed.");
                    continue;
                }
            };
            futures_util::stream::iter(due)
                .filter(|step| std::future::ready(gateway.serves(step.id.slot())))
                .for_each_concurrent(CONCURRENT, |step| take(&gateway, step))
                .await;
        }
    });
}

/// Has `step` sent, and says what came of it.
async fn take(gateway: &Gateway, step: DueStep) {
    let answer = gateway
        .next_step(None, &step.id, StepTrigger::Due(step.at))
        .await;
    match answer {
        Ok(IssueAnswer::Issued(receipt)) => {
            tracing::debug!(verification = %step.id, channel = %receipt.channel, "A workflow step went out.");
        }
        Ok(IssueAnswer::Refused(refused)) if refused.transient => {
            tracing::warn!(verification = %step.id, error = %refused.error.message, "A workflow step could not go out now; the clock offers it again.");
        }
        Ok(IssueAnswer::Refused(refused)) => {
            tracing::info!(verification = %step.id, code = %refused.error.code, reason = ?refused.error.reason, "A workflow step did not go out.");
        }
        Err(CheckError::Store(error)) => {
            tracing::warn!(verification = %step.id, %error, "A workflow step could not go out now; the clock offers it again.");
        }
        Err(_) => {
            tracing::debug!(verification = %step.id, "A workflow step was due for a verification that is over.");
        }
    }
}
