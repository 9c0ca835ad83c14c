//! Codes phones fill in by themselves: a tenant's WebOTP domain and Android app hash end
//! each of its SMS (not its email), and the segments each SMS takes are a metric.

use reqwest::Method;
use serde_json::json;

use crate::access::app_with_acme;
use crate::helpers::*;
use otpd::access::TenantSettings;

/// The count of SMS `otpd_sms_segments` measured for the sandbox in GSM 7-bit (the
/// registry is the process's: other tests' messages count too).
async fn measured_sms(app: &TestApp) -> u64 {
    let metrics = send(app.anonymous(Method::GET, "/metrics")).await;
    metrics
        .text
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"otpd_sms_segments_count{encoding="gsm7",provider="sandbox"} "#)
        })
        .map_or(0, |count| count.trim().parse().unwrap())
}

#[tokio::test]
async fn an_sms_ends_with_the_webotp_line_and_the_app_hash_and_an_email_does_not() {
    let (app, acme, _) = app_with_acme(
        TenantSettings {
            webotp_domain: Some("login.example.com".into()),
            android_app_hash: Some("FA+9qCX9VSu".into()),
            ..TenantSettings::default()
        },
        |_| {},
    );
    let measured_before = measured_sms(&app).await;

    let sms = app
        .create_as(&acme, &json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;
    sms.expect_status(201);
    let id = sms.str("id");
    let code = app.code_for(id).await;
    let message = &app.messages_for(id, 1).await[0];
    let text = message["body"].as_str().unwrap();
    assert!(
        text.ends_with(&format!("\nFA+9qCX9VSu\n\n@login.example.com #{code}")),
        "{text}"
    );
    assert!(
        measured_sms(&app).await > measured_before,
        "otpd_sms_segments measured the SMS"
    );

    let email = app
        .create_as(&acme, &json!({"to": EMAIL, "channel": "email"}))
        .await;
    email.expect_status(201);
    let mail = &app.messages_for(email.str("id"), 1).await[0];
    let text = mail["body"].as_str().unwrap();
    assert!(
        !text.contains("@login.example.com") && !text.contains("FA+9qCX9VSu"),
        "{text}"
    );
}
