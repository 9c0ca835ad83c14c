//! The delivery protocol: what issuance, the transports and the actors of delivery say to
//! each other about a job — `Deliver` it, how it ended (`DeliveryOutcome`) — and the seams a
//! transport implements to carry jobs (`JobQueue`) and to park them (`DelayQueue`).

use actix::prelude::*;
use std::time::Duration;
use tokio::sync::oneshot;

use super::breaker::Permit;
use crate::domain::{Channel, DeliveryAttempt, DeliveryJob};
use crate::telemetry::platform::{EventSink, PublishError};

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
    /// Timeline entries of providers the router passed over for this job (breaker open,
    /// quota used up, paused), kept with the job's outcome.
    pub skipped: Vec<DeliveryAttempt>,
}

impl Deliver {
    pub fn new(job: DeliveryJob) -> Self {
        Deliver {
            job,
            done: None,
            tried: Vec::new(),
            permit: None,
            skipped: Vec::new(),
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
    async fn delay(&self, job: &DeliveryJob, wait: Duration) -> Result<(), PublishError>;
}

/// No provider serves the job's channel at all; it stays in the outbox.
#[derive(Debug, thiserror::Error)]
#[error("no provider is configured for channel {0}")]
pub struct DeliveryUnavailable(pub Channel);

/// Hands delivery jobs on, durably.
#[async_trait::async_trait]
pub trait JobQueue: EventSink {
    /// Embedded: into the router's mailbox. Broker: to the routing exchange, confirmed.
    async fn publish_job(&self, job: &DeliveryJob) -> Result<(), PublishError>;

    /// Whether a publish can succeed now (the broker is connected and takes publishes), or
    /// why not.
    fn ready(&self) -> Result<(), PublishError>;
}
