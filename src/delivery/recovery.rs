//! Outbox recovery: at start, every job whose delivery had not finished is handed to the
//! router again.

use actix::Addr;
use std::sync::Arc;

use crate::routing::{Deliver, RouterActor};
use crate::store::{Store, StoreError};
use crate::telemetry::events::OutboxRecovered;

const PAGE: usize = 256;

/// Re-dispatches every outbox job, a page at a time, waiting on the router's mailbox so
/// memory stays bounded however long the outbox is. Returns how many jobs were resumed.
pub async fn resume_outbox(
    store: Arc<dyn Store>,
    router: Addr<RouterActor>,
) -> Result<usize, StoreError> {
    let mut resumed = 0;
    let mut after = None;
    loop {
        let page = store.outbox_page(after.as_ref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.job_id.clone());
        for job in page {
            let job_id = job.job_id.clone();
            match router.send(Deliver(job)).await {
                Ok(Ok(())) => resumed += 1,
                Ok(Err(error)) => {
                    tracing::warn!(job = %job_id, %error, "Could not resume a delivery; it stays in the outbox.")
                }
                Err(error) => {
                    tracing::warn!(job = %job_id, %error, "Router unavailable; the job stays in the outbox.")
                }
            }
        }
    }
    OutboxRecovered { jobs: resumed }.emit();
    Ok(resumed)
}
