//! Test harness: in-process and subprocess otpd instances, HTTP helpers and the sandbox outbox.

use otpd::sync::LockUnpoisoned;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use otpd::app::Application;
use otpd::config::Settings;
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long a delivery may take to reach the sandbox outbox.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a server may take to start.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

pub const DE_MOBILE: &str = "+4915112345678";
pub const DE_MOBILE_MASKED: &str = "+49151*****678";
pub const FR_MOBILE: &str = "+33612345678";
pub const FR_MOBILE_MASKED: &str = "+33612***678";
pub const US_NUMBER: &str = "+14155552671";
pub const US_NUMBER_MASKED: &str = "+14155***671";
pub const EMAIL: &str = "user@example.com";

/// A distinct valid German mobile number per `n` (0..=99).
pub fn de_mobile(n: u32) -> String {
    format!("+49151123456{n:02}")
}

// ---------------------------------------------------------------------------
// Responses

/// A response read to the end: status, headers and the body as JSON (Null if it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Asserts the status code; returns self for chaining.
    #[track_caller]
    pub fn expect_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// A string field of the JSON body; panics if it is missing.
    #[track_caller]
    pub fn str(&self, field: &str) -> &str {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("field {field:?} missing or not a string in {}", self.text))
    }

    /// An integer field of the JSON body; panics if it is missing.
    #[track_caller]
    pub fn u64(&self, field: &str) -> u64 {
        self.body[field]
            .as_u64()
            .unwrap_or_else(|| panic!("field {field:?} missing or not an integer in {}", self.text))
    }

    /// Asserts the error shape `{"error":{"code","message"}}` and returns the code.
    #[track_caller]
    pub fn error_code(&self) -> &str {
        let error = &self.body["error"];
        let code = error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code in body {:?}", self.text));
        let message = error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message in body {:?}", self.text));
        assert!(!code.is_empty(), "empty error code in {}", self.text);
        assert!(
            !message.trim().is_empty(),
            "empty error message in {}",
            self.text
        );
        code
    }

    /// Asserts status and error code, with the error shape.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect_status(status);
        assert_eq!(self.error_code(), code, "error code; body: {}", self.text);
        self
    }

    /// Asserts `retry_after_seconds` and a `Retry-After` header that agree; returns the seconds.
    #[track_caller]
    pub fn retry_after(&self) -> u64 {
        let seconds = self.body["error"]["retry_after_seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error.retry_after_seconds in {}", self.text));
        let header: u64 = self
            .headers
            .get(RETRY_AFTER)
            .unwrap_or_else(|| panic!("no Retry-After header with {}", self.text))
            .to_str()
            .expect("Retry-After is ASCII")
            .trim()
            .parse()
            .expect("Retry-After is a number of seconds");
        assert_eq!(header, seconds, "Retry-After header vs retry_after_seconds");
        assert!(seconds >= 1, "retry_after_seconds must be at least 1");
        seconds
    }

    /// Asserts the error shape has no `retry_after_seconds` and no `Retry-After` header.
    #[track_caller]
    pub fn expect_no_retry_after(&self) {
        assert!(
            self.body["error"].get("retry_after_seconds").is_none(),
            "unexpected retry_after_seconds in {}",
            self.text
        );
        assert!(
            self.headers.get(RETRY_AFTER).is_none(),
            "unexpected Retry-After header"
        );
    }
}

pub async fn send(request: RequestBuilder) -> Reply {
    Reply::read(request.send().await.expect("send the request")).await
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(otpd::api::server::CLIENT_POOL_IDLE)
        .build()
        .expect("build the HTTP client")
}

/// Parses an RFC 3339 UTC timestamp as the API writes it.
#[track_caller]
pub fn timestamp(value: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(value)
        .unwrap_or_else(|e| panic!("{value:?} is not an RFC 3339 UTC timestamp: {e}"))
}

/// Signed seconds from now to `value`.
pub fn seconds_from_now(value: &str) -> f64 {
    let at = timestamp(value);
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    }
}

/// Sleeps until the timestamp `value` has passed.
pub async fn sleep_until(value: &str) {
    let at = timestamp(value);
    if let Ok(ahead) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(ahead + Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// In-process application

/// One otpd instance running in this process on its own actix System thread.
pub struct TestApp {
    pub address: String,
    pub api_key: String,
    pub http: reqwest::Client,
    pub store: TempDir,
    /// Stops the app's server (and so its broker connection) when the TestApp is dropped.
    server: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for TestApp {
    /// Stops the app and waits for its thread, so nothing of it outlives the test.
    fn drop(&mut self) {
        let server = self.server.clone();
        let stopper = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(server.stop(false));
            }
        });
        let _ = stopper.join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn init_test_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app on port 0 with a fresh store; rate limits are lifted unless `configure` sets them.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let store = tempfile::tempdir().expect("create a temp store dir");
    spawn_app_in(store, configure).await
}

/// Starts an app on an existing store dir and waits for the dev tenant's key file.
pub async fn spawn_app_in(store: TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = start_app(store, configure);
    app.api_key = wait_for_dev_key(app.store_dir()).await;
    app
}

/// `spawn_app_with`, its tenant `dev` allowed every channel, the opt-in ones (calls) too:
/// a tenant with settings of its own, so its key is made before the start.
pub async fn spawn_app_for_every_channel(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let store = tempfile::tempdir().expect("a store dir");
    let key = add_tenant(store.path(), otpd::tenants::DEV_TENANT);
    let mut app = start_app(store, |settings| {
        configure(settings);
        settings.tenants.insert(
            otpd::tenants::DEV_TENANT.to_owned(),
            otpd::access::TenantSettings {
                channels: otpd::domain::Channel::all().collect(),
                ..Default::default()
            },
        );
    });
    app.api_key = key;
    app
}

/// Starts an app on `store` without waiting for a dev key (`api_key` is left empty).
pub fn start_app(store: TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
    init_test_tracing();
    let mut settings = Settings::load(None).expect("load the default settings");
    settings.http.listen = "127.0.0.1:0".to_string();
    settings.store.dir = store.path().to_path_buf();
    settings.http.workers = 2;
    settings.rate_limits.tenant_per_second = 100_000.0;
    settings.rate_limits.tenant_burst = 100_000;
    settings.rate_limits.client_ip_per_second = 100_000.0;
    settings.rate_limits.client_ip_burst = 100_000;
    configure(&mut settings);

    let (port_tx, port_rx) = mpsc::channel::<Result<(u16, actix_web::dev::ServerHandle), String>>();
    let thread = std::thread::Builder::new()
        .name("otpd-test-app".to_string())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                match Application::build(settings).await {
                    Ok(app) => {
                        let _ = port_tx.send(Ok((app.port(), app.handle())));
                        if let Err(error) = app.run().await {
                            eprintln!("test app stopped with an error: {error}");
                        }
                    }
                    Err(error) => {
                        let _ = port_tx.send(Err(error.to_string()));
                    }
                }
            })
        })
        .expect("spawn the app thread");
    let (port, server) = match port_rx.recv_timeout(START_DEADLINE) {
        Ok(Ok(started)) => started,
        Ok(Err(error)) => panic!("Application::build failed: {error}"),
        Err(error) => panic!("the app did not report its port: {error}"),
    };
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        api_key: String::new(),
        http: http_client(),
        store,
        server,
        thread: Some(thread),
    }
}

/// Waits for `<store>/dev-api-key` and returns the key in it.
pub async fn wait_for_dev_key(store: &Path) -> String {
    let path = store.join("dev-api-key");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let key = text.trim().to_string();
            if !key.is_empty() {
                return key;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with the dev tenant's key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.api_key, method, path)
    }

    /// A request with another key.
    pub fn request_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.anonymous(method, path)
            .header(AUTHORIZATION, format!("Bearer {key}"))
    }

    /// A request with no Authorization header.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn create(&self, body: &Value) -> Reply {
        send(self.request(Method::POST, "/v1/verifications").json(body)).await
    }

    pub async fn create_as(&self, key: &str, body: &Value) -> Reply {
        send(
            self.request_as(key, Method::POST, "/v1/verifications")
                .json(body),
        )
        .await
    }

    /// Creates an SMS verification for `to` and asserts 201; returns the body.
    pub async fn create_sms(&self, to: &str) -> Value {
        let reply = self.create(&json!({"to": to, "channel": "sms"})).await;
        reply.expect_status(201);
        reply.body
    }

    /// Creates an SMS verification for `to` (asserting 201); its id.
    pub async fn sms_id(&self, to: &str) -> String {
        self.create_sms(to).await["id"]
            .as_str()
            .expect("a created verification has an id")
            .to_owned()
    }

    /// Creates an SMS verification for `to` and approves it with its code (asserting 201
    /// and 200); returns its id and the code.
    pub async fn approved_sms(&self, to: &str) -> (String, String) {
        let id = self.sms_id(to).await;
        let code = self.code_for(&id).await;
        self.check_code(&id, &code).await.expect_status(200);
        (id, code)
    }

    pub async fn check(&self, id: &str, body: &Value) -> Reply {
        send(
            self.request(Method::POST, &format!("/v1/verifications/{id}/check"))
                .json(body),
        )
        .await
    }

    pub async fn check_code(&self, id: &str, code: &str) -> Reply {
        self.check(id, &json!({ "code": code })).await
    }

    pub async fn check_by_destination(&self, body: &Value) -> Reply {
        send(
            self.request(Method::POST, "/v1/verifications/check")
                .json(body),
        )
        .await
    }

    pub async fn get(&self, id: &str) -> Reply {
        send(self.request(Method::GET, &format!("/v1/verifications/{id}"))).await
    }

    pub async fn cancel(&self, id: &str) -> Reply {
        send(self.request(Method::POST, &format!("/v1/verifications/{id}/cancel"))).await
    }

    /// The latest code sent for `id`, of the default length 6.
    pub async fn code_for(&self, id: &str) -> String {
        self.code_for_len(id, 6).await
    }

    /// The latest code sent for `id`, of length `len`.
    pub async fn code_for_len(&self, id: &str, len: usize) -> String {
        let messages = wait_for_messages(self.store_dir(), id, 1).await;
        message_code(messages.last().expect("one message at least"), len)
    }

    /// Waits until `count` messages for `id` are in the outbox; returns them all.
    pub async fn messages_for(&self, id: &str, count: usize) -> Vec<Value> {
        wait_for_messages(self.store_dir(), id, count).await
    }

    /// True when the sandbox outbox holds no message at all.
    pub fn outbox_is_empty(&self) -> bool {
        read_outbox(self.store_dir()).is_empty()
    }

    /// Adds a tenant with the CLI on this app's store and returns its key.
    pub fn add_tenant(&self, name: &str) -> String {
        add_tenant(self.store_dir(), name)
    }
}

// ---------------------------------------------------------------------------
// Sandbox outbox

pub fn outbox_path(store: &Path) -> PathBuf {
    store.join("sandbox").join("outbox.jsonl")
}

/// Every complete JSON line in the outbox (a half-written last line is skipped).
pub fn read_outbox(store: &Path) -> Vec<Value> {
    match std::fs::read_to_string(outbox_path(store)) {
        Ok(text) => text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The outbox messages for one verification id, in order.
pub fn outbox_messages(store: &Path, id: &str) -> Vec<Value> {
    read_outbox(store)
        .into_iter()
        .filter(|message| message["verification_id"] == id)
        .collect()
}

/// Polls the outbox until `count` messages for `id` are there.
pub async fn wait_for_messages(store: &Path, id: &str, count: usize) -> Vec<Value> {
    wait_for_messages_within(store, id, count, DELIVERY_DEADLINE).await
}

/// `wait_for_messages`, waiting up to `within`.
pub async fn wait_for_messages_within(
    store: &Path,
    id: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let messages = outbox_messages(store, id);
        if messages.len() >= count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{count} message(s) for {id} did not reach the outbox within {within:?}; outbox: {:?}",
            read_outbox(store)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Maximal runs of ASCII digits in `text`.
pub fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .collect()
}

/// Whether `code` occurs in `text` as a whole run of digits.
pub fn contains_code(text: &str, code: &str) -> bool {
    digit_runs(text).contains(&code)
}

/// The code of length `len` in a message body: the one distinct digit run of that length.
#[track_caller]
pub fn extract_code(body: &str, len: usize) -> String {
    let mut runs: Vec<&str> = digit_runs(body)
        .into_iter()
        .filter(|run| run.len() == len)
        .collect();
    runs.dedup();
    assert_eq!(
        runs.len(),
        1,
        "expected exactly one {len}-digit code in the message body {body:?}"
    );
    runs[0].to_string()
}

/// The code of length `len` a call reads out, spelled digit by digit (`4, 9, 3, …`).
#[track_caller]
pub fn spoken_code(words: &str, len: usize) -> String {
    assert!(
        digit_runs(words).iter().all(|run| run.len() < len),
        "the code is spelled out, not written whole: {words:?}"
    );
    extract_code(&words.replace(", ", ""), len)
}

#[track_caller]
pub fn message_code(message: &Value, len: usize) -> String {
    let body = message["body"]
        .as_str()
        .unwrap_or_else(|| panic!("outbox line without a body: {message}"));
    extract_code(body, len)
}

// ---------------------------------------------------------------------------
// The otpd binary

pub fn otpd_binary() -> &'static str {
    env!("CARGO_BIN_EXE_otpd")
}

/// Runs `otpd tenant add NAME` on `store` and returns the printed key.
pub fn add_tenant(store: &Path, name: &str) -> String {
    let output: Output = Command::new(otpd_binary())
        .args(["tenant", "add", name])
        .env("OTPD__STORE__DIR", store)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run otpd tenant add");
    assert!(
        output.status.success(),
        "otpd tenant add {name} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("the key is UTF-8");
    let key = stdout.trim().to_string();
    assert!(!key.is_empty(), "otpd tenant add printed no key");
    assert!(
        !key.contains(char::is_whitespace),
        "otpd tenant add must print the key alone, got {stdout:?}"
    );
    key
}

/// A running `otpd serve` child process with its stdout and stderr captured.
pub struct OtpdProcess {
    child: Child,
    pub port: u16,
    pub address: String,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// The body of a create of an SMS verification to `to`, with nothing else asked.
#[allow(dead_code)] // used by the it binary, not by every binary that includes this file
pub fn sms(to: &str) -> Value {
    json!({"to": to, "channel": "sms"})
}

impl OtpdProcess {
    /// Starts `otpd serve` on `store` with port 0, `RUST_LOG=info` and the extra `env`.
    pub fn start(store: &Path, env: &[(&str, &str)]) -> OtpdProcess {
        Self::start_with_args(store, &[], env)
    }

    /// Like `start`, with extra arguments after `serve` (e.g. `--config FILE`).
    pub fn start_with_args(store: &Path, args: &[&str], env: &[(&str, &str)]) -> OtpdProcess {
        let mut command = Command::new(otpd_binary());
        command
            .arg("serve")
            .args(args)
            .env("OTPD__STORE__DIR", store)
            .env("OTPD__HTTP__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn otpd serve");
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            pump(stdout, Arc::clone(&output), port_tx.clone()),
            pump(stderr, Arc::clone(&output), port_tx),
        ];
        let mut process = OtpdProcess {
            child,
            port: 0,
            address: String::new(),
            output,
            readers,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let port = loop {
            match port_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => break port,
                Err(_) => {
                    if let Ok(Some(status)) = process.child.try_wait() {
                        let output = process.stop();
                        panic!("otpd serve exited with {status} before listening:\n{output}");
                    }
                    if Instant::now() > deadline {
                        let output = process.stop();
                        panic!(
                            "otpd serve never announced address=http://127.0.0.1:PORT:\n{output}"
                        );
                    }
                }
            }
        };
        process.port = port;
        process.address = format!("http://127.0.0.1:{port}");
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `POST /v1/verifications` of an SMS verification to `to` with `key`.
    #[allow(dead_code)] // used by the it binary, not by every binary that includes this file
    pub async fn create_sms(&self, client: &reqwest::Client, key: &str, to: &str) -> Reply {
        send(authed(client, Method::POST, self.url("/v1/verifications"), key).json(&sms(to))).await
    }

    /// `GET /v1/verifications/{id}` with `key`.
    #[allow(dead_code)] // used by the it binary, not by every binary that includes this file
    pub async fn get_verification(&self, client: &reqwest::Client, key: &str, id: &str) -> Reply {
        send(authed(
            client,
            Method::GET,
            self.url(&format!("/v1/verifications/{id}")),
            key,
        ))
        .await
    }

    /// `POST /v1/verifications/{id}/check` of `code` with `key`.
    #[allow(dead_code)] // used by the it binary, not by every binary that includes this file
    pub async fn check_code(
        &self,
        client: &reqwest::Client,
        key: &str,
        id: &str,
        code: &str,
    ) -> Reply {
        send(
            authed(
                client,
                Method::POST,
                self.url(&format!("/v1/verifications/{id}/check")),
                key,
            )
            .json(&serde_json::json!({ "code": code })),
        )
        .await
    }

    /// Runs `otpd serve` on `store` with the extra `env` until it exits, for at most
    /// `within` (then kills it); returns its exit status (`None`: killed) and its output.
    #[allow(dead_code)] // used by tests/cluster.rs, not by every binary that includes this file
    pub fn run_to_exit(
        store: &Path,
        env: &[(&str, &str)],
        within: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let mut command = Command::new(otpd_binary());
        command
            .arg("serve")
            .env("OTPD__STORE__DIR", store)
            .env("OTPD__HTTP__LISTEN", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn otpd serve");
        let deadline = Instant::now() + within;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if Instant::now() > deadline => break None,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let _ = child.kill();
        let output = child.wait_with_output().expect("otpd output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (status, strip_ansi(&text))
    }

    /// Everything printed so far on stdout and stderr (ANSI colours removed).
    pub fn output(&self) -> String {
        self.output.lock_unpoisoned().clone()
    }

    /// Sends SIGTERM and waits up to `grace` for a clean exit (then SIGKILL); returns
    /// whether it exited by itself, and everything it printed.
    pub fn terminate(&mut self, grace: Duration) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                clean = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (clean, self.stop())
    }

    /// Sends SIGKILL, reaps the process and returns everything it printed.
    pub fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output()
    }
}

impl Drop for OtpdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pump(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    port_tx: mpsc::Sender<u16>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = strip_ansi(&String::from_utf8_lossy(&buffer));
            if let Some(port) = announced_port(&line) {
                let _ = port_tx.send(port);
            }
            output.lock_unpoisoned().push_str(&line);
        }
    })
}

/// The port in a log line containing `address=http://127.0.0.1:PORT` or `https://…` (quoted
/// or not), or its JSON form `"address":"http://127.0.0.1:PORT"`.
fn announced_port(line: &str) -> Option<u16> {
    let start = line
        .find("address=")
        .or_else(|| line.find("\"address\":"))?;
    let rest = &line[start..];
    let host = "://127.0.0.1:";
    let at = rest.find(host)?;
    let digits: String = rest[at + host.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// Removes ANSI escape sequences (`ESC [ … final`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for next in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&next) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A reqwest call against a subprocess, authorised with `key`.
pub fn authed(client: &reqwest::Client, method: Method, url: String, key: &str) -> RequestBuilder {
    client
        .request(method, url)
        .header(AUTHORIZATION, format!("Bearer {key}"))
}

/// Deletes every queue, stream and exchange otpd declares under `namespace` for a cluster of
/// `partitions` partitions (and as many changelog streams as any such cluster has); what is
/// not there is no error.
pub async fn delete_topology(channel: &lapin::Channel, namespace: &str, partitions: u16) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    // The default settings name the region queues (config/default.toml).
    let mut settings = otpd::config::Settings::load(None).expect("default settings");
    settings.amqp.namespace = namespace.to_owned();
    let cluster = otpd::cluster::ClusterSettings {
        partitions,
        ..settings.cluster
    };
    let topology = otpd::bus::amqp::topology::Topology::from_settings(
        &settings.amqp,
        &cluster.with_every_stream(),
    );
    for queue in topology.all_queue_names() {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in topology.exchange_names() {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
}

/// A namespace on the machine's broker (127.0.0.1:5672), deleted with every queue, stream
/// and exchange of its topology when dropped, so a test that fails midway leaves nothing
/// behind either. Made before a test's otpd processes, it drops after them. (Used by the
/// cluster and fault tests, which include this file.)
#[allow(dead_code)]
pub struct NamespaceGuard {
    pub name: String,
    pub partitions: u16,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let (namespace, partitions) = (self.name.clone(), self.partitions);
        // On a thread and runtime of its own: the test that owns it may be unwinding.
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(delete_namespace(&namespace, partitions));
            }
        });
        let _ = cleaner.join();
    }
}

#[allow(dead_code)]
async fn delete_namespace(namespace: &str, partitions: u16) {
    use lapin::{Connection, ConnectionProperties};
    let Ok(Ok(connection)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            ConnectionProperties::default(),
        ),
    )
    .await
    else {
        eprintln!("could not connect to delete namespace {namespace}");
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    delete_topology(&channel, namespace, partitions).await;
    let _ = connection.close(200, "test done".into()).await;
}

// ---------------------------------------------------------------------------
// Python tools

/// The bin directory of the virtualenv with the Python tools the tests run (schemathesis,
/// pika, twilio), installed from PyPI into target/tools on first use.
pub fn python_tools() -> PathBuf {
    installed_tools("python", "python3 with venv, and access to PyPI")
}

/// The node_modules directory with the Node tools the tests run (twilio), installed from npm
/// into target/tools on first use.
pub fn node_tools() -> PathBuf {
    installed_tools("node", "node and npm, and access to npm")
}

/// Where tests/tools/install.sh put the tools of `kind`, installing them first if needed.
fn installed_tools(kind: &str, needs: &str) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/install.sh");
    let output = Command::new(script)
        .arg(kind)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/tools/install.sh");
    assert!(
        output.status.success(),
        "the tests' {kind} tools could not be installed ({needs} are needed)"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}
