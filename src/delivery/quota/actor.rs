//! QuotaActor: loads each provider's saved usage onto the board at start; counts the
//! accepted messages of providers without caps (each node its own), persisting the usage
//! (a restart does not reset it). Capped providers are counted for the whole cluster before
//! each call instead (`shared`); both raise `provider.quota` alerts through `announce`.

use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

use super::{QuotaAlert, QuotaUsage};
use crate::delivery::health::HealthBoard;
use crate::domain::Timestamp;
use crate::store::Store;
use crate::telemetry::events::QuotaThresholdCrossed;
use crate::telemetry::platform::EventSink;
use crate::telemetry::platform::{at, Event};

/// One message was accepted by `provider`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CountSend {
    pub provider: String,
}

pub struct QuotaActor {
    store: Arc<dyn Store>,
    board: Arc<HealthBoard>,
    events: Arc<dyn EventSink>,
    usage: HashMap<String, QuotaUsage>,
}

impl QuotaActor {
    /// Loads every provider's saved usage into the board.
    pub fn load(
        store: Arc<dyn Store>,
        board: Arc<HealthBoard>,
        events: Arc<dyn EventSink>,
    ) -> Result<Self, crate::store::StoreError> {
        let mut usage = HashMap::new();
        for provider in board.provider_ids() {
            let saved = store
                .quota(&provider)?
                .map(super::from_saved)
                .unwrap_or_default();
            board.set_quota(&provider, saved);
            usage.insert(provider, saved);
        }
        Ok(QuotaActor {
            store,
            board,
            events,
            usage,
        })
    }
}

impl Actor for QuotaActor {
    type Context = Context<Self>;
}

impl Handler<CountSend> for QuotaActor {
    type Result = ();

    fn handle(&mut self, message: CountSend, ctx: &mut Self::Context) {
        let now = Timestamp::now();
        let limits = self.board.quota_limits(&message.provider);
        let usage = self.usage.entry(message.provider.clone()).or_default();
        let alerts = usage.record(&limits, 1, now);
        let usage = *usage;
        if let Err(error) = self.store.save_quota(&message.provider, &usage) {
            tracing::error!(provider = %message.provider, %error, "Could not save quota usage.");
        }
        // The board (and so routing and GET /v1/providers) shows the count once it is durable:
        // a crash cannot undo a count anybody has seen.
        let provider = message.provider.clone();
        ctx.spawn(
            self.store
                .flush()
                .into_actor(self)
                .map(move |flushed, actor, _| {
                    if let Err(error) = flushed {
                        tracing::error!(%provider, %error, "Could not flush quota usage.");
                    }
                    if let Some(latest) = actor.usage.get(&provider) {
                        actor.board.set_quota(&provider, *latest);
                    }
                }),
        );
        ctx.spawn(
            announce(message.provider, alerts, now, Arc::clone(&self.events)).into_actor(self),
        );
    }
}

/// Tells of thresholds crossed: logged and counted, and published as `provider.quota` events.
pub async fn announce(
    provider: String,
    alerts: Vec<QuotaAlert>,
    now: Timestamp,
    events: Arc<dyn EventSink>,
) {
    for alert in alerts {
        QuotaThresholdCrossed {
            provider: &provider,
            period: alert.period.as_str(),
            percent: alert.percent,
            used: alert.used,
            limit: alert.limit,
        }
        .emit();
        let event = Event::ProviderQuota {
            provider: provider.clone(),
            period: alert.period.as_str().to_owned(),
            percent: alert.percent,
            used: alert.used,
            limit: alert.limit,
            at: at(now),
        };
        if let Err(error) = events.publish_event(&event).await {
            tracing::warn!(%error, "Could not publish a quota alert.");
        }
    }
}
