//! Broker mode against the real RabbitMQ on 127.0.0.1:5672: every test uses its own
//! namespace (so its own queues and exchanges) and deletes them when it ends.

use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rand::RngCore;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::*;
use otpd::config::Settings;

pub const BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(15);

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A test's own corner of the broker, with a client connection.
pub struct Broker {
    pub namespace: String,
    pub pepper: String,
    pub sealing_key: String,
    channel: Channel,
    connection: Connection,
}

impl Broker {
    pub async fn connect() -> Broker {
        let connect = Connection::connect(BROKER_URL, ConnectionProperties::default());
        let connection = tokio::time::timeout(WAIT, connect)
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 did not answer within 15 s")
            .expect("RabbitMQ must run on 127.0.0.1:5672 for the broker tests (.ci/run starts it)");
        let channel = connection.create_channel().await.expect("open a channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        Broker {
            namespace: format!("t{}", random_hex(6)),
            pepper: random_hex(32),
            sealing_key: random_hex(32),
            channel,
            connection,
        }
    }

    /// Points settings at this broker corner, with shared secrets.
    pub fn configure(&self, settings: &mut Settings) {
        settings.amqp.url = Some(BROKER_URL.to_string());
        settings.amqp.namespace = self.namespace.clone();
        // Classic queues keep a test's footprint on the broker small; one test uses quorum.
        settings.amqp.requests_queue_type = "classic".into();
        settings.amqp.timeout_ms = 3000;
        settings.amqp.reconnect_delay_ms = 200;
        settings.secrets.pepper = Some(self.pepper.clone().into());
        settings.secrets.sealing_key = Some(self.sealing_key.clone().into());
    }

    pub fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.namespace)
    }

    /// Publishes raw bytes to the requests queue (default exchange), persistent, confirmed.
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        let json = properties.with_content_type("application/json".into());
        self.publish_to(&self.name("requests"), body, json).await;
    }

    /// Publishes raw bytes to `queue` (default exchange), persistent, confirmed.
    pub async fn publish_to(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "the broker refused the test's message");
    }

    pub async fn publish(&self, request: &Value) {
        self.publish_raw(
            &serde_json::to_vec(request).unwrap(),
            BasicProperties::default(),
        )
        .await;
    }

    /// A queue of this test bound to the events exchange with `pattern`.
    pub async fn listen(&self, exchange_suffix: &str, pattern: &str) -> Listener {
        let queue = self.name(&format!("listen.{}", random_hex(4)));
        self.channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare a listening queue");
        if !exchange_suffix.is_empty() {
            self.channel
                .queue_bind(
                    queue.as_str().into(),
                    self.name(exchange_suffix).as_str().into(),
                    pattern.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind the listening queue");
        }
        Listener {
            queue,
            channel: self.channel.clone(),
        }
    }

    /// Every message in `queue` right now, each returned to the queue afterwards.
    pub async fn peek(&self, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
        let mut seen = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
        {
            seen.push(message);
        }
        for message in &seen {
            message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .expect("return the message");
        }
        seen
    }

    /// Deletes this test's queues and exchanges (also done when the `Broker` is dropped,
    /// so a failed test leaves nothing behind either).
    pub async fn clean_up(&self) {
        delete_namespace(&self.channel, &self.namespace).await;
    }
}

/// Deletes a namespace's queues and exchanges, as otpd's own topology names them (with the
/// default partition count).
pub async fn delete_namespace(channel: &Channel, namespace: &str) {
    let partitions = otpd::cluster::ClusterSettings::default().partitions;
    crate::helpers::delete_topology(channel, namespace, partitions).await;
}

impl Drop for Broker {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        let cleaner = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let connect = Connection::connect(BROKER_URL, ConnectionProperties::default());
                if let Ok(Ok(connection)) = tokio::time::timeout(WAIT, connect).await {
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = tokio::time::timeout(WAIT, delete_namespace(&channel, &namespace))
                            .await;
                    }
                    let _ = connection.close(200, "test done".into()).await;
                }
            });
        });
        let _ = cleaner.join();
    }
}

pub struct Listener {
    pub queue: String,
    channel: Channel,
}

impl Listener {
    /// Waits for `count` messages and returns them as JSON with their properties.
    pub async fn receive(&self, count: usize) -> Vec<(Value, BasicProperties)> {
        let mut received = Vec::new();
        let deadline = Instant::now() + WAIT;
        while received.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages reached {} within {WAIT:?}: {:?}",
                received.len(),
                self.queue,
                received
            );
            match self
                .channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get")
            {
                Some(message) => {
                    let body =
                        serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null);
                    received.push((body, message.delivery.properties.clone()));
                }
                None => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        received
    }

    pub async fn delete(&self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// An app in broker mode on its own namespace, with a listener on every event.
pub async fn broker_app() -> (TestApp, Broker) {
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| broker.configure(settings)).await;
    wait_until_ready(&app).await;
    (app, broker)
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = send(app.anonymous(reqwest::Method::GET, "/readyz")).await;
        if reply.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "broker mode never became ready: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn request(request_id: &str, to: &str) -> Value {
    json!({"request_id": request_id, "tenant": "dev", "to": to, "channel": "sms", "locale": "de", "template": "login"})
}

/// The outbox messages sent to `to`.
pub fn messages_to(app: &TestApp, to: &str) -> Vec<Value> {
    read_outbox(app.store_dir())
        .into_iter()
        .filter(|m| m["to"] == to)
        .collect()
}

pub async fn wait_for_message_to(app: &TestApp, to: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(message) = messages_to(app, to).pop() {
            return message;
        }
        assert!(Instant::now() < deadline, "no message reached {to}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_published_request_delivers_a_code_that_verifies() {
    // The production default: quorum queues.
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.requests_queue_type = "quorum".into();
    })
    .await;
    wait_until_ready(&app).await;
    let events = broker.listen("events", "#").await;
    broker.publish(&request("r-1", DE_MOBILE)).await;

    // The create's event and the send's come from different tasks, in either order.
    let received = events.receive(2).await;
    let of_type = |kind: &str| {
        received
            .iter()
            .map(|(event, _)| event)
            .find(|event| event["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event among {received:?}"))
    };
    let created = of_type("verification.created");
    assert_eq!(created["request_id"], "r-1");
    assert_eq!(created["tenant"], "dev");
    assert_eq!(created["to"], DE_MOBILE_MASKED);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(of_type("delivery.sent")["id"], id.as_str());

    let message = wait_for_message_to(&app, DE_MOBILE).await;
    assert_eq!(message["verification_id"], id);
    let code = message_code(&message, 6);
    app.check_code(&id, &code).await.expect_status(200);

    for (event, _) in &received {
        assert!(
            !contains_code(&event.to_string(), &code),
            "an event carries the code"
        );
    }
    events.delete().await;
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn the_same_request_id_issues_one_code() {
    let (app, broker) = broker_app().await;
    let events = broker.listen("events", "verification.*.dev").await;
    let to = de_mobile(31);
    for _ in 0..3 {
        broker.publish(&request("r-same", &to)).await;
    }
    let outcomes = events.receive(3).await;
    let ids: Vec<&Value> = outcomes.iter().map(|(e, _)| &e["id"]).collect();
    assert!(
        outcomes
            .iter()
            .all(|(e, _)| e["type"] == "verification.created"),
        "{outcomes:?}"
    );
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one verification: {ids:?}"
    );
    wait_for_message_to(&app, &to).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages_to(&app, &to).len(), 1, "one code sent");
    events.delete().await;
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn a_request_whose_reply_to_is_one_of_otpds_queues_is_dead_lettered_and_not_answered() {
    let (app, broker) = broker_app().await;
    let requests = broker.name("requests");
    let properties = BasicProperties::default()
        .with_reply_to(requests.as_str().into())
        .with_correlation_id("loop-1".into());
    let body = serde_json::to_vec(&request("r-loop", &de_mobile(61))).unwrap();
    broker.publish_raw(&body, properties).await;

    let dead_queue = broker.name("dead");
    let deadline = Instant::now() + WAIT;
    let dead = loop {
        let dead = broker.peek(&dead_queue).await;
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "dead-lettered once");
    let headers = dead[0]
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    assert!(matches!(
        headers.inner().get("x-otpd-reason"),
        Some(AMQPValue::LongString(reason)) if reason.to_string() == "reply_to_own_queue"
    ));
    // Nothing was issued or sent, and otpd did not feed an answer back to itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.outbox_is_empty());
    assert!(
        broker.peek(&dead_queue).await.len() == 1,
        "no answer came back as a request"
    );
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn each_invalid_message_is_dead_lettered_once_with_its_reason() {
    let (app, broker) = broker_app().await;
    let events = broker.listen("events", "verification.rejected.*").await;
    let oversized = format!(
        "{{\"request_id\":\"r-big\",\"tenant\":\"dev\",\"pad\":\"{}\"}}",
        "x".repeat(17 * 1024)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "invalid_json"),
        (
            br#"{"tenant":"dev","to":"+4915112345678","channel":"sms"}"#.to_vec(),
            "missing_request_id",
        ),
        (
            br#"{"request_id":"r-nodest","tenant":"dev","channel":"sms"}"#.to_vec(),
            "invalid_request",
        ),
        (
            br#"{"request_id":"r-bad","tenant":"dev","to":"+49123","channel":"sms"}"#.to_vec(),
            "invalid_destination",
        ),
        (
            br#"{"request_id":"r-who","tenant":"nobody","to":"+4915112345678","channel":"sms"}"#
                .to_vec(),
            "unknown_tenant",
        ),
        (oversized.into_bytes(), "too_large"),
    ];
    for (body, _) in &cases {
        broker.publish_raw(body, BasicProperties::default()).await;
    }
    // Three of the six name a known tenant: the platform also gets a rejected event.
    let rejected = events.receive(3).await;
    let mut codes: Vec<&str> = rejected
        .iter()
        .map(|(e, _)| e["error"]["code"].as_str().unwrap())
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "invalid_destination",
            "invalid_request",
            "missing_request_id"
        ]
    );

    let dead_queue = broker.name("dead");
    let deadline = Instant::now() + WAIT;
    let dead = loop {
        let dead = broker.peek(&dead_queue).await;
        if dead.len() >= cases.len() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        broker.peek(&dead_queue).await.len(),
        cases.len(),
        "each exactly once"
    );
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            let headers = m.delivery.properties.headers().clone().unwrap_or_default();
            match headers.inner().get("x-otpd-reason") {
                Some(AMQPValue::LongString(reason)) => reason.to_string(),
                other => panic!("dead letter without x-otpd-reason: {other:?}"),
            }
        })
        .collect();
    reasons.sort();
    let mut expected: Vec<&str> = cases.iter().map(|(_, reason)| *reason).collect();
    expected.sort();
    assert_eq!(reasons, expected);
    assert!(
        app.outbox_is_empty(),
        "nothing was sent for invalid messages"
    );
    events.delete().await;
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn the_outcome_goes_to_reply_to_with_the_correlation_id() {
    let (app, broker) = broker_app().await;
    let replies = broker.listen("", "").await;
    let properties = BasicProperties::default()
        .with_reply_to(replies.queue.as_str().into())
        .with_correlation_id("corr-42".into());
    let body = serde_json::to_vec(&request("r-reply", &de_mobile(42))).unwrap();
    broker.publish_raw(&body, properties).await;
    let reply = replies.receive(1).await;
    assert_eq!(reply[0].0["type"], "verification.created");
    assert_eq!(reply[0].0["request_id"], "r-reply");
    assert_eq!(
        reply[0].1.correlation_id().as_ref().map(|c| c.as_str()),
        Some("corr-42")
    );
    wait_for_message_to(&app, &de_mobile(42)).await;
    replies.delete().await;
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn http_create_in_broker_mode_is_delivered_through_the_broker() {
    let (app, broker) = broker_app().await;
    let created = app.create_sms(FR_MOBILE).await;
    let id = created["id"].as_str().unwrap();
    let code = app.code_for(id).await;
    app.check_code(id, &code).await.expect_status(200);
    assert_eq!(app.get(id).await.str("delivery"), "sent");
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn jobs_in_the_broker_hold_no_code_in_clear() {
    // This node consumes only the email region, so SMS jobs stay in their queue to be read.
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.amqp.consume_regions = vec!["email".into()];
    })
    .await;
    wait_until_ready(&app).await;
    let key = secrecy::SecretSlice::from(hex::decode(&broker.sealing_key).unwrap());
    let sealer = otpd::secrets::Sealer::new(&key);
    for n in 0..5 {
        app.create_sms(&de_mobile(n)).await;
    }
    let jobs = broker.peek(&broker.name("region.eu")).await;
    eprintln!(
        "{:?}",
        jobs.iter()
            .map(|j| j.delivery.routing_key.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        jobs.len(),
        5,
        "the five SMS jobs wait in the eu queue: {:?}",
        jobs.iter()
            .map(|j| j.delivery.redelivered)
            .collect::<Vec<_>>()
    );
    for job in &jobs {
        let decoded =
            otpd::bus::amqp::message::decode_job(&job.delivery.data).expect("a job otpd can read");
        let code = sealer
            .open(&decoded.job_id, &decoded.sealed_code)
            .expect("sealed with the node's key");
        let raw = String::from_utf8_lossy(&job.delivery.data);
        assert!(
            !raw.contains(code.reveal()),
            "a job holds its code in clear"
        );
    }
    for dead in broker.peek(&broker.name("dead")).await {
        assert!(dead.delivery.data.len() < 64 * 1024);
    }
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn without_the_broker_creates_fail_fast_and_nothing_is_issued() {
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        // Nothing listens on port 1: the broker is "down" for this app.
        settings.amqp.url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
    })
    .await;
    let started = Instant::now();
    let reply = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    reply.expect_error(503, "unavailable");
    send(app.anonymous(reqwest::Method::GET, "/readyz"))
        .await
        .expect_error(503, "unavailable");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.outbox_is_empty());
    // Nothing was issued: a create right after is not refused by a cooldown.
    let again = app
        .create(&json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;
    again.expect_error(503, "unavailable");
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn with_every_provider_down_a_job_waits_in_the_delay_queue_then_is_delivered() {
    let fake = otpd::testing::fakes::FakeProviderServer::start()
        .await
        .expect("start the fake provider");
    fake.control().fail_share(1.0);
    let broker = Broker::connect().await;
    let url = fake.generic_url();
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        let provider: otpd::providers::ProviderSettings = serde_json::from_value(json!({
            "kind": "http",
            "url": url,
            "body_template": "{\"to\": \"{to}\", \"text\": \"{body}\"}",
        }))
        .expect("http provider settings");
        settings.providers.insert("only".into(), provider);
        settings
            .routing
            .regions
            .get_mut("default")
            .unwrap()
            .extend(otpd::domain::Channel::all().map(|channel| (channel, vec!["only".into()])));
        settings.sandbox.enabled = false;
        settings.delivery.attempts_per_provider = 1;
    })
    .await;
    wait_until_ready(&app).await;
    let id = app.sms_id(&de_mobile(77)).await;

    // The job fails on the only provider and is parked in the delay queue, not held in memory.
    let delay_queue = broker.name("delay");
    let deadline = Instant::now() + WAIT;
    while broker.peek(&delay_queue).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no job was parked in {delay_queue}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get(&id).await.str("delivery"), "queued");

    // The provider recovers: the parked job comes back through the route exchange and goes out.
    fake.control().fail_share(0.0);
    let deadline = Instant::now() + WAIT;
    let message = loop {
        if let Some(message) = fake.control().messages().into_iter().last() {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "the parked job was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let code = extract_code(&message.body, 6);
    app.check_code(&id, &code).await.expect_status(200);
    drop(app);
    broker.clean_up().await;
}

/// One scenario of the HTTP contract, run against the embedded transport and the broker
/// alike: create, wrong code, resend after the cooldown (the old code dies), right code,
/// single use, cancel of another verification.
async fn the_contract_flow(app: &TestApp, to: &str, other: &str) {
    let id = app.sms_id(to).await;
    let first = app.code_for(&id).await;
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    let reply = app.check_code(&id, wrong).await;
    reply.expect_status(200);
    assert_eq!(reply.body["valid"], false);

    let resent = app.create(&json!({"to": to, "channel": "sms"})).await;
    resent.expect_status(200);
    assert_eq!(resent.str("id"), id);
    let messages = app.messages_for(&id, 2).await;
    let second = message_code(messages.last().unwrap(), 6);
    if second != first {
        let stale = app.check_code(&id, &first).await;
        assert_eq!(
            stale.body["valid"], false,
            "the old code must die on resend"
        );
    }
    let approved = app.check_code(&id, &second).await;
    approved.expect_status(200);
    assert_eq!(approved.body["valid"], true);
    app.check_code(&id, &second)
        .await
        .expect_error(409, "already_approved");

    let other_id = app.sms_id(other).await;
    let canceled = app.cancel(&other_id).await;
    canceled.expect_status(200);
    assert_eq!(canceled.str("status"), "canceled");
}

#[tokio::test]
async fn the_contract_flow_holds_in_embedded_mode() {
    let app = spawn_app_with(|settings| settings.verification.resend_cooldown_seconds = 0).await;
    the_contract_flow(&app, &de_mobile(60), &de_mobile(61)).await;
}

#[tokio::test]
async fn the_contract_flow_holds_in_broker_mode() {
    let broker = Broker::connect().await;
    let app = spawn_app_with(|settings| {
        broker.configure(settings);
        settings.verification.resend_cooldown_seconds = 0;
    })
    .await;
    wait_until_ready(&app).await;
    the_contract_flow(&app, &de_mobile(62), &de_mobile(63)).await;
    drop(app);
    broker.clean_up().await;
}

impl Listener {
    /// Every message waiting in the queue now, bodies as received; the queue is left empty.
    pub async fn drain_raw(&self) -> Vec<Vec<u8>> {
        let mut bodies = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            bodies.push(message.delivery.data.clone());
        }
        bodies
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_each_verification_is_an_event() {
    let (app, broker) = broker_app().await;
    let approved = broker.listen("events", "verification.approved.dev").await;
    let canceled = broker.listen("events", "verification.canceled.dev").await;
    let spent = broker
        .listen("events", "verification.max_attempts_reached.dev")
        .await;

    let right = app.sms_id(&de_mobile(61)).await;
    let code = app.code_for(&right).await;
    app.check_code(&right, &code).await.expect_status(200);
    let dropped = app.sms_id(&de_mobile(62)).await;
    app.cancel(&dropped).await.expect_status(200);
    let guessed = app.sms_id(&de_mobile(63)).await;
    let wrong = if app.code_for(&guessed).await == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        app.check_code(&guessed, wrong).await.expect_status(200);
    }

    let (event, _) = approved.receive(1).await.remove(0);
    assert_eq!(
        (event["id"].as_str(), event["by"].as_str()),
        (Some(right.as_str()), Some("code"))
    );
    assert_eq!(event["type"], "verification.approved");
    assert_eq!(event["to"], "+49151*****661");
    let (event, _) = canceled.receive(1).await.remove(0);
    assert_eq!(event["id"], dropped.as_str());
    let (event, _) = spent.receive(1).await.remove(0);
    assert_eq!(event["id"], guessed.as_str());
    assert_eq!(event["type"], "verification.max_attempts_reached");
    // One event each, and none carries a code.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (what, listener) in [
        ("approved", &approved),
        ("canceled", &canceled),
        ("spent", &spent),
    ] {
        assert!(
            listener.drain_raw().await.is_empty(),
            "a second {what} event"
        );
    }
    assert!(!contains_code(&event.to_string(), &code));
    drop(app);
    broker.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_told_at_once_are_each_published_once() {
    let (app, broker) = broker_app().await;
    let approved = broker.listen("events", "verification.approved.dev").await;
    let mut ids = Vec::new();
    let mut codes = Vec::new();
    for n in 0..40 {
        let id = app.sms_id(&de_mobile(40 + n)).await;
        codes.push(app.code_for(&id).await);
        ids.push(id);
    }

    let checks = ids
        .iter()
        .zip(&codes)
        .map(|(id, code)| app.check_code(id, code));
    for answer in futures_util::future::join_all(checks).await {
        answer.expect_status(200);
    }

    let mut told: Vec<String> = approved
        .receive(ids.len())
        .await
        .into_iter()
        .map(|(event, _)| event["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    told.sort();
    ids.sort();
    assert_eq!(told, ids, "one approval event for each verification");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        approved.drain_raw().await.is_empty(),
        "an approval told twice"
    );
    drop(app);
    broker.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_connection_is_a_metric() {
    let (app, broker) = broker_app().await;
    let metrics = send(app.anonymous(reqwest::Method::GET, "/metrics")).await;
    let connected = format!(
        "otpd_broker_connected{{namespace=\"{}\"}} 1",
        broker.namespace
    );
    assert!(metrics.text.contains(&connected), "{}", metrics.text);
    drop(app);
    broker.clean_up().await;
}

#[tokio::test]
async fn deliveries_are_acked_in_runs_or_alone_after_a_hold_and_a_requeue_comes_back() {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    use otpd::bus::amqp::settle::{Settle, Settler};

    let broker = Broker::connect().await;
    let setup = &broker.channel;
    // Exclusive: the broker deletes it with the test's connection, whatever the test's end.
    let queue = broker.name("settled");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    setup
        .queue_declare(queue.as_str().into(), exclusive, FieldTable::default())
        .await
        .expect("declare the queue");
    for body in 1..=6 {
        let body = body.to_string();
        broker
            .publish_to(&queue, body.as_bytes(), BasicProperties::default())
            .await;
    }
    let channel = broker
        .connection
        .create_channel()
        .await
        .expect("open a channel");
    channel
        .basic_qos(16, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let settler = Settler::start(channel.clone(), "test message");
    async fn next(consumer: &mut lapin::Consumer, settler: &Settler) -> (u64, String) {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery within 15 s")
            .expect("the consumer runs")
            .expect("a delivery");
        settler.received(delivery.delivery_tag);
        (
            delivery.delivery_tag,
            String::from_utf8(delivery.data).unwrap(),
        )
    }
    let mut tags = Vec::new();
    for body in 1..=6 {
        let (tag, data) = next(&mut consumer, &settler).await;
        assert_eq!(data, body.to_string());
        tags.push(tag);
    }

    // 1 and 2 make a run; 3 goes back to the queue; 5 and 6 finish behind 4, which does not.
    for (index, settle) in [(0, Settle::Ack), (1, Settle::Ack), (2, Settle::Requeue)] {
        settler.ended(tags[index], settle);
    }
    settler.ended(tags[4], Settle::Ack);
    settler.ended(tags[5], Settle::Ack);
    let (again, data) = next(&mut consumer, &settler).await;
    assert_eq!(data, "3", "the requeued delivery comes back at once");
    settler.ended(again, Settle::Ack);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Closing the channel hands back what it had not acked: 4 alone.
    channel.close(200, "test done".into()).await.expect("close");
    let left = setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("look at the queue");
    let returned = setup
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .map(|message| String::from_utf8(message.delivery.data.clone()).unwrap());
    assert_eq!(
        (left.message_count(), returned.as_deref()),
        (1, Some("4")),
        "only the unfinished delivery is left unacked"
    );
}
