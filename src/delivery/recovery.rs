//! Outbox recovery: at start, every job whose delivery had not finished is handed on again
//! (to the router in embedded mode, to the broker in broker mode).

use std::sync::Arc;
use std::time::Duration;

use crate::delivery::JobQueue;
use crate::domain::Timestamp;
use crate::store::{Store, StoreError};
use crate::telemetry::events::OutboxRecovered;

const PAGE: usize = 256;

/// Re-dispatches every outbox job created before `started` (later ones were handed over by
/// the create that made them), a page at a time, waiting on each hand-over so memory stays
/// bounded however long the outbox is. Returns how many jobs were resumed.
pub async fn resume_outbox(
    store: Arc<dyn Store>,
    bus: Arc<dyn JobQueue>,
    started: Timestamp,
) -> Result<usize, StoreError> {
    while bus.ready().is_err() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut resumed = 0;
    let mut after = None;
    loop {
        let page = store.outbox_page(after.as_ref(), PAGE)?;
        let Some(next) = page.next else { break };
        after = Some(next);
        for job in page.jobs.into_iter().filter(|job| job.created_at < started) {
            match bus.publish_job(&job).await {
                Ok(()) => resumed += 1,
                Err(error) => {
                    tracing::warn!(job = %job.job_id, %error, "Could not resume a delivery; it stays in the outbox for the next start.")
                }
            }
        }
    }
    OutboxRecovered { jobs: resumed }.emit();
    Ok(resumed)
}
