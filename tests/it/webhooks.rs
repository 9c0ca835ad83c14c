//! Signed webhooks: every event once after dedup by id, in order per verification, through
//! a receiver that fails at first and one that is down across a kill -9 of otpd; the
//! signature; the expiry event; and examples/webhook_receiver.py checking signatures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::access::app_with_acme;
use crate::helpers::*;
use otpd::access::TenantSettings;
use otpd::webhooks::signature;

const SECRET: &str = "whsec-test-0123456789abcdef";

/// One webhook as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    signature: String,
    body: String,
    json: serde_json::Value,
}

/// A webhook receiver on loopback that answers 500 to its first `failures` requests, then
/// 204, and keeps every request it answered.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, failures)
    }

    fn serve(listener: TcpListener, failures: usize) -> Self {
        let url = format!("http://{}/hooks/otpd", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&got);
        tokio::spawn(async move {
            let mut answered = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                answered += 1;
                let status = if answered <= failures {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                if answered > failures {
                    kept.lock().unwrap().push(request);
                }
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Receiver { url, got }
    }

    /// Waits until the events of `verification` include every one of `kinds`; returns the
    /// events got so far, in the order they arrived.
    async fn wait_for(
        &self,
        verification: &str,
        kinds: &[&str],
        within: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got.lock().unwrap().clone();
            let seen: Vec<&str> = got
                .iter()
                .filter(|r| r.json["data"]["id"] == verification)
                .filter_map(|r| r.json["type"].as_str())
                .collect();
            if kinds.iter().all(|kind| seen.contains(kind)) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "not all of {kinds:?} for {verification}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one HTTP request: the signature header and the body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8(buffer[head_end..head_end + length].to_vec()).ok()?;
    Some(Received {
        signature: header("otpd-signature").unwrap_or_default(),
        json: serde_json::from_str(&body).unwrap_or_default(),
        body,
    })
}

/// otpd with tenant `acme` (its key as `api_key`) sending webhooks to `url`, retrying after
/// `first_retry_ms`, at most `max_retry_ms` apart.
fn app_with_webhook(url: &str, first_retry_ms: u64, max_retry_ms: u64) -> TestApp {
    let (mut app, acme, _) = app_with_acme(with_webhook(url), |s| {
        s.webhooks.first_retry_ms = first_retry_ms;
        s.webhooks.max_retry_ms = max_retry_ms;
    });
    app.api_key = acme;
    app
}

fn with_webhook(url: &str) -> TenantSettings {
    TenantSettings {
        webhook_url: Some(url.to_owned()),
        webhook_secret: Some(SECRET.to_owned().into()),
        ..TenantSettings::default()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signed_by_secret(received: &Received) -> bool {
    let now = unix_now();
    signature::verify(
        SECRET.as_bytes(),
        &received.signature,
        received.body.as_bytes(),
        now,
        300,
    )
}

/// The distinct events of `verification` in the order they first arrived, by type.
fn distinct_in_order(got: &[Received], verification: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    for received in got.iter().filter(|r| r.json["data"]["id"] == verification) {
        let id = received.json["id"].as_str().unwrap().to_owned();
        if !ids.contains(&id) {
            ids.push(id);
            kinds.push(received.json["type"].as_str().unwrap().to_owned());
        }
    }
    kinds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_five_times_gets_every_event_once_in_order_and_signed() {
    let receiver = Receiver::start(5).await;
    let app = app_with_webhook(&receiver.url, 20, 100);
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;
    receiver
        .wait_for(
            &id,
            &["verification.created", "verification.sent"],
            Duration::from_secs(10),
        )
        .await;
    app.check_code(&id, &code).await.expect_status(200);
    let other = app.sms_id(&de_mobile(7)).await;
    app.cancel(&other).await.expect_status(200);

    let got = receiver
        .wait_for(&id, &["verification.approved"], Duration::from_secs(10))
        .await;
    receiver
        .wait_for(&other, &["verification.canceled"], Duration::from_secs(10))
        .await;
    let got_all = receiver.got.lock().unwrap().clone();
    assert_eq!(
        distinct_in_order(&got, &id),
        [
            "verification.created",
            "verification.sent",
            "verification.approved"
        ]
    );
    assert_eq!(
        distinct_in_order(&got_all, &other)[0],
        "verification.created"
    );
    for received in &got_all {
        assert!(signed_by_secret(received), "{received:?}");
        assert!(!contains_code(&received.body, &code), "{}", received.body);
        assert_eq!(received.json["data"]["tenant"], "acme");
        assert!(received.json["created_at"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_that_expires_unused_is_an_event() {
    let receiver = Receiver::start(0).await;
    let app = app_with_webhook(&receiver.url, 1000, 600_000);
    let created = app
        .create(&serde_json::json!({"to": DE_MOBILE, "channel": "sms", "ttl_seconds": 30}))
        .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    let got = receiver
        .wait_for(&id, &["verification.expired"], Duration::from_secs(45))
        .await;
    let kinds = distinct_in_order(&got, &id);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("verification.created")
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("verification.expired")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_kill_of_otpd_still_gets_the_events() {
    // A port with nobody on it yet.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hooks/otpd");
    let store = tempfile::tempdir().unwrap();
    let key = add_tenant(store.path(), "dev");
    let env = [
        ("OTPD__TENANTS__DEV__WEBHOOK_URL", url.as_str()),
        ("OTPD__TENANTS__DEV__WEBHOOK_SECRET", SECRET),
        ("OTPD__WEBHOOKS__FIRST_RETRY_MS", "50"),
        ("OTPD__WEBHOOKS__MAX_RETRY_MS", "200"),
    ];
    let mut server = OtpdProcess::start(store.path(), &env);
    let client = http_client();
    let created = send(
        authed(
            &client,
            reqwest::Method::POST,
            server.url("/v1/verifications"),
            &key,
        )
        .json(&serde_json::json!({"to": DE_MOBILE, "channel": "sms"})),
    )
    .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    wait_for_messages(store.path(), &id, 1).await;
    // The send is recorded, and its event kept, moments after the message left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .get_verification(&client, &key, &id)
        .await
        .str("delivery")
        != "sent"
    {
        assert!(Instant::now() < deadline, "the send was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();

    let receiver = Receiver::serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), 0);
    let mut server = OtpdProcess::start(store.path(), &env);
    let got = receiver
        .wait_for(
            &id,
            &["verification.created", "verification.sent"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(
        distinct_in_order(&got, &id)[..2],
        ["verification.created", "verification.sent"]
    );
    server.stop();
}

/// examples/webhook_receiver.py on `port`, its printed lines gathered as they come.
struct ExampleReceiver {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for ExampleReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ExampleReceiver {
    fn start(port: u16) -> Self {
        use std::io::BufRead;
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhook_receiver.py");
        let mut child = std::process::Command::new("python3")
            .args([example, "--port", &port.to_string()])
            .env("OTPD_WEBHOOK_SECRET", SECRET)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run examples/webhook_receiver.py");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap_or_default());
            }
        });
        ExampleReceiver { child, lines }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_receiver_checks_signatures_and_prints_each_event_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let receiver = ExampleReceiver::start(port);
    let url = format!("http://127.0.0.1:{port}/");
    // Until the receiver listens, otpd's sends fail and are retried.
    let app = app_with_webhook(&url, 50, 200);
    let id = app.sms_id(DE_MOBILE).await;
    let code = app.code_for(&id).await;
    app.check_code(&id, &code).await.expect_status(200);

    let deadline = Instant::now() + Duration::from_secs(20);
    let printed = loop {
        let lines = receiver.lines.lock().unwrap().clone();
        let kinds: Vec<String> = lines
            .iter()
            .filter(|event| event["data"]["id"] == id.as_str())
            .map(|event| event["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        if kinds.contains(&"verification.approved".to_owned()) {
            break kinds;
        }
        assert!(
            Instant::now() < deadline,
            "the example printed only {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(printed[0], "verification.created");
    assert_eq!(
        printed
            .iter()
            .filter(|kind| *kind == "verification.approved")
            .count(),
        1
    );

    // A forged webhook is refused, and not printed.
    let body = r#"{"id":"evt_forged","type":"verification.approved","data":{"id":"ver_x"}}"#;
    let forged = http_client()
        .post(&url)
        .header("Otpd-Signature", "t=1,v1=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400);
    let now = unix_now();
    let good = http_client()
        .post(&url)
        .header(
            "Otpd-Signature",
            signature::sign(SECRET.as_bytes(), now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        good.status().as_u16(),
        204,
        "the example accepts what otpd's signer signs"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = receiver.lines.lock().unwrap().clone();
    assert_eq!(
        lines
            .iter()
            .filter(|event| event["id"] == "evt_forged")
            .count(),
        1
    );
}
