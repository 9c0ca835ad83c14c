//! The channels beyond SMS and email through the whole engine: a call that reads the code
//! digit by digit (Twilio's Calls against the fake), a WhatsApp authentication template that
//! carries the code alone (the Cloud API fake), and a channel no provider is routed for.

use secrecy::SecretString;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use otpd::providers::whatsapp::{whatsapp_signature, WHATSAPP_SIGNATURE_HEADER};
use otpd::providers::{ProviderSettings, TwilioVoiceConfig, WhatsappConfig};
use otpd::testing::fakes::{send_twilio_receipt, FakeProviderServer, RecordedMessage, WireFormat};

use crate::helpers::*;
use crate::providers::{configure, wait_recorded};

/// The WhatsApp app's secret, which signs its webhooks.
const APP_SECRET: &str = "app-secret-1";

/// The first message `fake` takes, within a few seconds.
async fn first_message(fake: &FakeProviderServer) -> RecordedMessage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(message) = fake.control().messages().into_iter().next() {
            return message;
        }
        assert!(Instant::now() < deadline, "nothing reached the fake");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates a verification on `channel` to `to` in `locale`; returns its id.
async fn create_on(app: &TestApp, channel: &str, to: &str, locale: &str) -> String {
    let reply = app
        .create(&json!({"channel": channel, "to": to, "locale": locale}))
        .await;
    reply.expect_status(201);
    assert_eq!(reply.str("channel"), channel, "{}", reply.text);
    reply.str("id").to_owned()
}

#[tokio::test]
async fn a_call_reads_the_code_digit_by_digit_in_the_person_s_language() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_for_every_channel(|s| {
        configure(s, vec![("call", twilio_voice_on(&fake))], &["call"])
    })
    .await;
    let to = de_mobile(71);
    let id = create_on(&app, "voice", &to, "de").await;
    let call = first_message(&fake).await;
    assert_eq!(call.format, WireFormat::TwilioCall);
    assert_eq!(call.field("To"), Some(to.as_str()));
    let twiml = call.field("Twiml").expect("TwiML");
    assert!(
        twiml.starts_with(
            r#"<Response><Say loop="2" language="de-DE">Ihr Bestätigungscode lautet "#
        ),
        "{twiml}"
    );
    let code = spoken_code(&call.body, 6);
    assert_eq!(wait_recorded(&app, &id).await.str("delivery"), "sent");

    // Twilio tells how the call went, signed like its message callbacks.
    let callback = |status: &str| {
        [
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("CallSid", call.provider_message_id.as_str()),
            ("CallStatus", status),
            ("Direction", "outbound-api"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
    };
    let receipts = app.url("/v1/providers/call/receipts");
    let token = SecretString::from("twilio-token-1");
    for (status, delivery) in [
        ("ringing", "sent"),
        ("transferred", "sent"),
        ("completed", "delivered"),
    ] {
        let answered = send_twilio_receipt(&receipts, &token, &callback(status))
            .await
            .unwrap();
        assert_eq!(answered, 200, "{status}");
        assert_eq!(
            app.get(&id).await.str("delivery"),
            delivery,
            "after {status}"
        );
    }

    let reply = app.check_code(&id, &code).await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "approved", "{}", reply.text);
}

/// A Twilio voice provider on `fake`, and sandbox for the other channels.
fn twilio_voice_on(fake: &FakeProviderServer) -> ProviderSettings {
    ProviderSettings::TwilioVoice(TwilioVoiceConfig {
        base_url: fake.base_url(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: SecretString::from("twilio-token-1"),
        from: "+15005550006".into(),
        status_callback: None,
        voice: None,
        languages: BTreeMap::from([("de".to_owned(), "de-DE".to_owned())]),
        repeat: 2,
        timeout_ms: 2_000,
    })
}

#[tokio::test]
async fn a_vendor_error_that_quotes_the_call_s_words_is_kept_without_the_code() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_for_every_channel(|s| {
        configure(s, vec![("call", twilio_voice_on(&fake))], &["call"])
    })
    .await;
    let to = de_mobile(74);
    fake.control().reject_numbers([to.as_str()]);
    fake.control().quote_requests(true);
    let id = create_on(&app, "voice", &to, "en").await;
    // The only provider refuses the number for good: the job waits for another, and the
    // refusal is on the timeline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts = send(app.request(
            reqwest::Method::GET,
            &format!("/v1/verifications/{id}/attempts"),
        ))
        .await;
        attempts.expect_status(200);
        if attempts.body["attempts"][0]["detail"].is_string() {
            break attempts;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal on the timeline: {}",
            attempts.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let detail = attempts.body["attempts"][0]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("21217") && detail.contains("<code>"),
        "the vendor's words, the code masked: {}",
        attempts.text
    );
    let spelled = attempts
        .text
        .as_bytes()
        .windows(4)
        .any(|w| w[0].is_ascii_digit() && &w[1..3] == b", " && w[3].is_ascii_digit());
    assert!(!spelled, "digits spelled out remain: {}", attempts.text);
}

#[tokio::test]
async fn whatsapp_carries_the_code_alone_in_the_approved_template() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app = spawn_app_with(|s| {
        configure(
            s,
            vec![(
                "wa",
                ProviderSettings::Whatsapp(WhatsappConfig {
                    base_url: fake.base_url(),
                    api_version: "v21.0".into(),
                    phone_number_id: "106540352242922".into(),
                    access_token: SecretString::from("EAAG-token"),
                    template: "otp_login".into(),
                    languages: BTreeMap::new(),
                    default_language: "en_US".into(),
                    app_secret: Some(SecretString::from(APP_SECRET)),
                    verify_token: Some(SecretString::from("verify-1")),
                    timeout_ms: 2_000,
                }),
            )],
            &["wa"],
        )
    })
    .await;
    let to = de_mobile(72);
    let id = create_on(&app, "whatsapp", &to, "en").await;
    let message = first_message(&fake).await;
    assert_eq!(message.format, WireFormat::Whatsapp);
    assert_eq!(message.path, "/v21.0/106540352242922/messages");
    let sent: serde_json::Value = serde_json::from_str(&message.raw_body).unwrap();
    assert_eq!(sent["to"], to.trim_start_matches('+'));
    assert_eq!(sent["template"]["name"], "otp_login");
    let code = message.body.clone();
    assert_eq!(code.len(), 6, "the code alone: {code}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert_eq!(
        sent["template"]["components"][1]["parameters"][0]["text"],
        code.as_str(),
        "the copy-code button carries the code"
    );
    assert_eq!(wait_recorded(&app, &id).await.str("delivery"), "sent");
    let reply = app.check_code(&id, &code).await;
    reply.expect_status(200);
    assert_eq!(reply.body["status"], "approved", "{}", reply.text);

    // WhatsApp checks the webhook URL, then posts the statuses, batched and signed.
    let receipts = app.url("/v1/providers/wa/receipts");
    let client = http_client();
    let check = |token: &str| {
        client.get(format!(
            "{receipts}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        ))
    };
    let confirmed = send(check("verify-1")).await;
    confirmed.expect_status(200);
    assert_eq!(confirmed.text, "1158201444");
    send(check("verify-2"))
        .await
        .expect_error(401, "unauthorized");
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
    "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
        "statuses": [
            {"id": message.provider_message_id, "status": "sent", "recipient_id": "x"},
            {"id": message.provider_message_id, "status": "delivered", "recipient_id": "x"},
            {"id": "wamid.unknown", "status": "delivered", "recipient_id": "y"}
        ]}}]}]})
    .to_string();
    let signature = whatsapp_signature(&SecretString::from(APP_SECRET), statuses.as_bytes());
    let post = |signature: &str| {
        client
            .post(&receipts)
            .header(WHATSAPP_SIGNATURE_HEADER, signature)
            .header("content-type", "application/json")
            .body(statuses.clone())
    };
    send(post("sha256=00"))
        .await
        .expect_error(401, "unauthorized");
    let taken = send(post(&signature)).await;
    taken.expect_status(200);
    // `sent` tells nothing new, and the third is about no message of otpd's.
    assert_eq!(taken.body["recorded"], 1, "{}", taken.text);
    let record = app.get(&id).await;
    assert_eq!(record.str("delivery"), "delivered", "{}", record.text);
}

#[tokio::test]
async fn calls_are_for_the_tenants_whose_settings_list_them() {
    let fake = FakeProviderServer::start().await.unwrap();
    let app =
        spawn_app_with(|s| configure(s, vec![("call", twilio_voice_on(&fake))], &["call"])).await;
    let reply = app
        .create(&json!({"channel": "voice", "to": de_mobile(75)}))
        .await;
    reply.expect_status(403);
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("add \"voice\" to tenants.dev.channels"),
        "{message}"
    );
    assert_eq!(fake.control().request_count(), 0, "no call was placed");
}

#[tokio::test]
async fn a_channel_no_provider_is_routed_for_is_refused_with_the_setting_to_give() {
    let app = spawn_app().await;
    for channel in ["voice", "whatsapp"] {
        let reply = app
            .create(&json!({"channel": channel, "to": de_mobile(73)}))
            .await;
        reply.expect_error(400, "invalid_request");
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("routing.default.{channel}"))
                && message.contains("use \"sms\" or \"email\""),
            "{message}"
        );
    }
    assert!(app.outbox_is_empty(), "nothing was sent");
}
