//! The pumping guards of a cluster's nodes, telling each other what they count: each node
//! publishes its guard's counts to the guard exchange once a `TELL_EVERY`, and folds in the
//! other nodes' from a queue of its own bound to that exchange (exclusive: it goes with the
//! connection, and holds at most `QUEUE_LIMIT` batches, the oldest dropped first).
//! Nothing here is acknowledged or kept: the counts are statistics, and a node that was
//! away only judges on fewer of them for a window.

use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::fraud::signals::{self, Signal};
use crate::fraud::FraudGate;

/// How often a node tells the others what its guard counted.
const TELL_EVERY: Duration = Duration::from_secs(1);
/// The most counts in one message.
const BATCH: usize = 4_096;
/// Batches a node's queue holds before the broker drops the oldest.
const QUEUE_LIMIT: i64 = 1_000;

/// One node's guard, as the other nodes hear it and as it hears them.
pub struct GuardLink {
    gate: FraudGate,
    node: String,
    /// What this node's guard counted and has not told yet; a connection's teller holds it.
    outbox: Mutex<mpsc::Receiver<Signal>>,
}

impl GuardLink {
    /// The link of `gate` on node `node`; `None` when the guard is off (or told already).
    pub fn new(gate: &FraudGate, node: &str) -> Option<Self> {
        Some(GuardLink {
            outbox: Mutex::new(gate.tell_signals()?),
            gate: gate.clone(),
            node: node.to_owned(),
        })
    }

    /// Starts telling and hearing on `connection`, through `exchange`. The tasks end with
    /// the connection; the caller aborts them when its session ends.
    pub async fn start(
        self: &std::sync::Arc<Self>,
        connection: &Connection,
        exchange: &str,
    ) -> lapin::Result<Vec<JoinHandle<()>>> {
        let hearing = connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(QUEUE_LIMIT));
        let queue = hearing
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        hearing
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = super::consume_without_acks(&hearing, queue.name().as_str()).await?;
        let telling = connection.create_channel().await?;
        Ok(vec![
            tokio::spawn(std::sync::Arc::clone(self).hear(consumer)),
            tokio::spawn(std::sync::Arc::clone(self).tell(telling, exchange.to_owned())),
        ])
    }

    /// Folds in every batch another node tells.
    async fn hear(self: std::sync::Arc<Self>, mut consumer: lapin::Consumer) {
        while let Some(Ok(delivery)) = consumer.next().await {
            let from = delivery
                .properties
                .app_id()
                .as_ref()
                .map(ShortString::as_str);
            if from == Some(self.node.as_str()) {
                continue;
            }
            match signals::decode(&delivery.data) {
                Some(batch) => self.gate.fold(&batch),
                None => tracing::warn!(
                    from = from.unwrap_or("?"),
                    "Ignored an unreadable batch of another node's pumping-guard counts."
                ),
            }
        }
        tracing::warn!("Stopped hearing the other nodes' pumping-guard counts; hearing them again once reconnected.");
    }

    /// Tells what this node's guard counts, a batch a `TELL_EVERY`, until the channel fails.
    async fn tell(self: std::sync::Arc<Self>, channel: Channel, exchange: String) {
        let mut outbox = self.outbox.lock().await;
        let mut ticks = tokio::time::interval(TELL_EVERY);
        loop {
            ticks.tick().await;
            loop {
                let batch = take_waiting(&mut outbox, BATCH);
                if batch.is_empty() {
                    break;
                }
                let properties = BasicProperties::default().with_app_id(self.node.as_str().into());
                let published = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &signals::encode(&batch),
                        properties,
                    )
                    .await;
                if let Err(error) = published {
                    tracing::warn!(%error, "Could not tell the other nodes what the pumping guard counted; telling again once reconnected.");
                    return;
                }
            }
        }
    }
}

/// Up to `most` of the counts waiting in `outbox`, oldest first.
fn take_waiting(outbox: &mut mpsc::Receiver<Signal>, most: usize) -> Vec<Signal> {
    let mut batch = Vec::new();
    while batch.len() < most {
        match outbox.try_recv() {
            Ok(signal) => batch.push(signal),
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::fraud::prefix::target;

    #[test]
    fn waiting_counts_are_taken_oldest_first_a_batch_at_most_at_a_time() {
        let (sender, mut outbox) = mpsc::channel(8);
        let number = target("+2348031234567", "NG", 4).unwrap();
        for at in 1..=5 {
            sender
                .try_send(Signal::Sent {
                    target: number.clone(),
                    at: Timestamp(at),
                })
                .unwrap();
        }
        let times = |batch: Vec<Signal>| -> Vec<u64> {
            batch
                .into_iter()
                .map(|signal| match signal {
                    Signal::Sent { at, .. } | Signal::Converted { at, .. } => at.0,
                })
                .collect()
        };
        assert_eq!(times(take_waiting(&mut outbox, 3)), vec![1, 2, 3]);
        assert_eq!(times(take_waiting(&mut outbox, 3)), vec![4, 5]);
        assert!(take_waiting(&mut outbox, 3).is_empty());
    }
}
