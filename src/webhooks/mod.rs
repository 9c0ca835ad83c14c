//! Signed webhooks to each tenant that names a `webhook_url`: every event otpd tells a
//! platform about its verifications (`verification.created|sent|delivered|failed|approved|
//! canceled|expired|max_attempts_reached`), and `provider.quota` and `fraud.blocked`.
//!
//! By job: `settings` (the tenants' URLs and secrets, the retry settings), `event` (which
//! platform event becomes which webhook, and its body), `signature` (`Otpd-Signature`),
//! `outbox` (the durable queue, a sled database of its own beside the store) and `dispatch`
//! (sends each tenant's events in order, retrying with backoff and jitter for
//! `webhooks.retry_for_seconds`, and turns expiry probes into `verification.expired`).
//!
//! An event is in the outbox, flushed to disk, before whatever told it goes on: the issuer
//! writes `verification.created` before the code's job is handed to delivery, so a tenant
//! gets each verification's events in the order they happened. The outbox is this node's:
//! in a cluster the node that recorded an event sends it (after a kill, once it is back).

pub mod dispatch;
pub mod event;
pub mod outbox;
pub mod settings;
pub mod signature;

use async_trait::async_trait;
use std::sync::Arc;

use crate::domain::{IssueReceipt, Timestamp};
use crate::store::Store;
use crate::telemetry::platform::{Event, EventSink, PublishError};
use outbox::{Entry, Outbox};
pub use settings::{WebhookSettings, WebhookTargets};

/// The webhooks of this node: where each tenant's go, and the outbox they wait in.
pub struct Webhooks {
    targets: WebhookTargets,
    outbox: Arc<Outbox>,
    wake: Arc<tokio::sync::Notify>,
}

impl Webhooks {
    /// Opens the outbox in `<store dir>/webhooks` and starts sending what waits in it.
    pub fn start(
        targets: WebhookTargets,
        settings: &WebhookSettings,
        store_dir: &std::path::Path,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Self>, crate::store::StoreError> {
        let outbox = Arc::new(Outbox::open(&store_dir.join("webhooks"))?);
        let wake = Arc::new(tokio::sync::Notify::new());
        dispatch::spawn(
            Arc::clone(&outbox),
            targets.clone(),
            settings.clone(),
            store,
            Arc::clone(&wake),
        );
        Ok(Arc::new(Webhooks {
            targets,
            outbox,
            wake,
        }))
    }

    /// Keeps `event`'s webhooks, durably, for the tenants that take them.
    pub async fn tell(&self, event: &Event) {
        let now = Timestamp::now();
        let entries = event::entries_for(event, &self.targets, now);
        self.keep(entries).await;
    }

    /// Keeps `verification.created` for a verification just issued, and the probe that
    /// tells of its expiry; before its code is handed on.
    pub async fn created(&self, tenant: &str, receipt: &IssueReceipt) {
        if !self.targets.has(tenant) || !receipt.created {
            return;
        }
        let entries = event::created(tenant, receipt, Timestamp::now());
        self.keep(entries).await;
    }

    async fn keep(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self.outbox.push(&entries).await {
            tracing::error!(%error, "Could not keep webhooks in the outbox; they are lost.");
        }
        self.wake.notify_one();
    }

    /// `inner`, with every event it is told kept for the tenants' webhooks too.
    pub fn sink(self: &Arc<Self>, inner: Arc<dyn EventSink>) -> Arc<dyn EventSink> {
        Arc::new(TellingSink {
            inner,
            webhooks: Arc::clone(self),
        })
    }
}

/// An event sink that also keeps each event's webhooks.
struct TellingSink {
    inner: Arc<dyn EventSink>,
    webhooks: Arc<Webhooks>,
}

#[async_trait]
impl EventSink for TellingSink {
    async fn publish_event(&self, event: &Event) -> Result<(), PublishError> {
        self.webhooks.tell(event).await;
        self.inner.publish_event(event).await
    }
}
