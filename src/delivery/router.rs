//! RouterActor: hands each delivery job to the sender of the provider that should take it —
//! the first of its region's list that has not failed it and may be used now (breaker,
//! pause, quota) — waits when none can, and gives up when the code would expire first.

use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::choose::{choose, Choice};
use super::health::HealthBoard;
use super::protocol::{DelayQueue, Deliver, DeliveryOutcome, DeliveryUnavailable};
use super::routes::RouteTable;
use super::sender::SendContext;
use super::timeline;
use crate::domain::{NextStep, Timestamp};

/// Pause before trying again once every provider has failed a job.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

pub struct RouterActor {
    table: RouteTable,
    senders: HashMap<String, Recipient<Deliver>>,
    board: Arc<HealthBoard>,
    context: Arc<SendContext>,
    delay_queue: Option<Arc<dyn DelayQueue>>,
    mailbox_capacity: usize,
}

impl RouterActor {
    pub fn new(
        table: RouteTable,
        senders: HashMap<String, Recipient<Deliver>>,
        board: Arc<HealthBoard>,
        context: Arc<SendContext>,
        delay_queue: Option<Arc<dyn DelayQueue>>,
        mailbox_capacity: usize,
    ) -> Self {
        RouterActor {
            table,
            senders,
            board,
            context,
            delay_queue,
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
    fn handle(&mut self, mut message: Deliver, ctx: &mut Self::Context) -> Self::Result {
        let now = Timestamp::now();
        let job = &message.job;
        let candidates = self.table.candidates(&job.region, job.channel);
        if candidates.is_empty() {
            let channel = job.channel;
            return AtomicResponse::new(Box::pin(
                async move { Err(DeliveryUnavailable(channel)) }.into_actor(self),
            ));
        }
        let board = Arc::clone(&self.board);
        let choice = choose(
            candidates,
            &message.tried,
            |provider| board.acquire(provider, now),
            ROUND_PAUSE,
            now,
            job.expires_at,
        );
        let forward = match choice {
            Choice::Use {
                provider,
                permit,
                refused,
            } => {
                message.permit = Some(permit);
                message
                    .skipped
                    .extend(timeline::waited(job, &refused, now, NextStep::Failover));
                self.senders.get(&provider).cloned().map(|s| (s, message))
            }
            Choice::Wait {
                until,
                start_over,
                refused,
            } => {
                if start_over {
                    message.tried.clear();
                }
                let wait = now.until(until);
                let mut entries = std::mem::take(&mut message.skipped);
                entries.extend(timeline::waited(
                    &message.job,
                    &refused,
                    now,
                    NextStep::Wait { until },
                ));
                if !entries.is_empty() {
                    self.context.recorder.note(&message.job, entries);
                }
                match (&self.delay_queue, message.done.is_some()) {
                    // A job a broker consumer waits on is parked in the delay queue; the
                    // consumer then acks it, and the broker routes the parked copy again.
                    (Some(queue), true) => {
                        let queue = Arc::clone(queue);
                        let router = ctx.address();
                        actix_rt::spawn(async move {
                            match queue.delay(&message.job, wait).await {
                                Ok(()) => Deliver::finish(message.done, DeliveryOutcome::Recorded),
                                Err(error) => {
                                    tracing::warn!(%error, "Could not park a job; it waits here.");
                                    tokio::time::sleep(wait).await;
                                    router.do_send(message);
                                }
                            }
                        });
                    }
                    _ => {
                        ctx.run_later(wait, move |_, ctx| ctx.notify(message));
                    }
                }
                None
            }
            Choice::GiveUp { refused } => {
                let context = Arc::clone(&self.context);
                let why = "no provider could deliver before the code expired";
                let mut entries = std::mem::take(&mut message.skipped);
                entries.extend(timeline::waited(job, &refused, now, NextStep::Done));
                entries.push(timeline::expired(job, None, now, why));
                actix_rt::spawn(async move {
                    let outcome = match context
                        .recorder
                        .failed(&message.job, None, why, entries)
                        .await
                    {
                        Ok(()) => DeliveryOutcome::Recorded,
                        Err(error) => DeliveryOutcome::NotRecorded(error.to_string()),
                    };
                    Deliver::finish(message.done, outcome);
                });
                None
            }
        };
        AtomicResponse::new(Box::pin(
            async move {
                if let Some((sender, message)) = forward {
                    if let Err(error) = sender.send(message).await {
                        tracing::error!(%error, "A sender stopped; the job stays in the outbox.");
                    }
                }
                Ok(())
            }
            .into_actor(self),
        ))
    }
}
