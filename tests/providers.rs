//! Each provider adapter against its fake: success and the exact request format, 429 with
//! Retry-After, 5xx, permanent rejections, and timeouts.

use base64::Engine;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use otpd::domain::{Channel, JobId, OtpCode, VerificationId};
use otpd::providers::receipts::{self, ReceiptInbox, ReceiptStatus};
use otpd::providers::twilio::receipts::{parse_twilio, verify_twilio_signature};
use otpd::providers::twilio::TWILIO_SIGNATURE_HEADER;
use otpd::providers::vonage::receipts::parse_vonage;
use otpd::providers::{
    BuildContext, HttpConfig, HttpProvider, OutboundMessage, Provider, ProviderError,
    ProviderSettings, SmppConfig, SmppProvider, SmtpConfig, SmtpProvider, SmtpTls, TwilioConfig,
    TwilioProvider, TwilioVoiceConfig, TwilioVoiceProvider, VonageConfig, VonageProvider,
    VonageVoiceConfig, VonageVoiceProvider, WhatsappConfig, WhatsappProvider,
};
use otpd::testing::fakes::{self, FakeProviderServer, FakeSmtpServer, WireFormat};
use otpd::testing::FakeSmsc;
use rusmpp::CommandStatus;
use std::sync::Arc;

const CODE_TEXT: &str = "Your code is 493817";
const TIMEOUT_MS: u64 = 400;

fn message(channel: Channel, to: &str) -> OutboundMessage {
    let verification_id = VerificationId::generate();
    OutboundMessage {
        job_id: JobId::new(&verification_id, 1),
        verification_id,
        tenant: "acme".into(),
        channel,
        to: to.into(),
        body: CODE_TEXT.into(),
        locale: None,
        code: OtpCode::parse("493817").unwrap(),
        sender_id: None,
        registration: None,
    }
}

fn sms(to: &str) -> OutboundMessage {
    message(Channel::Sms, to)
}

fn assert_no_code(error: &ProviderError) {
    assert!(!error.to_string().contains("493817"), "{error}");
}

fn assert_transient(error: &ProviderError, retry_after: Option<Duration>) {
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), retry_after, "{error}");
    assert_no_code(error);
}

fn assert_permanent(error: &ProviderError) {
    assert!(!error.is_transient(), "{error}");
    assert_no_code(error);
}

async fn assert_times_out(provider: &dyn Provider, message: &OutboundMessage) {
    let started = Instant::now();
    let error = provider.send(message).await.unwrap_err();
    // The request went out: the provider may have taken it, so it is not sent there again.
    assert!(error.may_have_been_taken(), "{error}");
    assert_transient(&error, None);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(TIMEOUT_MS - 50), "{took:?}");
    assert!(took < Duration::from_millis(TIMEOUT_MS * 5), "{took:?}");
}

// ---- Twilio ----

fn twilio(server: &FakeProviderServer) -> TwilioProvider {
    TwilioProvider::new(
        "twilio-eu",
        TwilioConfig {
            base_url: server.base_url(),
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: SecretString::from("token-1"),
            from: Some("+15005550006".into()),
            messaging_service_sid: None,
            status_callback: Some("https://otpd.example/v1/providers/twilio-eu/receipts".into()),
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn twilio_sends_the_documented_request() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = twilio(&server);
    assert_eq!(provider.id(), "twilio-eu");
    let receipt = provider.send(&sms("+4915112345678")).await.unwrap();
    let recorded = server.control().messages();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.format, WireFormat::Twilio);
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json"
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode("AC00000000000000000000000000000001:token-1");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.field("To"), Some("+4915112345678"));
    assert_eq!(request.field("From"), Some("+15005550006"));
    assert_eq!(request.field("Body"), Some(CODE_TEXT));
    assert_eq!(
        request.field("StatusCallback"),
        Some("https://otpd.example/v1/providers/twilio-eu/receipts")
    );
    assert_eq!(request.field("MessagingServiceSid"), None);
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );
    assert!(request.provider_message_id.starts_with("SM"));
}

#[tokio::test]
async fn twilio_uses_a_messaging_service_when_configured() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = TwilioProvider::new(
        "tw",
        TwilioConfig {
            base_url: format!("{}/", server.base_url()),
            account_sid: "AC1".into(),
            auth_token: SecretString::from("t"),
            from: None,
            messaging_service_sid: Some("MG123".into()),
            status_callback: None,
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap();
    provider.send(&sms("+4915112345678")).await.unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.path, "/2010-04-01/Accounts/AC1/Messages.json");
    assert_eq!(request.field("MessagingServiceSid"), Some("MG123"));
    assert_eq!(request.field("From"), None);
    assert_eq!(request.field("StatusCallback"), None);
}

#[tokio::test]
async fn twilio_failures_are_classified() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = twilio(&server);
    let control = server.control();

    control.rate_limit(Some(Duration::from_secs(7)));
    let error = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert_transient(&error, Some(Duration::from_secs(7)));
    control.rate_limit(None);

    control.fail_share(1.0);
    let error = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert_transient(&error, None);
    assert!(error.to_string().contains("500"), "{error}");
    control.fail_share(0.0);

    control.reject_numbers(["+4915100000000"]);
    let error = provider.send(&sms("+4915100000000")).await.unwrap_err();
    assert_permanent(&error);
    assert!(error.to_string().contains("21211"), "{error}");

    control.hang(true);
    assert_times_out(&provider, &sms("+4915112345678")).await;
    assert!(control.messages().is_empty(), "nothing was accepted");
}

// ---- Vonage ----

fn vonage(server: &FakeProviderServer) -> VonageProvider {
    VonageProvider::new(
        "vonage",
        VonageConfig {
            base_url: server.base_url(),
            api_key: "key-1".into(),
            api_secret: SecretString::from("secret-1"),
            from: "Acme".into(),
            callback: Some("https://otpd.example/v1/providers/vonage/receipts?secret=s".into()),
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn vonage_sends_the_documented_request() {
    let server = FakeProviderServer::start().await.unwrap();
    let receipt = vonage(&server).send(&sms("+4915112345678")).await.unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.format, WireFormat::Vonage);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/sms/json");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.field("api_key"), Some("key-1"));
    assert_eq!(request.field("api_secret"), Some("secret-1"));
    assert_eq!(request.field("from"), Some("Acme"));
    assert_eq!(request.field("to"), Some("4915112345678"), "no '+'");
    assert_eq!(request.field("text"), Some(CODE_TEXT));
    assert_eq!(request.field("type"), None, "ASCII needs no unicode type");
    assert_eq!(
        request.field("callback"),
        Some("https://otpd.example/v1/providers/vonage/receipts?secret=s")
    );
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );
    assert_eq!(
        request.field("entity-id"),
        None,
        "no registration, no DLT fields"
    );
}

#[tokio::test]
async fn vonage_carries_india_s_dlt_registration_in_its_own_parameters() {
    let server = FakeProviderServer::start().await.unwrap();
    let mut message = sms("+919812345678");
    message.registration = Some(otpd::providers::Registration {
        entity_id: "1101234567890123456".into(),
        template_id: "1107160000000000002".into(),
    });
    vonage(&server).send(&message).await.unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.field("entity-id"), Some("1101234567890123456"));
    assert_eq!(request.field("content-id"), Some("1107160000000000002"));
}

#[tokio::test]
async fn vonage_marks_non_ascii_text_as_unicode() {
    let server = FakeProviderServer::start().await.unwrap();
    let mut message = sms("+4915112345678");
    message.body = "Dein Code: 493817 – gültig".into();
    vonage(&server).send(&message).await.unwrap();
    assert_eq!(
        server.control().messages()[0].field("type"),
        Some("unicode")
    );
}

#[tokio::test]
async fn vonage_failures_are_classified() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = vonage(&server);
    let control = server.control();

    control.rate_limit(Some(Duration::from_secs(3)));
    let error = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert_transient(&error, Some(Duration::from_secs(3)));
    control.rate_limit(None);

    control.fail_share(1.0);
    assert_transient(
        &provider.send(&sms("+4915112345678")).await.unwrap_err(),
        None,
    );
    control.fail_share(0.0);

    control.reject_numbers(["4915100000000"]);
    let error = provider.send(&sms("+4915100000000")).await.unwrap_err();
    assert_permanent(&error);
    assert!(error.to_string().contains("status 7"), "{error}");

    control.hang(true);
    assert_times_out(&provider, &sms("+4915112345678")).await;
}

// ---- generic HTTP ----

fn generic(server: &FakeProviderServer) -> HttpProvider {
    HttpProvider::new(
        "gateway",
        HttpConfig {
            url: server.generic_url(),
            method: "POST".into(),
            headers: BTreeMap::from([(
                "Authorization".to_owned(),
                SecretString::from("Bearer gw-token"),
            )]),
            body_template: r#"{"to":"{to}","message":{"text":"{body}","channel":"{channel}"},"ref":"{verification_id}"}"#.into(),
            message_id_pointer: Some("/id".into()),
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn generic_http_fills_the_template() {
    let server = FakeProviderServer::start().await.unwrap();
    let mut message = sms("+4915112345678");
    message.body = "Code \"493817\"\nbye".into();
    let receipt = generic(&server).send(&message).await.unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.format, WireFormat::Generic);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/send");
    assert_eq!(request.header("authorization"), Some("Bearer gw-token"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&request.raw_body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"to": "+4915112345678",
            "message": {"text": "Code \"493817\"\nbye", "channel": "sms"},
            "ref": message.verification_id.as_str()})
    );
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );
}

#[tokio::test]
async fn generic_http_failures_are_classified() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = generic(&server);
    let control = server.control();

    control.rate_limit(Some(Duration::from_secs(2)));
    assert_transient(
        &provider.send(&sms("+4915112345678")).await.unwrap_err(),
        Some(Duration::from_secs(2)),
    );
    control.rate_limit(None);

    control.fail_share(1.0);
    assert_transient(
        &provider.send(&sms("+4915112345678")).await.unwrap_err(),
        None,
    );
    control.fail_share(0.0);

    control.reject_numbers(["+4915100000000"]);
    assert_permanent(&provider.send(&sms("+4915100000000")).await.unwrap_err());

    control.hang(true);
    assert_times_out(&provider, &sms("+4915112345678")).await;
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let provider = HttpProvider::new(
        "gone",
        HttpConfig {
            url: format!("http://{addr}/send"),
            method: "POST".into(),
            headers: BTreeMap::new(),
            body_template: r#"{"to":"{to}","text":"{body}"}"#.into(),
            message_id_pointer: None,
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap();
    let error = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert_transient(&error, None);
    // Nothing went out: the same provider may be tried again.
    assert!(!error.may_have_been_taken(), "{error}");
}

// ---- SMTP ----

fn smtp(server: &FakeSmtpServer) -> SmtpProvider {
    SmtpProvider::new(
        "mail",
        SmtpConfig {
            host: server.host(),
            port: Some(server.port()),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Acme <no-reply@acme.example>".into(),
            subject: "Your Acme code".into(),
            timeout_ms: TIMEOUT_MS,
            ca_file: None,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn smtp_delivers_to_the_sink() {
    let server = FakeSmtpServer::start().await.unwrap();
    let receipt = smtp(&server)
        .send(&message(Channel::Email, "user@example.com"))
        .await
        .unwrap();
    let recorded = server.control().messages();
    assert_eq!(recorded.len(), 1);
    let mail = &recorded[0];
    assert_eq!(mail.format, WireFormat::Smtp);
    assert_eq!(mail.path, "no-reply@acme.example", "envelope sender");
    assert_eq!(mail.to, "user@example.com");
    assert_eq!(mail.header("subject"), Some("Your Acme code"));
    assert_eq!(mail.header("from"), Some("Acme <no-reply@acme.example>"));
    assert_eq!(mail.header("to"), Some("user@example.com"));
    assert!(mail
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(mail.body, CODE_TEXT);
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(mail.provider_message_id.as_str())
    );
}

#[tokio::test]
async fn smtp_failures_are_classified() {
    let server = FakeSmtpServer::start().await.unwrap();
    let provider = smtp(&server);
    let control = server.control();
    let email = message(Channel::Email, "user@example.com");

    control.fail_share(1.0);
    assert_transient(&provider.send(&email).await.unwrap_err(), None);
    control.fail_share(0.0);

    control.rate_limit(Some(Duration::from_secs(5)));
    assert_transient(&provider.send(&email).await.unwrap_err(), None);
    control.rate_limit(None);

    control.reject_numbers(["gone@example.com"]);
    let error = provider
        .send(&message(Channel::Email, "gone@example.com"))
        .await
        .unwrap_err();
    assert_permanent(&error);
    assert!(error.to_string().contains("550"), "{error}");

    assert_permanent(
        &provider
            .send(&message(Channel::Email, "not an address"))
            .await
            .unwrap_err(),
    );

    provider.send(&email).await.unwrap();
    assert_eq!(control.messages().len(), 1);
}

#[tokio::test]
async fn smtp_hang_times_out() {
    let server = FakeSmtpServer::start().await.unwrap();
    server.control().hang(true);
    assert_times_out(&smtp(&server), &message(Channel::Email, "user@example.com")).await;
}

// ---- settings, fakes, receipts ----

#[tokio::test]
async fn settings_build_a_working_provider() {
    let server = FakeProviderServer::start().await.unwrap();
    let toml_text = format!(
        "kind = \"vonage\"\nbase_url = \"{}\"\napi_key = \"k\"\napi_secret = \"s\"\nfrom = \"Acme\"",
        server.base_url()
    );
    let settings: ProviderSettings = config::Config::builder()
        .add_source(config::File::from_str(&toml_text, config::FileFormat::Toml))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    assert!(settings.validate("vonage-eu").is_empty());
    let context = BuildContext {
        store_dir: Path::new("/nonexistent").to_owned(),
        receipt_secret: None,
        ..BuildContext::default()
    };
    let provider = settings.build("vonage-eu", &context).unwrap().adapter;
    assert_eq!(provider.id(), "vonage-eu");
    provider.send(&sms("+4915112345678")).await.unwrap();
    assert_eq!(server.control().request_count(), 1);
}

#[tokio::test]
async fn the_fake_keeps_a_bounded_record() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = twilio(&server);
    server.control().set_record_cap(2);
    for _ in 0..3 {
        provider.send(&sms("+4915112345678")).await.unwrap();
    }
    assert_eq!(server.control().messages().len(), 2);
    assert_eq!(server.control().drain().len(), 2);
    assert!(server.control().messages().is_empty());
    assert_eq!(server.control().request_count(), 3);
}

#[tokio::test]
async fn the_fake_latency_delays_answers() {
    let server = FakeProviderServer::start().await.unwrap();
    server.control().set_latency(Duration::from_millis(150));
    let started = Instant::now();
    twilio(&server).send(&sms("+4915112345678")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn fake_receipts_carry_a_valid_twilio_signature() {
    // The generic route records whatever is posted to it: use it as the receiving end.
    let receiver = FakeProviderServer::start().await.unwrap();
    let url = format!("{}/v1/providers/twilio-eu/receipts", receiver.base_url());
    let token = SecretString::from("token-1");
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM0001"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
        ("To", "+4915112345678"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        fakes::send_twilio_receipt(&url, &token, &params)
            .await
            .unwrap(),
        200
    );
    let posted = &receiver.control().messages()[0];
    let received = receipts::parse_form(posted.raw_body.as_bytes()).unwrap();
    verify_twilio_signature(
        &token,
        &url,
        &received,
        posted.header(TWILIO_SIGNATURE_HEADER),
    )
    .unwrap();
    let receipt = parse_twilio(&received).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Failed);
    assert_eq!(receipt.error_code.as_deref(), Some("30003"));

    let vonage_url = format!(
        "{}/v1/providers/vonage/receipts?secret=s3",
        receiver.base_url()
    );
    let dlr: Vec<(String, String)> = [
        ("messageId", "0C01"),
        ("status", "delivered"),
        ("err-code", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        fakes::send_vonage_receipt(&vonage_url, &dlr).await.unwrap(),
        200
    );
    let posted = &receiver.control().messages()[1];
    let query = posted.path.split_once('?').unwrap().1;
    let query = receipts::parse_form(query.as_bytes()).unwrap();
    let secret = query
        .iter()
        .find(|(k, _)| k == receipts::SECRET_QUERY_PARAM)
        .map(|(_, v)| v.as_str());
    receipts::verify_shared_secret(&SecretString::from("s3"), secret).unwrap();
    let receipt = parse_vonage(&receipts::parse_form(posted.raw_body.as_bytes()).unwrap()).unwrap();
    assert_eq!(receipt.status, ReceiptStatus::Delivered);
}

#[tokio::test]
async fn smtp_authenticates_when_credentials_are_set() {
    let server = FakeSmtpServer::start().await.unwrap();
    let provider = SmtpProvider::new(
        "mail",
        SmtpConfig {
            host: server.host(),
            port: Some(server.port()),
            tls: SmtpTls::None,
            username: Some("relay-user".into()),
            password: Some(SecretString::from("relay-pass")),
            from: "no-reply@acme.example".into(),
            subject: "Code".into(),
            timeout_ms: TIMEOUT_MS,
            ca_file: None,
        },
    )
    .unwrap();
    provider
        .send(&message(Channel::Email, "user@example.com"))
        .await
        .unwrap();
    assert_eq!(server.control().messages().len(), 1);
}

// ---- Voice: Twilio Calls and the Vonage Voice API ----

const SPOKEN_TEXT: &str = "Your code is 4, 9, 3, 8, 1, 7";

fn call(to: &str, locale: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        body: SPOKEN_TEXT.into(),
        locale: locale.map(str::to_owned),
        ..message(Channel::Voice, to)
    }
}

/// Neither the code nor the words that spell it appear in `error`.
fn assert_no_spoken_code(error: &ProviderError) {
    assert_no_code(error);
    assert!(!error.to_string().contains("4, 9, 3"), "{error}");
}

/// What a provider must make of its fake's faults.
struct Classified<'a> {
    /// The pause a rate limit asks for, as the provider reports it.
    throttled_for: Duration,
    /// What the error of a server failure says.
    failure_says: &'a str,
    /// What the error of a rejected number says.
    rejection_says: &'a str,
}

/// The `Retry-After` the fakes' rate limit gives in `assert_faults_classified`.
const FAKE_RETRY_AFTER: Duration = Duration::from_secs(4);

/// Drives `provider` through its fake's faults, one at a time: a rate limit, a server
/// error, refused credentials, a rejected number, a hang. Each error is classified as `expected` says and never
/// holds the code, written or spelled out; a hang places nothing.
async fn assert_faults_classified(
    server: &FakeProviderServer,
    provider: &dyn Provider,
    message: impl Fn(&str) -> OutboundMessage,
    expected: Classified<'_>,
) {
    let control = server.control();
    let to = "+4915112345678";

    control.rate_limit(Some(FAKE_RETRY_AFTER));
    let error = provider.send(&message(to)).await.unwrap_err();
    assert_transient(&error, Some(expected.throttled_for));
    assert_no_spoken_code(&error);
    control.rate_limit(None);

    control.fail_share(1.0);
    let error = provider.send(&message(to)).await.unwrap_err();
    assert_transient(&error, None);
    assert_no_spoken_code(&error);
    assert!(error.to_string().contains(expected.failure_says), "{error}");
    control.fail_share(0.0);

    control.refuse_credentials(true);
    let error = provider.send(&message(to)).await.unwrap_err();
    assert_permanent(&error);
    assert!(error.to_string().contains("401"), "{error}");
    control.refuse_credentials(false);

    let rejected = "+4915100000000";
    control.reject_numbers([rejected]);
    let error = provider.send(&message(rejected)).await.unwrap_err();
    assert_permanent(&error);
    assert_no_spoken_code(&error);
    assert!(
        error.to_string().contains(expected.rejection_says),
        "{error}"
    );

    control.hang(true);
    assert_times_out(provider, &message(to)).await;
    assert!(control.messages().is_empty(), "nothing was taken");
}

fn twilio_voice(server: &FakeProviderServer) -> TwilioVoiceProvider {
    TwilioVoiceProvider::new(
        "twilio-call",
        TwilioVoiceConfig {
            base_url: server.base_url(),
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: SecretString::from("token-1"),
            from: "+15005550006".into(),
            status_callback: Some("https://otpd.example/v1/providers/twilio-call/receipts".into()),
            voice: Some("Polly.Vicki".into()),
            languages: BTreeMap::from([("de".to_owned(), "de-DE".to_owned())]),
            repeat: 2,
            timeout_ms: TIMEOUT_MS,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn twilio_voice_places_the_documented_call() {
    let server = FakeProviderServer::start().await.unwrap();
    let receipt = twilio_voice(&server)
        .send(&call("+4915112345678", Some("de-AT")))
        .await
        .unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.format, WireFormat::TwilioCall);
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/AC00000000000000000000000000000001/Calls.json"
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode("AC00000000000000000000000000000001:token-1");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(request.field("To"), Some("+4915112345678"));
    assert_eq!(request.field("From"), Some("+15005550006"));
    assert_eq!(
        request.field("Twiml"),
        Some(
            r#"<Response><Say loop="2" voice="Polly.Vicki" language="de-DE">Your code is 4, 9, 3, 8, 1, 7</Say></Response>"#
        )
    );
    assert_eq!(request.body, SPOKEN_TEXT, "the fake reads the words out");
    assert_eq!(
        request.field("StatusCallback"),
        Some("https://otpd.example/v1/providers/twilio-call/receipts")
    );
    assert!(request.provider_message_id.starts_with("CA"));
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );
}

#[tokio::test]
async fn twilio_voice_escapes_the_text_and_leaves_an_unknown_language_to_twilio() {
    let server = FakeProviderServer::start().await.unwrap();
    let mut message = call("+4915112345678", Some("fr"));
    message.body = "Code <1> & \"2\"".into();
    twilio_voice(&server).send(&message).await.unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(
        request.field("Twiml"),
        Some(
            r#"<Response><Say loop="2" voice="Polly.Vicki">Code &lt;1&gt; &amp; &quot;2&quot;</Say></Response>"#
        )
    );
    assert_eq!(request.body, "Code <1> & \"2\"");
}

#[tokio::test]
async fn twilio_voice_failures_are_classified() {
    let server = FakeProviderServer::start().await.unwrap();
    let expected = Classified {
        throttled_for: FAKE_RETRY_AFTER,
        failure_says: "500",
        rejection_says: "21217",
    };
    let provider = twilio_voice(&server);
    assert_faults_classified(&server, &provider, |to| call(to, None), expected).await;
}

const VONAGE_APPLICATION: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";

fn vonage_voice_config(server: &FakeProviderServer) -> VonageVoiceConfig {
    VonageVoiceConfig {
        base_url: server.base_url(),
        application_id: VONAGE_APPLICATION.into(),
        private_key: SecretString::from(include_str!("fixtures/vonage-voice-test-key.pem")),
        from: "+447700900001".into(),
        event_url: Some("https://otpd.example/v1/providers/vonage-call/receipts?secret=s".into()),
        languages: BTreeMap::new(),
        repeat: 3,
        timeout_ms: TIMEOUT_MS,
    }
}

#[derive(serde::Deserialize)]
struct VonageClaims {
    application_id: String,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The claims of the token a recorded call carries, checked against the key pair's public
/// half.
fn vonage_claims(request: &fakes::RecordedMessage) -> VonageClaims {
    let token = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .expect("a bearer token");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(include_bytes!(
        "fixtures/vonage-voice-test-key.pub.pem"
    ))
    .unwrap();
    jsonwebtoken::decode::<VonageClaims>(
        token,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .expect("a token the application's key signed")
    .claims
}

#[tokio::test]
async fn vonage_voice_places_the_documented_call_with_a_signed_token() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = VonageVoiceProvider::new("vonage-call", vonage_voice_config(&server)).unwrap();
    let receipt = provider
        .send(&call("+4915112345678", Some("pt-BR")))
        .await
        .unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.format, WireFormat::VonageCall);
    assert_eq!(request.path, "/v1/calls");
    assert_eq!(request.header("content-type"), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_str(&request.raw_body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "to": [{"type": "phone", "number": "4915112345678"}],
            "from": {"type": "phone", "number": "447700900001"},
            "ncco": [{"action": "talk", "text": SPOKEN_TEXT, "loop": 3, "language": "pt-BR"}],
            "event_url": ["https://otpd.example/v1/providers/vonage-call/receipts?secret=s"],
        })
    );
    let claims = vonage_claims(request);
    assert_eq!(claims.application_id, VONAGE_APPLICATION);
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.jti.len(), 32);
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );

    // The next call reuses the token rather than signing one per call.
    provider.send(&call("+4915112345678", None)).await.unwrap();
    let second = &server.control().messages()[1];
    assert_eq!(vonage_claims(second).jti, claims.jti);
    let sent: serde_json::Value = serde_json::from_str(&second.raw_body).unwrap();
    assert_eq!(
        sent["ncco"][0].get("language"),
        None,
        "no locale, Vonage's default"
    );
}

#[tokio::test]
async fn vonage_voice_signs_a_fresh_token_once_one_is_refused() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = VonageVoiceProvider::new("vonage-call", vonage_voice_config(&server)).unwrap();
    let to = "+4915112345678";
    provider.send(&call(to, None)).await.unwrap();
    server.control().refuse_credentials(true);
    assert_permanent(&provider.send(&call(to, None)).await.unwrap_err());
    server.control().refuse_credentials(false);
    provider.send(&call(to, None)).await.unwrap();
    let calls = server.control().messages();
    assert_ne!(
        vonage_claims(&calls[0]).jti,
        vonage_claims(&calls[1]).jti,
        "the refused token was used again"
    );
}

#[tokio::test]
async fn vonage_voice_refuses_a_key_that_is_not_one() {
    let server = FakeProviderServer::start().await.unwrap();
    let config = VonageVoiceConfig {
        private_key: SecretString::from("not a key"),
        from: "Acme".into(),
        repeat: 0,
        ..vonage_voice_config(&server)
    };
    let problems = config.validate("providers.vonage-call");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0]
        .contains("providers.vonage-call.private_key is not an RSA private key in PEM that signs"));
    assert!(problems[1].contains("providers.vonage-call.from is 'Acme'"));
    assert!(problems[2].contains("providers.vonage-call.repeat is 0"));
    assert!(
        problems
            .iter()
            .all(|problem| !problem.contains("not a key")),
        "a key is never repeated: {problems:?}"
    );
}

#[tokio::test]
async fn vonage_voice_failures_are_classified() {
    let server = FakeProviderServer::start().await.unwrap();
    let expected = Classified {
        throttled_for: FAKE_RETRY_AFTER,
        failure_says: "Internal Error",
        rejection_says: "Bad Request",
    };
    let provider = VonageVoiceProvider::new("vonage-call", vonage_voice_config(&server)).unwrap();
    assert_faults_classified(&server, &provider, |to| call(to, None), expected).await;
}

// ---- WhatsApp Cloud API ----

const WHATSAPP_TOKEN: &str = "EAAG-test-token";

fn whatsapp_config(server: &FakeProviderServer) -> WhatsappConfig {
    WhatsappConfig {
        base_url: server.base_url(),
        api_version: "v21.0".into(),
        phone_number_id: "106540352242922".into(),
        access_token: SecretString::from(WHATSAPP_TOKEN),
        template: "otp_login".into(),
        languages: BTreeMap::from([
            ("de".to_owned(), "de".to_owned()),
            ("pt-BR".to_owned(), "pt_BR".to_owned()),
        ]),
        default_language: "en_US".into(),
        app_secret: None,
        verify_token: None,
        timeout_ms: TIMEOUT_MS,
    }
}

fn whatsapp(server: &FakeProviderServer) -> WhatsappProvider {
    WhatsappProvider::new("whatsapp", whatsapp_config(server)).unwrap()
}

/// A WhatsApp message: the code alone, the words are the template's.
fn whatsapp_message(to: &str, locale: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        body: "493817".into(),
        locale: locale.map(str::to_owned),
        ..message(Channel::Whatsapp, to)
    }
}

#[tokio::test]
async fn whatsapp_sends_the_authentication_template_with_its_copy_code_button() {
    let server = FakeProviderServer::start().await.unwrap();
    let provider = whatsapp(&server);
    let receipt = provider
        .send(&whatsapp_message("+4915112345678", Some("de-CH")))
        .await
        .unwrap();
    let request = &server.control().messages()[0];
    assert_eq!(request.format, WireFormat::Whatsapp);
    assert_eq!(request.path, "/v21.0/106540352242922/messages");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {WHATSAPP_TOKEN}").as_str())
    );
    let sent: serde_json::Value = serde_json::from_str(&request.raw_body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "4915112345678",
            "type": "template",
            "template": {
                "name": "otp_login",
                "language": {"code": "de"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "493817"}]},
                    {"type": "button", "sub_type": "url", "index": "0",
                     "parameters": [{"type": "text", "text": "493817"}]},
                ],
            },
        })
    );
    assert!(request.provider_message_id.starts_with("wamid."));
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(request.provider_message_id.as_str())
    );

    for (locale, language) in [
        (Some("pt-BR"), "pt_BR"),
        (Some("ja"), "en_US"),
        (None, "en_US"),
    ] {
        provider
            .send(&whatsapp_message("+4915112345678", locale))
            .await
            .unwrap();
        let last = server.control().messages().pop().unwrap();
        let sent: serde_json::Value = serde_json::from_str(&last.raw_body).unwrap();
        assert_eq!(sent["template"]["language"]["code"], language, "{locale:?}");
    }
}

#[tokio::test]
async fn whatsapp_failures_are_classified_by_the_cloud_api_s_codes() {
    let server = FakeProviderServer::start().await.unwrap();
    // Throughput reached is a 400 whose code says "later": back-pressure, not a failure.
    let expected = Classified {
        throttled_for: otpd::providers::whatsapp::THROTTLED_WAIT,
        failure_says: "131000",
        rejection_says: "131026",
    };
    let provider = whatsapp(&server);
    assert_faults_classified(
        &server,
        &provider,
        |to| whatsapp_message(to, None),
        expected,
    )
    .await;
}

#[test]
fn the_cloud_api_s_own_codes_decide_before_the_status() {
    use otpd::providers::whatsapp::classify_error;
    assert!(classify_error(400, 131008, "required parameter is missing").is_none());
    let throttled = classify_error(400, 130429, "throughput reached").unwrap();
    assert!(throttled.retry_after().is_some());
    // One person's limit holds back that message, never the provider's other sends.
    let one_person = classify_error(400, 131056, "pair rate limit").unwrap();
    assert!(one_person.is_transient() && one_person.retry_after().is_none());
    let temporary = classify_error(400, 2, "service temporarily unavailable").unwrap();
    assert!(temporary.is_transient() && temporary.retry_after().is_none());
}

#[tokio::test]
async fn whatsapp_settings_name_what_is_missing() {
    let server = FakeProviderServer::start().await.unwrap();
    let config = WhatsappConfig {
        phone_number_id: "+15550783881".into(),
        template: " ".into(),
        default_language: String::new(),
        verify_token: Some(SecretString::from("")),
        ..whatsapp_config(&server)
    };
    let problems = config.validate("providers.wa");
    for setting in [
        "providers.wa.phone_number_id is '+15550783881'",
        "providers.wa.template is empty",
        "providers.wa.default_language is empty",
        "providers.wa.verify_token is empty",
    ] {
        assert!(
            problems.iter().any(|problem| problem.starts_with(setting)),
            "{setting}: {problems:?}"
        );
    }
    assert_eq!(problems.len(), 4, "{problems:?}");
}

// ---- SMPP ----

const SMPP_PASSWORD: &str = "pw-1";

fn smpp_config(smsc: &FakeSmsc) -> SmppConfig {
    SmppConfig {
        host: "127.0.0.1".into(),
        port: smsc.port(),
        system_id: "otpd".into(),
        password: SecretString::from(SMPP_PASSWORD),
        system_type: String::new(),
        source_addr: "Acme".into(),
        source_ton: None,
        source_npi: None,
        bind: "transceiver".into(),
        window: 4,
        binds: 1,
        enquire_link_seconds: 30,
        tls: false,
        ca_file: None,
        timeout_ms: TIMEOUT_MS,
    }
}

fn smpp(smsc: &FakeSmsc, inbox: Option<ReceiptInbox>) -> SmppProvider {
    SmppProvider::new("smsc", smpp_config(smsc), inbox).unwrap()
}

#[tokio::test]
async fn smpp_submits_on_one_bind_gsm_or_ucs2_as_the_text_needs() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let provider = smpp(&smsc, None);
    let receipt = provider.send(&sms("+4915112345678")).await.unwrap();
    let mut unicode = sms("+4915112345678");
    unicode.body = "Ваш код 493817".into();
    provider.send(&unicode).await.unwrap();
    let submitted = smsc.control().submitted();
    assert_eq!(submitted.len(), 2);
    assert_eq!(submitted[0].to, "4915112345678", "no '+'");
    assert_eq!(submitted[0].source, "Acme");
    assert_eq!(submitted[0].text, CODE_TEXT);
    assert_eq!(submitted[0].data_coding, 0x00, "GSM 7-bit");
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some(submitted[0].message_id.as_str())
    );
    assert_eq!(submitted[1].data_coding, 0x08, "UCS-2");
    assert_eq!(submitted[1].text, "Ваш код 493817");
    assert!(submitted[0].tlvs.is_empty(), "no registration, no TLVs");
    assert_eq!(smsc.control().binds(), 1, "one bind for both");
}

#[tokio::test]
async fn smpp_carries_india_s_dlt_registration_in_tlvs() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let mut message = sms("+919812345678");
    message.registration = Some(otpd::providers::Registration {
        entity_id: "1101234567890123456".into(),
        template_id: "1107160000000000002".into(),
    });
    smpp(&smsc, None).send(&message).await.unwrap();
    assert_eq!(
        smsc.control().submitted()[0].tlvs,
        [
            (0x1400, b"1101234567890123456".to_vec()),
            (0x1401, b"1107160000000000002".to_vec())
        ]
    );
}

#[tokio::test]
async fn smpp_answers_are_classified_and_a_dropped_bind_is_bound_again() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let provider = smpp(&smsc, None);
    let control = smsc.control();
    let to = "+4915112345678";

    for back_pressure in [CommandStatus::EsmeRthrottled, CommandStatus::EsmeRmsgqful] {
        control.answer_submits_with(Some(back_pressure));
        let error = provider.send(&sms(to)).await.unwrap_err();
        assert_transient(&error, Some(otpd::providers::smpp::THROTTLED_WAIT));
    }
    control.answer_submits_with(Some(CommandStatus::EsmeRsyserr));
    assert_transient(&provider.send(&sms(to)).await.unwrap_err(), None);
    control.answer_submits_with(Some(CommandStatus::EsmeRinvdstadr));
    let error = provider.send(&sms(to)).await.unwrap_err();
    assert_permanent(&error);
    assert!(
        error.to_string().contains("ESME_RINVDSTADR (0x0B)"),
        "{error}"
    );
    control.answer_submits_with(None);

    control.go_silent(true);
    assert_times_out(&provider, &sms(to)).await;
    control.go_silent(false);

    // A bind that ends within seconds of being made is made again after a backoff, so an
    // SMSC that drops every bind is not bound in a loop.
    control.drop_binds();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = provider.send(&sms(to)).await.unwrap_err();
    let wait = waiting.retry_after().expect("how long until the next bind");
    assert!(wait <= Duration::from_millis(500), "{waiting}");
    tokio::time::sleep(wait).await;
    provider.send(&sms(to)).await.unwrap();
    assert_eq!(control.binds(), 2, "bound again after the drop");
}

#[tokio::test]
async fn smpp_keeps_at_most_its_window_unanswered() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let provider = Arc::new(
        SmppProvider::new(
            "smsc",
            SmppConfig {
                window: 2,
                timeout_ms: 1_000,
                ..smpp_config(&smsc)
            },
            None,
        )
        .unwrap(),
    );
    smsc.control().go_silent(true);
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let provider = Arc::clone(&provider);
            tokio::spawn(async move { provider.send(&sms("+4915112345678")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        smsc.control().submits_seen(),
        2,
        "the third waits for the window"
    );
    for send in sends {
        assert!(send.await.unwrap().is_err());
    }
}

#[tokio::test]
async fn smpp_refused_credentials_are_told_and_not_tried_at_once_again() {
    let smsc = FakeSmsc::start("otpd", "other").await.unwrap();
    let provider = smpp(&smsc, None);
    let error = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert_transient(&error, None);
    assert!(error.to_string().contains("ESME_RINVPASWD"), "{error}");
    let again = provider.send(&sms("+4915112345678")).await.unwrap_err();
    assert!(again.to_string().contains("binds again shortly"), "{again}");
    assert_eq!(smsc.control().binds(), 0);
}

#[tokio::test]
async fn smpp_receipts_come_back_on_the_bind_and_are_acknowledged_once_recorded() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let (inbox, mut receipts) = ReceiptInbox::new();
    let provider = smpp(&smsc, Some(inbox));
    smsc.control().hold_receipts(true);
    let sent = provider.send(&sms("+4915112345678")).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(200), receipts.recv()).await;
    assert!(early.is_err(), "a receipt came while the SMSC held it");
    smsc.control().hold_receipts(false);
    let pushed = tokio::time::timeout(Duration::from_secs(5), receipts.recv())
        .await
        .expect("the receipt")
        .expect("an open inbox");
    assert_eq!(pushed.provider, "smsc");
    assert_eq!(
        Some(pushed.receipt.provider_message_id.as_str()),
        sent.provider_message_id.as_deref()
    );
    assert_eq!(pushed.receipt.status, ReceiptStatus::Delivered);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        smsc.control().receipt_answers().is_empty(),
        "answered before it was recorded"
    );
    pushed.recorded.send(true).unwrap();

    // A receipt the store could not take is answered so the SMSC delivers it again.
    provider.send(&sms("+4915112345678")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), receipts.recv())
        .await
        .expect("the second receipt")
        .expect("an open inbox");
    second.recorded.send(false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while smsc.control().receipt_answers().len() < 2 {
        assert!(Instant::now() < deadline, "the receipts were not answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        smsc.control().receipt_answers(),
        [CommandStatus::EsmeRok, CommandStatus::EsmeRxTAppn]
    );
}

#[tokio::test]
async fn smpp_names_a_country_s_sender_by_its_own_kind_and_sends_an_emoji_as_utf16() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let config = SmppConfig {
        source_addr: "15550001".into(),
        ..smpp_config(&smsc)
    };
    let provider = SmppProvider::new("smsc", config, None).unwrap();
    let mut by_name = sms("+919812345678");
    by_name.sender_id = Some("ACMEIN".into());
    provider.send(&by_name).await.unwrap();
    provider.send(&sms("+4915112345678")).await.unwrap();
    let mut emoji = sms("+4915112345678");
    emoji.body = "🔐 493817".into();
    provider.send(&emoji).await.unwrap();
    let submitted = smsc.control().submitted();
    assert_eq!(
        (submitted[0].source.as_str(), submitted[0].source_ton_npi),
        ("ACMEIN", (5, 0))
    );
    assert_eq!(
        (submitted[1].source.as_str(), submitted[1].source_ton_npi),
        ("15550001", (1, 1))
    );
    assert_eq!(submitted[2].data_coding, 0x08);
    assert_eq!(submitted[2].text, "🔐 493817", "a surrogate pair, whole");
}

#[tokio::test]
async fn smpp_sends_take_its_binds_in_turn() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let config = SmppConfig {
        binds: 3,
        ..smpp_config(&smsc)
    };
    let provider = SmppProvider::new("smsc", config, None).unwrap();
    for _ in 0..6 {
        provider.send(&sms("+4915112345678")).await.unwrap();
    }
    assert_eq!(smsc.control().binds(), 3, "one bind each, kept");
    assert_eq!(smsc.control().submitted().len(), 6);
    let too_many = SmppConfig {
        binds: 17,
        ..smpp_config(&smsc)
    };
    assert!(too_many.validate("providers.smsc")[0].contains("providers.smsc.binds is 17"));
}

#[tokio::test]
async fn smpp_settings_name_what_is_wrong() {
    let smsc = FakeSmsc::start("otpd", SMPP_PASSWORD).await.unwrap();
    let config = SmppConfig {
        password: SecretString::from("much-too-long"),
        bind: "receiver".into(),
        window: 500,
        ca_file: Some("/etc/otpd/smsc-ca.pem".into()),
        ..smpp_config(&smsc)
    };
    let problems = config.validate("providers.smsc");
    for setting in [
        "providers.smsc.password must be ASCII of 1 to 8 characters",
        "providers.smsc.bind is 'receiver'",
        "providers.smsc.window is 500",
        "providers.smsc.ca_file is set but tls is not",
    ] {
        assert!(
            problems.iter().any(|problem| problem.starts_with(setting)),
            "{setting}: {problems:?}"
        );
    }
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|problem| !problem.contains("much-too-long")),
        "a password is never repeated"
    );
}
