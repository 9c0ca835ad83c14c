//! Checks, cancels and approvals against the store: finds the verification, applies the rules
//! atomically, and waits until the outcome is durable before answering.

use std::sync::Arc;

use super::rules::{apply_check, apply_close, CheckOutcome, CheckRefusal, Closing};
use crate::domain::destination::mask;
use crate::domain::Status;
use crate::domain::{
    CodeHasher, DestinationKey, OtpCode, Presented, Timestamp, Verification, VerificationId,
};
use crate::fraud::FraudGate;
use crate::store::{Store, StoreError};
use crate::telemetry::platform::{at, tell_later, Ended, Event, EventSink, NoEvents};

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum CheckError {
    #[error("no such verification")]
    NotFound,
    #[error("the verification cannot be checked: {0:?}")]
    Refused(CheckRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Verifies codes and cancels verifications for one tenant at a time.
#[derive(Clone)]
pub struct Checker {
    store: Arc<dyn Store>,
    hasher: CodeHasher,
    fraud: FraudGate,
    events: Arc<dyn EventSink>,
}

impl Checker {
    pub fn new(store: Arc<dyn Store>, hasher: CodeHasher) -> Self {
        Checker {
            store,
            hasher,
            fraud: FraudGate::off(),
            events: Arc::new(NoEvents),
        }
    }

    /// Tells the platform of each verification that ends by a check or a request.
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// Tells the platform how `record` ended, once that is durable, without holding up the
    /// answer.
    fn tell_ending(&self, record: &Verification, ending: fn(Ended) -> Event, now: Timestamp) {
        let event = ending(Ended {
            id: record.id.to_string(),
            tenant: record.tenant.clone(),
            channel: record.channel,
            to: mask(&record.to),
            at: at(now),
        });
        tell_later(&self.events, event);
    }

    /// Tells the SMS-pumping guard (shared with issuance) about each approval.
    pub fn with_fraud_gate(mut self, fraud: FraudGate) -> Self {
        self.fraud = fraud;
        self
    }

    /// Checks `code` against verification `id` of `tenant`.
    pub async fn check(
        &self,
        tenant: &str,
        id: &VerificationId,
        code: &OtpCode,
        presented: &Presented,
        now: Timestamp,
    ) -> Result<(Verification, CheckOutcome), CheckError> {
        let candidate = self.hasher.hash(id.as_str(), code);
        let mut result = Err(CheckError::NotFound);
        let record = self.store.update_verification(id, &mut |record| {
            if record.tenant != tenant {
                result = Err(CheckError::NotFound);
                return false;
            }
            result = apply_check(record, &candidate, presented, now).map_err(CheckError::Refused);
            result.is_ok()
        })?;
        let outcome = result?;
        self.store.flush().await?;
        let record = record.ok_or(CheckError::NotFound)?;
        if outcome.valid {
            self.fraud.record_conversion(&record, now);
            self.tell_ending(&record, approved_by_code, now);
        } else if outcome.status == Status::MaxAttemptsReached {
            self.tell_ending(&record, max_attempts_reached, now);
        }
        Ok((record, outcome))
    }

    /// The pending verification of a destination, for a check by destination.
    pub fn pending_for(&self, key: &DestinationKey) -> Result<VerificationId, CheckError> {
        self.store
            .destination(key)?
            .and_then(|state| state.pending)
            .ok_or(CheckError::NotFound)
    }

    /// Reads a verification of `tenant`.
    pub fn get(&self, tenant: &str, id: &VerificationId) -> Result<Verification, CheckError> {
        self.find(Some(tenant), id)
    }

    /// Reads a verification of `tenant`, or of any tenant when it is `None`.
    pub fn find(
        &self,
        tenant: Option<&str>,
        id: &VerificationId,
    ) -> Result<Verification, CheckError> {
        self.store
            .verification(id)?
            .filter(|record| tenant.is_none_or(|tenant| record.tenant == tenant))
            .ok_or(CheckError::NotFound)
    }

    /// Cancels or approves a pending verification of `tenant`.
    pub async fn close(
        &self,
        tenant: &str,
        id: &VerificationId,
        closing: Closing,
        now: Timestamp,
    ) -> Result<Verification, CheckError> {
        let mut result = Err(CheckError::NotFound);
        let record = self.store.update_verification(id, &mut |record| {
            if record.tenant != tenant {
                result = Err(CheckError::NotFound);
                return false;
            }
            result = apply_close(record, closing, now).map_err(CheckError::Refused);
            result.is_ok()
        })?;
        result?;
        self.store.flush().await?;
        // An approval without a code says nothing of whether the code arrived: it is no
        // conversion for the SMS-pumping guard.
        let record = record.ok_or(CheckError::NotFound)?;
        let ending = match closing {
            Closing::Cancel => canceled,
            Closing::Approve => approved_by_request,
        };
        self.tell_ending(&record, ending, now);
        Ok(record)
    }
}

fn approved_by_code(verification: Ended) -> Event {
    Event::VerificationApproved {
        verification,
        by: "code",
    }
}

fn approved_by_request(verification: Ended) -> Event {
    Event::VerificationApproved {
        verification,
        by: "request",
    }
}

fn canceled(verification: Ended) -> Event {
    Event::VerificationCanceled { verification }
}

fn max_attempts_reached(verification: Ended) -> Event {
    Event::VerificationMaxAttemptsReached { verification }
}
