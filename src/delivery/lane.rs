//! A provider's lane: its adapter behind the layers every call passes, in the order a tower
//! `ServiceBuilder` would stack them — concurrency (slots), then admission (quota, pacing,
//! breaker, kept on the shared `HealthBoard` so the router and `GET /v1/providers` see the
//! same state), then the call, whose outcome goes back to every layer.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::Permit;
use super::health::{HealthBoard, NotNow};
use crate::domain::records::QuotaUsage;
use crate::domain::Timestamp;
use crate::providers::{OutboundMessage, Provider, ProviderError, SendReceipt};

pub struct Lane {
    adapter: Arc<dyn Provider>,
    board: Arc<HealthBoard>,
    slots: Arc<Semaphore>,
}

/// A call's result and how long the adapter took.
pub struct Called {
    pub result: Result<SendReceipt, ProviderError>,
    pub took: Duration,
    pub finished: Timestamp,
}

impl Lane {
    /// `concurrency` calls may be in flight at once.
    pub fn new(adapter: Arc<dyn Provider>, board: Arc<HealthBoard>, concurrency: usize) -> Self {
        Lane {
            adapter,
            board,
            slots: Arc::new(Semaphore::new(concurrency)),
        }
    }

    pub fn id(&self) -> &str {
        self.adapter.id()
    }

    /// A free slot now, or `None` when `concurrency` calls are in flight.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// The next free slot; `None` once the lane is closed.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).acquire_owned().await.ok()
    }

    /// Leave for one call at `now` from the admission layers (quota, pacing, breaker).
    pub fn enter(&self, now: Timestamp) -> Result<Permit, NotNow> {
        self.board.acquire(self.id(), now)
    }

    /// Whether the provider has quota caps, which the cluster counts as one.
    pub fn quota_capped(&self) -> bool {
        self.board.quota_limits(self.id()).any()
    }

    /// Shows the quota usage the counter's keeper answered with.
    pub fn show_quota(&self, usage: QuotaUsage) {
        self.board.set_quota(self.id(), usage);
    }

    /// Hands back leave that was not used for a call.
    pub fn give_back(&self, permit: Permit, now: Timestamp) {
        self.board.give_back(self.id(), permit, now);
    }

    /// Calls the adapter with the leave `permit`, and tells every layer how it went.
    pub async fn call(&self, permit: Permit, message: &OutboundMessage) -> Called {
        let started = Instant::now();
        let result = self
            .adapter
            .send(message)
            .await
            .map_err(|error| error.masking(&message.code));
        let took = started.elapsed();
        let finished = Timestamp::now();
        self.board
            .record(self.id(), permit, &result, took, finished);
        Called {
            result,
            took,
            finished,
        }
    }
}
