//! The error contract: authentication, body limits, content types, validation, unknown routes.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

/// Every /v1 route, with a body that would be valid apart from authentication.
fn v1_routes(id: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    vec![
        (
            Method::POST,
            "/v1/verifications".to_string(),
            Some(json!({"to": DE_MOBILE, "channel": "sms"})),
        ),
        (
            Method::POST,
            format!("/v1/verifications/{id}/check"),
            Some(json!({"code": "123456"})),
        ),
        (
            Method::POST,
            "/v1/verifications/check".to_string(),
            Some(json!({"to": DE_MOBILE, "channel": "sms", "code": "123456"})),
        ),
        (Method::GET, format!("/v1/verifications/{id}"), None),
        (Method::POST, format!("/v1/verifications/{id}/cancel"), None),
        (Method::GET, "/v1/providers".to_string(), None),
    ]
}

#[tokio::test]
async fn v1_routes_refuse_missing_or_wrong_keys_with_401() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;

    for (method, path, body) in v1_routes(&id) {
        let attempts = [
            ("no header", None),
            (
                "wrong key",
                Some("Bearer otpd_wrong_key_0123456789".to_string()),
            ),
            ("key without Bearer", Some(app.api_key.clone())),
            ("Basic scheme", Some(format!("Basic {}", app.api_key))),
            ("empty bearer", Some("Bearer ".to_string())),
        ];
        for (what, header) in attempts {
            let mut request = app.anonymous(method.clone(), &path);
            if let Some(header) = header {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let reply = send(request).await;
            assert_eq!(
                reply.status.as_u16(),
                401,
                "{method} {path} with {what}: {}",
                reply.text
            );
            reply.expect_error(401, "unauthorized");
        }
    }

    // Nothing was touched: the verification is still pending with all its attempts.
    let record = app.get(&id).await;
    record.expect_status(200);
    assert_eq!(record.str("status"), "pending");
    assert_eq!(record.u64("attempts_remaining"), 5);
}

#[tokio::test]
async fn bodies_over_16_kib_are_refused_with_413() {
    let app = spawn_app().await;
    let big = json!({"to": DE_MOBILE, "channel": "sms", "session_id": "x".repeat(17 * 1024)});

    let reply = app.create(&big).await;

    reply.expect_status(413);
    reply.error_code();
    assert!(
        app.outbox_is_empty(),
        "nothing may be sent for a refused body"
    );
}

#[tokio::test]
async fn bodies_just_under_16_kib_are_not_refused_for_size() {
    let app = spawn_app().await;
    let padding = 16 * 1024 - 200;
    let body = json!({"to": DE_MOBILE, "channel": "sms", "template": "t".repeat(padding)});
    assert!(body.to_string().len() < 16 * 1024);

    let reply = app.create(&body).await;

    assert_ne!(
        reply.status.as_u16(),
        413,
        "body under the limit refused: {}",
        reply.text
    );
}

#[tokio::test]
async fn a_non_json_content_type_is_415() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"}).to_string();

    let reply = send(
        app.request(Method::POST, "/v1/verifications")
            .header(CONTENT_TYPE, "text/plain")
            .body(body),
    )
    .await;

    reply.expect_status(415);
    reply.error_code();
}

#[tokio::test]
async fn a_body_without_content_type_is_415_or_400() {
    let app = spawn_app().await;
    let body = json!({"to": DE_MOBILE, "channel": "sms"}).to_string();

    let reply = send(app.request(Method::POST, "/v1/verifications").body(body)).await;

    assert!(
        [400, 415].contains(&reply.status.as_u16()),
        "expected 415 or 400, got {} {}",
        reply.status,
        reply.text
    );
    reply.error_code();
}

#[tokio::test]
async fn malformed_json_is_400_invalid_request() {
    let app = spawn_app().await;

    for raw in ["{", "{\"to\": ", "not json", "{\"to\":\"+4915112345678\",}"] {
        let reply = send(
            app.request(Method::POST, "/v1/verifications")
                .header(CONTENT_TYPE, "application/json")
                .body(raw),
        )
        .await;
        assert_eq!(reply.status.as_u16(), 400, "{raw:?}: {}", reply.text);
        reply.expect_error(400, "invalid_request");
    }
    let check = send(
        app.request(Method::POST, "/v1/verifications/check")
            .header(CONTENT_TYPE, "application/json")
            .body("{\"code\":"),
    )
    .await;
    check.expect_error(400, "invalid_request");
}

#[tokio::test]
async fn invalid_request_fields_are_400_invalid_request() {
    let app = spawn_app().await;
    let bodies = [
        json!([]),
        json!({"channel": "sms"}),
        json!({"to": DE_MOBILE}),
        json!({"to": 4915112345678u64, "channel": "sms"}),
        json!({"to": DE_MOBILE, "channel": "fax"}),
        json!({"to": DE_MOBILE, "channel": "sms", "code_length": 3}),
        json!({"to": DE_MOBILE, "channel": "sms", "code_length": 11}),
        json!({"to": DE_MOBILE, "channel": "sms", "ttl_seconds": 29}),
        json!({"to": DE_MOBILE, "channel": "sms", "ttl_seconds": 901}),
        json!({"to": DE_MOBILE, "channel": "sms", "ttl_seconds": "300"}),
    ];

    for body in bodies {
        let reply = app.create(&body).await;
        assert_eq!(reply.status.as_u16(), 400, "{body}: {}", reply.text);
        reply.expect_error(400, "invalid_request");
    }
    assert!(app.outbox_is_empty());
}

#[tokio::test]
async fn invalid_destinations_are_422_invalid_destination() {
    let app = spawn_app().await;
    let bodies = [
        json!({"to": "12345", "channel": "sms"}),
        json!({"to": "+49123", "channel": "sms"}),
        json!({"to": "+999123456789", "channel": "sms"}),
        json!({"to": "not-a-number", "channel": "sms"}),
        json!({"to": "no-at-sign", "channel": "email"}),
        json!({"to": EMAIL, "channel": "sms"}),
    ];

    for body in bodies {
        let reply = app.create(&body).await;
        assert_eq!(reply.status.as_u16(), 422, "{body}: {}", reply.text);
        reply.expect_error(422, "invalid_destination");
        reply.expect_no_retry_after();
    }
    assert!(app.outbox_is_empty());
}

#[tokio::test]
async fn unknown_routes_are_404_json_not_found() {
    let app = spawn_app().await;

    let anonymous = send(app.anonymous(Method::GET, "/no-such-route")).await;
    anonymous.expect_error(404, "not_found");
    let under_v1 = send(app.request(Method::GET, "/v1/no-such-route")).await;
    under_v1.expect_error(404, "not_found");
}

#[tokio::test]
async fn wrong_methods_are_405_json() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;

    for (method, path) in [
        (Method::PUT, "/v1/verifications".to_string()),
        (Method::DELETE, format!("/v1/verifications/{id}")),
        (Method::GET, format!("/v1/verifications/{id}/check")),
        (Method::GET, format!("/v1/verifications/{id}/cancel")),
    ] {
        let reply = send(app.request(method.clone(), &path)).await;
        assert_eq!(
            reply.status.as_u16(),
            405,
            "{method} {path}: {}",
            reply.text
        );
        reply.error_code();
    }
    let record = app.get(&id).await;
    assert_eq!(
        record.str("status"),
        "pending",
        "a 405 must not change anything"
    );
}
