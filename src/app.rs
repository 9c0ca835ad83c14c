//! Wiring: opens the store, loads secrets and tenants, starts the actors, the background
//! work (outbox recovery, sweeping) and the HTTP server.

use actix::{Actor, AsyncContext};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::access::caps::CapTable;
use crate::api::receipts::ReceiptBook;
use crate::api::{self, AppState};
use crate::bus::amqp::{AmqpBus, Consumers};
use crate::bus::embedded::EmbeddedBus;
use crate::cluster::changelog::{Changelog, LoggedEngine, View};
use crate::cluster::counters::CounterBook;
use crate::cluster::lasting::{LastingState, FIRST_REWRITE_AFTER, REWRITE_EVERY};
use crate::cluster::scoped::SlottedStore;
use crate::cluster::{Executor, Forwarder, Gateway, Owner};
use crate::config::{ConfigError, Settings};
use crate::delivery::health::HealthBoard;
use crate::delivery::lane::Lane;
use crate::delivery::quota::actor::QuotaActor;
use crate::delivery::recorder::{Ledger, Recorder, StoreLedger};
use crate::delivery::recovery::resume_outbox;
use crate::delivery::retry::Backoff;
use crate::delivery::routes::RouteTable;
use crate::delivery::sender::SendContext;
use crate::delivery::{DelayQueue, JobQueue, RouterActor, SenderActor, Templates};
use crate::domain::counters::Tally;
use crate::domain::Timestamp;
use crate::fraud::{BlockKeeper, FraudGate};
use crate::issuance::request::RequestDefaults;
use crate::issuance::{IssuanceActor, Issuer, IssuerSettings};
use crate::providers::BuiltProvider;
use crate::runtime::Arbiters;
use crate::secrets::{SecretError, Secrets};
use crate::store::{
    engine_for, EngineKind, KvEngine, LsmEngine, RecordStore, SledEngine, Store, StoreError,
};
use crate::telemetry::events::StoreSwept;
use crate::telemetry::platform::{EventSink, NoEvents};
use crate::tenants::{bootstrap_dev_tenant, ApiKeys, TenantError};
use crate::verify::Checker;
use crate::webhooks::Webhooks;

/// How long a job waits for its verification to reach a cluster node's view.
const VIEW_WAIT: Duration = Duration::from_secs(2);

/// Records removed per sweep pass; a pass repeats while it fills up.
const SWEEP_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not create the store directory {path}: {source}")]
    StoreDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    StoreIdentity(#[from] crate::store::identity::IdentityError),
    #[error(transparent)]
    Tenants(#[from] TenantError),
    #[error(transparent)]
    Settings(#[from] ConfigError),
    #[error("could not listen on {address}: {source} (set OTPD__HTTP__LISTEN to a free address)")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

/// A built otpd, ready to run. Needs a running actix `System`.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    store: Arc<dyn Store>,
    broker: Option<Arc<AmqpBus>>,
    arbiters: Arbiters,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        // Every file the settings name is read here, once, before anything starts; a bad
        // one stops the start with every problem listed.
        let prepared = settings.validate()?;
        let https = prepared.https;
        let dir = settings.store.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StartError::StoreDir {
            path: dir.clone(),
            source,
        })?;
        let embedded = settings.amqp.url.is_none();
        let secrets = Secrets::load(&settings.secrets, &dir, embedded)?;
        let (store, changelog) = open_store(&settings).await?;
        if let Some(path) = bootstrap_dev_tenant(&settings.tenants, &dir)? {
            tracing::info!(
                tenant = crate::tenants::DEV_TENANT,
                path = %path.display(),
                "No tenant was configured: created tenant dev; its API key is in the file at path."
            );
        }
        let keys = Arc::new(ApiKeys::load(&settings.tenants, &dir)?);

        let defaults = RequestDefaults {
            code_length: settings.verification.code_length,
            ttl_seconds: settings.verification.ttl_seconds,
        };
        let broker = settings
            .amqp
            .url
            .as_ref()
            .map(|_| AmqpBus::new(&settings.amqp, &settings.cluster, prepared.amqp_tls));
        // Another node's edits of the lists every node enforces reach this store through
        // the changelog; the copies kept in memory are read again when they do.
        let lists = changelog
            .as_ref()
            .map(|changelog| changelog.lists())
            .unwrap_or_default();
        if let (Some(broker), Some(changelog)) = (&broker, changelog) {
            changelog.append_to(Arc::clone(broker.cluster()) as Arc<dyn Changelog>);
            broker.cluster().keep_view(changelog);
        }
        let events: Arc<dyn EventSink> = match &broker {
            Some(broker) => broker.clone(),
            None => Arc::new(NoEvents),
        };
        // The tenants' webhooks hear every event the platforms are told of.
        let webhooks = if prepared.webhook_targets.is_empty() {
            None
        } else {
            let webhooks = Webhooks::start(
                prepared.webhook_targets,
                &settings.webhooks,
                &dir,
                Arc::clone(&store),
            )
            .map_err(StartError::Store)?;
            Some(webhooks)
        };
        let events = match &webhooks {
            Some(webhooks) => webhooks.sink(events),
            None => events,
        };
        // Commands on a destination's state run here, or on its partition's owner.
        let forwarder = broker
            .as_ref()
            .map(|broker| Arc::clone(broker.cluster()) as Arc<dyn Forwarder>);
        let gateway = Arc::new(Gateway::new(
            settings.cluster.partitions,
            forwarder,
            secrets.sealer.clone(),
        ));
        // Jobs created from here on are handed over by their own create, not by recovery.
        let started = Timestamp::now();
        let arbiters = Arbiters::start(&settings.runtime);
        let receipts = ReceiptBook::new(&prepared.providers, settings.http.public_url.clone());
        let Delivery {
            router,
            board,
            recorder,
        } = start_delivery(
            &settings,
            prepared.providers,
            &store,
            &secrets,
            DeliveryLinks {
                recorder: Recorder::new(
                    Arc::clone(&gateway) as Arc<dyn Ledger>,
                    Arc::clone(&store),
                    Arc::clone(&events),
                ),
                delay_queue: broker.clone().map(|b| b as Arc<dyn DelayQueue>),
                tally: Arc::clone(&gateway) as Arc<dyn Tally>,
            },
            &arbiters.delivery,
        )?;
        arbiters
            .delivery
            .spawn(recorder.clone().record_pushed(prepared.receipt_inbox));
        let bus: Arc<dyn JobQueue> = match &broker {
            Some(broker) => broker.clone(),
            None => Arc::new(EmbeddedBus::new(router.clone())),
        };
        let access =
            crate::access::Gate::load(&settings.tenants, Arc::clone(&store), Arc::clone(&lists))?;
        let caps = CapTable::from_settings(&settings.tenants, &settings.pricing);
        let counters = CounterBook::new(
            Arc::clone(&store),
            caps.clone(),
            settings.quotas.clone(),
            Arc::clone(&events),
        );
        // What of it outlives the changelogs' retention, in broker mode.
        let lasting = broker
            .is_some()
            .then(|| LastingState::new(Arc::clone(&store), caps.clone(), settings.quotas.clone()));
        // The SMS-pumping guard, shared by issuance (screens, counts sends) and checking
        // (counts conversions); its blocks survive restarts in the store.
        let fraud = FraudGate::load(
            &settings.fraud,
            Arc::clone(&store),
            Arc::clone(&events),
            lists,
            Timestamp::now(),
        )?;
        fraud.keep_blocks_with(Arc::downgrade(&gateway) as Weak<dyn BlockKeeper>);
        if let Some(broker) = &broker {
            broker.share_guard(&fraud);
        }
        let issuer = Issuer::new(
            IssuerSettings {
                verification: &settings.verification,
                rate_limits: &settings.rate_limits,
                regions: &settings.regions,
                templates: &settings.templates,
                routing: &settings.routing,
                retention: Duration::from_secs(settings.store.retention_seconds),
            },
            Arc::clone(&store),
            secrets.clone(),
            Arc::clone(&bus),
            access,
        )
        .with_fraud_gate(fraud.clone())
        .with_webhooks(webhooks);
        let issuance = IssuanceActor::new(issuer, settings.delivery.mailbox_capacity);
        let issuer = IssuanceActor::start_in_arbiter(&arbiters.issuance, |_| issuance);
        let owner: Arc<dyn Executor> = Arc::new(Owner {
            issuer: issuer.clone(),
            checker: Checker::new(Arc::clone(&store), secrets.hasher.clone())
                .with_fraud_gate(fraud.clone())
                .with_events(Arc::clone(&events)),
            ledger: Arc::new(StoreLedger::new(Arc::clone(&store))),
            sealer: secrets.sealer.clone(),
            counters,
            caps,
            tally: Arc::downgrade(&gateway) as Weak<dyn Tally>,
            fraud: fraud.clone(),
        });
        gateway.serve_with(Arc::clone(&owner));
        if let Some(broker) = &broker {
            broker.cluster().serve_with(owner);
            let consumers = Consumers {
                gateway: Arc::clone(&gateway),
                router,
                keys: Arc::clone(&keys),
                defaults,
            };
            let starting = Arc::clone(broker);
            arbiters.broker.spawn_fn(move || starting.start(consumers));
        }
        // In broker mode a job is answered for only once the broker has it, and a request
        // whose job never reached the broker was never answered: the broker delivers it
        // again, or its caller retries, and the retry hands the job over (an idempotent one
        // the same job). So only embedded mode resumes its outbox; a cluster node resuming
        // the outbox its store holds would send again what other nodes are sending. Broker
        // mode writes its lasting state to the changelogs again now and then instead.
        match lasting {
            Some(lasting) => spawn_lasting_rewrites(lasting, Arc::clone(&gateway)),
            None => spawn_outbox_recovery(Arc::clone(&store), Arc::clone(&bus), started),
        }
        spawn_sweeper(
            Arc::clone(&store),
            Duration::from_secs(settings.store.sweep_interval_seconds),
        );
        crate::workflow_clock::spawn(Arc::clone(&store), Arc::clone(&gateway));

        let cluster = broker
            .clone()
            .map(|broker| broker as Arc<dyn crate::cluster::ClusterStatus>);
        let state = web::Data::new(AppState {
            cluster,
            gateway,
            issuer,
            keys,
            admins: settings
                .tenants
                .iter()
                .filter(|(_, tenant)| tenant.admin)
                .map(|(name, _)| name.clone())
                .collect(),
            store: Arc::clone(&store),
            bus,
            board,
            receipts,
            recorder,
            defaults,
            fraud,
            body_timeout: settings.http.body_timeout(),
            scheme: if https.is_some() { "https" } else { "http" },
            trusted_proxies: api::client_ip::TrustedProxies::parse(&settings.http.trusted_proxies)
                .unwrap_or_default(),
            check_limiter: std::sync::Mutex::new(crate::domain::rate_limit::KeyedLimiter::new(
                settings.rate_limits.client_ip_per_second,
                settings.rate_limits.client_ip_burst,
            )),
        });
        let listen_error = |source| StartError::Listen {
            address: settings.http.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.http.listen).map_err(listen_error)?;
        let address = listener.local_addr().map_err(listen_error)?;
        let workers = settings.http.worker_count();
        let scheme = state.scheme;
        let server = api::server::serve(listener, https, workers, move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(api::observe))
                .configure(api::configure)
                .default_service(web::to(api::unknown_route))
        })
        .map_err(listen_error)?;
        tracing::info!(address = %format!("{scheme}://{address}"), "Listening.");
        Ok(Application {
            server,
            port: address.port(),
            store,
            broker,
            arbiters,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the HTTP server, and with it `run`.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM or `handle().stop()`) or the
    /// cluster refuses this node (an error that says why), then closes the broker connection
    /// and makes the store durable.
    pub async fn run(self) -> std::io::Result<()> {
        let server = self.server.handle();
        let served = match &self.broker {
            Some(broker) => {
                tokio::select! {
                    served = self.server => served,
                    reason = broker.refused() => {
                        server.stop(true).await;
                        Err(std::io::Error::other(reason))
                    }
                }
            }
            None => self.server.await,
        };
        if let Some(broker) = &self.broker {
            broker.stop();
        }
        self.arbiters.stop();
        if let Err(error) = self.store.flush().await {
            tracing::error!(%error, "Final store flush failed.");
        }
        served
    }
}

/// The shared state of a store whose partition writes go to the changelogs.
type Changelogged = Arc<dyn View>;

/// This node's store, on the engine its settings name, else on the engine that made it (the
/// LSM tree for a new store). In broker mode its partition writes also go to the partitions'
/// changelogs (returned, for the broker side to append to and apply from).
async fn open_store(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Option<Changelogged>), StartError> {
    let path = settings.store.state_dir();
    let kind = engine_for(&path, settings.store.engine, settings.store.compression)?;
    let opened = match kind {
        EngineKind::Sled => {
            let engine = SledEngine::open(&path, settings.store.sled_options())?;
            store_on(engine, &path, settings).await
        }
        EngineKind::Lsm => {
            let engine = LsmEngine::open(&path, settings.store.lsm_options())?;
            store_on(engine, &path, settings).await
        }
    }?;
    tracing::info!(
        engine = kind.name(),
        named = settings.store.engine.is_some(),
        path = %path.display(),
        "Opened the store (an engine not named by store.engine is the one that made the store, \
         the LSM tree for a new one)."
    );
    Ok(opened)
}

/// The store over `engine`, opened in `path`.
async fn store_on<E: KvEngine>(
    engine: E,
    path: &std::path::Path,
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Option<Changelogged>), StartError> {
    let retention = Duration::from_secs(settings.store.retention_seconds);
    crate::store::identity::check(&engine, path).await?;
    if !settings.amqp.is_broker_mode() {
        return Ok((Arc::new(RecordStore::new(engine, retention)), None));
    }
    let logged = LoggedEngine::new(engine, &settings.cluster);
    let shared: Changelogged = logged.shared();
    let store = SlottedStore(RecordStore::new(logged, retention));
    Ok((Arc::new(store), Some(shared)))
}

/// The running delivery side: the router, the board of provider health, and the recorder
/// that delivery receipts arriving over HTTP go to.
struct Delivery {
    router: actix::Addr<RouterActor>,
    board: Arc<HealthBoard>,
    recorder: Recorder,
}

/// Where delivery reaches beyond itself: outcomes go to the recorder (and through it to
/// each verification's owner), pauses to the broker's delay queue, and capped providers'
/// messages are counted through the tally.
struct DeliveryLinks {
    recorder: Recorder,
    delay_queue: Option<Arc<dyn DelayQueue>>,
    tally: Arc<dyn Tally>,
}

/// Starts delivery over the built providers: their health board, the QuotaActor, a lane and
/// a SenderActor per provider, and the RouterActor that chooses between them.
fn start_delivery(
    settings: &Settings,
    providers: Vec<BuiltProvider>,
    store: &Arc<dyn Store>,
    secrets: &Secrets,
    links: DeliveryLinks,
    arbiter: &actix::ArbiterHandle,
) -> Result<Delivery, StartError> {
    let DeliveryLinks {
        recorder,
        delay_queue,
        tally,
    } = links;
    let kinds: Vec<(String, &'static str)> = providers
        .iter()
        .map(|provider| (provider.id.clone(), provider.kind))
        .collect();
    let rates = settings
        .provider_limits
        .iter()
        .filter_map(|(id, limits)| Some((id.clone(), limits.messages_per_second?)))
        .collect();
    let board = Arc::new(HealthBoard::new(
        &kinds,
        settings.breaker,
        &settings.quotas,
        &rates,
    ));
    let quota = QuotaActor::load(Arc::clone(store), Arc::clone(&board), recorder.events())?;
    let quota = QuotaActor::start_in_arbiter(arbiter, |_| quota).recipient();
    let context = Arc::new(SendContext {
        store: Arc::clone(store),
        recorder: recorder.clone(),
        sealer: secrets.sealer.clone(),
        templates: Templates::from_settings(&settings.templates),
        backoff: Backoff::default(),
        in_flight: Mutex::default(),
        attempts_per_provider: settings.delivery.attempts_per_provider,
        countries: settings.countries.clone(),
        autofill: settings.autofill_lines(),
        view_wait: if settings.amqp.is_broker_mode() {
            VIEW_WAIT
        } else {
            Duration::ZERO
        },
        tally,
    });
    let lanes: Vec<(String, Lane)> = providers
        .into_iter()
        .map(|BuiltProvider { id, adapter, .. }| {
            let concurrency = settings
                .provider_limits
                .get(&id)
                .and_then(|l| l.concurrency)
                .unwrap_or(settings.delivery.concurrency);
            let lane = Lane::new(adapter, Arc::clone(&board), concurrency);
            (id, lane)
        })
        .collect();
    let mailbox_capacity = settings.delivery.mailbox_capacity;
    let table = RouteTable::from_settings(&settings.routing);
    let router_board = Arc::clone(&board);
    let router = RouterActor::start_in_arbiter(arbiter, move |ctx| {
        let to_router = ctx.address().recipient();
        let senders = lanes
            .into_iter()
            .map(|(id, lane)| {
                let sender = SenderActor::new(
                    lane,
                    Arc::clone(&context),
                    to_router.clone(),
                    quota.clone(),
                    mailbox_capacity,
                )
                .start();
                (id, sender.recipient())
            })
            .collect();
        RouterActor::new(
            table,
            senders,
            router_board,
            context,
            delay_queue,
            mailbox_capacity,
        )
    });
    Ok(Delivery {
        router,
        board,
        recorder,
    })
}

fn spawn_outbox_recovery(store: Arc<dyn Store>, bus: Arc<dyn JobQueue>, started: Timestamp) {
    actix_rt::spawn(async move {
        if let Err(error) = resume_outbox(store, bus, started).await {
            tracing::error!(%error, "Could not read the outbox; unfinished deliveries resume at the next start.");
        }
    });
}

/// In broker mode: writes the lasting state of the partitions this node serves to their
/// changelogs again now and then, so the streams' retention never drops it.
fn spawn_lasting_rewrites(lasting: LastingState, gateway: Arc<Gateway>) {
    actix_rt::spawn(async move {
        tokio::time::sleep(FIRST_REWRITE_AFTER).await;
        let mut ticks = tokio::time::interval(REWRITE_EVERY);
        loop {
            ticks.tick().await;
            match lasting
                .rewrite_served(|slot| gateway.enter_served(slot))
                .await
            {
                Ok(records) => tracing::info!(
                    records,
                    "Wrote the lasting state of this node's partitions to their changelogs again."
                ),
                Err(error) => {
                    tracing::warn!(%error, "Could not write the lasting state again; trying at the next turn.")
                }
            }
        }
    });
}

fn spawn_sweeper(store: Arc<dyn Store>, every: Duration) {
    actix_rt::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let store = Arc::clone(&store);
            let swept = tokio::task::spawn_blocking(move || sweep_all(store.as_ref())).await;
            match swept {
                Ok(Ok(removed)) => StoreSwept { removed }.emit(),
                Ok(Err(error)) => tracing::warn!(%error, "Sweep failed; it runs again later."),
                Err(error) => tracing::warn!(%error, "Sweep task failed."),
            }
        }
    });
}

fn sweep_all(store: &dyn Store) -> Result<usize, StoreError> {
    let now = Timestamp::now();
    let mut total = 0;
    loop {
        let swept = store.sweep(now, SWEEP_BATCH)?;
        total += swept.removed;
        if swept.entries < SWEEP_BATCH {
            return Ok(total);
        }
    }
}
