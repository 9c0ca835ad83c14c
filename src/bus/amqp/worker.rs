//! The regional worker: takes delivery jobs from a region queue, hands them to the router,
//! and acks only once the send's outcome is recorded in the store.

use actix::Addr;
use lapin::message::Delivery;

use super::message::decode_job;
use super::settle::{dead_lettered, requeue, Settle};
use super::Publisher;
use crate::delivery::{Deliver, DeliveryOutcome, RouterActor};

/// Handles one job; what to tell the broker of it.
pub async fn handle(
    publisher: &Publisher,
    router: &Addr<RouterActor>,
    delivery: &Delivery,
) -> Settle {
    let Some(job) = decode_job(&delivery.data) else {
        let queue = delivery.routing_key.as_str();
        let result = publisher
            .dead_letter(
                &delivery.data,
                "undecodable_job",
                "not a delivery job of this otpd version",
                queue,
            )
            .await;
        return match dead_lettered(result, "job").await {
            Ok(()) => Settle::Ack,
            Err(settle) => settle,
        };
    };
    let (message, outcome) = Deliver::awaited(job);
    let handed_over = router.send(message).await;
    let recorded = match handed_over {
        Ok(Ok(())) => outcome.await.ok(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "No provider took the job; it will be delivered again.");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "Router unavailable; the job will be delivered again.");
            None
        }
    };
    match recorded {
        Some(DeliveryOutcome::Recorded) | Some(DeliveryOutcome::AlreadyInFlight) => Settle::Ack,
        Some(DeliveryOutcome::NotRecorded(_)) | None => requeue().await,
    }
}
