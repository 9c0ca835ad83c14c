//! The in-process bus of embedded mode: jobs go straight into the router's mailbox (the
//! outbox in the store already makes them durable); events are only logged.

use actix::Addr;
use async_trait::async_trait;

use crate::delivery::{Deliver, JobQueue, RouterActor};
use crate::domain::DeliveryJob;
use crate::telemetry::platform::{Event, EventSink, NoEvents, PublishError};

pub struct EmbeddedBus {
    router: Addr<RouterActor>,
}

impl EmbeddedBus {
    pub fn new(router: Addr<RouterActor>) -> Self {
        EmbeddedBus { router }
    }
}

#[async_trait]
impl EventSink for EmbeddedBus {
    async fn publish_event(&self, event: &Event) -> Result<(), PublishError> {
        NoEvents.publish_event(event).await
    }
}

#[async_trait]
impl JobQueue for EmbeddedBus {
    async fn publish_job(&self, job: &DeliveryJob) -> Result<(), PublishError> {
        match self.router.send(Deliver::new(job.clone())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                // Durable in the outbox: resumed at the next start once a provider serves it.
                tracing::warn!(job = %job.job_id, %error, "Job kept in the outbox.");
                Ok(())
            }
            Err(error) => Err(PublishError::Stopped(error.to_string())),
        }
    }

    fn ready(&self) -> Result<(), PublishError> {
        if self.router.connected() {
            Ok(())
        } else {
            Err(PublishError::Stopped("the router stopped".into()))
        }
    }
}
