//! Delivery receipts: each provider's format, authentication, and the delivery status they set.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::*;
use otpd::providers::twilio::twilio_signature;
use otpd::providers::ProviderSettings;
use otpd::testing::fakes::FakeProviderServer;

const TWILIO_TOKEN: &str = "twilio-test-token";

#[tokio::test]
async fn a_sandbox_receipt_marks_the_verification_delivered() {
    let app = spawn_app().await;
    let id = app.sms_id(DE_MOBILE).await;
    app.code_for(&id).await;
    // A receipt that arrives a moment before the send is recorded still finds its send.
    let message_id = format!("{id}.1");
    let reply = send(
        app.request(Method::POST, "/v1/providers/sandbox/receipts")
            .json(&json!({"message_id": message_id, "status": "delivered"})),
    )
    .await;
    reply.expect_status(200);
    assert_eq!(reply.str("status"), "recorded");
    let record = app.get(&id).await;
    assert_eq!(record.str("delivery"), "delivered");
    // A second, contradicting receipt changes nothing.
    let again = send(
        app.request(Method::POST, "/v1/providers/sandbox/receipts")
            .json(&json!({"message_id": message_id, "status": "failed"})),
    )
    .await;
    assert_eq!(again.str("status"), "ignored");
    assert_eq!(app.get(&id).await.str("delivery"), "delivered");
}

#[tokio::test]
async fn sandbox_receipts_need_an_api_key() {
    let app = spawn_app().await;
    let reply = send(
        app.anonymous(Method::POST, "/v1/providers/sandbox/receipts")
            .json(&json!({"message_id": "x", "status": "delivered"})),
    )
    .await;
    reply.expect_error(401, "unauthorized");
}

async fn twilio_app(fake: &FakeProviderServer) -> TestApp {
    let base_url = fake.base_url();
    spawn_app_with(move |settings| {
        let config: ProviderSettings = serde_json::from_value(json!({
            "kind": "twilio",
            "base_url": base_url,
            "account_sid": "AC00000000000000000000000000000000",
            "auth_token": TWILIO_TOKEN,
            "from": "+15005550006",
        }))
        .expect("twilio settings");
        settings.providers.insert("twilio".into(), config);
        settings
            .routing
            .regions
            .get_mut("default")
            .unwrap()
            .insert(otpd::domain::Channel::Sms, vec!["twilio".into()]);
    })
    .await
}

#[tokio::test]
async fn twilio_receipts_are_checked_against_their_signature() {
    let fake = FakeProviderServer::start()
        .await
        .expect("start the fake provider");
    let app = twilio_app(&fake).await;
    let id = app.sms_id(DE_MOBILE).await;
    let deadline = std::time::Instant::now() + DELIVERY_DEADLINE;
    let sid = loop {
        if let Some(message) = fake.control().messages().into_iter().next() {
            break message.provider_message_id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "twilio got no message"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let params = vec![
        ("MessageSid".to_string(), sid.clone()),
        ("MessageStatus".to_string(), "delivered".to_string()),
        ("To".to_string(), DE_MOBILE.to_string()),
    ];
    let url = app.url("/v1/providers/twilio/receipts");
    let form = serde_urlencoded::to_string(&params).unwrap();

    let forged = send(
        app.anonymous(Method::POST, "/v1/providers/twilio/receipts")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl")
            .body(form.clone()),
    )
    .await;
    forged.expect_error(401, "unauthorized");
    let unsigned = send(
        app.anonymous(Method::POST, "/v1/providers/twilio/receipts")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.clone()),
    )
    .await;
    unsigned.expect_error(401, "unauthorized");
    assert_eq!(app.get(&id).await.str("delivery"), "sent");

    let signature = twilio_signature(&SecretString::from(TWILIO_TOKEN), &url, &params);
    let signed = send(
        app.anonymous(Method::POST, "/v1/providers/twilio/receipts")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", signature)
            .body(form),
    )
    .await;
    signed.expect_status(200);
    assert_eq!(signed.str("status"), "recorded");
    let record = app.get(&id).await;
    assert_eq!(record.str("delivery"), "delivered");
    assert_eq!(record.str("provider"), "twilio");
}

#[tokio::test]
async fn receipts_without_a_configured_secret_are_refused() {
    let fake = FakeProviderServer::start()
        .await
        .expect("start the fake provider");
    let app = unsigned_gateway_app(&fake, |_| {}).await;
    let reply = send(
        app.anonymous(Method::POST, "/v1/providers/gateway/receipts?secret=guess")
            .json(&json!({"message_id": "m-1", "status": "delivered"})),
    )
    .await;
    reply.expect_error(401, "unauthorized");
}

/// An app with an `http` provider `gateway` on `fake` and no receipt secret for it, with
/// `tweak` applied to its settings last.
pub async fn unsigned_gateway_app(
    fake: &FakeProviderServer,
    tweak: impl FnOnce(&mut otpd::config::Settings) + Send + 'static,
) -> TestApp {
    let url = fake.generic_url();
    spawn_app_with(move |settings| {
        let config: ProviderSettings = serde_json::from_value(json!({
            "kind": "http",
            "url": url,
            "body_template": "{\"to\": \"{to}\", \"text\": \"{body}\"}",
        }))
        .expect("http settings");
        settings.providers.insert("gateway".into(), config);
        tweak(settings);
    })
    .await
}
