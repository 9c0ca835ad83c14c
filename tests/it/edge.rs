//! The edge as a hostile or careless client meets it: bodies that never finish, values of
//! the wrong type (never repeated back), keys given twice, the Bearer scheme in any case.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::receipts::unsigned_gateway_app;
use otpd::testing::fakes::FakeProviderServer;

/// What came back on a raw connection: the whole text, and how long the first byte took.
struct RawExchange {
    text: String,
    first_byte_after: Duration,
    closed: bool,
}

/// Sends `head` and `partial_body` and never the rest, then reads for up to `wait`.
async fn send_unfinished(
    app: &TestApp,
    head: &str,
    partial_body: &str,
    wait: Duration,
) -> RawExchange {
    send_raw(&app.address, &format!("{head}\r\n\r\n{partial_body}"), wait).await
}

/// Sends `raw` to the server at `address` (`http://host:port`), then reads for up to `wait`,
/// or until the server closes the connection.
async fn send_raw(address: &str, raw: &str, wait: Duration) -> RawExchange {
    let address = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect to otpd");
    stream
        .write_all(raw.as_bytes())
        .await
        .expect("send the request");
    let started = Instant::now();
    let mut received = Vec::new();
    let mut first_byte_after = None;
    let mut closed = false;
    let mut buffer = [0u8; 4096];
    while let Some(left) = wait.checked_sub(started.elapsed()) {
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                first_byte_after.get_or_insert(started.elapsed());
                received.extend_from_slice(&buffer[..n]);
            }
            Err(_) => break,
        }
    }
    RawExchange {
        text: String::from_utf8_lossy(&received).into_owned(),
        first_byte_after: first_byte_after.unwrap_or(wait),
        closed,
    }
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_and_its_connection_is_closed() {
    let app = spawn_app_with(|settings| settings.http.body_timeout_seconds = 1).await;
    let head = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: otpd\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100",
        app.api_key
    );
    let exchange = send_unfinished(&app, &head, r#"{"to": "#, Duration::from_secs(10)).await;

    assert!(
        exchange.text.starts_with("HTTP/1.1 408"),
        "{}",
        exchange.text
    );
    assert!(
        exchange.text.contains(r#""code":"request_timeout""#),
        "{}",
        exchange.text
    );
    assert!(
        exchange.first_byte_after >= Duration::from_millis(900)
            && exchange.first_byte_after < Duration::from_secs(4),
        "answered after {:?}",
        exchange.first_byte_after
    );
    assert!(exchange.closed, "the connection stayed open after the 408");
    assert!(app.outbox_is_empty());
}

#[tokio::test]
async fn an_unauthenticated_receipt_is_refused_before_its_body_arrives() {
    let fake = FakeProviderServer::start()
        .await
        .expect("start the fake provider");
    let app = unsigned_gateway_app(&fake, |settings| settings.http.body_timeout_seconds = 30).await;
    let head = "POST /v1/providers/gateway/receipts?secret=guess HTTP/1.1\r\nHost: otpd\r\nContent-Type: application/json\r\nContent-Length: 100";
    let exchange = send_unfinished(&app, head, r#"{"message_id": "#, Duration::from_secs(5)).await;

    assert!(
        exchange.text.starts_with("HTTP/1.1 401"),
        "{}",
        exchange.text
    );
    assert!(
        exchange.first_byte_after < Duration::from_secs(2),
        "the refusal waited {:?} for a body",
        exchange.first_byte_after
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_refused_without_being_repeated() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;

    let check = app.check(&id, &json!({"code": 779017})).await;
    check.expect_error(400, "invalid_request");
    assert!(
        check.text.contains("'code' must be a string"),
        "{}",
        check.text
    );
    assert!(!check.text.contains("779017"), "{}", check.text);
    let by_destination = app
        .check_by_destination(&json!({"to": DE_MOBILE, "channel": "sms", "code": [779017]}))
        .await;
    by_destination.expect_error(400, "invalid_request");
    assert!(
        !by_destination.text.contains("779017"),
        "{}",
        by_destination.text
    );

    let create = app
        .create(&json!({"to": 4915112345678u64, "channel": "sms"}))
        .await;
    create.expect_error(400, "invalid_request");
    assert!(
        create.text.contains("'to' must be a string"),
        "{}",
        create.text
    );
    assert!(!create.text.contains("4915112345678"), "{}", create.text);

    // A wrong type is no guess: every attempt is left.
    assert_eq!(app.get(&id).await.u64("attempts_remaining"), 5);
}

#[tokio::test]
async fn a_key_given_twice_is_refused_and_nothing_is_issued() {
    let app = spawn_app().await;
    let body = format!(r#"{{"to": "{DE_MOBILE}", "channel": "sms", "to": "{FR_MOBILE}"}}"#);
    let reply = send(
        app.request(Method::POST, "/v1/verifications")
            .header(CONTENT_TYPE, "application/json")
            .body(body),
    )
    .await;
    reply.expect_error(400, "invalid_request");
    assert!(reply.text.contains("same key twice"), "{}", reply.text);
    assert!(app.outbox_is_empty());
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let reply = send(
            app.anonymous(Method::GET, &format!("/v1/verifications/{id}"))
                .header(AUTHORIZATION, format!("{scheme} {}", app.api_key)),
        )
        .await;
        assert_eq!(reply.status.as_u16(), 200, "{scheme}: {}", reply.text);
    }
}

#[tokio::test]
async fn malformed_requests_get_400_and_write_no_error_to_the_log() {
    let store = tempfile::tempdir().expect("a store dir");
    let mut server = OtpdProcess::start(store.path(), &[]);
    let malformed = [
        "POST /v1/verifications HTTP/1.1\r\nHost: otpd\r\nContent-Length: abc\r\n\r\n",
        "POST /v1/verifications HTTP/1.1\r\nHost: otpd\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: otpd\r\nX-Bad: a\u{1}b\r\n\r\n",
    ];
    for raw in malformed {
        let exchange = send_raw(&server.address, raw, Duration::from_secs(5)).await;
        assert!(
            exchange.text.starts_with("HTTP/1.1 400"),
            "{raw:?}: {}",
            exchange.text
        );
        expect_error_shape(&exchange, "invalid_request");
    }
    let output = server.stop();
    assert!(output.contains("Listening."), "{output}");
    assert!(!output.contains("ERROR"), "{output}");
}

/// Asserts that a raw answer carries the one error shape with `code`, its length right.
#[track_caller]
fn expect_error_shape(exchange: &RawExchange, code: &str) {
    let (head, body) = exchange
        .text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no whole answer: {:?}", exchange.text));
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["error"]["code"], code, "{body}");
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Nothing was done")));
}

#[tokio::test]
async fn the_framework_s_own_refusals_have_the_error_shape_too() {
    let app = spawn_app().await;
    // Headers that never finish: the framework's 408, after its 5 s.
    let slow = send_raw(
        &app.address,
        "GET /healthz HTTP/1.1\r\nHost: otpd\r\n",
        Duration::from_secs(8),
    )
    .await;
    assert!(slow.text.starts_with("HTTP/1.1 408"), "{}", slow.text);
    expect_error_shape(&slow, "request_timeout");
    assert!(slow.closed);
    // Headers too large (over 128 KiB): 431.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: otpd\r\nX-Big: {}\r\n\r\n",
        "a".repeat(140_000)
    );
    let exchange = send_raw(&app.address, &huge, Duration::from_secs(5)).await;
    assert!(
        exchange.text.starts_with("HTTP/1.1 431"),
        "{}",
        exchange.text
    );
    expect_error_shape(&exchange, "request_header_fields_too_large");
}

#[tokio::test]
async fn an_oversized_body_that_waits_for_100_continue_gets_413_at_once() {
    let app = spawn_app().await;
    let head = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: otpd\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 20000\r\nExpect: 100-continue\r\n\r\n",
        app.api_key
    );
    let exchange = send_raw(&app.address, &head, Duration::from_secs(3)).await;
    assert!(
        exchange.text.starts_with("HTTP/1.1 413"),
        "{}",
        exchange.text
    );
    assert!(!exchange.text.contains("100 Continue"), "{}", exchange.text);
    assert!(exchange.first_byte_after < Duration::from_secs(2));
    let body = exchange.text.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(json["error"]["code"], "payload_too_large");

    // Within the limit, the client is told to go on and its request is served.
    let body = json!({"to": DE_MOBILE, "channel": "sms"}).to_string();
    let head = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: otpd\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.api_key,
        body.len()
    );
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.unwrap();
    let went_on = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(went_on.starts_with("HTTP/1.1 100 Continue"), "{went_on}");
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut answer = went_on;
    while !answer.contains("201 Created") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "closed before the answer: {answer}");
        answer.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_text_lines_fields() {
    let store = tempfile::tempdir().expect("a store dir");
    let mut server = OtpdProcess::start(store.path(), &[("OTPD__LOG__FORMAT", "json")]);
    let reply = send(
        http_client().get(server.url("/v1/verifications/ver_00000000000000000000000000000000")),
    )
    .await;
    reply.expect_error(401, "unauthorized");
    let output = server.stop();
    let lines: Vec<serde_json::Value> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let listening = lines
        .iter()
        .find(|line| line["fields"]["message"] == "Listening.")
        .unwrap_or_else(|| panic!("no Listening line in {output}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "otpd::app");
    assert!(listening["fields"]["address"]
        .as_str()
        .is_some_and(|address| address.starts_with("http://127.0.0.1:")));
    assert!(listening["timestamp"].is_string());
}
