//! RouterActor: hands each delivery job to the sender of the provider that serves its channel.

use actix::prelude::*;
use std::collections::HashMap;

use crate::domain::{Channel, DeliveryJob};

/// Deliver this job. Answers once the job sits in a sender's mailbox.
#[derive(Message)]
#[rtype(result = "Result<(), DeliveryUnavailable>")]
pub struct Deliver(pub DeliveryJob);

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
        let channel = message.0.channel;
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
