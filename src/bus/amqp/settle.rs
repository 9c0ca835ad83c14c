//! Settling a delivery with the broker: ack, or requeue after a pause when a passing fault
//! stopped its processing (the queue's delivery limit bounds how often).

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::time::Duration;

use crate::telemetry::platform::PublishError;

/// Pause before a message that met a passing fault is handed back to the broker.
const REQUEUE_PAUSE: Duration = Duration::from_millis(500);

/// What to tell the broker about a delivery.
pub enum Settle {
    Ack,
    /// A passing fault: deliver it again (the queue's delivery limit bounds how often).
    Requeue,
}

pub async fn requeue() -> Settle {
    tokio::time::sleep(REQUEUE_PAUSE).await;
    Settle::Requeue
}

/// What dead-lettering a `what` (request, job) came to: `Ok` once it is in the dead-letter
/// queue; otherwise the settlement that hands it back (after the pause) so it is not lost.
pub async fn dead_lettered(result: Result<(), PublishError>, what: &str) -> Result<(), Settle> {
    match result {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::warn!(what, %error, "Could not dead-letter it; it will be delivered again.");
            Err(requeue().await)
        }
    }
}

/// Acks or requeues, checking lapin's answer: `Ok(false)` means the channel died and the
/// broker will deliver the message again.
pub async fn settle_delivery(delivery: &Delivery, settle: Settle, what: &str) {
    let result = match settle {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
    };
    match result {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                what,
                "Channel closed before the ack; the broker will deliver it again."
            )
        }
        Err(error) => {
            tracing::warn!(what, %error, "Ack failed; the broker will deliver it again.")
        }
    }
}
