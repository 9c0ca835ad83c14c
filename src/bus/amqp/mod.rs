//! The broker bus (lapin): a supervisor that connects, declares the topology, consumes the
//! requests queue and this node's region queues, and reconnects by itself when the broker
//! goes away. Every broker call is bounded by `amqp.timeout_ms`.

mod ack_window;
pub mod cluster;
pub mod declare;
mod events;
pub mod guard;
mod held_channel;
pub mod ingress;
pub mod message;
pub mod settings;
pub mod settle;
pub mod topology;
pub mod worker;

use actix::Addr;
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::cluster::{ClusterSettings, ClusterStatus, ClusterUnavailable, ClusterView};
use crate::delivery::region::routing_key;
use crate::delivery::{JobQueue, RouterActor};
use crate::domain::DeliveryJob;
use crate::fraud::FraudGate;
use crate::issuance::request::RequestDefaults;
use crate::telemetry::platform::{Event, EventSink, PublishError};
use crate::tenants::ApiKeys;
use crate::tls::AmqpTls;
use cluster::{ClusterLink, JoinError};
use events::EventPump;
use guard::GuardLink;
use held_channel::HeldChannel;
use settings::AmqpSettings;
use settle::{Settle, Settler};
use topology::Topology;

const PERSISTENT: u8 = 2;

/// What the consumers hand their messages to.
pub struct Consumers {
    pub gateway: Arc<crate::cluster::Gateway>,
    pub router: Addr<RouterActor>,
    pub keys: Arc<ApiKeys>,
    pub defaults: RequestDefaults,
}

pub struct AmqpBus {
    settings: AmqpSettings,
    /// What an `amqps://` connection trusts and the client certificate it shows.
    tls: AmqpTls,
    topology: Arc<Topology>,
    /// The confirm-mode publishing channel while connected.
    publisher: HeldChannel,
    timeout: Duration,
    /// Set once by `stop`: the supervisor closes the connection and does not reconnect.
    stopping: tokio::sync::watch::Sender<bool>,
    /// This node's membership of the cluster on the namespace.
    cluster: Arc<ClusterLink>,
    /// Set when the cluster refused this node (a different partition count): the node
    /// must stop, and says why.
    refused: tokio::sync::watch::Sender<Option<String>>,
    /// This node's pumping guard, telling the other nodes' what it counts.
    guard: OnceLock<Arc<GuardLink>>,
    /// Publishes events in bursts; started with the connection supervisor.
    events: OnceLock<EventPump>,
}

/// Why a connection's session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Broker(#[from] PublishError),
    #[error(transparent)]
    Cluster(#[from] JoinError),
}

impl AmqpBus {
    /// `tls` is `[amqp.tls]` as `crate::tls::amqp_tls` read it.
    pub fn new(settings: &AmqpSettings, cluster: &ClusterSettings, tls: AmqpTls) -> Arc<Self> {
        Arc::new(AmqpBus {
            tls,
            topology: Arc::new(Topology::from_settings(settings, cluster)),
            cluster: ClusterLink::new(
                cluster,
                &settings.namespace,
                Duration::from_millis(settings.timeout_ms),
            ),
            refused: tokio::sync::watch::channel(None).0,
            publisher: HeldChannel::default(),
            timeout: Duration::from_millis(settings.timeout_ms),
            settings: settings.clone(),
            stopping: tokio::sync::watch::channel(false).0,
            guard: OnceLock::new(),
            events: OnceLock::new(),
        })
    }

    /// Has `gate` tell the other nodes' guards what it counts, and fold in theirs, from the
    /// next connection on.
    pub fn share_guard(&self, gate: &FraudGate) {
        if let Some(link) = GuardLink::new(gate, self.cluster.node()) {
            let _ = self.guard.set(Arc::new(link));
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Starts the connection supervisor on the current actix arbiter.
    pub fn start(self: &Arc<Self>, consumers: Consumers) {
        let bus = Arc::clone(self);
        let consumers = Arc::new(consumers);
        let source = Arc::downgrade(self);
        let _ = self.events.set(EventPump::start(
            Box::new(move || {
                source
                    .upgrade()
                    .ok_or(PublishError::Disconnected)?
                    .publisher()
            }),
            self.topology.events_exchange.clone(),
            self.timeout,
        ));
        actix_rt::spawn(async move {
            let delay = Duration::from_millis(bus.settings.reconnect_delay_ms);
            let mut stopping = bus.stopping.subscribe();
            while !*stopping.borrow() {
                match bus.session(&consumers).await {
                    Ok(()) => {}
                    Err(SessionError::Cluster(JoinError::Refused(mismatch))) => {
                        bus.set_publisher(None);
                        bus.cluster.leave();
                        tracing::error!(error = %mismatch, "The cluster refused this node; stopping.");
                        bus.refused.send_replace(Some(mismatch.to_string()));
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "Broker connection lost; reconnecting.");
                    }
                }
                bus.set_publisher(None);
                bus.cluster.leave();
                let _ = tokio::time::timeout(delay, stopping.wait_for(|stop| *stop)).await;
            }
            tracing::info!("Disconnected from the broker.");
        });
    }

    /// Closes the connection (consumers stop; unacked messages return to their queues) and
    /// stops reconnecting.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    fn set_publisher(&self, channel: Option<Channel>) {
        crate::telemetry::metrics::metrics()
            .broker_connected
            .with_label_values(&[&self.settings.namespace])
            .set(i64::from(channel.is_some()));
        self.publisher.hold(channel);
    }

    fn publisher(&self) -> Result<Arc<Channel>, PublishError> {
        if self.cluster.publishes_blocked() {
            return Err(PublishError::Blocked);
        }
        self.publisher.open().ok_or(PublishError::Disconnected)
    }

    async fn bounded<T>(
        &self,
        operation: impl Future<Output = lapin::Result<T>>,
    ) -> Result<T, PublishError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PublishError::Broker(error.to_string())),
            Err(_) => Err(PublishError::Timeout(self.timeout.as_millis() as u64)),
        }
    }

    /// This node's membership of the cluster.
    pub fn cluster(&self) -> &Arc<ClusterLink> {
        &self.cluster
    }

    /// Resolves with the reason once the cluster has refused this node (it then stops
    /// reconnecting).
    pub async fn refused(&self) -> String {
        let mut refused = self.refused.subscribe();
        let reason = match refused.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => return std::future::pending().await,
        };
        reason
    }

    /// Why the cluster refused this node, if it has.
    pub fn refusal(&self) -> Option<String> {
        self.refused.borrow().clone()
    }

    /// One connection's life: connect, declare, join the cluster, consume until something
    /// breaks.
    async fn session(&self, consumers: &Arc<Consumers>) -> Result<(), SessionError> {
        let uri = self
            .settings
            .broker_uri()
            .map_err(|reason| SessionError::from(PublishError::Broker(reason)))?;
        // Every (re)connection gets the same TLS trust; it only applies to amqps:// URLs.
        let tls = OwnedTLSConfig {
            identity: self.tls.client.as_ref().map(|client| OwnedIdentity::PKCS8 {
                pem: client.cert_pem.clone(),
                key: client.key_pem.clone(),
            }),
            cert_chain: self.tls.ca_pem.clone(),
        };
        let connection = self
            .bounded(async {
                Connection::connect_uri_with_config(
                    uri,
                    ConnectionProperties::default(),
                    tls,
                    lapin::runtime::default_runtime()?,
                )
                .await
            })
            .await?;
        let mut connection_events = connection.events_listener();
        let setup = self.bounded(connection.create_channel()).await?;
        self.bounded(declare::declare(&setup, &self.topology))
            .await?;
        let publisher = self.bounded(connection.create_channel()).await?;
        self.bounded(publisher.confirm_select(ConfirmSelectOptions::default()))
            .await?;
        self.set_publisher(Some(publisher));

        let (ended, mut any_ended) = tokio::sync::mpsc::channel::<String>(8);
        let joined = match tokio::time::timeout(
            self.timeout * 2,
            self.cluster
                .join(&connection, &self.topology, ended.clone()),
        )
        .await
        {
            Ok(joined) => joined?,
            Err(_) => return Err(PublishError::Timeout(self.timeout.as_millis() as u64 * 2).into()),
        };
        let _guard = match self.guard.get() {
            Some(guard) => Aborting(
                self.bounded(guard.start(&connection, &self.topology.guard_exchange))
                    .await?,
            ),
            None => Aborting::default(),
        };
        let ingress = self
            .consumer(&connection, &self.topology.requests_queue, "request")
            .await?;
        let bus = self.handle();
        spawn_consumer(ingress, ended.clone(), {
            let consumers = Arc::clone(consumers);
            move |delivery| {
                let bus = Arc::clone(&bus);
                let consumers = Arc::clone(&consumers);
                async move { ingress::handle(&bus, &consumers, &delivery).await }
            }
        });
        for region in self
            .topology
            .consumed_queues(&self.settings.consume_regions)
        {
            let consumer = self.consumer(&connection, &region.queue, "job").await?;
            let bus = self.handle();
            let router = consumers.router.clone();
            spawn_consumer(consumer, ended.clone(), move |delivery| {
                let bus = Arc::clone(&bus);
                let router = router.clone();
                async move { worker::handle(&bus, &router, &delivery).await }
            });
        }
        tracing::info!(namespace = %self.settings.namespace, "Connected to the broker; consuming.");

        let mut stopping = self.stopping.subscribe();
        // Partitions are taken once the changelogs' backlog is applied, while the session
        // runs and watches its connection.
        let taking =
            self.cluster
                .take_partitions(&connection, &self.topology, ended.clone(), joined);
        tokio::pin!(taking);
        let mut _membership = None;
        let connection_lost = async {
            while let Some(event) = connection_events.next().await {
                if let lapin::Event::Error(error) = event {
                    return error.to_string();
                }
            }
            "connection closed".to_string()
        };
        tokio::pin!(connection_lost);
        let store_reopened = self.cluster.until_store_reopened();
        tokio::pin!(store_reopened);
        let reason = loop {
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break "otpd is stopping".to_string(),
                reason = &mut store_reopened => break reason,
                ended = any_ended.recv() => break ended.unwrap_or_else(|| "consumers stopped".into()),
                error = &mut connection_lost => break error,
                taken = &mut taking, if _membership.is_none() => match taken {
                    Ok(membership) => _membership = Some(membership),
                    Err(error) => break error.to_string(),
                },
            }
        };
        self.set_publisher(None);
        let _ = tokio::time::timeout(
            self.timeout,
            connection.close(200, "otpd reconnects".into()),
        )
        .await;
        Err(PublishError::Broker(reason).into())
    }

    /// Consumes `queue` on a channel of its own, whose deliveries a [`Settler`] settles;
    /// `what` names them (request, job) in logs.
    async fn consumer(
        &self,
        connection: &Connection,
        queue: &str,
        what: &'static str,
    ) -> Result<SettledConsumer, PublishError> {
        let channel = self.bounded(connection.create_channel()).await?;
        self.bounded(channel.basic_qos(self.settings.prefetch, BasicQosOptions::default()))
            .await?;
        let consumer = self
            .bounded(channel.basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ))
            .await?;
        Ok(SettledConsumer {
            consumer,
            settler: Settler::start(channel, what),
        })
    }

    /// A cheap handle for consumer tasks (the supervisor owns `self` through an `Arc`).
    fn handle(&self) -> Arc<Publisher> {
        Arc::new(Publisher {
            events: self.events.get().cloned(),
            ..self.bare_publisher()
        })
    }

    /// A publisher without the event pump, made on the stack: all a job's or a delay's
    /// publish needs.
    fn bare_publisher(&self) -> Publisher {
        Publisher {
            channel: self.publisher().ok(),
            events: None,
            topology: Arc::clone(&self.topology),
            timeout: self.timeout,
        }
    }

    /// The event pump, once `start` has started it.
    fn events(&self) -> Result<&EventPump, PublishError> {
        self.events.get().ok_or(PublishError::Disconnected)
    }
}

/// Hands a persistent message to `channel` (with `mandatory`, an unroutable one comes back);
/// resolves once it is written, with the broker's confirm to come.
async fn send(
    channel: &Channel,
    exchange: &str,
    key: &str,
    payload: &[u8],
    properties: BasicProperties,
    mandatory: bool,
) -> lapin::Result<lapin::PublisherConfirm> {
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            options,
            payload,
            properties.with_delivery_mode(PERSISTENT),
        )
        .await
}

/// What the broker's confirm of a message published with `key` comes to.
fn confirmed(confirmation: lapin::Confirmation, key: &str) -> Result<(), PublishError> {
    if confirmation.is_nack() {
        return Err(PublishError::Refused(
            "the broker nacked the message".into(),
        ));
    }
    if let Some(returned) = confirmation.take_message() {
        return Err(PublishError::Refused(format!(
            "no queue is bound for routing key '{key}' ({})",
            returned.reply_text
        )));
    }
    Ok(())
}

/// The properties of an event's message.
fn event_properties() -> BasicProperties {
    BasicProperties::default().with_content_type("application/json".into())
}

/// Publishes with confirms on one connection's channel; consumers use it for dead letters,
/// events (through the event pump) and replies.
pub struct Publisher {
    channel: Option<Arc<Channel>>,
    events: Option<EventPump>,
    topology: Arc<Topology>,
    timeout: Duration,
}

impl Publisher {
    /// Publishes and waits for the broker's confirm; with `mandatory`, an unroutable
    /// message is an error.
    pub async fn publish(
        &self,
        exchange: &str,
        key: &str,
        payload: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let channel = self.channel.as_ref().ok_or(PublishError::Disconnected)?;
        let sent = async {
            send(channel, exchange, key, payload, properties, mandatory)
                .await?
                .await
        };
        match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(confirmation)) => confirmed(confirmation, key),
            Ok(Err(error)) => Err(PublishError::Broker(error.to_string())),
            Err(_) => Err(PublishError::Timeout(self.timeout.as_millis() as u64)),
        }
    }

    pub async fn job(&self, job: &DeliveryJob) -> Result<(), PublishError> {
        let key = routing_key(job.channel, &job.region, job.country.as_deref());
        let properties = BasicProperties::default()
            .with_content_type("application/x-otpd-job".into())
            .with_message_id(job.job_id.as_str().into());
        self.publish(
            &self.topology.route_exchange,
            &key,
            &message::encode_job(job),
            properties,
            true,
        )
        .await
    }

    /// Parks a job in the delay queue for `wait`; the broker then routes it again.
    pub async fn delay(&self, job: &DeliveryJob, wait: Duration) -> Result<(), PublishError> {
        let key = routing_key(job.channel, &job.region, job.country.as_deref());
        let properties = BasicProperties::default()
            .with_content_type("application/x-otpd-job".into())
            .with_message_id(job.job_id.as_str().into())
            .with_expiration(wait.as_millis().max(1).to_string().into());
        self.publish(
            &self.topology.delay_exchange,
            &key,
            &message::encode_job(job),
            properties,
            true,
        )
        .await
    }

    pub async fn event(&self, event: &Event) -> Result<(), PublishError> {
        match &self.events {
            Some(events) => events.publish(event).await,
            None => Err(PublishError::Disconnected),
        }
    }

    /// Sends an outcome to a request's `reply_to` queue, with its `correlation_id`.
    pub async fn reply(
        &self,
        reply_to: &str,
        correlation_id: Option<&str>,
        event: &Event,
    ) -> Result<(), PublishError> {
        let mut properties =
            BasicProperties::default().with_content_type("application/json".into());
        if let Some(id) = correlation_id {
            properties = properties.with_correlation_id(id.into());
        }
        self.publish("", reply_to, &event.to_json(), properties, false)
            .await
    }

    /// Puts a message otpd will not process in the dead-letter queue, with its reason.
    pub async fn dead_letter(
        &self,
        body: &[u8],
        reason: &str,
        detail: &str,
        source_queue: &str,
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        headers.insert("x-otpd-reason".into(), AMQPValue::LongString(reason.into()));
        headers.insert("x-otpd-detail".into(), AMQPValue::LongString(detail.into()));
        headers.insert(
            "x-otpd-source-queue".into(),
            AMQPValue::LongString(source_queue.into()),
        );
        let properties = BasicProperties::default().with_headers(headers);
        self.publish(&self.topology.dead_exchange, "", body, properties, false)
            .await
    }
}

/// Consumes `queue` on `channel` without acks: for messages that matter only while they are
/// fresh (replies, the guards' counts), which the broker forgets once delivered.
async fn consume_without_acks(channel: &Channel, queue: &str) -> lapin::Result<lapin::Consumer> {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Tasks of one session, aborted when it ends.
#[derive(Default)]
pub(crate) struct Aborting(Vec<tokio::task::JoinHandle<()>>);

impl Aborting {
    pub(crate) fn push(&mut self, task: tokio::task::JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// A consumer on a channel of its own, and what settles its deliveries.
struct SettledConsumer {
    consumer: lapin::Consumer,
    settler: Settler,
}

/// Runs a consumer: each delivery is handled in a task of its own (the prefetch bounds how
/// many), then settled as its handling says; when the stream ends or fails, says so on
/// `ended`.
fn spawn_consumer<F, Fut>(
    SettledConsumer {
        mut consumer,
        settler,
    }: SettledConsumer,
    ended: tokio::sync::mpsc::Sender<String>,
    handle: F,
) where
    F: Fn(lapin::message::Delivery) -> Fut + 'static,
    Fut: Future<Output = Settle> + 'static,
{
    actix_rt::spawn(async move {
        let reason = loop {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let tag = delivery.delivery_tag;
                    settler.received(tag);
                    // Boxed: a handler's future runs to kilobytes (an issue's is about 6),
                    // and a task copies the future it is given more than once.
                    let handled = Box::pin(handle(delivery));
                    let settler = settler.clone();
                    actix_rt::spawn(async move { settler.ended(tag, handled.await) });
                }
                Some(Err(error)) => break error.to_string(),
                None => break "the consumer was canceled".to_string(),
            }
        };
        let _ = ended.send(reason).await;
    });
}

#[async_trait]
impl crate::delivery::DelayQueue for AmqpBus {
    async fn delay(&self, job: &DeliveryJob, wait: Duration) -> Result<(), PublishError> {
        self.bare_publisher().delay(job, wait).await
    }
}

#[async_trait]
impl ClusterStatus for AmqpBus {
    async fn view(&self) -> Result<ClusterView, ClusterUnavailable> {
        self.cluster.view().await
    }

    fn is_ready(&self) -> bool {
        self.cluster.is_ready()
    }
}

#[async_trait]
impl EventSink for AmqpBus {
    async fn publish_event(&self, event: &Event) -> Result<(), PublishError> {
        self.events()?.publish(event).await
    }

    fn publish_later(&self, event: Event) -> Option<Event> {
        let Ok(events) = self.events() else {
            return Some(event);
        };
        events.hand_over(&event);
        None
    }
}

#[async_trait]
impl JobQueue for AmqpBus {
    async fn publish_job(&self, job: &DeliveryJob) -> Result<(), PublishError> {
        self.bare_publisher().job(job).await
    }

    fn ready(&self) -> Result<(), PublishError> {
        self.publisher().map(|_| ())
    }
}
