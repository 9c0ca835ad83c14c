//! The cluster on the broker. At each connection a node checks the partition and changelog
//! stream counts recorded in the cluster stream (recording them if it is the first node),
//! then consumes every
//! partition queue. The queues have a single active consumer, so the broker makes one node
//! the owner of each partition; a node learns that it is the owner when a message of the
//! queue reaches it, which the ticks every node publishes make happen within a tick. When
//! the connection closes, the broker hands its partitions to the other nodes.
//!
//! Ownership is spread: a node that owns more than its share (partitions over consumers of
//! a partition queue, which is the number of nodes the broker sees) yields one partition a
//! tick by consuming its queue anew, at the back of the line.
//!
//! The changelog: the owner of a partition appends its changes to the partition's stream
//! (partitions share `cluster.changelog_streams` streams) on a confirm-mode channel of the
//! connection it owns the partition through; every node reads each stream that carries a
//! partition it does not serve and applies it to its store, its own records skipped.

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

use super::declare::Declarer;
use super::held_channel::HeldChannel;
use super::topology::Topology;
use crate::cluster::changelog::{append_fence, AppendError, Changelog, Confirm, LogRecord, View};
use crate::cluster::command::{Command, Reply};
use crate::cluster::ownership::Entered;
use crate::cluster::{
    agree, partitions_of, stream_of, ClusterRecord, ClusterSettings, ClusterUnavailable,
    ClusterView, CountMismatch, Executor, Forwarder, OwnerReport, Ownership,
};
use crate::domain::Timestamp;
use crate::sync::{LockUnpoisoned, ReadWriteUnpoisoned};
use crate::telemetry::metrics::metrics;

/// The `type` of a tick: it only makes the partition's owner known to itself.
const TICK: &str = "otpd.tick";
/// The `type` of a question to a partition's owner: who are you?
const WHO_OWNS: &str = "otpd.who-owns";
/// The `type` of a command for a partition's owner (`crate::cluster::command`, JSON).
const COMMAND: &str = "otpd.command";
/// The queue name a direct reply goes to.
const DIRECT_REPLY: &str = "amq.rabbitmq.reply-to";
/// How long reading the cluster record from its stream may take.
const RECORD_WAIT: Duration = Duration::from_millis(3000);
/// How long `GET /v1/cluster` waits for the owners' answers.
const ASK_WAIT: Duration = Duration::from_millis(1500);

/// Why a connection's session with the cluster ended.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Refused(#[from] CountMismatch),
    #[error("the cluster record in stream {stream} is unreadable: {detail}")]
    Unreadable { stream: String, detail: String },
    #[error("the broker failed: {0}")]
    Broker(String),
}

impl From<lapin::Error> for JoinError {
    fn from(error: lapin::Error) -> Self {
        JoinError::Broker(error.to_string())
    }
}

/// A fence a catch-up waits for: its nonce, and whom to tell once it is applied.
type PendingFence = (u64, tokio::sync::oneshot::Sender<()>);

/// This node in the cluster: its ownership table, and while connected the channels it
/// consumes the partition queues and direct replies on.
pub struct ClusterLink {
    node: String,
    namespace: String,
    partitions: u16,
    /// The changelog streams the partitions share.
    streams: u16,
    tick: Duration,
    ownership: Arc<Ownership>,
    joined: AtomicBool,
    /// This node's store, which the partitions' changelogs are applied to.
    view: OnceLock<Arc<dyn View>>,
    /// The confirm-mode channel changelog records are appended on, while connected: the
    /// connection this node owns its partitions through.
    appender: HeldChannel,
    /// That connection's state, as the broker last told it: whether it blocks publishes.
    connection: RwLock<Option<ConnectionStatus>>,
    /// The changelog streams, by number.
    changelogs: Vec<String>,
    /// This session's changelog channels, one per stream, and where a consumer that ended
    /// says so.
    readers: RwLock<Option<(Vec<Channel>, mpsc::Sender<String>)>>,
    /// This session's channel for looking at the changelogs' tails: one record each.
    tail_reader: RwLock<Option<Channel>>,
    /// The consumer tag of the follower of each stream this node follows.
    followers: Mutex<HashMap<u16, String>>,
    /// Held by whoever starts or stops following a stream, one at a time per stream: a
    /// stream never has two followers on its reader channel. (RabbitMQ 3.10 keeps one
    /// consumer per stream and channel in its books: a second replaces the first there, and
    /// canceling the first then crashes the channel and closes the whole connection.)
    following: Vec<tokio::sync::Mutex<()>>,
    /// Fences this node appended and waits to apply, by partition: nonce and who waits.
    fences: Mutex<HashMap<u16, PendingFence>>,
    /// The channel that consumes direct replies and asks the owners, while connected.
    asker: HeldChannel,
    /// Questions and commands waiting for answers, by correlation id.
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<Vec<u8>>>>,
    /// What runs the commands of the partitions this node owns.
    executor: OnceLock<Arc<dyn Executor>>,
    /// Longest wait for an owner's reply.
    timeout: Duration,
    /// Longest wait for an owner's answer to a forwarded command.
    command_timeout: Duration,
    /// Per stream, the offset after the last changelog record this node applied.
    applied_to: Vec<AtomicU64>,
    /// One run of changelog records is written to the store at a time, on a thread that
    /// may block: the streams' followers take turns, so catching up takes at most one
    /// core from the requests and jobs this node serves meanwhile.
    applier: tokio::sync::Semaphore,
    /// While this node applies its backlog before taking partitions (`catching_up`), it
    /// serves no partition, and runs of different streams are written at once, one per
    /// core.
    catch_up: tokio::sync::Semaphore,
    catching_up: AtomicBool,
    /// One run of a stream at a time, whichever follower (of this session or the one
    /// before, still finishing) applies it.
    applying: Vec<tokio::sync::Mutex<()>>,
    /// Records appended to the changelogs this node follows but not yet applied, as last
    /// measured (every `MARK_EVERY`).
    lag: AtomicU64,
}

/// What a session keeps of its membership; dropping it stops the ticks.
pub struct Membership {
    tasks: super::Aborting,
    /// Each changelog stream's tail when this node joined, and the offset its store had
    /// applied up to.
    tails: Vec<Option<u64>>,
    stood: Vec<u64>,
}

impl ClusterLink {
    /// `timeout` bounds the wait for an owner's reply to a forwarded command.
    pub fn new(settings: &ClusterSettings, namespace: &str, timeout: Duration) -> Arc<Self> {
        Arc::new(ClusterLink {
            node: settings.node_id(),
            namespace: namespace.to_owned(),
            partitions: settings.partitions,
            streams: settings.streams(),
            tick: Duration::from_millis(settings.tick_ms),
            ownership: Ownership::new(settings.partitions),
            joined: AtomicBool::new(false),
            view: OnceLock::new(),
            appender: HeldChannel::default(),
            connection: RwLock::new(None),
            changelogs: Topology::from_settings(
                &super::settings::AmqpSettings {
                    namespace: namespace.to_owned(),
                    ..super::settings::AmqpSettings::default()
                },
                settings,
            )
            .changelogs,
            fences: Mutex::default(),
            readers: RwLock::new(None),
            tail_reader: RwLock::new(None),
            followers: Mutex::default(),
            following: one_each(settings.streams(), tokio::sync::Mutex::default),
            asker: HeldChannel::default(),
            waiting: Mutex::default(),
            executor: OnceLock::new(),
            timeout,
            command_timeout: Duration::from_millis(settings.command_timeout_ms),
            applied_to: one_each(settings.streams(), AtomicU64::default),
            applier: tokio::sync::Semaphore::new(1),
            catch_up: tokio::sync::Semaphore::new(crate::runtime::cores()),
            catching_up: AtomicBool::new(false),
            applying: one_each(settings.streams(), tokio::sync::Mutex::default),
            lag: AtomicU64::new(0),
        })
    }

    /// Records not yet applied from the changelogs this node follows, as last measured.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Acquire)
    }

    /// Makes `executor` run the commands that reach this node as a partition's owner.
    pub fn serve_with(&self, executor: Arc<dyn Executor>) {
        let _ = self.executor.set(executor);
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// Applies the partitions' changelogs to `view` (this node's store), which appends its
    /// partition writes through this link.
    pub fn keep_view(&self, view: Arc<dyn View>) {
        let _ = self.view.set(view);
    }

    /// Resolves once this node's store was opened again after a failed write: the session
    /// ends, and the next one applies the changelogs again from what the store holds.
    pub async fn until_store_reopened(&self) -> String {
        loop {
            tokio::time::sleep(STORE_WATCH).await;
            if self
                .view
                .get()
                .is_some_and(|view| view.reopened_since_join())
            {
                return crate::cluster::changelog::STORE_REOPENED.into();
            }
        }
    }

    fn store_view(&self) -> Result<&Arc<dyn View>, JoinError> {
        self.view
            .get()
            .ok_or_else(|| JoinError::Broker("the store is not open yet".into()))
    }

    /// Whether every partition this node owns is caught up.
    pub fn is_ready(&self) -> bool {
        self.has_joined() && self.ownership.catching_up() == 0
    }

    pub fn has_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// Joins the cluster on `connection`: checks (or records) the partition and stream counts, then
    /// consumes every partition queue and starts ticking. A consumer that ends for any
    /// reason but this node's own yielding says so on `ended`.
    pub async fn join(
        self: &Arc<Self>,
        connection: &Connection,
        topology: &Topology,
        ended: mpsc::Sender<String>,
    ) -> Result<Membership, JoinError> {
        let setup = connection.create_channel().await?;
        let declarer = Declarer::on(&setup);
        let stream = setup
            .queue_declare(
                topology.cluster_stream.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                stream_arguments(),
            )
            .await?;
        let record = self
            .cluster_record(connection, topology, stream.message_count() > 0)
            .await?;
        agree(&self.namespace, self.partitions, self.streams, &record)?;
        // Only a node that agrees declares the partition queues, so a misconfigured one
        // leaves no stray queues behind.
        for queue in &topology.partition_queues {
            declarer.queue(queue, partition_queue_arguments()).await?;
        }
        for stream in &topology.changelogs {
            declarer.queue(stream, changelog_arguments()).await?;
        }
        let _ = setup.close(200, "declared".into()).await;

        // This connection's own records are in the store already; the others are applied.
        let view = Arc::clone(self.store_view()?);
        view.set_origin(rand::random());
        *self.connection.write_unpoisoned() = Some(connection.status().clone());
        let appender = connection.create_channel().await?;
        appender
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.appender.hold(Some(appender));

        let asker = connection.create_channel().await?;
        let replies = super::consume_without_acks(&asker, DIRECT_REPLY).await?;
        let mut tasks = super::Aborting::default();
        tasks.push(self.spawn_reply_router(replies, ended.clone()));
        // A channel per stream, so one stream's batched acks never cover another's.
        let mut readers = Vec::new();
        for _ in 0..self.streams {
            let reader = connection.create_channel().await?;
            reader
                .basic_qos(APPLY_PREFETCH, BasicQosOptions::default())
                .await?;
            readers.push(reader);
        }
        *self.readers.write_unpoisoned() = Some((readers, ended.clone()));
        // A look at a tail needs one record, not a reader's prefetch of them.
        let tail_reader = connection.create_channel().await?;
        tail_reader.basic_qos(1, BasicQosOptions::default()).await?;
        *self.tail_reader.write_unpoisoned() = Some(tail_reader);
        let tails = self.tails(TAIL_WAIT_AT_JOIN).await;
        let stood: Vec<u64> = (0..self.streams)
            .map(|stream| {
                view.applied(stream)
                    .map(|applied| applied.map_or(0, |offset| offset + 1))
            })
            .collect::<Result<_, _>>()
            .map_err(|error| JoinError::Broker(error.to_string()))?;
        // All at once: a busy broker answers each slowly, but not one after the other.
        futures_util::future::try_join_all((0..self.streams).map(|stream| self.follow(stream)))
            .await?;
        tasks.push(self.spawn_marks());
        self.asker.hold(Some(asker));
        Ok(Membership {
            tasks,
            tails,
            stood,
        })
    }

    /// The second half of joining: once this node has applied the changelogs' backlog (the
    /// session runs meanwhile, forwarding what it takes to the owners), it consumes every
    /// partition queue, so the broker may hand it partitions, and starts ticking.
    pub async fn take_partitions(
        self: &Arc<Self>,
        connection: &Connection,
        topology: &Topology,
        ended: mpsc::Sender<String>,
        mut membership: Membership,
    ) -> Result<Membership, JoinError> {
        self.apply_backlog(&membership.tails, &membership.stood)
            .await;
        let owner = connection.create_channel().await?;
        owner.basic_qos(64, BasicQosOptions::default()).await?;
        let consumers = Arc::new(Consumers {
            channel: owner.clone(),
            link: Arc::clone(self),
            ended,
            yielding: Mutex::default(),
        });
        for partition in 0..self.partitions {
            consumers.consume(topology, partition).await?;
        }
        let ticker = connection.create_channel().await?;
        membership
            .tasks
            .push(self.spawn_ticks(ticker, topology.clone(), Arc::clone(&consumers)));
        self.joined.store(true, Ordering::Release);
        tracing::info!(
            node = %self.node,
            partitions = self.partitions,
            "Joined the cluster; the broker assigns the partitions."
        );
        Ok(membership)
    }

    /// The connection is gone, and with it every partition this node owned.
    pub fn leave(&self) {
        self.joined.store(false, Ordering::Release);
        self.asker.hold(None);
        self.appender.hold(None);
        *self.readers.write_unpoisoned() = None;
        *self.tail_reader.write_unpoisoned() = None;
        self.followers.lock_unpoisoned().clear();
        self.fences.lock_unpoisoned().clear();
        if let Some(view) = self.view.get() {
            view.abandon_pending();
        }
        let released = self.ownership.release_all();
        if released > 0 {
            tracing::warn!(node = %self.node, released, "Left the cluster; the other nodes take over this node's partitions.");
        }
    }

    /// The record in the cluster stream, written first if the stream has none.
    async fn cluster_record(
        &self,
        connection: &Connection,
        topology: &Topology,
        recorded: bool,
    ) -> Result<ClusterRecord, JoinError> {
        let stream = &topology.cluster_stream;
        if recorded {
            return read_first(connection, stream)
                .await?
                .ok_or_else(|| JoinError::Broker(format!("stream {stream} gave no record")));
        }
        let record = ClusterRecord {
            partitions: self.partitions,
            changelog_streams: Some(self.streams),
            recorded_by: self.node.clone(),
            recorded_at: Timestamp::now().to_rfc3339(),
        };
        let writer = connection.create_channel().await?;
        writer
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let body = serde_json::to_vec(&record).map_err(|e| JoinError::Broker(e.to_string()))?;
        let json = BasicProperties::default().with_content_type("application/json".into());
        send_to_queue(&writer, stream, &body, json).await?.await?;
        let _ = writer.close(200, "recorded".into()).await;
        // Two first nodes may both have written one: the first in the stream counts.
        read_first(connection, stream)
            .await?
            .ok_or_else(|| JoinError::Broker(format!("stream {stream} lost the cluster record")))
    }

    /// Routes direct replies to the question they answer.
    fn spawn_reply_router(
        self: &Arc<Self>,
        mut replies: lapin::Consumer,
        ended: mpsc::Sender<String>,
    ) -> tokio::task::JoinHandle<()> {
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let reason = loop {
                match replies.next().await {
                    Some(Ok(delivery)) => {
                        let Some(id) = delivery.properties.correlation_id() else {
                            continue;
                        };
                        let waiting = link.waiting.lock_unpoisoned();
                        if let Some(waiter) = waiting.get(id.as_str()) {
                            let _ = waiter.send(delivery.data);
                        }
                    }
                    Some(Err(error)) => break error.to_string(),
                    None => break "the reply consumer was canceled".to_string(),
                }
            };
            let _ = ended.send(reason).await;
        })
    }

    /// Publishes a tick to every partition queue each tick, and now and then yields the
    /// partitions this node owns beyond its share.
    fn spawn_ticks(
        &self,
        channel: Channel,
        topology: Topology,
        consumers: Arc<Consumers>,
    ) -> tokio::task::JoinHandle<()> {
        let every = self.tick;
        let expiration: ShortString = (every.as_millis() * 4).to_string().into();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                for queue in &topology.partition_queues {
                    let properties = BasicProperties::default()
                        .with_type(TICK.into())
                        .with_expiration(expiration.clone());
                    let published = send_to_queue(&channel, queue, b"", properties).await;
                    if published.is_err() {
                        return;
                    }
                }
                // A look at this node's share each tick: one partition beyond it is
                // yielded at a time, so shares settle within a tick per partition moved.
                consumers.balance(&channel, &topology).await;
            }
        })
    }

    /// Asks the owner of every partition, through its queue, and waits a moment for the
    /// answers.
    pub async fn view(&self) -> Result<ClusterView, ClusterUnavailable> {
        let asker = self.asker()?;
        let (id, mut answers) = self.await_answers();
        let asked = self.ask_every_owner(&asker, &id).await;
        let mut reports = Vec::new();
        if asked.is_ok() {
            let deadline = tokio::time::sleep(ASK_WAIT);
            tokio::pin!(deadline);
            while reports.len() < usize::from(self.partitions) {
                tokio::select! {
                    _ = &mut deadline => break,
                    answer = answers.recv() => match answer {
                        Some(bytes) => reports.extend(serde_json::from_slice::<OwnerReport>(&bytes)),
                        None => break,
                    },
                }
            }
        }
        self.forget_answers(&id);
        asked?;
        Ok(ClusterView::assemble(&self.node, self.partitions, reports))
    }

    /// The channel that asks, while connected.
    fn asker(&self) -> Result<Arc<Channel>, ClusterUnavailable> {
        if self.publishes_blocked() {
            return Err(ClusterUnavailable::Blocked);
        }
        self.asker.open().ok_or(ClusterUnavailable::Disconnected)
    }

    /// Whether the broker blocks this node's publishes (a memory or disk alarm): whatever
    /// is published waits until the alarm clears, so nothing is.
    pub fn publishes_blocked(&self) -> bool {
        self.connection
            .read_unpoisoned()
            .as_ref()
            .is_some_and(ConnectionStatus::blocked)
    }

    /// A new correlation id and where its answers arrive (until `forget_answers`).
    fn await_answers(&self) -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
        let id = format!("{:016x}", rand::random::<u64>());
        let (waiter, answers) = mpsc::unbounded_channel();
        self.waiting.lock_unpoisoned().insert(id.clone(), waiter);
        (id, answers)
    }

    fn forget_answers(&self, id: &str) {
        self.waiting.lock_unpoisoned().remove(id);
    }

    /// Sends `command` to `partition`'s queue, where its owner takes it, and waits for the
    /// reply.
    async fn send_command(
        &self,
        partition: u16,
        command: &Command,
    ) -> Result<Reply, ClusterUnavailable> {
        let asker = self.asker()?;
        count("forwarded");
        let body =
            serde_json::to_vec(command).map_err(|e| ClusterUnavailable::Broker(e.to_string()))?;
        let (id, mut answers) = self.await_answers();
        let queue = super::topology::partition_queue(&self.namespace, partition);
        let properties = BasicProperties::default()
            .with_type(COMMAND.into())
            .with_reply_to(DIRECT_REPLY.into())
            .with_correlation_id(id.as_str().into())
            .with_expiration(self.command_timeout.as_millis().to_string().into());
        // Sending counts against the reply's time (see `append`).
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        let sent =
            tokio::time::timeout_at(deadline, send_to_queue(&asker, &queue, &body, properties));
        let answer = match sent.await {
            Ok(Ok(_)) => tokio::time::timeout_at(deadline, answers.recv()).await,
            Err(elapsed) => Err(elapsed),
            Ok(Err(error)) => {
                self.forget_answers(&id);
                return Err(ClusterUnavailable::Broker(error.to_string()));
            }
        };
        self.forget_answers(&id);
        match answer {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| ClusterUnavailable::Broker(format!("an unreadable reply: {e}"))),
            Ok(None) => Err(ClusterUnavailable::Disconnected),
            Err(_) => Err(ClusterUnavailable::Timeout(
                self.command_timeout.as_millis() as u64,
            )),
        }
    }

    /// Runs a command that reached this node as `partition`'s owner, and replies.
    async fn run_command(
        &self,
        channel: &Channel,
        partition: u16,
        delivery: &lapin::message::Delivery,
    ) {
        let properties = &delivery.properties;
        let (Some(reply_to), Some(id)) = (properties.reply_to(), properties.correlation_id())
        else {
            return;
        };
        let Some(executor) = self.executor.get() else {
            return;
        };
        // A new owner serves once it has caught up; a command waits for that, not longer
        // than its sender does. A partition on its way to another node sends it back.
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        let entered = loop {
            if let Some(entered) = self.ownership.enter(partition) {
                break Some(entered);
            }
            if !self.ownership.catching_up_on(partition) {
                break None;
            }
            if tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let reply = match entered {
            Some(entered) => {
                let command: Command = match serde_json::from_slice(&delivery.data) {
                    Ok(command) => command,
                    Err(error) => {
                        tracing::warn!(%error, partition, "A command this node cannot read; are all nodes the same otpd version?");
                        return;
                    }
                };
                count("served");
                let reply = executor.execute(command).await;
                drop(entered);
                reply
            }
            None => Reply::Moved,
        };
        let Ok(body) = serde_json::to_vec(&reply) else {
            return;
        };
        if let Err(error) = answer(channel, reply_to, id, &body).await {
            tracing::warn!(%error, partition, "Could not reply to a command; its sender gets a timeout.");
        }
    }

    async fn ask_every_owner(&self, asker: &Channel, id: &str) -> Result<(), ClusterUnavailable> {
        let expiration: ShortString = ASK_WAIT.as_millis().to_string().into();
        for partition in 0..self.partitions {
            let queue = super::topology::partition_queue(&self.namespace, partition);
            let properties = BasicProperties::default()
                .with_type(WHO_OWNS.into())
                .with_reply_to(DIRECT_REPLY.into())
                .with_correlation_id(id.into())
                .with_expiration(expiration.clone());
            send_to_queue(asker, &queue, b"", properties)
                .await
                .map_err(|error| ClusterUnavailable::Broker(error.to_string()))?;
        }
        Ok(())
    }

    /// A message of `partition`'s queue reached this node: it owns the partition; a
    /// command runs, a question gets the answer.
    async fn on_message(
        self: &Arc<Self>,
        channel: &Channel,
        partition: u16,
        delivery: lapin::message::Delivery,
    ) {
        let now = Timestamp::now();
        if self.ownership.claim(partition, now) {
            let link = Arc::clone(self);
            tokio::spawn(async move { link.catch_up(partition).await });
        }
        let properties = &delivery.properties;
        let kind = properties.kind().as_ref().map(ShortString::as_str);
        if kind == Some(COMMAND) {
            let link = Arc::clone(self);
            let channel = channel.clone();
            tokio::spawn(async move { link.run_command(&channel, partition, &delivery).await });
            return;
        }
        let asks = kind == Some(WHO_OWNS);
        let (Some(reply_to), Some(id), true) =
            (properties.reply_to(), properties.correlation_id(), asks)
        else {
            return;
        };
        let report = OwnerReport {
            partition,
            node: self.node.clone(),
            owner_since: self
                .ownership
                .owned_since(partition)
                .unwrap_or(now)
                .to_rfc3339(),
            node_lag: Some(self.lag()),
        };
        let Ok(body) = serde_json::to_vec(&report) else {
            return;
        };
        if let Err(error) = answer(channel, reply_to, id, &body).await {
            tracing::debug!(%error, partition, "Could not answer who owns a partition.");
        }
    }
}

/// The partition queue consumers of one session.
struct Consumers {
    channel: Channel,
    link: Arc<ClusterLink>,
    ended: mpsc::Sender<String>,
    /// Partitions whose consumer this node is canceling to yield them.
    yielding: Mutex<Vec<u16>>,
}

impl ClusterLink {
    /// Starts applying changelog `stream` to this node's store from the offset it applied
    /// last, unless it follows it already. A node follows every stream that carries a
    /// partition it does not serve, so its store stays a warm copy and a takeover only has
    /// the last moments to apply.
    async fn follow(self: &Arc<Self>, stream: u16) -> Result<(), JoinError> {
        let _one_at_a_time = self.following[usize::from(stream)].lock().await;
        if self.followers.lock_unpoisoned().contains_key(&stream) {
            return Ok(());
        }
        let view = Arc::clone(self.store_view()?);
        let (reader, ended) = self.session_reader(stream)?;
        let start = match view.applied(stream) {
            Ok(Some(offset)) => {
                self.applied_to[usize::from(stream)].store(offset + 1, Ordering::Release);
                AMQPValue::LongLongInt(offset as i64 + 1)
            }
            Ok(None) => AMQPValue::LongString("first".into()),
            Err(error) => return Err(JoinError::Broker(error.to_string())),
        };
        // A tag of its own each time, so a follower that ends late is told from the next.
        let tag = format!(
            "{}.changelog.{stream}.{:08x}",
            self.node,
            rand::random::<u32>()
        );
        self.followers.lock_unpoisoned().insert(stream, tag.clone());
        let consumed =
            read_stream(&reader, &self.changelogs[usize::from(stream)], &tag, start).await;
        let mut consumer = match consumed {
            Ok(consumer) => consumer,
            Err(error) => {
                // Not followed after all: the next try must not find it taken.
                self.followers.lock_unpoisoned().remove(&stream);
                return Err(error.into());
            }
        };
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let reason = loop {
                let run = match next_run(&mut consumer, stream).await {
                    Ok(run) => run,
                    Err(reason) => break reason,
                };
                if let Err(reason) = link.apply_run(&view, stream, run).await {
                    break reason;
                }
            };
            // A follower stopped on purpose (this node serves the stream's partitions) or
            // replaced is no longer the stream's follower; only the current one ending is news.
            let current = {
                let mut followers = link.followers.lock_unpoisoned();
                let current = followers.get(&stream) == Some(&tag);
                if current {
                    followers.remove(&stream);
                }
                current
            };
            if current {
                let _ = ended.send(reason).await;
            }
        });
        Ok(())
    }

    /// Applies a run of changelog `stream`'s records. The broker's credit is given back
    /// first, so the next run is on its way while this one is written: the offsets applied
    /// are this node's own to keep, not the broker's. The store is written on the blocking
    /// pool (a batch waits out the store's flush in progress), one run at a time, or one
    /// per core while the node catches up before taking partitions.
    async fn apply_run(
        &self,
        view: &Arc<dyn View>,
        stream: u16,
        run: Vec<Delivery>,
    ) -> Result<(), String> {
        let Some(last) = run.last() else {
            return Ok(());
        };
        last.acker
            .ack(BasicAckOptions { multiple: true })
            .await
            .map_err(|error| error.to_string())?;
        let appliers = if self.catching_up.load(Ordering::Acquire) {
            &self.catch_up
        } else {
            &self.applier
        };
        let _stream = self.applying[usize::from(stream)].lock().await;
        let _turn = appliers
            .acquire()
            .await
            .map_err(|error| error.to_string())?;
        let view = Arc::clone(view);
        let (applied, count, applied_to) = tokio::task::spawn_blocking(move || {
            let records = run
                .iter()
                .map(|delivery| {
                    let offset = stream_offset(delivery).ok_or_else(|| {
                        format!("a record of changelog stream {stream} came without its offset")
                    })?;
                    Ok((offset, delivery.data.as_slice()))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let applied = view
                .apply(stream, &records)
                .map_err(|error| format!("could not apply changelog stream {stream}: {error}"))?;
            let applied_to = records.last().map_or(0, |(offset, _)| offset + 1);
            Ok::<_, String>((applied, records.len(), applied_to))
        })
        .await
        .map_err(|error| format!("applying changelog stream {stream} stopped: {error}"))??;
        metrics()
            .cluster_messages
            .with_label_values(&["applied"])
            .inc_by(count as u64);
        self.applied_to[usize::from(stream)].store(applied_to, Ordering::Release);
        for (origin, nonce) in applied.fences {
            self.fence_applied(origin, nonce);
        }
        Ok(())
    }

    /// Whether this node serves every partition whose changes go to `stream`: its store then
    /// has them all before they are in the changelog.
    fn serves_stream(&self, stream: u16) -> bool {
        partitions_of(stream, self.partitions, self.streams)
            .all(|partition| self.ownership.serves(partition))
    }

    /// Stops following `stream` once this node serves every partition it carries. (Not if
    /// it has begun to yield one of them meanwhile, and wants it followed again.)
    async fn unfollow(&self, stream: u16) {
        let _one_at_a_time = self.following[usize::from(stream)].lock().await;
        if !self.serves_stream(stream) {
            return;
        }
        let Ok((reader, _)) = self.session_reader(stream) else {
            return;
        };
        let Some(tag) = self.followers.lock_unpoisoned().remove(&stream) else {
            return;
        };
        let canceled = reader
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        if let Err(error) = canceled {
            tracing::warn!(%error, stream, "Could not stop following a changelog stream whose partitions this node serves.");
        }
    }

    /// The first offset of the last chunk of changelog `stream`: every record before it is
    /// appended (and at most one chunk's worth after it). `None` when the stream is empty or
    /// the broker did not answer in time.
    async fn tail_offset(&self, stream: u16, wait: Duration) -> Option<u64> {
        let reader = self.tail_reader.read_unpoisoned().clone()?;
        // A tag of its own each time: a look at the tail may run while another ends.
        let tag = format!("{}.tail.{stream}.{:08x}", self.node, rand::random::<u32>());
        let mut consumer = read_stream(
            &reader,
            &self.changelogs[usize::from(stream)],
            &tag,
            AMQPValue::LongString("last".into()),
        )
        .await
        .ok()?;
        let first = tokio::time::timeout(wait, consumer.next()).await;
        let _ = reader
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        match first {
            Ok(Some(Ok(delivery))) => stream_offset(&delivery),
            _ => None,
        }
    }

    /// The tail of every changelog stream, asked all at once: an empty stream answers only
    /// when its `wait` runs out.
    async fn tails(&self, wait: Duration) -> Vec<Option<u64>> {
        futures_util::future::join_all(
            (0..self.streams).map(|stream| self.tail_offset(stream, wait)),
        )
        .await
    }

    /// Records of the changelogs up to `tails` this node has not applied yet.
    fn behind(&self, tails: &[Option<u64>]) -> u64 {
        let applied_to: Vec<u64> = self
            .applied_to
            .iter()
            .map(|applied_to| applied_to.load(Ordering::Acquire))
            .collect();
        records_behind(tails, &applied_to)
    }

    /// Before it takes any partition, a joining node applies what the changelogs gained
    /// while it was away (up to their `tails` as it joined, from where its store `stood`),
    /// so a partition handed to it is served at once: its catch-up is then the last moments
    /// only. It waits as long as that takes, telling its progress; the other nodes serve
    /// meanwhile. (Taking partitions earlier would leave each unserved for as long as the
    /// rest of the backlog takes.) A follower that ends ends the session, and this wait.
    async fn apply_backlog(&self, tails: &[Option<u64>], stood: &[u64]) {
        let started = std::time::Instant::now();
        // Counted from where this node's store stood as it joined (its followers may be
        // well on their way already).
        let total = records_behind(tails, stood);
        if total == 0 {
            return;
        }
        tracing::info!(
            node = %self.node,
            records = total,
            "Applying what the changelogs gained while this node was away, before taking partitions."
        );
        let _catching_up = Flag::raise(&self.catching_up);
        let mut told = std::time::Instant::now();
        loop {
            tokio::time::sleep(BACKLOG_POLL).await;
            let left = self.behind(tails);
            if left == 0 {
                break;
            }
            if told.elapsed() >= BACKLOG_PROGRESS_EVERY {
                told = std::time::Instant::now();
                tracing::info!(node = %self.node, applied = total.saturating_sub(left), of = total, "Applying the changelogs' backlog.");
            }
        }
        tracing::info!(
            node = %self.node,
            records = total,
            took_ms = started.elapsed().as_millis() as u64,
            "Applied the changelogs' backlog."
        );
    }

    /// Looks at how far each changelog stream has come. Of a stream whose partitions this
    /// node all serves, everything is in its store: the offset is recorded as applied, so a
    /// node that reconnects starts from there rather than from its takeover. Of the others,
    /// what is not yet applied is this node's lag.
    async fn mark(&self) {
        let Some(view) = self.view.get() else { return };
        let tails = self.tails(MARK_WAIT).await;
        let mut lag = 0;
        for (stream, tail) in (0..self.streams).zip(tails) {
            let Some(tail) = tail else {
                continue;
            };
            if self.serves_stream(stream) {
                if tail > 0 {
                    if let Err(error) = view.save_applied(stream, tail - 1) {
                        tracing::warn!(%error, stream, "Could not record the applied offset.");
                    }
                }
            } else {
                let applied_to = self.applied_to[usize::from(stream)].load(Ordering::Acquire);
                lag += tail.saturating_sub(applied_to);
            }
        }
        self.lag.store(lag, Ordering::Release);
        metrics().cluster_lag.set(lag as i64);
    }

    /// Marks, every `MARK_EVERY`, how far the changelogs have come.
    fn spawn_marks(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let mut marks = tokio::time::interval(MARK_EVERY);
            loop {
                marks.tick().await;
                link.mark().await;
            }
        })
    }

    /// The channel changelog `stream` is read on in this session, and where the session
    /// hears that a consumer ended.
    fn session_reader(&self, stream: u16) -> Result<(Channel, mpsc::Sender<String>), JoinError> {
        let readers = self.readers.read_unpoisoned();
        let disconnected = || JoinError::Broker("the broker is not connected".into());
        let (channels, ended) = readers.as_ref().ok_or_else(disconnected)?;
        let reader = channels
            .get(usize::from(stream))
            .cloned()
            .ok_or_else(disconnected)?;
        Ok((reader, ended.clone()))
    }

    /// A new owner appends a fence to the partition's changelog stream and serves once it
    /// has applied it: everything the owners before it appended is then in its store.
    async fn catch_up(self: &Arc<Self>, partition: u16) {
        let started = std::time::Instant::now();
        let nonce: u64 = rand::random();
        let (applied, mut fence_seen) = tokio::sync::oneshot::channel();
        self.fences
            .lock_unpoisoned()
            .insert(partition, (nonce, applied));
        let Some(view) = self.view.get() else { return };
        let origin = view.origin();
        let fence = LogRecord::Fence { origin, nonce }.encode();
        // Until the partition leaves this node or a later claim of it marks its own.
        let still_wanted =
            || self.ownership.catching_up_on(partition) && self.awaits_fence(partition, nonce);
        // A fence whose confirm timed out may have reached the stream all the same, and been
        // applied while the next attempt waited: that ends the attempts too.
        let seen = if append_fence(self.as_ref(), partition, &fence, still_wanted).await {
            fence_seen.await.is_ok()
        } else {
            fence_seen.try_recv().is_ok()
        };
        // Of this session only: a fence applied just as the connection closed says nothing
        // of the partition claimed again in the next one.
        if seen && view.origin() == origin {
            self.ownership.caught_up(partition);
            self.unfollow(stream_of(partition, self.streams)).await;
            tracing::info!(
                node = %self.node,
                partition,
                took_ms = started.elapsed().as_millis() as u64,
                "Now the owner of a partition, caught up on its changelog."
            );
        }
    }

    /// Whether the catch-up of `partition` still waits for the fence `nonce` (neither
    /// applied yet, nor replaced by a later claim's, nor dropped as the connection closed).
    fn awaits_fence(&self, partition: u16, nonce: u64) -> bool {
        self.fences
            .lock_unpoisoned()
            .get(&partition)
            .is_some_and(|(waiting, _)| *waiting == nonce)
    }

    /// A fence of this node's was applied: the catch-up that appended it (its nonce is
    /// its own) is done.
    fn fence_applied(&self, origin: u64, nonce: u64) {
        let Some(view) = self.view.get() else { return };
        if origin != view.origin() {
            return;
        }
        let mut fences = self.fences.lock_unpoisoned();
        let partition = fences
            .iter()
            .find(|(_, (waiting, _))| *waiting == nonce)
            .map(|(partition, _)| *partition);
        if let Some((_, applied)) = partition.and_then(|partition| fences.remove(&partition)) {
            let _ = applied.send(());
        }
    }
}

/// Sends `body` to the direct reply-to queue `reply_to` of the node that asked, under its
/// correlation `id`.
async fn answer(
    channel: &Channel,
    reply_to: &ShortString,
    id: &ShortString,
    body: &[u8],
) -> lapin::Result<()> {
    let properties = BasicProperties::default().with_correlation_id(id.clone());
    send_to_queue(channel, reply_to.as_str(), body, properties)
        .await
        .map(|_| ())
}

/// Publishes `body` straight to `queue` (the default exchange); the confirm resolves at
/// once on a channel without confirms.
async fn send_to_queue(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> lapin::Result<lapin::PublisherConfirm> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
}

/// The next run of a changelog consumer's records: the first as it comes, then those
/// already here, up to `APPLY_RUN`. An error names why the consumer ended.
async fn next_run(consumer: &mut lapin::Consumer, stream: u16) -> Result<Vec<Delivery>, String> {
    let ended = |next: Option<lapin::Result<Delivery>>| match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(error)) => Err(error.to_string()),
        None => Err(format!(
            "the consumer of changelog stream {stream} was canceled"
        )),
    };
    let mut run = vec![ended(consumer.next().await)?];
    while run.len() < APPLY_RUN {
        match consumer.next().now_or_never() {
            Some(next) => run.push(ended(next)?),
            None => break,
        }
    }
    Ok(run)
}

/// Counts one cluster message of `kind` (appended, applied, forwarded, served).
fn count(kind: &str) {
    metrics().cluster_messages.with_label_values(&[kind]).inc();
}

/// Records before each stream's tail (the first offset of its last chunk; `None`: empty or
/// unknown) at or after the offset it is `applied_to` (the offset after the last record
/// applied).
fn records_behind(tails: &[Option<u64>], applied_to: &[u64]) -> u64 {
    tails
        .iter()
        .zip(applied_to)
        .filter_map(|(tail, applied_to)| Some(tail.as_ref()?.saturating_sub(*applied_to)))
        .sum()
}

/// The offset a stream gave a delivered record (the `x-stream-offset` header).
fn stream_offset(delivery: &lapin::message::Delivery) -> Option<u64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(offset) => u64::try_from(*offset).ok(),
        AMQPValue::LongInt(offset) => u64::try_from(*offset).ok(),
        AMQPValue::LongUInt(offset) => Some(u64::from(*offset)),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Changelog for ClusterLink {
    async fn append(&self, partitions: &[u16], record: Vec<u8>) -> Result<Confirm, AppendError> {
        let Some(&first) = partitions.first() else {
            return Err("a changelog record names no partition".to_owned().into());
        };
        if let Some(partition) = partitions
            .iter()
            .find(|partition| self.ownership.owned_since(**partition).is_none())
        {
            return Err(format!("this node does not own partition {partition}").into());
        }
        if self.publishes_blocked() {
            return Err(ClusterUnavailable::Blocked.to_string().into());
        }
        let appender =
            (self.appender.open()).ok_or_else(|| "the broker is not connected".to_owned())?;
        let stream = &self.changelogs[usize::from(stream_of(first, self.streams))];
        count("appended");
        let persistent = BasicProperties::default().with_delivery_mode(2);
        // The publish counts against the confirm's time too: lapin returns it once its frames
        // are written out, and on a connection the broker has gone silent on it can wait
        // until the heartbeats give up, and every flush behind it with it.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timeout = self.timeout;
        let unconfirmed = move || {
            AppendError::Unconfirmed(format!("no confirm within {} ms", timeout.as_millis()))
        };
        let confirm = tokio::time::timeout_at(
            deadline,
            send_to_queue(&appender, stream, &record, persistent),
        )
        .await
        .map_err(|_| unconfirmed())?
        .map_err(|error| error.to_string())?;
        Ok(Box::pin(async move {
            match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(confirmation)) if confirmation.is_ack() => Ok(()),
                Ok(Ok(_)) => Err("the broker refused the record".to_owned().into()),
                Ok(Err(error)) => Err(error.to_string().into()),
                Err(_) => Err(unconfirmed()),
            }
        }))
    }
}

impl Consumers {
    fn tag(&self, partition: u16) -> String {
        format!("{}.{partition}", self.link.node)
    }

    async fn consume(
        self: &Arc<Self>,
        topology: &Topology,
        partition: u16,
    ) -> Result<(), lapin::Error> {
        let queue = &topology.partition_queues[usize::from(partition)];
        let mut consumer = self
            .channel
            .basic_consume(
                queue.as_str().into(),
                self.tag(partition).as_str().into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let consumers = Arc::clone(self);
        tokio::spawn(async move {
            let reason = loop {
                match consumer.next().await {
                    Some(Ok(delivery)) => {
                        consumers
                            .link
                            .on_message(&consumers.channel, partition, delivery)
                            .await
                    }
                    Some(Err(error)) => break error.to_string(),
                    None => break "a partition consumer was canceled".to_string(),
                }
            };
            let yielded = {
                let mut yielding = consumers.yielding.lock_unpoisoned();
                let before = yielding.len();
                yielding.retain(|p| *p != partition);
                yielding.len() < before
            };
            if !yielded {
                let _ = consumers.ended.send(reason).await;
            }
        });
        Ok(())
    }

    /// Yields the partitions this node owns beyond its share: each is consumed anew, so the
    /// broker makes the next node in line its owner.
    async fn balance(self: &Arc<Self>, channel: &Channel, topology: &Topology) {
        let Some(first) = topology.partition_queues.first() else {
            return;
        };
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let Ok(queue) = channel
            .queue_declare(first.as_str().into(), passive, FieldTable::default())
            .await
        else {
            return;
        };
        let nodes = queue.consumer_count().max(1) as usize;
        let partitions = topology.partition_queues.len();
        let owned = self.link.ownership.owned();
        if !beyond_share(owned.len(), partitions, nodes) {
            return;
        }
        // One partition a round: the broker gives it to the next node in line, which may be
        // at its share already; small steps settle instead of passing partitions around.
        let Some(partition) = owned.last().copied() else {
            return;
        };
        tracing::info!(node = %self.link.node, owned = owned.len(), nodes, partition, "Yielding a partition beyond this node's share.");
        if let Err(error) = self.yield_partition(topology, partition).await {
            tracing::warn!(%error, partition, "Could not yield a partition.");
        }
    }

    async fn yield_partition_now(
        self: &Arc<Self>,
        topology: &Topology,
        partition: u16,
    ) -> Result<(), lapin::Error> {
        self.yielding.lock_unpoisoned().push(partition);
        self.channel
            .basic_cancel(
                self.tag(partition).as_str().into(),
                BasicCancelOptions::default(),
            )
            .await?;
        self.link.ownership.release(partition);
        self.consume(topology, partition).await
    }

    /// Gives `partition` up once the commands running on it are done (their changes are in
    /// its changelog), so the next owner starts after them.
    async fn yield_partition(
        self: &Arc<Self>,
        topology: &Topology,
        partition: u16,
    ) -> Result<(), lapin::Error> {
        if !self.link.ownership.leave(partition) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.link.timeout;
        while self.link.ownership.in_flight(partition) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Follow its stream again before the broker hands it on, so no change of the next
        // owner is missed.
        let stream = stream_of(partition, self.link.streams);
        if let Err(error) = self.link.follow(stream).await {
            tracing::warn!(%error, partition, "Could not follow a partition's changelog stream again; keeping the partition.");
            self.link.ownership.caught_up_again(partition);
            return Ok(());
        }
        self.yield_partition_now(topology, partition).await
    }
}

/// Whether a node owning `owned` of `partitions` owns more than its share among `nodes`.
fn beyond_share(owned: usize, partitions: usize, nodes: usize) -> bool {
    owned > partitions.div_ceil(nodes.max(1))
}

fn stream_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    arguments
}

/// A partition queue: one active consumer (the owner), and nothing kept longer than its
/// messages are useful (ticks and questions are answered within seconds).
fn partition_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    arguments.insert(
        "x-message-ttl".into(),
        AMQPValue::LongUInt(PARTITION_MESSAGE_TTL_MS),
    );
    arguments
}

/// A changelog stream: segments of 8 MiB, dropped once older than `CHANGELOG_MAX_AGE`.
fn changelog_arguments() -> FieldTable {
    let mut arguments = stream_arguments();
    arguments.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongUInt(8 * 1024 * 1024),
    );
    arguments.insert(
        "x-max-age".into(),
        AMQPValue::LongString(CHANGELOG_MAX_AGE.into()),
    );
    arguments
}

/// How long a changelog keeps records: longer than any record lives in a store (a code's
/// longest life, one day, plus the default retention of a day after expiry), so replaying
/// what is kept rebuilds every record that still matters.
const CHANGELOG_MAX_AGE: &str = "3D";

/// Changelog records a node takes from each stream before acking.
pub const APPLY_PREFETCH: u16 = 512;

/// The most changelog records applied in one batch (and acked at once): half the
/// prefetch, so the next run is on its way while one is written.
pub const APPLY_RUN: usize = APPLY_PREFETCH as usize / 2;

/// How often a node looks whether its store was opened again.
const STORE_WATCH: Duration = Duration::from_secs(1);

/// How often a node records how far the changelog streams have come.
const MARK_EVERY: Duration = Duration::from_secs(5);

/// How long a node waits for the last chunk of a changelog when it records that.
const MARK_WAIT: Duration = Duration::from_secs(1);

/// How long a joining node waits for a changelog's tail; a stream with records answers in
/// milliseconds (a busy broker in a few hundred), an empty one never.
const TAIL_WAIT_AT_JOIN: Duration = Duration::from_secs(1);

/// One `make()` for each of `count` partitions or streams, in order.
fn one_each<T>(count: u16, make: impl Fn() -> T) -> Vec<T> {
    (0..count).map(|_| make()).collect()
}

/// A flag raised while it lives, lowered when it is dropped (the wait it marks may end early).
struct Flag<'a>(&'a AtomicBool);

impl<'a> Flag<'a> {
    fn raise(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        Flag(flag)
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How often a joining node looks whether it has applied the changelogs' backlog, and how
/// often it tells its progress.
const BACKLOG_POLL: Duration = Duration::from_millis(20);
const BACKLOG_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long a message waits in a partition queue before the broker drops it.
const PARTITION_MESSAGE_TTL_MS: u32 = 10_000;

/// Reads `stream` on `channel` (its prefetch set) from offset `from` (`first`, `last`, or
/// a number), as consumer `tag` (empty: the broker names it).
pub async fn read_stream(
    channel: &Channel,
    stream: &str,
    tag: &str,
    from: AMQPValue,
) -> lapin::Result<lapin::Consumer> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), from);
    channel
        .basic_consume(
            stream.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
}

/// The first message of a stream, if one arrives within `RECORD_WAIT`.
async fn read_first(
    connection: &Connection,
    stream: &str,
) -> Result<Option<ClusterRecord>, JoinError> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let mut consumer =
        read_stream(&channel, stream, "", AMQPValue::LongString("first".into())).await?;
    let first = tokio::time::timeout(RECORD_WAIT, consumer.next()).await;
    let _ = channel.close(200, "read".into()).await;
    match first {
        Err(_) => Ok(None),
        Ok(None) => Err(JoinError::Broker(format!("stream {stream} ended"))),
        Ok(Some(Err(error))) => Err(error.into()),
        Ok(Some(Ok(delivery))) => {
            serde_json::from_slice(&delivery.data)
                .map(Some)
                .map_err(|error| JoinError::Unreadable {
                    stream: stream.to_owned(),
                    detail: error.to_string(),
                })
        }
    }
}

#[async_trait::async_trait]
impl Forwarder for ClusterLink {
    fn enter(&self, partition: u16) -> Option<Entered> {
        if !self.has_joined() {
            return None;
        }
        self.ownership.enter(partition)
    }

    async fn forward(
        &self,
        partition: u16,
        command: &Command,
    ) -> Result<Reply, ClusterUnavailable> {
        self.send_command(partition, command).await
    }
}

#[cfg(test)]
mod tests {
    use super::{beyond_share, records_behind};

    #[test]
    fn the_lag_counts_records_before_each_tail_not_yet_applied() {
        // Partition 0 applied up to its tail, 1 is 40 behind, 2 is empty, 3 is applied past
        // the first record of its last chunk.
        let tails = [Some(100), Some(140), None, Some(10)];
        let applied_to = [100, 100, 0, 12];
        assert_eq!(records_behind(&tails, &applied_to), 40);
        assert_eq!(records_behind(&tails, &[0, 0, 0, 0]), 250);
    }

    #[test]
    fn a_node_yields_only_beyond_its_share() {
        assert!(!beyond_share(32, 32, 1));
        assert!(beyond_share(32, 32, 2));
        assert!(!beyond_share(16, 32, 2));
        assert!(beyond_share(17, 32, 2));
        assert!(!beyond_share(11, 32, 3));
        assert!(beyond_share(12, 32, 3));
    }
}
