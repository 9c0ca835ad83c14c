//! No code anywhere but at the provider: thousands of codes issued in broker mode at trace
//! log level, through forced errors (a hanging provider, a killed process, failing sends,
//! malformed messages, wrong guesses), then every code is looked for in the logs, the store's
//! files, the broker's queues and dead letters, the events, `/metrics` and every HTTP response.

use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::amqp::Broker;
use crate::helpers::*;
use otpd::bus::amqp::topology::Topology;
use otpd::config::Settings;
use otpd::testing::fakes::FakeProviderServer;

const CODE_LENGTH: usize = 10;
const BROKER_REQUESTS: u32 = 1_200;
const HTTP_REQUESTS: u32 = 300;
const DEADLINE: Duration = Duration::from_secs(120);
const BODY_TEMPLATE: &str = r#"{"to": "{to}", "text": "{body}", "ref": "{verification_id}"}"#;

/// A distinct valid German mobile number per `n`.
fn number(n: u32) -> String {
    format!("+4915{:09}", 100_000_000 + n)
}

/// Every run of exactly `CODE_LENGTH` ASCII digits in `bytes` (digits on both sides end a
/// run, so a code is only found where it stands on its own, as a code is written).
fn code_sized_runs(bytes: &[u8], into: &mut HashSet<Vec<u8>>) {
    for run in bytes.split(|byte| !byte.is_ascii_digit()) {
        if run.len() == CODE_LENGTH {
            into.insert(run.to_vec());
        }
    }
}

/// Where the codes were looked for, by place.
#[derive(Default)]
struct Places {
    runs: HashMap<&'static str, HashSet<Vec<u8>>>,
    bytes: HashMap<&'static str, usize>,
}

impl Places {
    fn add(&mut self, place: &'static str, bytes: &[u8]) {
        code_sized_runs(bytes, self.runs.entry(place).or_default());
        *self.bytes.entry(place).or_default() += bytes.len();
    }

    /// The places where one of `codes` occurs, with how many.
    fn leaks(&self, codes: &HashSet<Vec<u8>>) -> Vec<(&'static str, usize)> {
        let mut leaks: Vec<_> = self
            .runs
            .iter()
            .map(|(place, runs)| (*place, runs.intersection(codes).count()))
            .filter(|(_, count)| *count > 0)
            .collect();
        leaks.sort_unstable();
        leaks
    }
}

fn add_files(places: &mut Places, dir: &Path) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("read the store directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files += add_files(places, &path);
        } else {
            places.add(
                "store files",
                &std::fs::read(&path).expect("read a store file"),
            );
            files += 1;
        }
    }
    files
}

/// Adds every message waiting in the namespace's queues (left in place), body and properties;
/// returns how many were jobs or requests and how many dead letters.
async fn add_queues(places: &mut Places, broker: &Broker, topology: &Topology) -> (usize, usize) {
    let (mut queued, mut dead) = (0, 0);
    for queue in topology.queue_names() {
        for message in broker.peek(queue).await {
            places.add("queues", &message.delivery.data);
            places.add(
                "queues",
                format!("{:?}", message.delivery.properties).as_bytes(),
            );
            if queue == topology.dead_queue {
                dead += 1;
            } else {
                queued += 1;
            }
        }
    }
    (queued, dead)
}

/// How many of the events are `verification.created`.
fn count_created(events: &[Vec<u8>]) -> usize {
    events
        .iter()
        .filter_map(|body| serde_json::from_slice::<Value>(body).ok())
        .filter(|event| event["type"] == "verification.created")
        .count()
}

fn write_config(dir: &Path, fake: &FakeProviderServer) -> String {
    let path = dir.join("hygiene.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[sandbox]
enabled = false
delay_ms = 0

[providers.fake]
kind = "http"
url = "{}"
body_template = '{BODY_TEMPLATE}'
timeout_ms = 500

[routing.default]
sms = ["fake"]
email = ["fake"]
"#,
            fake.generic_url()
        ),
    )
    .expect("write the settings file");
    path.to_str().expect("utf-8 path").to_owned()
}

struct Client {
    http: reqwest::Client,
    key: String,
    responses: Vec<u8>,
}

impl Client {
    async fn call(
        &mut self,
        server: &OtpdProcess,
        method: Method,
        path: &str,
        body: Value,
    ) -> Reply {
        let reply = send(authed(&self.http, method, server.url(path), &self.key).json(&body)).await;
        self.keep(&reply);
        reply
    }

    fn keep(&mut self, reply: &Reply) {
        self.responses.extend_from_slice(reply.text.as_bytes());
        for (name, value) in &reply.headers {
            self.responses.extend_from_slice(name.as_str().as_bytes());
            self.responses.extend_from_slice(value.as_bytes());
        }
    }

    async fn get_text(&mut self, server: &OtpdProcess, path: &str) -> String {
        let reply = send(authed(&self.http, Method::GET, server.url(path), &self.key)).await;
        reply.expect_status(200);
        self.keep(&reply);
        reply.text.clone()
    }
}

async fn wait_ready(client: &mut Client, server: &OtpdProcess) {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let reply = send(client.http.get(server.url("/readyz"))).await;
        if reply.status.as_u16() == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_code_reaches_logs_store_queues_events_metrics_or_responses() {
    let broker = Broker::connect().await;
    let fake = FakeProviderServer::start().await.expect("fake provider");
    let store = tempfile::tempdir().expect("temp dir");
    let config = write_config(store.path(), &fake);
    let args = ["--config", config.as_str()];
    let env = [
        ("RUST_LOG", "trace"),
        ("OTPD__AMQP__URL", crate::amqp::BROKER_URL),
        ("OTPD__AMQP__NAMESPACE", broker.namespace.as_str()),
        ("OTPD__AMQP__REQUESTS_QUEUE_TYPE", "classic"),
        ("OTPD__AMQP__TIMEOUT_MS", "3000"),
        ("OTPD__SECRETS__PEPPER", broker.pepper.as_str()),
        ("OTPD__SECRETS__SEALING_KEY", broker.sealing_key.as_str()),
        ("OTPD__VERIFICATION__CODE_LENGTH", "10"),
        // Resends keep the code, sealed in the store: it must not be there in clear either.
        // (A tenant with settings gets no key at first start: the test adds its key.)
        ("OTPD__TENANTS__DEV__RESEND_KEEPS_CODE", "true"),
        // The guard sees a pump here (sequential numbers, few verified): it records, and
        // its block and event are searched like everything else.
        ("OTPD__FRAUD__MODE", "monitor"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__CLIENT_IP_BURST", "100000"),
        ("OTPD__RATE_LIMITS__TENANT_PER_SECOND", "100000"),
        ("OTPD__RATE_LIMITS__TENANT_BURST", "100000"),
    ];
    let mut places = Places::default();
    let mut topology_settings = Settings::load(None).expect("default settings");
    topology_settings.amqp.namespace = broker.namespace.clone();
    let topology = Topology::from_settings(&topology_settings.amqp, &topology_settings.cluster);

    // Run 1: the provider hangs, so codes pile up in the queues; then the process is killed.
    fake.control().hang(true);
    let key = add_tenant(store.path(), "dev");
    let mut server = OtpdProcess::start_with_args(store.path(), &args, &env);
    let mut client = Client {
        http: http_client(),
        key,
        responses: Vec::new(),
    };
    wait_ready(&mut client, &server).await;
    let events = broker.listen("events", "#").await;
    for malformed in [
        b"{not json".to_vec(),
        br#"{"tenant": "dev", "to": "+4915112345678", "channel": "sms"}"#.to_vec(),
        vec![b' '; 17 * 1024],
    ] {
        broker
            .publish_raw(&malformed, lapin::BasicProperties::default())
            .await;
    }
    for n in 0..BROKER_REQUESTS {
        broker
            .publish(&json!({"request_id": format!("r-{n}"), "tenant": "dev",
                              "to": number(n), "channel": "sms"}))
            .await;
    }
    let mut http_ids = Vec::new();
    for n in 0..HTTP_REQUESTS {
        let (to, channel) = match n % 3 {
            0 => (format!("user{n}@example.com"), "email"),
            _ => (number(BROKER_REQUESTS + n), "sms"),
        };
        let body = json!({"to": to, "channel": channel, "session_id": format!("s-{n}")});
        let reply = client
            .call(&server, Method::POST, "/v1/verifications", body.clone())
            .await;
        reply.expect_status(201);
        http_ids.push(reply.str("id").to_owned());
        // Forced errors: an immediate resend, a bad destination, a bad body, an unknown id.
        client
            .call(&server, Method::POST, "/v1/verifications", body)
            .await
            .expect_error(429, "resend_cooldown");
        client
            .call(
                &server,
                Method::POST,
                "/v1/verifications",
                json!({"to": "+49", "channel": "sms"}),
            )
            .await
            .expect_error(422, "invalid_destination");
        client
            .call(&server, Method::POST, "/v1/verifications", json!({"to": 5}))
            .await
            .expect_error(400, "invalid_request");
        client
            .call(
                &server,
                Method::POST,
                "/v1/verifications/ver_unknown/check",
                json!({"code": "0000000000"}),
            )
            .await
            .expect_error(404, "not_found");
    }
    let mut event_bodies = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while count_created(&event_bodies) < BROKER_REQUESTS as usize {
        assert!(
            Instant::now() < deadline,
            "only {} of the broker requests were issued",
            count_created(&event_bodies)
        );
        event_bodies.extend(events.drain_raw().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    places.add(
        "metrics",
        client.get_text(&server, "/metrics").await.as_bytes(),
    );
    places.add("logs", server.stop().as_bytes());

    let (queued_jobs, _) = add_queues(&mut places, &broker, &topology).await;
    assert!(
        queued_jobs >= 500,
        "only {queued_jobs} jobs were waiting in the queues when the process was killed"
    );

    // Run 2: the provider answers again, failing a quarter of the sends; everything goes out.
    fake.control().hang(false);
    fake.control().fail_share(0.25);
    let mut server = OtpdProcess::start_with_args(store.path(), &args, &env);
    wait_ready(&mut client, &server).await;
    let expected = (BROKER_REQUESTS + HTTP_REQUESTS) as usize;
    let deadline = Instant::now() + DEADLINE;
    let (codes_by_id, codes_by_to) = loop {
        let mut codes_by_id: HashMap<String, String> = HashMap::new();
        let mut codes_by_to: HashMap<String, String> = HashMap::new();
        for message in fake.control().messages() {
            let body: Value = serde_json::from_str(&message.raw_body).expect("JSON body");
            let code = extract_code(body["text"].as_str().expect("text"), CODE_LENGTH);
            codes_by_id.insert(body["ref"].as_str().expect("ref").to_owned(), code.clone());
            codes_by_to.insert(message.to.clone(), code);
        }
        if codes_by_id.len() >= expected {
            break (codes_by_id, codes_by_to);
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} verifications reached the provider",
            codes_by_id.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (n, id) in http_ids.iter().enumerate() {
        let code = &codes_by_id[id];
        let wrong = format!(
            "{:010}",
            (code.parse::<u64>().unwrap() + 1) % 10_000_000_000
        );
        let check = format!("/v1/verifications/{id}/check");
        let session = format!("s-{n}");
        for (guess, session, valid) in [
            (&wrong, session.as_str(), false),
            (code, "s-other", false),
            (code, session.as_str(), true),
        ] {
            let body = json!({"code": guess, "session_id": session});
            let reply = client.call(&server, Method::POST, &check, body).await;
            assert_eq!(reply.body["valid"], valid, "{}", reply.text);
        }
        client
            .call(
                &server,
                Method::POST,
                &check,
                json!({"code": code, "session_id": session}),
            )
            .await
            .expect_error(409, "already_approved");
        client
            .call(
                &server,
                Method::GET,
                &format!("/v1/verifications/{id}"),
                Value::Null,
            )
            .await
            .expect_status(200);
    }
    for n in 0..50 {
        let to = number(n);
        let code = &codes_by_to[&to];
        client
            .call(
                &server,
                Method::POST,
                "/v1/verifications/check",
                json!({"to": to, "channel": "sms", "code": code}),
            )
            .await
            .expect_status(200);
    }
    places.add(
        "metrics",
        client.get_text(&server, "/metrics").await.as_bytes(),
    );
    places.add(
        "metrics",
        client.get_text(&server, "/v1/providers").await.as_bytes(),
    );
    places.add("logs", server.stop().as_bytes());

    event_bodies.extend(events.drain_raw().await);
    for body in &event_bodies {
        places.add("events", body);
    }
    let (_, dead_letters) = add_queues(&mut places, &broker, &topology).await;
    assert_eq!(
        dead_letters, 3,
        "the three malformed messages are dead letters"
    );
    let store_files = add_files(&mut places, store.path());
    let responses = std::mem::take(&mut client.responses);
    places.add("responses", &responses);

    let codes: HashSet<Vec<u8>> = codes_by_id
        .values()
        .map(|code| code.as_bytes().to_vec())
        .collect();
    assert!(codes.len() >= expected, "{} distinct codes", codes.len());
    // The search itself works: it finds every code where codes belong, at the provider.
    let mut at_provider = Places::default();
    for message in fake.control().messages() {
        at_provider.add("provider", message.raw_body.as_bytes());
    }
    assert_eq!(at_provider.leaks(&codes), vec![("provider", codes.len())]);
    for (place, least) in [
        ("logs", 1_000_000),
        ("store files", 1_000),
        ("queues", 10_000),
        ("events", 10_000),
        ("metrics", 1_000),
        ("responses", 100_000),
    ] {
        let searched = places.bytes.get(place).copied().unwrap_or(0);
        assert!(
            searched >= least,
            "only {searched} bytes of {place} searched"
        );
    }
    assert!(store_files >= 3, "only {store_files} store files searched");
    assert_eq!(
        places.leaks(&codes),
        vec![],
        "codes found outside the provider"
    );
    events.delete().await;
    broker.clean_up().await;
}
