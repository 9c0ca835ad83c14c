//! `amqp`: OTP requests published with confirms to `<namespace>.requests`, each followed to
//! the provider; and `ceiling`: the broker's own publish→consume→ack hop on a temporary queue.

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use otpd::bus::amqp::cluster::{read_stream, APPLY_PREFETCH, APPLY_RUN};
use otpd::sync::LockUnpoisoned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

use crate::arrivals::Arrival;
use crate::cpu::{Cpu, CpuMeter};
use crate::driver::{self, Plan};
use crate::report::Ceiling;
use crate::spawn::random_hex;
use crate::tracker::{self, Tracker};

/// Unacknowledged deliveries the ceiling's consumer takes (otpd's default prefetch).
pub const CEILING_PREFETCH: u16 = 256;
/// Longest wait for the ceiling's consumer to catch up after the last publish.
const CEILING_DRAIN: Duration = Duration::from_secs(30);

/// The `ttl_seconds` of a run's requests unless `--ttl-seconds` says otherwise.
pub const DEFAULT_TTL_SECONDS: u32 = 300;

/// What every request of a run says besides its number.
pub struct RequestShape {
    pub tenant: String,
    pub locale: String,
    pub ttl_seconds: u32,
}

/// One OTP request as platforms publish it (API.md).
pub fn request_body(namespace: &str, shape: &RequestShape, n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "request_id": format!("lt-{namespace}-{n}"),
        "tenant": shape.tenant,
        "to": tracker::destination(n),
        "channel": "sms",
        "locale": shape.locale,
        "template": "login",
        "ttl_seconds": shape.ttl_seconds,
    }))
    .expect("a JSON object serialises")
}

fn persistent_json() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

/// A connection to the broker at `amqp_url`.
async fn connect(amqp_url: &str) -> anyhow::Result<Connection> {
    Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .context("connect to the broker")
}

pub async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes one message and waits for its confirm: `Ok(true)` acked, `Ok(false)` nacked.
async fn publish_confirmed(channel: &Channel, queue: &str, body: &[u8]) -> lapin::Result<bool> {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            persistent_json(),
        )
        .await?
        .await?;
    Ok(confirm.is_ack())
}

pub struct EndToEnd {
    pub tracker: Arc<Mutex<Tracker>>,
    pub first_send: Instant,
    pub last_send: Instant,
    pub last_arrival: Instant,
    pub errors: u64,
}

/// Feeds arrivals into the tracker until the channel closes.
/// Each first arrival gives a place back to `window`.
pub fn collect(
    tracker: Arc<Mutex<Tracker>>,
    mut arrivals: mpsc::Receiver<Arrival>,
    window: Arc<Semaphore>,
    bar: indicatif::ProgressBar,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(arrival) = arrivals.recv().await {
            let first = tracker.lock_unpoisoned().arrived(&arrival.to, arrival.at);
            if first.is_some() {
                window.add_permits(1);
                bar.inc(1);
            }
        }
    })
}

/// Waits until every published request has arrived, or `timeout`; then `grace` more for
/// late duplicates.
pub async fn drain(tracker: &Mutex<Tracker>, timeout: Duration, grace: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tracker.lock_unpoisoned().is_complete() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(grace).await;
}

/// Publishes the plan's requests to `<namespace>.requests` and follows them to the provider.
/// At most `window` requests are published and not yet arrived: the broker takes messages
/// far faster than otpd can deliver them, and an unbounded backlog would measure the queue,
/// not otpd (and leave a backlog no drain could wait out).
pub async fn end_to_end(
    amqp_url: &str,
    namespace: &str,
    shape: &RequestShape,
    plan: &Plan,
    window: usize,
    arrivals: mpsc::Receiver<Arrival>,
    drain_timeout: Duration,
) -> anyhow::Result<EndToEnd> {
    let connection = connect(amqp_url).await?;
    let channel = confirm_channel(&connection).await?;
    let queue = Arc::new(format!("{namespace}.requests"));
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let bar = driver::progress(plan.requests, "delivered");
    let window = Arc::new(Semaphore::new(window.max(1)));
    let collector = collect(
        Arc::clone(&tracker),
        arrivals,
        Arc::clone(&window),
        bar.clone(),
    );
    let errors = Arc::new(AtomicU64::new(0));
    let namespace = namespace.to_owned();
    let driven = driver::drive(plan, |n, since| {
        let channel = channel.clone();
        let queue = Arc::clone(&queue);
        let tracker = Arc::clone(&tracker);
        let errors = Arc::clone(&errors);
        let window = Arc::clone(&window);
        let body = request_body(&namespace, shape, n);
        async move {
            match window.acquire().await {
                Ok(place) => place.forget(),
                Err(_) => return,
            }
            tracker.lock_unpoisoned().sent(n, since);
            let outcome = publish_confirmed(&channel, &queue, &body).await;
            let mut tracker = tracker.lock_unpoisoned();
            match outcome {
                Ok(true) => tracker.published(n),
                Ok(false) => {
                    tracker.refused(n);
                    window.add_permits(1);
                }
                Err(_) => {
                    tracker.refused(n);
                    window.add_permits(1);
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    bar.set_length(driven.started);
    drain(&tracker, drain_timeout, Duration::from_millis(500)).await;
    bar.finish_and_clear();
    let _ = connection.close(200, "run over".into()).await;
    collector.abort();
    let last_arrival = tracker
        .lock_unpoisoned()
        .last_arrival()
        .unwrap_or(driven.last);
    Ok(EndToEnd {
        tracker,
        first_send: driven.first,
        last_send: driven.last,
        last_arrival,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// The broker's own hop: persistent messages of `payload_bytes` published with confirms to a
/// temporary queue of `queue_type`, consumed and acked (`ack_run` at a time); the queue is
/// deleted afterwards.
pub async fn ceiling(
    amqp_url: &str,
    queue_type: &'static str,
    payload_bytes: usize,
    ack_run: u64,
    plan: &Plan,
) -> anyhow::Result<Ceiling> {
    let connection = connect(amqp_url).await?;
    let publisher = confirm_channel(&connection).await?;
    let consumer_channel = connection.create_channel().await?;
    consumer_channel
        .basic_qos(CEILING_PREFETCH, BasicQosOptions::default())
        .await?;
    let queue = format!("loadtest.ceiling.{}", random_hex(6));
    declare_durable(&publisher, &queue, queue_type).await?;
    let measured = measure_hop(
        &publisher,
        &consumer_channel,
        &queue,
        payload_bytes,
        ack_run,
        plan,
    )
    .await;
    let deleted = take_down(&connection, &publisher, &consumer_channel, &queue).await;
    let ceiling = measured?;
    deleted?;
    Ok(Ceiling {
        queue_type,
        ..ceiling
    })
}

/// Publishes messages of `payload_bytes` to `queue` as `plan` paces them, each waiting for
/// its confirm, with a progress bar saying `what`: when sending went on, and how many the
/// broker confirmed.
async fn publish_all(
    channel: &Channel,
    queue: &str,
    payload_bytes: usize,
    plan: &Plan,
    what: &str,
) -> (driver::Driven, u64) {
    let body = Arc::new(vec![b'x'; payload_bytes]);
    let confirmed = Arc::new(AtomicU64::new(0));
    let bar = driver::progress(plan.requests, what);
    let driven = driver::drive(plan, |_, _| {
        let channel = channel.clone();
        let queue = queue.to_owned();
        let body = Arc::clone(&body);
        let confirmed = Arc::clone(&confirmed);
        let bar = bar.clone();
        async move {
            if let Ok(true) = publish_confirmed(&channel, &queue, &body).await {
                confirmed.fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
        }
    })
    .await;
    bar.finish_and_clear();
    (driven, confirmed.load(Ordering::Relaxed))
}

/// Declares the durable queue `queue` of `queue_type` (`quorum`, `classic`, `stream`).
async fn declare_durable(channel: &Channel, queue: &str, queue_type: &str) -> anyhow::Result<()> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .with_context(|| format!("declare the {queue_type} queue {queue}"))?;
    Ok(())
}

/// Deletes a measurement's queue and closes its connection, whatever the measurement came
/// to. The consumer's channel is closed first, so the broker has no consumer to cancel
/// under lapin's feet.
async fn take_down(
    connection: &Connection,
    channel: &Channel,
    consumer_channel: &Channel,
    queue: &str,
) -> anyhow::Result<()> {
    let _ = consumer_channel.close(200, "measured".into()).await;
    let deleted = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "measured".into()).await;
    deleted.with_context(|| format!("delete the queue {queue}"))?;
    Ok(())
}

/// A changelog backlog as the broker delivers it to a node catching up: every record
/// appended was read back (a replay that could not read them all fails).
#[derive(Debug, Clone, Copy)]
pub struct Replayed {
    pub appended: u64,
    pub append_seconds: f64,
    pub read_seconds: f64,
    /// CPU the broker and this harness used while the backlog was read.
    pub read_cpu: Cpu,
}

/// The broker's delivery of a changelog backlog alone: up to `plan.requests` records of
/// `record_bytes` appended with confirms to a temporary stream, `plan.concurrency`
/// unconfirmed at most (the broker writes the records that arrive together as one chunk;
/// 1 gives each record a chunk of its own, as a node's changelog appends mostly get),
/// then read from the stream's start with a node's prefetch and acknowledgements
/// (`APPLY_PREFETCH`, `APPLY_RUN`) by a consumer that does nothing else. The stream is
/// deleted afterwards.
pub async fn replay(
    amqp_url: &str,
    record_bytes: usize,
    plan: &Plan,
    stall: Duration,
) -> anyhow::Result<Replayed> {
    let connection = connect(amqp_url).await?;
    let appender = confirm_channel(&connection).await?;
    let reader = connection.create_channel().await?;
    let stream = format!("loadtest.replay.{}", random_hex(6));
    declare_durable(&appender, &stream, "stream").await?;
    let measured = append_and_read(&appender, &reader, &stream, record_bytes, plan, stall).await;
    let deleted = take_down(&connection, &appender, &reader, &stream).await;
    let replayed = measured?;
    deleted?;
    Ok(replayed)
}

async fn append_and_read(
    appender: &Channel,
    reader: &Channel,
    stream: &str,
    record_bytes: usize,
    plan: &Plan,
    stall: Duration,
) -> anyhow::Result<Replayed> {
    let (driven, appended) = publish_all(appender, stream, record_bytes, plan, "appended").await;
    anyhow::ensure!(
        appended > 0,
        "the broker confirmed no record appended to {stream}"
    );

    reader
        .basic_qos(APPLY_PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = read_stream(reader, stream, "", AMQPValue::LongString("first".into()))
        .await
        .with_context(|| format!("read the stream {stream}"))?;
    let bar = driver::progress(appended, "read");
    let cpu = CpuMeter::start(Vec::new());
    let started = Instant::now();
    let mut read = 0;
    while read < appended {
        let delivery = match tokio::time::timeout(stall, consumer.next()).await {
            Ok(Some(delivery)) => delivery?,
            Ok(None) => anyhow::bail!(
                "the broker ended the read of {stream} after {read} of {appended} records"
            ),
            Err(_) => {
                anyhow::bail!("no record of {stream} came for {stall:?} after {read} of {appended}")
            }
        };
        read += 1;
        if read % APPLY_RUN as u64 == 0 || read == appended {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
            bar.set_position(read);
        }
    }
    let read_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(Replayed {
        appended,
        append_seconds: driven.last.duration_since(driven.first).as_secs_f64(),
        read_seconds,
        read_cpu: cpu.used_by_each().0,
    })
}

async fn measure_hop(
    publisher: &Channel,
    consumer_channel: &Channel,
    queue: &str,
    payload_bytes: usize,
    ack_run: u64,
    plan: &Plan,
) -> anyhow::Result<Ceiling> {
    let mut consumer = consumer_channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumed = Arc::new(AtomicU64::new(0));
    let last_consumed = Arc::new(Mutex::new(None::<Instant>));
    let consuming = {
        let consumed = Arc::clone(&consumed);
        let last_consumed = Arc::clone(&last_consumed);
        tokio::spawn(async move {
            let mut received = 0u64;
            while let Some(Ok(delivery)) = consumer.next().await {
                received += 1;
                let run = BasicAckOptions {
                    multiple: ack_run > 1,
                };
                // The last deliveries of a run that never fills stay unacked: the queue
                // goes with them.
                if received % ack_run == 0 && !matches!(delivery.ack(run).await, Ok(true)) {
                    break;
                }
                consumed.fetch_add(1, Ordering::Relaxed);
                *last_consumed.lock_unpoisoned() = Some(Instant::now());
            }
        })
    };
    let (driven, published) = publish_all(publisher, queue, payload_bytes, plan, "ceiling").await;
    let deadline = Instant::now() + CEILING_DRAIN;
    while consumed.load(Ordering::Relaxed) < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    consuming.abort();
    let messages = consumed.load(Ordering::Relaxed);
    let end = last_consumed.lock_unpoisoned().unwrap_or(driven.last);
    let seconds = end.duration_since(driven.first).as_secs_f64().max(1e-6);
    Ok(Ceiling {
        messages,
        seconds,
        messages_per_second: messages as f64 / seconds,
        payload_bytes,
        queue_type: "",
        ack_run,
    })
}
