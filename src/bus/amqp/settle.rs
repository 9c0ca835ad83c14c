//! Settling deliveries with the broker: ack, or requeue after a pause when a passing fault
//! stopped their processing (the queue's delivery limit bounds how often); acks of
//! deliveries finished in order go as one (`ack_window`).

use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Channel;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::ack_window::{AckWindow, Due};
use crate::telemetry::metrics::metrics;
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

/// How long a delivery done behind one still being handled waits before it is acked alone.
const HOLD: Duration = Duration::from_millis(20);

/// What a consumer tells its settler.
enum Note {
    Received(u64),
    Ended(u64, Settle),
}

/// Settles the deliveries of one consumer's channel: acks runs of them together
/// ([`AckWindow`]), from a task of its own, in the order the window gives.
#[derive(Clone)]
pub struct Settler {
    notes: mpsc::UnboundedSender<Note>,
}

impl Settler {
    /// Starts settling the deliveries of `channel`, whose one consumer tells of each; `what`
    /// names them (request, job) in logs. The task ends once every handle is dropped and
    /// what they told of is settled, or once the channel fails.
    pub fn start(channel: Channel, what: &'static str) -> Settler {
        let (notes, told) = mpsc::unbounded_channel();
        tokio::spawn(settle_all(channel, told, what));
        Settler { notes }
    }

    /// A delivery came; told in the order the consumer yields them, before it is handled.
    pub fn received(&self, delivery_tag: u64) {
        let _ = self.notes.send(Note::Received(delivery_tag));
    }

    /// The delivery's handling ended with `settle`.
    pub fn ended(&self, delivery_tag: u64, settle: Settle) {
        let _ = self.notes.send(Note::Ended(delivery_tag, settle));
    }
}

impl Note {
    fn apply(self, window: &mut AckWindow) {
        match self {
            Note::Received(tag) => window.received(tag),
            Note::Ended(tag, Settle::Ack) => window.acked(tag, Instant::now()),
            Note::Ended(tag, Settle::Requeue) => window.requeued(tag),
        }
    }
}

async fn settle_all(channel: Channel, mut told: mpsc::UnboundedReceiver<Note>, what: &'static str) {
    let mut window = AckWindow::default();
    loop {
        let next = match window.next_due(HOLD) {
            Some(at) => tokio::time::timeout_at(at.into(), told.recv()).await,
            None => Ok(told.recv().await),
        };
        let every_handler_done = match next {
            Ok(Some(note)) => {
                note.apply(&mut window);
                while let Ok(note) = told.try_recv() {
                    note.apply(&mut window);
                }
                false
            }
            Ok(None) => true,
            Err(_held) => false,
        };
        // Once every handler is done, nothing finished waits any longer.
        let hold = if every_handler_done {
            Duration::ZERO
        } else {
            HOLD
        };
        let due = window.due(Instant::now(), hold);
        if let Err(error) = send(&channel, due).await {
            tracing::warn!(what, %error, open = window.len(), "Could not settle deliveries; the broker will deliver them again.");
            return;
        }
        if every_handler_done {
            return;
        }
    }
}

/// Sends `due` in its order: a requeue reaches the broker before a run that passes it.
async fn send(channel: &Channel, due: Due) -> lapin::Result<()> {
    let settles = &metrics().broker_settles;
    for tag in due.requeue {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        channel.basic_nack(tag, requeue).await?;
        settles.with_label_values(&["requeue"]).inc();
    }
    for tag in due.alone {
        channel.basic_ack(tag, BasicAckOptions::default()).await?;
        settles.with_label_values(&["alone"]).inc();
    }
    if let Some(tag) = due.run {
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await?;
        settles.with_label_values(&["run"]).inc();
    }
    Ok(())
}
