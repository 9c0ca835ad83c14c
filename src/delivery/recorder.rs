//! The one place delivery outcomes become durable: a send's outcome (sent, failed, dropped),
//! and a provider's delivery receipt, however it arrived (an HTTP callback, or a provider's
//! own connection). Each is written, flushed, then told to the platform.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::receipt::{apply_receipt, receipt_event, ProviderReceipt, ReceiptApplied};
use crate::domain::attempt;
use crate::domain::{DeliveryAttempt, DeliveryJob, DeliveryState, Timestamp, Verification};
use crate::providers::receipts::{InboxReceipt, Receipt, ReceiptStatus};
use crate::store::{MessageOwner, Store, StoreError};
use crate::telemetry::metrics::metrics;
use crate::telemetry::platform::{at, tell, Event, EventSink};

/// The pause before a send's outcome is offered again after its write failed.
const RECORD_PAUSE: Duration = Duration::from_millis(250);

/// How long a receipt waits for its send to be recorded: lookups and the pause between them.
const OWNER_LOOKUPS: u32 = 20;
const OWNER_LOOKUP_PAUSE: Duration = Duration::from_millis(50);

/// A send's outcome, as it is made durable on its verification.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SendOutcome {
    pub job: DeliveryJob,
    pub provider: Option<String>,
    /// The delivery state to record, if the job is still the verification's current send;
    /// `None` only takes the job out of the outbox.
    pub state: Option<DeliveryState>,
    pub at: Timestamp,
    /// The provider's id of the message, kept for its delivery receipt.
    pub message: Option<MessageOwner>,
    /// The tries this report adds to the verification's delivery timeline.
    pub attempts: Vec<DeliveryAttempt>,
    /// Whether the job ends with this report and leaves the outbox; a report of tries while
    /// the job goes on leaves it there and its delivery state as it is.
    pub ends_job: bool,
}

/// Where outcomes and receipts become durable: this node's store, or (in a cluster) the
/// store of the node that owns the verification's partition.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Takes the job out of the outbox and records its outcome; resolves once durable.
    async fn record(&self, outcome: SendOutcome) -> Result<(), StoreError>;

    /// Applies a receipt to the send `owner` names; the verification and the state it
    /// reached, if the receipt changed it. Resolves once durable.
    async fn apply_receipt(
        &self,
        owner: MessageOwner,
        provider: String,
        status: ReceiptStatus,
        error_code: Option<String>,
        at: Timestamp,
    ) -> Result<Option<(Verification, DeliveryState)>, StoreError>;
}

/// The ledger on this node's store.
pub struct StoreLedger {
    store: Arc<dyn Store>,
}

impl StoreLedger {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreLedger { store }
    }
}

#[async_trait]
impl Ledger for StoreLedger {
    async fn record(&self, outcome: SendOutcome) -> Result<(), StoreError> {
        let SendOutcome {
            job,
            provider,
            state,
            at,
            message,
            attempts,
            ends_job,
        } = outcome;
        if !ends_job {
            self.store
                .update_verification(&job.verification_id, &mut |verification| {
                    attempt::keep(&mut verification.timeline, &attempts);
                    true
                })?;
            return self.store.flush_unhurried().await;
        }
        if let (Some(message), Some(provider)) = (&message, &provider) {
            self.store.index_message(provider, message)?;
        }
        self.store
            .finish_job(&job, &|verification: &mut Verification| {
                attempt::keep(&mut verification.timeline, &attempts);
                if let (Some(state), true) = (state, verification.send_seq == job.send_seq) {
                    verification.delivery = state;
                    verification.provider = provider.clone();
                    if state == DeliveryState::Sent {
                        verification.sent_at = Some(at);
                    }
                    verification.updated_at = at;
                }
            })?;
        self.store.flush_unhurried().await
    }

    async fn apply_receipt(
        &self,
        owner: MessageOwner,
        provider: String,
        status: ReceiptStatus,
        error_code: Option<String>,
        at: Timestamp,
    ) -> Result<Option<(Verification, DeliveryState)>, StoreError> {
        let mut applied = ReceiptApplied::default();
        let receipt = ProviderReceipt {
            provider: &provider,
            send_seq: owner.send_seq,
            status,
            error_code: error_code.as_deref(),
            at,
        };
        let updated = self
            .store
            .update_verification(&owner.verification_id, &mut |record| {
                applied = apply_receipt(record, &receipt);
                applied.changed
            })?;
        if !applied.changed {
            return Ok(None);
        }
        self.store.flush_unhurried().await?;
        Ok(updated.zip(applied.state))
    }
}

#[derive(Clone)]
pub struct Recorder {
    /// Where outcomes are written.
    ledger: Arc<dyn Ledger>,
    /// Where a receipt's send is looked up (in a cluster: this node's view).
    store: Arc<dyn Store>,
    events: Arc<dyn EventSink>,
}

impl Recorder {
    pub fn new(ledger: Arc<dyn Ledger>, store: Arc<dyn Store>, events: Arc<dyn EventSink>) -> Self {
        Recorder {
            ledger,
            store,
            events,
        }
    }

    /// Where the platform is told.
    pub fn events(&self) -> Arc<dyn EventSink> {
        Arc::clone(&self.events)
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
        self.record(SendOutcome {
            job: job.clone(),
            provider: provider.map(str::to_owned),
            state,
            at,
            message: None,
            attempts: Vec::new(),
            ends_job: true,
        })
        .await
    }

    /// Adds `attempts` to the verification's timeline while the job goes on, in the
    /// background: the send never waits on it, and an entry not kept loses nothing else.
    pub fn note(&self, job: &DeliveryJob, attempts: Vec<DeliveryAttempt>) {
        let recorder = self.clone();
        let job = job.clone();
        tokio::spawn(async move { recorder.tried(&job, attempts).await });
    }

    async fn tried(&self, job: &DeliveryJob, attempts: Vec<DeliveryAttempt>) {
        let report = SendOutcome {
            job: job.clone(),
            provider: None,
            state: None,
            at: Timestamp::now(),
            message: None,
            attempts,
            ends_job: false,
        };
        if let Err(error) = self.ledger.record(report).await {
            tracing::warn!(job = %job.job_id, %error, "Could not add to a verification's delivery timeline.");
        }
    }

    /// Makes `outcome` durable, offering it again while the write fails for a reason that
    /// passes (the changelog or the partition's owner out of reach for now, the broker
    /// blocking publishes, a full disk), until the job's code expires. The message went out
    /// or was given up on: a job whose outcome is not recorded is delivered again, and its
    /// code sent twice.
    async fn record(&self, outcome: SendOutcome) -> Result<(), StoreError> {
        let mut offered = 0u32;
        loop {
            match self.ledger.record(outcome.clone()).await {
                Err(error) if error.may_pass() && Timestamp::now() < outcome.job.expires_at => {
                    if offered == 0 {
                        tracing::warn!(job = %outcome.job.job_id, %error, "Could not record a delivery yet; offering it again until its code expires.");
                    }
                    offered += 1;
                    tokio::time::sleep(RECORD_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    /// Records a sent message and tells the platform.
    /// `message` is the provider's id of the message, kept for its delivery receipt.
    pub async fn sent(
        &self,
        job: &DeliveryJob,
        provider: &str,
        sent_at: Timestamp,
        message: Option<MessageOwner>,
        attempts: Vec<DeliveryAttempt>,
    ) -> Result<(), StoreError> {
        self.record(SendOutcome {
            job: job.clone(),
            provider: Some(provider.to_owned()),
            state: Some(DeliveryState::Sent),
            at: sent_at,
            message,
            attempts,
            ends_job: true,
        })
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

    /// Records a failed delivery, with the timeline entries that say why, and tells the
    /// platform.
    pub async fn failed(
        &self,
        job: &DeliveryJob,
        provider: Option<&str>,
        reason: &str,
        attempts: Vec<DeliveryAttempt>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.record(SendOutcome {
            job: job.clone(),
            provider: provider.map(str::to_owned),
            state: Some(DeliveryState::Failed),
            at: now,
            message: None,
            attempts,
            ends_job: true,
        })
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

    /// Records the receipts that arrive on providers' own connections (SMPP's `deliver_sm`)
    /// until the inbox closes, each answered once it is: recorded, or not (the store failed:
    /// the vendor is asked to deliver it again).
    pub async fn record_pushed(self, mut inbox: tokio::sync::mpsc::Receiver<InboxReceipt>) {
        while let Some(item) = inbox.recv().await {
            let recorder = self.clone();
            tokio::spawn(async move {
                let recorded = match recorder.receipt(&item.provider, &item.receipt).await {
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!(%error, provider = %item.provider, "A delivery receipt could not be recorded; the provider is asked to deliver it again.");
                        false
                    }
                };
                let _ = item.recorded.send(recorded);
            });
        }
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
        let applied = self
            .ledger
            .apply_receipt(
                owner,
                provider.to_owned(),
                receipt.status,
                receipt.error_code.clone(),
                now,
            )
            .await?;
        let Some((record, state)) = applied else {
            return Ok(false);
        };
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
        tell(self.events.as_ref(), event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::timeline;
    use crate::domain::{Channel, JobId, NextStep, VerificationId};
    use crate::store::memory::MemoryStore;
    use crate::telemetry::platform::NoEvents;
    use std::sync::Mutex;

    /// A ledger whose writes fail with each error of `failures` in turn, then succeed.
    struct FailingFirst {
        failures: Mutex<Vec<StoreError>>,
        recorded: Mutex<u32>,
    }

    #[async_trait]
    impl Ledger for FailingFirst {
        async fn record(&self, _outcome: SendOutcome) -> Result<(), StoreError> {
            if let Some(error) = self.failures.lock().unwrap().pop() {
                return Err(error);
            }
            *self.recorded.lock().unwrap() += 1;
            Ok(())
        }

        async fn apply_receipt(
            &self,
            _owner: MessageOwner,
            _provider: String,
            _status: ReceiptStatus,
            _error_code: Option<String>,
            _at: Timestamp,
        ) -> Result<Option<(Verification, DeliveryState)>, StoreError> {
            Ok(None)
        }
    }

    fn failing_first(failures: Vec<StoreError>) -> (Recorder, Arc<FailingFirst>) {
        let ledger = Arc::new(FailingFirst {
            failures: Mutex::new(failures),
            recorded: Mutex::new(0),
        });
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory(Duration::from_secs(3600)));
        let recorder = Recorder::new(
            Arc::clone(&ledger) as Arc<dyn Ledger>,
            store,
            Arc::new(NoEvents),
        );
        (recorder, ledger)
    }

    fn job(expires_at: Timestamp) -> DeliveryJob {
        let id = VerificationId::generate();
        DeliveryJob {
            job_id: JobId::new(&id, 1),
            verification_id: id,
            send_seq: 1,
            tenant: "acme".into(),
            channel: Channel::Sms,
            to: "+2348031200001".into(),
            country: Some("NG".into()),
            region: "eu".into(),
            locale: None,
            template: "default".into(),
            expires_at,
            created_at: Timestamp::now(),
            sealed_code: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_sent_message_is_recorded_once_its_write_goes_through_again() {
        let (recorder, ledger) = failing_first(vec![
            StoreError::Io("the partition's owner did not answer".into()),
            StoreError::Flush("the broker is blocking publishes".into()),
        ]);
        let fresh = job(Timestamp::now().plus_secs(300));
        let attempt = timeline::called(
            &fresh,
            "sandbox",
            Timestamp::now(),
            Duration::ZERO,
            None,
            NextStep::Done,
        );
        recorder
            .sent(&fresh, "sandbox", Timestamp::now(), None, vec![attempt])
            .await
            .expect("recorded on the third offer");
        assert_eq!(*ledger.recorded.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn an_outcome_is_not_offered_again_past_its_codes_expiry_or_when_unreadable() {
        let (recorder, ledger) = failing_first(vec![StoreError::Flush("refused".into())]);
        let expired = job(Timestamp::now());
        let error = recorder
            .outcome(&expired, None, None, Timestamp::now())
            .await
            .expect_err("an expired code's outcome is given up");
        assert!(matches!(error, StoreError::Flush(_)));

        let (unreadable, _) = failing_first(vec![StoreError::Corrupt("garbled".into())]);
        let fresh = job(Timestamp::now().plus_secs(300));
        let error = unreadable
            .outcome(&fresh, None, None, Timestamp::now())
            .await
            .expect_err("an unreadable record does not pass");
        assert!(matches!(error, StoreError::Corrupt(_)));
        assert_eq!(*ledger.recorded.lock().unwrap(), 0);
    }
}
