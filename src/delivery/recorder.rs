//! The one place delivery outcomes become durable: a send's outcome (sent, failed, dropped),
//! and a provider's delivery receipt, however it arrived (an HTTP callback, or a provider's
//! own connection). Each is written, flushed, then told to the platform.

use std::sync::Arc;
use std::time::Duration;

use super::receipt::{apply_receipt, receipt_event};
use crate::domain::{DeliveryJob, DeliveryState, Timestamp, Verification};
use crate::providers::receipts::Receipt;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::metrics;
use crate::telemetry::platform::{at, Event, EventSink};

/// How long publishing a delivery event may hold up a job.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a receipt waits for its send to be recorded: lookups and the pause between them.
const OWNER_LOOKUPS: u32 = 20;
const OWNER_LOOKUP_PAUSE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Recorder {
    store: Arc<dyn Store>,
    events: Arc<dyn EventSink>,
}

impl Recorder {
    pub fn new(store: Arc<dyn Store>, events: Arc<dyn EventSink>) -> Self {
        Recorder { store, events }
    }

    /// Takes the job out of the outbox and, if it is still the verification's current send,
    /// records its delivery state; then waits until that is durable.
    pub async fn outcome(
        &self,
        job: &DeliveryJob,
        provider: Option<&str>,
        state: Option<DeliveryState>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.store
            .finish_job(job, &|verification: &mut Verification| {
                if let (Some(state), true) = (state, verification.send_seq == job.send_seq) {
                    verification.delivery = state;
                    verification.provider = provider.map(str::to_owned);
                    if state == DeliveryState::Sent {
                        verification.sent_at = Some(at);
                    }
                    verification.updated_at = at;
                }
            })?;
        self.store.flush().await
    }

    /// Records a sent message and tells the platform.
    pub async fn sent(
        &self,
        job: &DeliveryJob,
        provider: &str,
        sent_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.outcome(job, Some(provider), Some(DeliveryState::Sent), sent_at)
            .await?;
        self.publish(Event::DeliverySent {
            id: job.verification_id.to_string(),
            tenant: job.tenant.clone(),
            channel: job.channel,
            provider: provider.to_owned(),
            at: at(sent_at),
        })
        .await;
        Ok(())
    }

    /// Records a failed delivery and tells the platform.
    pub async fn failed(
        &self,
        job: &DeliveryJob,
        provider: Option<&str>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.outcome(job, provider, Some(DeliveryState::Failed), now)
            .await?;
        self.publish(Event::DeliveryFailed {
            id: job.verification_id.to_string(),
            tenant: job.tenant.clone(),
            channel: job.channel,
            provider: provider.unwrap_or("none").to_owned(),
            reason: reason.to_owned(),
            at: at(now),
        })
        .await;
        Ok(())
    }

    /// Applies a provider's delivery receipt to its verification; false when it matched
    /// nothing or changed nothing.
    pub async fn receipt(&self, provider: &str, receipt: &Receipt) -> Result<bool, StoreError> {
        // A provider may report before its send is recorded here: look again for a moment.
        let mut owner = None;
        for _ in 0..OWNER_LOOKUPS {
            owner = self
                .store
                .message_owner(provider, &receipt.provider_message_id)?;
            if owner.is_some() {
                break;
            }
            tokio::time::sleep(OWNER_LOOKUP_PAUSE).await;
        }
        let Some(owner) = owner else {
            return Ok(false);
        };
        let now = Timestamp::now();
        let mut applied = None;
        let updated = self
            .store
            .update_verification(&owner.verification_id, &mut |record| {
                applied = apply_receipt(record, owner.send_seq, receipt.status, now);
                applied.is_some()
            })?;
        let (Some(state), Some(record)) = (applied, updated) else {
            return Ok(false);
        };
        self.store.flush().await?;
        if let Some(sent_at) = record.sent_at {
            metrics()
                .time_to_delivered
                .with_label_values(&[provider])
                .observe(sent_at.until(now).as_secs_f64());
        }
        let event = receipt_event(&record, provider, state, receipt.error_code.as_deref(), now);
        self.publish(event).await;
        Ok(true)
    }

    /// Tells the platform; a lost event is logged, not retried (the outcome is durable).
    async fn publish(&self, event: Event) {
        match tokio::time::timeout(EVENT_TIMEOUT, self.events.publish_event(&event)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(key = %event.routing_key(), %error, "Could not publish an event.")
            }
            Err(_) => tracing::warn!(key = %event.routing_key(), "Publishing an event timed out."),
        }
    }
}
