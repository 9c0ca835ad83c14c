//! Operations routes: /healthz, /readyz, /metrics, /v1/providers and receipts.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_key() {
    let app = spawn_app().await;

    let health = send(app.anonymous(Method::GET, "/healthz")).await;
    let ready = send(app.anonymous(Method::GET, "/readyz")).await;

    health.expect_status(200);
    ready.expect_status(200);
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_otpd_series_and_no_personal_data() {
    let app = spawn_app().await;
    let (id, code) = app.approved_sms(DE_MOBILE).await;

    let reply = send(app.anonymous(Method::GET, "/metrics")).await;

    reply.expect_status(200);
    let content_type = reply.headers[CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain"),
        "content type {content_type}"
    );
    let text = &reply.text;
    assert!(
        text.contains("# TYPE otpd_"),
        "no otpd_ metric types in:\n{text}"
    );
    let series = text
        .lines()
        .filter(|line| line.starts_with("otpd_"))
        .count();
    assert!(series > 0, "no otpd_ samples in:\n{text}");
    for secret in [
        DE_MOBILE,
        "4915112345678",
        id.as_str(),
        app.api_key.as_str(),
    ] {
        assert!(!text.contains(secret), "metrics contain {secret}");
    }
    assert!(!contains_code(text, &code), "metrics contain the code");
}

#[tokio::test]
async fn requests_are_counted_by_their_route_pattern_never_their_path() {
    let app = spawn_app().await;
    let (id, _) = app.approved_sms(DE_MOBILE).await;
    let check_path = format!("/v1/verifications/{id}/check");
    send(app.request(Method::GET, &check_path))
        .await
        .expect_status(405);
    send(app.request(Method::GET, "/v1/no-such-route"))
        .await
        .expect_status(404);
    send(app.anonymous(Method::GET, "/ui"))
        .await
        .expect_status(200);

    let text = send(app.anonymous(Method::GET, "/metrics")).await.text;

    for (route, status) in [
        ("/v1/verifications", 201),
        ("/v1/verifications/{id}/check", 200),
        ("/v1/verifications/{id}/check", 405),
        ("unmatched", 404),
        ("/ui", 200),
    ] {
        let series = format!("otpd_http_requests_total{{route=\"{route}\",status=\"{status}\"}}");
        assert!(text.contains(&series), "no {series} in:\n{text}");
    }
    assert!(!text.contains(&id), "a concrete path is a label:\n{text}");
    assert!(
        !text.contains("no-such-route"),
        "an unknown path is a label:\n{text}"
    );
}

/// The provider entries of /v1/providers, whether it answers a list or `{"providers": [...]}`.
fn provider_entries(body: &Value) -> Vec<Value> {
    match body {
        Value::Array(items) => items.clone(),
        Value::Object(map) => match map.get("providers") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Object(by_name)) => by_name
                .iter()
                .map(|(name, entry)| {
                    let mut entry = entry.clone();
                    entry["name"] = json!(name);
                    entry
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn providers_lists_the_sandbox_with_its_counts() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    app.code_for(&id).await;

    let reply = send(app.request(Method::GET, "/v1/providers")).await;

    reply.expect_status(200);
    let entries = provider_entries(&reply.body);
    let sandbox = entries
        .iter()
        .find(|entry| {
            entry
                .as_object()
                .is_some_and(|o| o.values().any(|v| v == "sandbox"))
        })
        .unwrap_or_else(|| panic!("no sandbox provider in {}", reply.text));
    assert!(
        sandbox["sent"].as_u64().is_some_and(|sent| sent >= 1),
        "sandbox sent count after one delivery: {sandbox}"
    );
    assert!(
        sandbox.get("failed").is_some(),
        "no failed count: {sandbox}"
    );
}

#[tokio::test]
async fn receipts_for_an_unknown_provider_are_404() {
    let app = spawn_app().await;

    let reply = send(
        app.request(Method::POST, "/v1/providers/no-such-provider/receipts")
            .json(&json!({"id": "x", "status": "delivered"})),
    )
    .await;

    reply.expect_error(404, "not_found");
}

#[tokio::test]
async fn a_malformed_sandbox_receipt_is_400_invalid_request() {
    let app = spawn_app().await;

    let reply = send(
        app.request(Method::POST, "/v1/providers/sandbox/receipts")
            .header(CONTENT_TYPE, "application/json")
            .body("{not json"),
    )
    .await;

    reply.expect_error(400, "invalid_request");
}
