//! Fake providers on loopback: one HTTP server speaking Twilio's (messages and calls),
//! Vonage's (SMS and voice), WhatsApp's Cloud API and the generic format, and a minimal SMTP
//! sink. Each is steered at run time through a `FakeControl`
//! (latency, failure share, rate limiting, hanging, rejected destinations), records what it
//! accepted (bounded), can stream each accepted message to a subscriber (the load harness)
//! with the instant it arrived, and can post delivery receipts back.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::providers::twilio::{twilio_signature, TWILIO_SIGNATURE_HEADER};
use crate::sync::LockUnpoisoned;

/// Messages kept by default before the oldest are dropped.
pub const DEFAULT_RECORD_CAP: usize = 10_000;
/// Largest request body or SMTP DATA a fake reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a hanging fake holds a connection without answering.
const HANG: Duration = Duration::from_secs(3600);

/// Which wire format a message came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    Twilio,
    /// Twilio's Calls resource (`/Calls.json`, TwiML inline).
    TwilioCall,
    Vonage,
    /// Vonage's Voice API (`/v1/calls`).
    VonageCall,
    /// WhatsApp's Cloud API (`/<version>/<phone number id>/messages`).
    Whatsapp,
    Generic,
    Smtp,
}

/// One accepted message, as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedMessage {
    pub format: WireFormat,
    /// HTTP method, or `SMTP`.
    pub method: String,
    /// Request path (with query), or the SMTP envelope sender.
    pub path: String,
    /// Request headers (names in lower case), or the email's headers.
    pub headers: Vec<(String, String)>,
    /// Form fields (Twilio, Vonage); empty for JSON and email.
    pub form: Vec<(String, String)>,
    /// The request body or the email's DATA, as received.
    pub raw_body: String,
    /// The destination: `To`, `to`, the JSON `to`, or the RCPT address.
    pub to: String,
    /// The message text: `Body`, `text`, the words a call reads, the code a WhatsApp
    /// template carries, or the email body; the raw body for generic JSON.
    pub body: String,
    /// The id the fake answered with.
    pub provider_message_id: String,
    /// When the fake had read the whole message, before any configured latency.
    pub received_at: Instant,
}

impl RecordedMessage {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug)]
struct ControlState {
    latency: Duration,
    fail_share: f64,
    rate_limit: Option<Duration>,
    hang: bool,
    accept_then_hang: bool,
    refuses_credentials: bool,
    rejected: HashSet<String>,
    quotes_requests: bool,
    recorded: VecDeque<RecordedMessage>,
    cap: usize,
    requests: u64,
    next_id: u64,
    /// Where every accepted message is also sent, uncapped, while someone subscribes.
    subscriber: Option<mpsc::Sender<RecordedMessage>>,
}

/// How a fake answers, changeable while it runs. Clones steer the same fake.
#[derive(Debug, Clone)]
pub struct FakeControl {
    state: Arc<Mutex<ControlState>>,
}

enum Decision {
    Hang,
    RateLimited(Duration),
    Fail,
    Reject,
    Unauthorized,
    /// Take the message (record it as sent) under `id`; then answer, or never (`hang`).
    Accept {
        id: String,
        hang: bool,
    },
}

fn normalise(destination: &str) -> String {
    destination
        .trim()
        .trim_start_matches('+')
        .to_ascii_lowercase()
}

impl Default for FakeControl {
    fn default() -> Self {
        FakeControl {
            state: Arc::new(Mutex::new(ControlState {
                latency: Duration::ZERO,
                fail_share: 0.0,
                rate_limit: None,
                hang: false,
                accept_then_hang: false,
                refuses_credentials: false,
                rejected: HashSet::new(),
                quotes_requests: false,
                recorded: VecDeque::new(),
                cap: DEFAULT_RECORD_CAP,
                requests: 0,
                next_id: 0,
                subscriber: None,
            })),
        }
    }
}

impl FakeControl {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.state.lock_unpoisoned()
    }

    /// Waits `latency` before answering each accepted message. Default zero.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Answers this share (0.0–1.0) of requests with a server error (HTTP 500, SMTP 451).
    pub fn fail_share(&self, share: f64) {
        self.lock().fail_share = share.clamp(0.0, 1.0);
    }

    /// Answers every request with 429 and `Retry-After` (SMTP: 451) while set.
    pub fn rate_limit(&self, retry_after: Option<Duration>) {
        self.lock().rate_limit = retry_after;
    }

    /// Accepts connections and requests but never answers, while set.
    pub fn hang(&self, hang: bool) {
        self.lock().hang = hang;
    }

    /// Takes every HTTP message (records it, as a provider that sends it) but never answers,
    /// while set: a provider that stalls after accepting.
    pub fn accept_then_hang(&self, stall: bool) {
        self.lock().accept_then_hang = stall;
    }

    /// Answers every HTTP request 401 in the vendor's shape, while set: credentials revoked
    /// or a token refused.
    pub fn refuse_credentials(&self, refuse: bool) {
        self.lock().refuses_credentials = refuse;
    }

    /// Quotes the message's text in the rejections it answers, while set, as some vendors'
    /// error messages quote the request: what otpd keeps of them must not hold the code.
    pub fn quote_requests(&self, quote: bool) {
        self.lock().quotes_requests = quote;
    }

    /// Permanently rejects these destinations (numbers with or without '+', or addresses).
    pub fn reject_numbers<I, S>(&self, destinations: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut state = self.lock();
        state
            .rejected
            .extend(destinations.into_iter().map(|d| normalise(d.as_ref())));
    }

    /// Keeps at most `cap` recorded messages, dropping the oldest. Default 10 000.
    pub fn set_record_cap(&self, cap: usize) {
        let mut state = self.lock();
        state.cap = cap;
        while state.recorded.len() > cap {
            state.recorded.pop_front();
        }
    }

    /// Back to defaults: no latency, failures, rate limit, hang or rejections.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.latency = Duration::ZERO;
        state.fail_share = 0.0;
        state.rate_limit = None;
        state.hang = false;
        state.accept_then_hang = false;
        state.refuses_credentials = false;
        state.rejected.clear();
        state.quotes_requests = false;
    }

    /// The accepted messages still recorded, oldest first.
    pub fn messages(&self) -> Vec<RecordedMessage> {
        self.lock().recorded.iter().cloned().collect()
    }

    /// Takes the recorded messages out.
    pub fn drain(&self) -> Vec<RecordedMessage> {
        self.lock().recorded.drain(..).collect()
    }

    /// Streams every message accepted from now on, in arrival order, through a channel of
    /// `capacity`; not subject to the record cap. A full channel holds the fake's answer back
    /// until the subscriber reads (back-pressure, never a dropped message). One subscriber at
    /// a time: a new call replaces the previous one.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<RecordedMessage> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        self.lock().subscriber = Some(sender);
        receiver
    }

    /// Requests (SMTP: transactions) seen, answered or not.
    pub fn request_count(&self) -> u64 {
        self.lock().requests
    }

    fn decide(&self, to: &str, prefix: &str) -> (Decision, Duration) {
        let mut state = self.lock();
        state.requests += 1;
        let decision = if state.hang {
            Decision::Hang
        } else if state.refuses_credentials {
            Decision::Unauthorized
        } else if let Some(wait) = state.rate_limit {
            Decision::RateLimited(wait)
        } else if state.fail_share > 0.0 && rand::random::<f64>() < state.fail_share {
            Decision::Fail
        } else if state.rejected.contains(&normalise(to)) {
            Decision::Reject
        } else {
            state.next_id += 1;
            Decision::Accept {
                id: format!("{prefix}{:032x}", state.next_id),
                hang: state.accept_then_hang,
            }
        };
        (decision, state.latency)
    }

    async fn record(&self, message: RecordedMessage) {
        let subscriber = {
            let mut state = self.lock();
            if state.cap > 0 {
                while state.recorded.len() >= state.cap {
                    state.recorded.pop_front();
                }
                state.recorded.push_back(message.clone());
            }
            state.subscriber.clone()
        };
        if let Some(subscriber) = subscriber {
            if subscriber.send(message).await.is_err() {
                let mut state = self.lock();
                if state
                    .subscriber
                    .as_ref()
                    .is_some_and(|current| current.same_channel(&subscriber))
                {
                    state.subscriber = None;
                }
            }
        }
    }
}

/// The fake HTTP provider: Twilio at `/2010-04-01/Accounts/{sid}/Messages.json` and
/// `…/Calls.json`, Vonage at `/sms/json` and `/v1/calls`, WhatsApp at
/// `/{version}/{phone number id}/messages`, the generic format at any other path (e.g.
/// `/send`). Stops when dropped.
pub struct FakeProviderServer {
    addr: SocketAddr,
    control: FakeControl,
    task: JoinHandle<()>,
}

impl FakeProviderServer {
    /// Listens on 127.0.0.1 at a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Listens on `addr` (port 0: a free one).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let control = FakeControl::default();
        let served = control.clone();
        let task = accept_each(listener, served, |control, stream| async move {
            let service = hyper::service::service_fn(move |request| {
                let control = control.clone();
                async move { Ok::<_, Infallible>(handle_http(&control, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        Ok(FakeProviderServer {
            addr,
            control,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`: the `base_url` for Twilio and Vonage settings.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL for the generic HTTP provider.
    pub fn generic_url(&self) -> String {
        format!("{}/send", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control(&self) -> &FakeControl {
        &self.control
    }
}

impl Drop for FakeProviderServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

async fn handle_http(control: &FakeControl, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let is_json = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let bytes = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json_response(StatusCode::PAYLOAD_TOO_LARGE, serde_json::json!({})),
    };
    let received_at = Instant::now();
    let raw_body = String::from_utf8_lossy(&bytes).into_owned();
    let route = path.split('?').next().unwrap_or_default();
    let format = WireFormat::of(route);
    let (form, to, body) = format.read(&bytes, is_json);
    let (decision, latency) = control.decide(&to, format.id_prefix());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match decision {
        Decision::Hang => {
            tokio::time::sleep(HANG).await;
            json_response(StatusCode::GATEWAY_TIMEOUT, serde_json::json!({}))
        }
        Decision::RateLimited(wait) => {
            let (status, answer) = format.rate_limited();
            let mut response = json_response(status, answer);
            if let Ok(value) = hyper::header::HeaderValue::from_str(&wait.as_secs().to_string()) {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, value);
            }
            response
        }
        Decision::Fail => {
            let (status, answer) = format.failed();
            json_response(status, answer)
        }
        Decision::Unauthorized => {
            let (status, answer) = format.unauthorized();
            json_response(status, answer)
        }
        Decision::Reject => {
            let (status, mut answer) = format.rejected(&to);
            if control.lock().quotes_requests {
                quote_in(&mut answer, &body);
            }
            json_response(status, answer)
        }
        Decision::Accept { id, hang } => {
            let (status, answer) = format.accepted(&id, &to);
            control
                .record(RecordedMessage {
                    format,
                    method,
                    path,
                    headers,
                    form,
                    raw_body,
                    to,
                    body,
                    provider_message_id: id,
                    received_at,
                })
                .await;
            if hang {
                tokio::time::sleep(HANG).await;
            }
            json_response(status, answer)
        }
    }
}

/// A JSON answer: its status and body.
type JsonAnswer = (StatusCode, serde_json::Value);

impl WireFormat {
    /// The format a request to `route` speaks.
    fn of(route: &str) -> WireFormat {
        let twilio = route.starts_with("/2010-04-01/Accounts/");
        if twilio && route.ends_with("/Messages.json") {
            WireFormat::Twilio
        } else if twilio && route.ends_with("/Calls.json") {
            WireFormat::TwilioCall
        } else if route == "/sms/json" {
            WireFormat::Vonage
        } else if route == "/v1/calls" {
            WireFormat::VonageCall
        } else if is_whatsapp_route(route) {
            WireFormat::Whatsapp
        } else {
            WireFormat::Generic
        }
    }

    /// How the fake's message ids begin.
    fn id_prefix(self) -> &'static str {
        match self {
            WireFormat::Twilio => "SM",
            WireFormat::TwilioCall => "CA",
            WireFormat::Vonage | WireFormat::VonageCall => "",
            WireFormat::Whatsapp => "wamid.",
            WireFormat::Generic | WireFormat::Smtp => "msg-",
        }
    }

    /// The request's form fields (form formats), its destination and its text: the SMS
    /// body, the words a call reads, the code a WhatsApp template carries, or the raw body.
    fn read(self, bytes: &[u8], is_json: bool) -> (Vec<(String, String)>, String, String) {
        let json = || serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
        let text = |value: &serde_json::Value, pointer: &str| {
            value
                .pointer(pointer)
                .and_then(|found| found.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        match self {
            WireFormat::Twilio | WireFormat::TwilioCall | WireFormat::Vonage => {
                let form = if is_json {
                    crate::providers::receipts::params_from_json(bytes).unwrap_or_default()
                } else {
                    form_pairs(bytes)
                };
                let get = |name: &str| {
                    form.iter()
                        .find(|(key, _)| key == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let (to, body) = match self {
                    WireFormat::Twilio => (get("To"), get("Body")),
                    WireFormat::TwilioCall => (get("To"), said_in(&get("Twiml"))),
                    _ => (get("to"), get("text")),
                };
                (form, to, body)
            }
            WireFormat::VonageCall => {
                let call = json();
                (
                    Vec::new(),
                    text(&call, "/to/0/number"),
                    text(&call, "/ncco/0/text"),
                )
            }
            WireFormat::Whatsapp => {
                let message = json();
                let code = text(&message, "/template/components/0/parameters/0/text");
                (Vec::new(), text(&message, "/to"), code)
            }
            WireFormat::Generic | WireFormat::Smtp => (
                Vec::new(),
                text(&json(), "/to"),
                String::from_utf8_lossy(bytes).into_owned(),
            ),
        }
    }

    /// Too many requests, as the vendor says it (the caller adds `Retry-After`). WhatsApp
    /// answers throughput errors with 400 and its own code.
    fn rate_limited(self) -> JsonAnswer {
        match self {
            WireFormat::Whatsapp => graph_error(
                StatusCode::BAD_REQUEST,
                130429,
                "(#130429) Rate limit hit: Cloud API message throughput has been reached.",
            ),
            WireFormat::VonageCall => (
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"type": "https://developer.nexmo.com/api-errors#throttled",
                    "title": "Too Many Requests", "detail": "Rate limit exceeded."}),
            ),
            _ => (
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
            ),
        }
    }

    /// A server error, as the vendor says it.
    fn failed(self) -> JsonAnswer {
        match self {
            WireFormat::Whatsapp => graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                131000,
                "(#131000) Something went wrong",
            ),
            WireFormat::VonageCall => (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"type": "https://developer.nexmo.com/api-errors#internal",
                    "title": "Internal Error"}),
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"code": 20500, "message": "Internal Server Error", "status": 500}),
            ),
        }
    }

    /// Credentials refused, as the vendor says it.
    fn unauthorized(self) -> JsonAnswer {
        match self {
            WireFormat::Whatsapp => graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "Error validating access token: Session has expired.",
            ),
            WireFormat::VonageCall => (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"type": "UNAUTHORIZED", "error_title": "Unauthorized"}),
            ),
            _ => (
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"code": 20003, "message": "Authenticate", "status": 401}),
            ),
        }
    }

    /// A destination refused for good, as the vendor says it.
    fn rejected(self, to: &str) -> JsonAnswer {
        match self {
            WireFormat::Vonage => (
                StatusCode::OK,
                serde_json::json!({"message-count": "1", "messages": [
                    {"to": to, "status": "7", "error-text": "Number barred."}]}),
            ),
            WireFormat::Twilio => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": 21211, "message": "The 'To' number is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
            ),
            WireFormat::TwilioCall => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"code": 21217, "message": "Phone number does not appear to be valid",
                    "more_info": "https://www.twilio.com/docs/errors/21217", "status": 400}),
            ),
            WireFormat::VonageCall => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"type": "https://developer.nexmo.com/api-errors#bad-request",
                    "title": "Bad Request", "detail": "The destination number is invalid."}),
            ),
            WireFormat::Whatsapp => graph_error(
                StatusCode::BAD_REQUEST,
                131026,
                "(#131026) Message Undeliverable.",
            ),
            WireFormat::Generic | WireFormat::Smtp => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "destination rejected"}),
            ),
        }
    }

    /// The vendor's answer to a message it took under `id`.
    fn accepted(self, id: &str, to: &str) -> JsonAnswer {
        match self {
            WireFormat::Twilio => (
                StatusCode::CREATED,
                serde_json::json!({"sid": id, "status": "queued", "to": to,
                    "num_segments": "1", "error_code": null, "error_message": null}),
            ),
            WireFormat::TwilioCall => (
                StatusCode::CREATED,
                serde_json::json!({"sid": id, "status": "queued", "to": to, "direction": "outbound-api"}),
            ),
            WireFormat::Vonage => (
                StatusCode::OK,
                serde_json::json!({"message-count": "1", "messages": [
                    {"to": to, "message-id": id, "status": "0",
                     "remaining-balance": "10.00000000", "message-price": "0.03330000",
                     "network": "26201"}]}),
            ),
            WireFormat::VonageCall => (
                StatusCode::CREATED,
                serde_json::json!({"uuid": id, "status": "started", "direction": "outbound",
                    "conversation_uuid": format!("CON-{id}")}),
            ),
            WireFormat::Whatsapp => (
                StatusCode::OK,
                serde_json::json!({"messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": id}]}),
            ),
            WireFormat::Generic | WireFormat::Smtp => {
                (StatusCode::OK, serde_json::json!({"id": id}))
            }
        }
    }
}

/// Adds `text` to the message of an error answer, wherever its format keeps it.
fn quote_in(answer: &mut serde_json::Value, text: &str) {
    for pointer in ["/message", "/error/message", "/detail", "/title"] {
        if let Some(serde_json::Value::String(message)) = answer.pointer_mut(pointer) {
            message.push_str(&format!(" (the request said: {text})"));
        }
    }
}

/// `/v21.0/<phone number id>/messages`: the Cloud API's send route.
fn is_whatsapp_route(route: &str) -> bool {
    let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), [version, number, "messages"]
        if version.starts_with('v') && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

/// The Graph API's error body.
fn graph_error(status: StatusCode, code: u64, message: &str) -> JsonAnswer {
    (
        status,
        serde_json::json!({"error": {"message": message, "type": "OAuthException",
            "code": code, "fbtrace_id": "Afake"}}),
    )
}

/// The words of the first `<Say>` in `twiml`, unescaped.
fn said_in(twiml: &str) -> String {
    let Some(open) = twiml.find("<Say") else {
        return String::new();
    };
    let rest = &twiml[open..];
    let (Some(start), Some(end)) = (rest.find('>'), rest.find("</Say>")) else {
        return String::new();
    };
    rest[start + 1..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Posts a Twilio status callback to `url`, signed with `auth_token` as Twilio signs it.
/// Returns the HTTP status otpd answered with.
pub async fn send_twilio_receipt(
    url: &str,
    auth_token: &SecretString,
    params: &[(String, String)],
) -> Result<u16, reqwest::Error> {
    let signature = twilio_signature(auth_token, url, params);
    let response = reqwest::Client::new()
        .post(url)
        .header(TWILIO_SIGNATURE_HEADER, signature)
        .form(params)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Posts a Vonage delivery receipt (form-encoded) to `url`, which carries the shared secret.
pub async fn send_vonage_receipt(
    url: &str,
    params: &[(String, String)],
) -> Result<u16, reqwest::Error> {
    let response = reqwest::Client::new().post(url).form(params).send().await?;
    Ok(response.status().as_u16())
}

/// A minimal SMTP sink on loopback that speaks enough for lettre: EHLO/HELO, AUTH PLAIN,
/// MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT; plain, or implicit TLS with `start_tls`.
/// Stops when dropped.
pub struct FakeSmtpServer {
    addr: SocketAddr,
    control: FakeControl,
    task: JoinHandle<()>,
}

/// Accepts connections on `listener` until the task is aborted, serving each one in a task
/// of its own.
fn accept_each<F, Fut>(
    listener: TcpListener,
    control: FakeControl,
    serve: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(FakeControl, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(control.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

impl FakeSmtpServer {
    /// Listens on 127.0.0.1 at a free port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = FakeControl::default();
        let served = control.clone();
        let task = accept_each(listener, served, |control, stream| async move {
            let _ = smtp_session(&control, stream).await;
        });
        Ok(FakeSmtpServer {
            addr,
            control,
            task,
        })
    }

    /// Like `start`, but every connection is TLS from the first byte (SMTPS) with `config`.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = FakeControl::default();
        let served = control.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = accept_each(listener, served, move |control, stream| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = smtp_session(&control, stream).await;
                }
            }
        });
        Ok(FakeSmtpServer {
            addr,
            control,
            task,
        })
    }

    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn control(&self) -> &FakeControl {
        &self.control
    }
}

impl Drop for FakeSmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn angle_address(argument: &str) -> String {
    let start = argument.find('<').map(|i| i + 1).unwrap_or(0);
    let end = argument[start..]
        .find('>')
        .map(|i| start + i)
        .unwrap_or(argument.len());
    argument[start..end].trim().to_owned()
}

async fn smtp_session<S>(control: &FakeControl, stream: S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if control.lock().hang {
        tokio::time::sleep(HANG).await;
        return Ok(());
    }
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    write.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut recipients: Vec<String> = Vec::new();
    let mut pending: Option<(Decision, Duration)> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if control.lock().hang {
            tokio::time::sleep(HANG).await;
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-fake.smtp\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 fake.smtp\r\n",
            "AUTH" => b"235 2.7.0 Authentication successful\r\n",
            "MAIL" => {
                from = angle_address(&command[4..]);
                recipients.clear();
                let (decision, latency) = control.decide("", "");
                let reply: &[u8] = match decision {
                    Decision::RateLimited(_) => b"451 4.7.1 Rate limited, try again later\r\n",
                    Decision::Fail => b"451 4.3.0 Temporary failure, try again later\r\n",
                    _ => b"250 2.1.0 Ok\r\n",
                };
                pending = Some((decision, latency));
                reply
            }
            "RCPT" => {
                let address = angle_address(&command[4..]);
                if control.lock().rejected.contains(&normalise(&address)) {
                    b"550 5.1.1 Mailbox unavailable\r\n"
                } else {
                    recipients.push(address);
                    b"250 2.1.5 Ok\r\n"
                }
            }
            "DATA" => {
                if recipients.is_empty() {
                    b"554 5.5.1 No valid recipients\r\n"
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let data = read_data(&mut reader).await?;
                    let Some(data) = data else {
                        write.write_all(b"552 5.3.4 Message too big\r\n").await?;
                        continue;
                    };
                    let (decision, latency) =
                        pending.take().unwrap_or((Decision::Fail, Duration::ZERO));
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    let id = match decision {
                        Decision::Accept { .. } | Decision::Reject => {
                            let mut state = control.lock();
                            state.next_id += 1;
                            format!("Q{:016X}", state.next_id)
                        }
                        _ => {
                            write
                                .write_all(b"451 4.3.0 Temporary failure, try again later\r\n")
                                .await?;
                            continue;
                        }
                    };
                    let (head, body) = data.split_once("\r\n\r\n").unwrap_or((data.as_str(), ""));
                    let headers = head
                        .replace("\r\n ", " ")
                        .replace("\r\n\t", " ")
                        .split("\r\n")
                        .filter_map(|header| header.split_once(':'))
                        .map(|(name, value)| {
                            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
                        })
                        .collect();
                    control
                        .record(RecordedMessage {
                            format: WireFormat::Smtp,
                            method: "SMTP".into(),
                            path: from.clone(),
                            headers,
                            form: Vec::new(),
                            raw_body: data.clone(),
                            to: recipients.join(","),
                            body: body.trim_end_matches("\r\n").to_owned(),
                            provider_message_id: id.clone(),
                            received_at: Instant::now(),
                        })
                        .await;
                    write
                        .write_all(format!("250 2.0.0 Ok: queued as {id}\r\n").as_bytes())
                        .await?;
                    continue;
                }
            }
            "RSET" => {
                recipients.clear();
                pending = None;
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Reads DATA up to the lone "." line, undoing dot-stuffing; `None` when it is too big.
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    let mut line = String::new();
    let mut too_big = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok((!too_big).then_some(data));
        }
        let text = line.strip_prefix('.').unwrap_or(&line);
        if data.len() + text.len() > MAX_BODY_BYTES {
            too_big = true;
        } else {
            data.push_str(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_gets_every_message_past_the_record_cap() {
        let server = FakeProviderServer::start().await.expect("start the fake");
        server.control().set_record_cap(1);
        let mut receipts = server.control().subscribe(2);
        let before = Instant::now();
        let client = reqwest::Client::new();
        let posts = (0..5).map(|n| {
            let client = client.clone();
            let url = server.generic_url();
            async move {
                client
                    .post(url)
                    .json(&serde_json::json!({"to": format!("+491511234567{n}"), "text": "hi"}))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            }
        });
        let reader = async {
            let mut seen = Vec::new();
            while seen.len() < 5 {
                let message = receipts.recv().await.expect("a streamed message");
                assert!(message.received_at >= before);
                seen.push(message.to);
            }
            seen.sort();
            seen
        };
        let (statuses, seen) = tokio::join!(futures_util::future::join_all(posts), reader);
        assert!(statuses.into_iter().all(|s| s.ok() == Some(200)));
        let expected: Vec<String> = (0..5).map(|n| format!("+491511234567{n}")).collect();
        assert_eq!(seen, expected);
        assert_eq!(server.control().messages().len(), 1, "the record cap holds");
    }
}
