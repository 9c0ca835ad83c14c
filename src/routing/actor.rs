//! RouterActor: hands each delivery job to the sender of the provider that serves its channel.

use actix::prelude::*;
use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::domain::{Channel, DeliveryJob};

/// Deliver this job. Answers once the job sits in a sender's mailbox; `done`, when given,
/// hears once the job's outcome is recorded in the store (or that it could not be).
#[derive(Message)]
#[rtype(result = "Result<(), DeliveryUnavailable>")]
pub struct Deliver {
    pub job: DeliveryJob,
    pub done: Option<oneshot::Sender<DeliveryOutcome>>,
}

impl Deliver {
    pub fn new(job: DeliveryJob) -> Self {
        Deliver { job, done: None }
    }

    /// A job whose caller waits for its outcome (a broker consumer that acks after it).
    pub fn awaited(job: DeliveryJob) -> (Self, oneshot::Receiver<DeliveryOutcome>) {
        let (done, outcome) = oneshot::channel();
        (
            Deliver {
                job,
                done: Some(done),
            },
            outcome,
        )
    }

    /// Tells the waiting caller, if any, how the job ended.
    pub fn finish(done: Option<oneshot::Sender<DeliveryOutcome>>, outcome: DeliveryOutcome) {
        if let Some(done) = done {
            let _ = done.send(outcome);
        }
    }
}

/// How a job ended, for a caller that acks only after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Its outcome (sent, failed, dropped) is durable in the store.
    Recorded,
    /// The same job is being sent already; the other copy records the outcome.
    AlreadyInFlight,
    /// The outcome could not be recorded; deliver the job again later.
    NotRecorded(String),
}

/// No provider could take the job; it stays in the outbox.
#[derive(Debug, thiserror::Error)]
#[error("no provider is available for channel {0}")]
pub struct DeliveryUnavailable(pub Channel);

pub struct RouterActor {
    routes: HashMap<Channel, Vec<Recipient<Deliver>>>,
    mailbox_capacity: usize,
}

impl RouterActor {
    /// `routes` lists, per channel, the senders in order of preference.
    pub fn new(routes: HashMap<Channel, Vec<Recipient<Deliver>>>, mailbox_capacity: usize) -> Self {
        RouterActor {
            routes,
            mailbox_capacity,
        }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Deliver> for RouterActor {
    type Result = AtomicResponse<Self, Result<(), DeliveryUnavailable>>;

    /// Waits while the chosen sender's mailbox is full, so back-pressure reaches the issuer.
    fn handle(&mut self, message: Deliver, _: &mut Self::Context) -> Self::Result {
        let channel = message.job.channel;
        let sender = self
            .routes
            .get(&channel)
            .and_then(|senders| senders.first())
            .cloned();
        AtomicResponse::new(Box::pin(
            async move {
                match sender {
                    Some(sender) => sender
                        .send(message)
                        .await
                        .map_err(|_| DeliveryUnavailable(channel))?,
                    None => Err(DeliveryUnavailable(channel)),
                }
            }
            .into_actor(self),
        ))
    }
}
