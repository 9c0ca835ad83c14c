//! The operator's page (/ui) in a real browser: Debian's Chromium, headless, driven by
//! Selenium (tests/ui/operator_page.py) by keyboard. Signs in with an admin key, sees the
//! providers, looks a number up and reads its timeline, lifts a fraud block; a screenshot of
//! each step is kept in target/test-output/ui.

use std::path::PathBuf;
use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::access::app_with_acme;
use crate::fraud::{pump_until_blocked, quick_guard, PUMPED_PREFIX};
use crate::helpers::*;
use otpd::access::TenantSettings;
use otpd::api::ui::CONTENT_SECURITY_POLICY;
use otpd::fraud::FraudMode;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/operator_page.py");

fn screenshots() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/test-output/ui"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_reads_a_timeline_and_lifts_a_fraud_block_in_a_browser() {
    let (app, acme, ops) = app_with_acme(TenantSettings::default(), |settings| {
        quick_guard(settings, FraudMode::Enforce)
    });

    // The page needs no key, and says where it may load from.
    let page = send(app.anonymous(Method::GET, "/ui")).await;
    page.expect_status(200);
    assert_eq!(
        page.headers.get("content-security-policy").unwrap(),
        CONTENT_SECURITY_POLICY
    );
    assert!(page.text.contains("/ui/app.js"));
    assert!(
        !page.text.contains("<script>") && !page.text.contains("http"),
        "no inline script, nothing from elsewhere"
    );

    pump_until_blocked(&app, &acme).await;
    let created = app
        .create_as(&acme, &json!({"to": DE_MOBILE, "channel": "sms"}))
        .await;
    created.expect_status(201);
    let id = created.str("id").to_string();
    app.code_for(&id).await;

    let python = python_tools().join("python");
    let mut command = Command::new(python);
    command.arg(SCRIPT).args([
        app.address.as_str(),
        ops.as_str(),
        acme.as_str(),
        DE_MOBILE,
        id.as_str(),
        PUMPED_PREFIX,
    ]);
    command.arg(screenshots());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run tests/ui/operator_page.py (needs chromium and chromium-driver)");
    let printed = String::from_utf8_lossy(&output.stdout);
    eprintln!("{printed}");
    assert!(
        output.status.success(),
        "the browser run failed (screenshots in {}):\n{printed}\n{}",
        screenshots().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(printed.matches("screenshot: ").count(), 6, "{printed}");

    // The lift went through otpd: the block is gone.
    let blocks = send(app.request_as(&ops, Method::GET, "/v1/fraud/blocks")).await;
    assert_eq!(blocks.body["blocks"], json!([]), "{}", blocks.text);
}
