//! SenderActor: one per provider. Takes jobs from its mailbox, runs up to `concurrency`
//! sends at once (a full house stops the mailbox, so back-pressure reaches the router),
//! retries transient failures until the code expires, and records each outcome durably.

use actix::prelude::*;
use rand::Rng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::plan::{disposition, Disposition};
use super::retry::{next_retry, Backoff};
use super::templates::Templates;
use crate::bus::events::{at, Event};
use crate::bus::EventSink;
use crate::domain::{DeliveryJob, DeliveryState, JobId, Timestamp, Verification};
use crate::providers::{OutboundMessage, Provider};
use crate::routing::actor::{Deliver, DeliveryOutcome, DeliveryUnavailable};
use crate::secrets::Sealer;
use crate::store::{Store, StoreError};
use crate::telemetry::events::{JobDropped, MessageSent, SendFailed};

/// How long publishing a delivery event may hold up a job.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every send needs besides the provider.
pub struct SendContext {
    pub store: Arc<dyn Store>,
    pub sealer: Sealer,
    pub templates: Templates,
    pub backoff: Backoff,
    pub events: Arc<dyn EventSink>,
}

pub struct SenderActor {
    provider: Arc<dyn Provider>,
    context: Arc<SendContext>,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<JobId>>>,
    mailbox_capacity: usize,
}

impl SenderActor {
    pub fn new(
        provider: Arc<dyn Provider>,
        context: Arc<SendContext>,
        concurrency: usize,
        mailbox_capacity: usize,
    ) -> Self {
        SenderActor {
            provider,
            context,
            permits: Arc::new(Semaphore::new(concurrency)),
            in_flight: Arc::default(),
            mailbox_capacity,
        }
    }

    fn start_send(&self, message: Deliver, permit: OwnedSemaphorePermit) {
        let Deliver { job, done } = message;
        let fresh = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.job_id.clone());
        if !fresh {
            Deliver::finish(done, DeliveryOutcome::AlreadyInFlight);
            return;
        }
        let provider = Arc::clone(&self.provider);
        let context = Arc::clone(&self.context);
        let in_flight = Arc::clone(&self.in_flight);
        actix_rt::spawn(async move {
            let outcome = match deliver(&context, provider.as_ref(), &job).await {
                Ok(()) => DeliveryOutcome::Recorded,
                Err(error) => {
                    tracing::error!(
                        provider = provider.id(),
                        job = %job.job_id,
                        %error,
                        "Could not record a delivery; the job will be delivered again."
                    );
                    DeliveryOutcome::NotRecorded(error.to_string())
                }
            };
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&job.job_id);
            drop(permit);
            Deliver::finish(done, outcome);
        });
    }
}

impl Actor for SenderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Deliver> for SenderActor {
    type Result = Result<(), DeliveryUnavailable>;

    fn handle(&mut self, message: Deliver, ctx: &mut Self::Context) -> Self::Result {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => self.start_send(message, permit),
            Err(_) => {
                let permits = Arc::clone(&self.permits);
                let wait_for_slot = async move { permits.acquire_owned().await }
                    .into_actor(self)
                    .map(move |permit, actor, _| match permit {
                        Ok(permit) => actor.start_send(message, permit),
                        Err(_) => Deliver::finish(
                            message.done,
                            DeliveryOutcome::NotRecorded("the sender stopped".into()),
                        ),
                    });
                ctx.wait(wait_for_slot);
            }
        }
        Ok(())
    }
}

/// Sends one job (retrying while that can still beat the code's expiry) and records the
/// outcome. An error means the outcome could not be recorded.
async fn deliver(
    context: &SendContext,
    provider: &dyn Provider,
    job: &DeliveryJob,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        let now = Timestamp::now();
        let verification = context.store.verification(&job.verification_id)?;
        let plan = disposition(job, verification.as_ref(), now);
        if plan != Disposition::Send {
            JobDropped {
                provider: provider.id(),
                channel: job.channel,
                reason: plan.as_str(),
            }
            .emit();
            if plan == Disposition::Expired {
                return fail(
                    context,
                    provider,
                    job,
                    "the code expired before it could be sent",
                )
                .await;
            }
            return record(context, job, provider.id(), None, now).await;
        }
        let message = match compose(context, job, now) {
            Ok(message) => message,
            Err(reason) => {
                report_failure(provider.id(), job, &reason, false);
                return fail(context, provider, job, &reason).await;
            }
        };
        let started = Instant::now();
        match provider.send(&message).await {
            Ok(_) => {
                let sent_at = Timestamp::now();
                MessageSent {
                    provider: provider.id(),
                    channel: job.channel,
                    call_took: started.elapsed(),
                    since_issue: job.created_at.until(sent_at),
                }
                .emit();
                record(
                    context,
                    job,
                    provider.id(),
                    Some(DeliveryState::Sent),
                    sent_at,
                )
                .await?;
                publish(
                    context,
                    Event::DeliverySent {
                        id: job.verification_id.to_string(),
                        tenant: job.tenant.clone(),
                        channel: job.channel,
                        provider: provider.id().to_owned(),
                        at: at(sent_at),
                    },
                )
                .await;
                return Ok(());
            }
            Err(error) => {
                let jitter = rand::thread_rng().gen::<f64>();
                let now = Timestamp::now();
                let retry = next_retry(
                    &context.backoff,
                    attempt,
                    &error,
                    jitter,
                    now,
                    job.expires_at,
                );
                report_failure(provider.id(), job, &error.to_string(), retry.is_some());
                match retry {
                    Some(wait) => {
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return fail(context, provider, job, &error.to_string()).await,
                }
            }
        }
    }
}

/// Records a failed delivery and tells the platform.
async fn fail(
    context: &SendContext,
    provider: &dyn Provider,
    job: &DeliveryJob,
    reason: &str,
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    record(
        context,
        job,
        provider.id(),
        Some(DeliveryState::Failed),
        now,
    )
    .await?;
    publish(
        context,
        Event::DeliveryFailed {
            id: job.verification_id.to_string(),
            tenant: job.tenant.clone(),
            channel: job.channel,
            provider: provider.id().to_owned(),
            reason: reason.to_owned(),
            at: at(now),
        },
    )
    .await;
    Ok(())
}

async fn publish(context: &SendContext, event: Event) {
    match tokio::time::timeout(EVENT_TIMEOUT, context.events.publish_event(&event)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(key = %event.routing_key(), %error, "Could not publish an event.")
        }
        Err(_) => tracing::warn!(key = %event.routing_key(), "Publishing an event timed out."),
    }
}

/// Opens the sealed code and renders the message; an error says why it cannot be sent.
fn compose(
    context: &SendContext,
    job: &DeliveryJob,
    now: Timestamp,
) -> Result<OutboundMessage, String> {
    let code = context
        .sealer
        .open(&job.job_id, &job.sealed_code)
        .map_err(|error| error.to_string())?;
    let lifetime = job
        .created_at
        .until(job.expires_at)
        .max(now.until(job.expires_at));
    let minutes = lifetime.as_secs().div_ceil(60).max(1);
    let body = context
        .templates
        .render(&job.template, job.locale.as_deref(), &code, minutes)
        .ok_or_else(|| format!("template '{}' is no longer configured", job.template))?;
    Ok(OutboundMessage {
        job_id: job.job_id.clone(),
        verification_id: job.verification_id.clone(),
        tenant: job.tenant.clone(),
        channel: job.channel,
        to: job.to.clone(),
        body,
    })
}

fn report_failure(provider: &str, job: &DeliveryJob, reason: &str, will_retry: bool) {
    SendFailed {
        provider,
        channel: job.channel,
        error: reason,
        will_retry,
    }
    .emit();
}

/// Takes the job out of the outbox and, if it is still the verification's current send,
/// records its delivery state; then waits until that is durable.
async fn record(
    context: &SendContext,
    job: &DeliveryJob,
    provider: &str,
    state: Option<DeliveryState>,
    at: Timestamp,
) -> Result<(), StoreError> {
    context
        .store
        .finish_job(job, &|verification: &mut Verification| {
            if let (Some(state), true) = (state, verification.send_seq == job.send_seq) {
                verification.delivery = state;
                verification.provider = Some(provider.to_owned());
                if state == DeliveryState::Sent {
                    verification.sent_at = Some(at);
                }
                verification.updated_at = at;
            }
        })?;
    context.store.flush().await
}
