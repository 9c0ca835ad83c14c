//! RouterActor: hands each delivery job to the sender of the provider that should take it —
//! the first of its region's list that has not failed it and may be used now (breaker,
//! pause, quota) — waits when none can, and gives up when the code would expire first.

use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::choose::{choose, Choice};
use super::table::RouteTable;
use crate::delivery::breaker::Permit;
use crate::delivery::health::HealthBoard;
use crate::delivery::sender::{fail, SendContext};
use crate::domain::{Channel, DeliveryJob, Timestamp};

/// Pause before trying again once every provider has failed a job.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

/// Deliver this job. Answers once the job sits in a sender's mailbox (or waits for a
/// provider); `done`, when given, hears once the outcome is recorded in the store.
#[derive(Message)]
#[rtype(result = "Result<(), DeliveryUnavailable>")]
pub struct Deliver {
    pub job: DeliveryJob,
    pub done: Option<oneshot::Sender<DeliveryOutcome>>,
    /// Providers that failed this job in the current round.
    pub tried: Vec<String>,
    /// Leave to call the chosen provider, set by the router.
    pub permit: Option<Permit>,
}

impl Deliver {
    pub fn new(job: DeliveryJob) -> Self {
        Deliver {
            job,
            done: None,
            tried: Vec::new(),
            permit: None,
        }
    }

    /// A job whose caller waits for its outcome (a broker consumer that acks after it).
    pub fn awaited(job: DeliveryJob) -> (Self, oneshot::Receiver<DeliveryOutcome>) {
        let (done, outcome) = oneshot::channel();
        let mut message = Deliver::new(job);
        message.done = Some(done);
        (message, outcome)
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

/// Where a job can wait outside the process (broker mode): the broker routes it again
/// after `wait`, so a long wait holds no memory and survives a restart.
#[async_trait::async_trait]
pub trait DelayQueue: Send + Sync + 'static {
    async fn delay(&self, job: &DeliveryJob, wait: Duration) -> Result<(), crate::bus::BusError>;
}

/// No provider serves the job's channel at all; it stays in the outbox.
#[derive(Debug, thiserror::Error)]
#[error("no provider is configured for channel {0}")]
pub struct DeliveryUnavailable(pub Channel);

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
            Choice::Use { provider, permit } => {
                message.permit = Some(permit);
                self.senders.get(&provider).cloned().map(|s| (s, message))
            }
            Choice::Wait { until, start_over } => {
                if start_over {
                    message.tried.clear();
                }
                let wait = now.until(until);
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
            Choice::GiveUp => {
                let context = Arc::clone(&self.context);
                actix_rt::spawn(async move {
                    let outcome = match fail(
                        &context,
                        None,
                        &message.job,
                        "no provider could deliver before the code expired",
                    )
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
