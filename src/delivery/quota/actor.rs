//! QuotaActor: loads each provider's saved usage onto the board at start; counts the
//! accepted messages of providers without caps (each node its own), saving the usage every
//! [`SAVE_EVERY`] (a restart does not reset it). Capped providers are counted for the whole
//! cluster before each call instead (`shared`); both raise `provider.quota` alerts through
//! `announce`.

use actix::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{QuotaAlert, QuotaUsage};
use crate::delivery::health::HealthBoard;
use crate::domain::Timestamp;
use crate::store::Store;
use crate::telemetry::events::QuotaThresholdCrossed;
use crate::telemetry::platform::EventSink;
use crate::telemetry::platform::{at, Event};

/// How often what was counted since the last save is saved, for every provider counted: a
/// write and a flush, where one per message made every send cost a flush of its own. The
/// board shows what was saved, so a crash loses at most this long's counts, and none that
/// anybody has seen.
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

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
    /// Providers counted since their usage was last saved.
    unsaved: BTreeSet<String>,
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
            unsaved: BTreeSet::new(),
        })
    }

    /// Writes the usage of every provider counted since the last save: the providers and
    /// the usage written.
    fn write_unsaved(&mut self) -> Vec<(String, QuotaUsage)> {
        let written: Vec<(String, QuotaUsage)> = std::mem::take(&mut self.unsaved)
            .into_iter()
            .filter_map(|provider| {
                let usage = *self.usage.get(&provider)?;
                Some((provider, usage))
            })
            .collect();
        for (provider, usage) in &written {
            if let Err(error) = self.store.save_quota(provider, usage) {
                tracing::error!(%provider, %error, "Could not save quota usage.");
            }
        }
        written
    }

    /// Saves the usage of every provider counted since the last save, then shows it on the
    /// board once it is durable; if it could not be made durable, it is saved again with the
    /// next.
    fn save(&mut self, ctx: &mut Context<Self>) {
        let saved = self.write_unsaved();
        ctx.spawn(
            self.store
                .flush()
                .into_actor(self)
                .map(move |flushed, actor, ctx| match flushed {
                    Ok(()) => {
                        for (provider, usage) in saved {
                            actor.board.set_quota(&provider, usage);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "Could not flush quota usage; it is saved again shortly.");
                        for (provider, _) in saved {
                            actor.mark_unsaved(provider, ctx);
                        }
                    }
                }),
        );
    }

    /// Remembers `provider`'s usage as unsaved, and has it saved within [`SAVE_EVERY`].
    fn mark_unsaved(&mut self, provider: String, ctx: &mut Context<Self>) {
        if self.unsaved.is_empty() {
            ctx.run_later(SAVE_EVERY, |actor, ctx| actor.save(ctx));
        }
        self.unsaved.insert(provider);
    }
}

impl Actor for QuotaActor {
    type Context = Context<Self>;

    /// Writes what was counted since the last save, for the store's last flush as otpd stops.
    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.write_unsaved();
        Running::Stop
    }
}

impl Handler<CountSend> for QuotaActor {
    type Result = ();

    fn handle(&mut self, message: CountSend, ctx: &mut Self::Context) {
        let now = Timestamp::now();
        let limits = self.board.quota_limits(&message.provider);
        let usage = self.usage.entry(message.provider.clone()).or_default();
        let alerts = usage.record(&limits, 1, now);
        // The board (and so routing and GET /v1/providers) shows the count once it is saved
        // and durable: a crash cannot undo a count anybody has seen.
        self.mark_unsaved(message.provider.clone(), ctx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::breaker::BreakerConfig;
    use crate::store::MemoryStore;
    use crate::telemetry::platform::NoEvents;
    use std::collections::BTreeMap;

    fn used_today(board: &HealthBoard) -> u64 {
        board.views(Timestamp::now())[0].quota.day.used
    }

    #[actix_rt::test]
    async fn counts_are_saved_together_and_shown_once_saved() {
        let memory = Arc::new(MemoryStore::in_memory(Duration::from_secs(60)));
        let flushes = || memory.engine().flushes();
        let store: Arc<dyn Store> = memory.clone();
        let board = Arc::new(HealthBoard::new(
            &[("p".to_owned(), "http")],
            BreakerConfig::default(),
            &BTreeMap::new(),
            &BTreeMap::new(),
        ));
        let actor = QuotaActor::load(Arc::clone(&store), Arc::clone(&board), Arc::new(NoEvents))
            .unwrap()
            .start();
        for _ in 0..100 {
            actor
                .send(CountSend {
                    provider: "p".to_owned(),
                })
                .await
                .unwrap();
        }
        assert_eq!(used_today(&board), 0, "not shown before it is saved");
        assert_eq!(flushes(), 0);

        tokio::time::sleep(SAVE_EVERY + Duration::from_millis(200)).await;
        assert_eq!(flushes(), 1, "one flush for the 100");
        assert_eq!(used_today(&board), 100);
        let saved = store.quota("p").unwrap().unwrap();
        assert_eq!(saved.used(super::super::Period::Day, Timestamp::now()), 100);
    }
}
