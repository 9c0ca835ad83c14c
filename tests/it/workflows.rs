//! Fallback workflows through the whole engine: the same code on each step's channel after
//! the step before's timeout, a check or a cancel that stops what is left, `…/next` moving on
//! at once, a tenant's default workflow, refusals of workflows that cannot run, and a step
//! due while otpd was down sent once it is back. Every channel goes to the sandbox, whose
//! outbox says on which channel each message went.

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use otpd::access::settings::WorkflowStepSettings;
use otpd::access::TenantSettings;
use otpd::config::Settings;
use otpd::domain::Channel;

use crate::helpers::*;

/// The shortest timeout a step may have.
const SHORTEST: u64 = 15;
/// The resend cooldown, which `…/next` waits out too.
const COOLDOWN: Duration = Duration::from_secs(2);

/// Routes every channel to the sandbox.
fn route_every_channel_to_the_sandbox(settings: &mut Settings) {
    let routes = settings
        .routing
        .regions
        .get_mut("default")
        .expect("a default route");
    for channel in Channel::all() {
        routes.insert(channel, vec![otpd::providers::SANDBOX.to_owned()]);
    }
}

/// An app whose tenant `dev` may send on every channel, with `workflow` as its default, and
/// the settings `configure` gives.
async fn spawn_app_with_workflow(
    workflow: Option<Vec<WorkflowStepSettings>>,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let store = tempfile::tempdir().expect("a store dir");
    let key = add_tenant(store.path(), otpd::tenants::DEV_TENANT);
    let mut app = start_app(store, |settings| {
        route_every_channel_to_the_sandbox(settings);
        settings.verification.resend_cooldown_seconds = COOLDOWN.as_secs();
        configure(settings);
        settings.tenants.insert(
            otpd::tenants::DEV_TENANT.to_owned(),
            TenantSettings {
                channels: Channel::all().collect(),
                workflow,
                ..Default::default()
            },
        );
    });
    app.api_key = key;
    app
}

/// The code a message carries, read as its channel says it (a call spells it out).
fn code_in(message: &Value) -> String {
    let body = message["body"].as_str().expect("a body");
    match message["channel"].as_str() {
        Some("voice") => spoken_code(body, 6),
        _ => extract_code(body, 6),
    }
}

fn channels_of(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message["channel"].as_str().unwrap_or_default())
        .collect()
}

/// Each step's status, as the verification shows it.
fn step_statuses(verification: &Reply) -> Vec<String> {
    verification.body["workflow"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no workflow steps in {}", verification.text))
        .iter()
        .map(|step| step["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn next(app: &TestApp, id: &str) -> Reply {
    send(app.request(Method::POST, &format!("/v1/verifications/{id}/next"))).await
}

#[tokio::test]
async fn each_step_sends_the_same_code_after_the_timeout_of_the_one_before_until_a_check_stops_it()
{
    let app = spawn_app_with_workflow(None, |_| {}).await;
    let to = de_mobile(91);
    let started = Instant::now();
    let created = app
        .create(&json!({
            "to": to,
            "workflow": [
                {"channel": "whatsapp", "channel_timeout_seconds": SHORTEST},
                {"channel": "sms"},
                {"channel": "voice"},
            ],
            "channel_timeout_seconds": SHORTEST,
        }))
        .await;
    created.expect_status(201);
    assert_eq!(created.str("channel"), "whatsapp");
    let id = created.str("id").to_owned();
    let first = wait_for_messages(app.store_dir(), &id, 1).await;
    let code = code_in(&first[0]);
    let shown = app.get(&id).await;
    assert_eq!(step_statuses(&shown), ["sent", "scheduled", "waiting"]);
    let due = seconds_from_now(shown.body["workflow"]["next_step_at"].as_str().unwrap());
    assert!(
        (13.0..=16.0).contains(&due),
        "the next step is due in {due} s"
    );

    // Unverified after 15 s: the same code goes out by SMS, not before.
    let messages = wait_for_messages_within(app.store_dir(), &id, 2, Duration::from_secs(25)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(SHORTEST - 1),
        "the second step went after {took:?}"
    );
    assert_eq!(channels_of(&messages), ["whatsapp", "sms"]);
    assert_eq!(code_in(&messages[1]), code, "a step sends the same code");
    let shown = app.get(&id).await;
    assert_eq!(shown.str("channel"), "sms");
    assert_eq!(step_statuses(&shown), ["sent", "sent", "scheduled"]);
    let second = &shown.body["workflow"]["steps"][1];
    assert_eq!(
        (second["by"].as_str(), second["send"].as_u64()),
        (Some("timeout"), Some(2))
    );
    let timeline =
        send(app.request(Method::GET, &format!("/v1/verifications/{id}/attempts"))).await;
    timeline.expect_status(200);
    assert_eq!(step_statuses(&timeline), ["sent", "sent", "scheduled"]);
    let sends: Vec<_> = timeline.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| {
            (
                attempt["send"].as_u64().unwrap(),
                attempt["channel"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        sends.contains(&(1, "whatsapp".into())) && sends.contains(&(2, "sms".into())),
        "{sends:?}"
    );

    // The code is verified: the call never comes.
    let due = shown.body["workflow"]["next_step_at"]
        .as_str()
        .unwrap()
        .to_owned();
    app.check_code(&id, &code).await.expect_status(200);
    let shown = app.get(&id).await;
    assert_eq!(step_statuses(&shown), ["sent", "sent", "not_reached"]);
    assert!(shown.body["workflow"]["next_step_at"].is_null());
    sleep_until(&due).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        channels_of(&outbox_messages(app.store_dir(), &id)),
        ["whatsapp", "sms"],
        "a verified code's workflow sent on"
    );
}

#[tokio::test]
async fn a_refused_step_goes_once_its_refusal_passes_or_is_skipped_when_the_code_would_not_last() {
    // One send per destination in the window: the second step is refused too_many_sends.
    let passing = spawn_app_with_workflow(None, |settings| {
        settings.verification.sends_per_destination = 1;
        settings.verification.send_window_seconds = SHORTEST + 5;
    })
    .await;
    let lasting = spawn_app_with_workflow(None, |settings| {
        settings.verification.sends_per_destination = 1;
    })
    .await;
    let workflow = json!([
        {"channel": "sms", "channel_timeout_seconds": SHORTEST},
        {"channel": "whatsapp"},
        {"channel": "voice"},
    ]);
    let started = Instant::now();
    let mut ids = Vec::new();
    for app in [&passing, &lasting] {
        let created = app
            .create(&json!({"to": de_mobile(99), "workflow": workflow}))
            .await;
        created.expect_status(201);
        ids.push(created.str("id").to_owned());
    }

    // The window ends 20 s after the first send, within the code's life: the step waits
    // for it, then goes.
    let messages =
        wait_for_messages_within(passing.store_dir(), &ids[0], 2, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(SHORTEST + 4),
        "went after {took:?}"
    );
    assert_eq!(channels_of(&messages), ["sms", "whatsapp"]);

    // A 600 s window outlasts the code: both later steps are skipped, each saying why.
    let shown = lasting.get(&ids[1]).await;
    assert_eq!(step_statuses(&shown), ["sent", "skipped", "skipped"]);
    for step in [1, 2] {
        let step = &shown.body["workflow"]["steps"][step];
        assert_eq!(step["reason"], "too_many_sends", "{step}");
        assert_eq!(step["by"], "timeout", "{step}");
    }
    assert!(shown.body["workflow"]["next_step_at"].is_null());
    assert_eq!(
        channels_of(&outbox_messages(lasting.store_dir(), &ids[1])),
        ["sms"]
    );
}

#[tokio::test]
async fn a_canceled_verification_s_workflow_sends_nothing_more() {
    let app = spawn_app_with_workflow(None, |_| {}).await;
    let created = app
        .create(&json!({
            "to": de_mobile(92),
            "workflow": [{"channel": "sms", "channel_timeout_seconds": SHORTEST}, {"channel": "whatsapp"}],
        }))
        .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    wait_for_messages(app.store_dir(), &id, 1).await;
    let due = app.get(&id).await.body["workflow"]["next_step_at"]
        .as_str()
        .unwrap()
        .to_owned();
    app.cancel(&id).await.expect_status(200);
    sleep_until(&due).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(channels_of(&outbox_messages(app.store_dir(), &id)), ["sms"]);
    next(&app, &id).await.expect_error(409, "canceled");
}

#[tokio::test]
async fn next_sends_the_next_step_at_once_with_the_same_code_until_none_is_left() {
    let app = spawn_app_with_workflow(None, |_| {}).await;
    let created = app
        .create(&json!({
            "to": de_mobile(93),
            "channel": "sms",
            "workflow": [
                {"channel": "sms", "channel_timeout_seconds": 900},
                {"channel": "voice"},
                {"channel": "whatsapp"},
            ],
        }))
        .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    let code = code_in(&wait_for_messages(app.store_dir(), &id, 1).await[0]);

    next(&app, &id).await.expect_error(429, "resend_cooldown");
    tokio::time::sleep(COOLDOWN).await;
    let moved = next(&app, &id).await;
    moved.expect_status(200);
    assert_eq!(
        (moved.str("id"), moved.str("channel")),
        (id.as_str(), "voice")
    );
    let messages = wait_for_messages(app.store_dir(), &id, 2).await;
    assert_eq!(channels_of(&messages), ["sms", "voice"]);
    assert_eq!(code_in(&messages[1]), code);
    let shown = app.get(&id).await;
    assert_eq!(step_statuses(&shown), ["sent", "sent", "scheduled"]);
    assert_eq!(shown.body["workflow"]["steps"][1]["by"], "asked");

    // A doubled or retried request moves one step, not two: the second waits the cooldown.
    next(&app, &id).await.expect_error(429, "resend_cooldown");
    tokio::time::sleep(COOLDOWN).await;
    next(&app, &id).await.expect_status(200);
    let messages = wait_for_messages(app.store_dir(), &id, 3).await;
    assert_eq!(channels_of(&messages), ["sms", "voice", "whatsapp"]);
    tokio::time::sleep(COOLDOWN).await;
    next(&app, &id).await.expect_error(409, "no_next_step");
    app.check_code(&id, &code).await.expect_status(200);
    next(&app, &id).await.expect_error(409, "already_approved");
    next(&app, "ver_unknown")
        .await
        .expect_error(404, "not_found");
    let stranger = app.add_tenant("stranger");
    send(app.request_as(
        &stranger,
        Method::POST,
        &format!("/v1/verifications/{id}/next"),
    ))
    .await
    .expect_error(404, "not_found");

    let plain = app
        .create(&json!({"to": de_mobile(94), "channel": "sms"}))
        .await;
    plain.expect_status(201);
    assert!(plain.body.get("workflow").is_none());
    let refused = next(&app, plain.str("id")).await;
    refused.expect_error(409, "no_next_step");
    assert!(
        refused.text.contains("no fallback workflow"),
        "{}",
        refused.text
    );
}

#[tokio::test]
async fn a_tenant_s_default_workflow_is_followed_by_creates_on_its_first_channel() {
    let step = |channel, channel_timeout_seconds| WorkflowStepSettings {
        channel,
        channel_timeout_seconds,
    };
    let app = spawn_app_with_workflow(
        Some(vec![
            step(Channel::Sms, Some(120)),
            step(Channel::Whatsapp, None),
        ]),
        |_| {},
    )
    .await;
    let followed = app
        .create(&json!({"to": de_mobile(95), "channel": "sms"}))
        .await;
    followed.expect_status(201);
    let shown = app.get(followed.str("id")).await;
    assert_eq!(step_statuses(&shown), ["sent", "scheduled"]);
    assert_eq!(
        shown.body["workflow"]["steps"][0]["channel_timeout_seconds"],
        120
    );
    assert_eq!(
        shown.body["workflow"]["steps"][1]["channel_timeout_seconds"],
        60
    );

    // Another first channel, or a workflow of its own: the default does not apply.
    let by_whatsapp = app
        .create(&json!({"to": de_mobile(96), "channel": "whatsapp"}))
        .await;
    by_whatsapp.expect_status(201);
    assert!(app
        .get(by_whatsapp.str("id"))
        .await
        .body
        .get("workflow")
        .is_none());
    let one_step = app
        .create(&json!({"to": de_mobile(97), "workflow": [{"channel": "sms"}]}))
        .await;
    one_step.expect_status(201);
    assert_eq!(step_statuses(&app.get(one_step.str("id")).await), ["sent"]);
}

#[tokio::test]
async fn a_workflow_that_cannot_run_is_refused_whole_and_sends_nothing() {
    // Calls are not routed here, and the tenant has not opted in to them.
    let app = spawn_app_with(|settings| {
        settings
            .routing
            .regions
            .get_mut("default")
            .unwrap()
            .insert(Channel::Whatsapp, vec![otpd::providers::SANDBOX.to_owned()]);
    })
    .await;
    let to = de_mobile(98);
    for (body, status, expected) in [
        (
            json!({"to": to, "workflow": [{"channel": "sms"}, {"channel": "email"}]}),
            400,
            "Step 2 of 'workflow' is email",
        ),
        (
            json!({"to": to, "channel": "whatsapp", "workflow": [{"channel": "sms"}]}),
            400,
            "'channel' must be the workflow's first channel (sms)",
        ),
        (
            json!({"to": to, "workflow": [{"channel": "sms", "channel_timeout_seconds": 14}, {"channel": "whatsapp"}]}),
            400,
            "'channel_timeout_seconds' of step 1 is 14",
        ),
        (
            json!({"to": to, "channel": "sms", "channel_timeout_seconds": 30}),
            400,
            "give a workflow, or leave it out",
        ),
        (json!({"to": to}), 400, "'channel' is missing"),
        (json!({"to": to, "workflow": []}), 400, "1 to 5 steps"),
        (
            json!({"to": to, "workflow": [{"channel": "sms", "timeout": 30}]}),
            400,
            "'workflow[0].timeout'",
        ),
        (
            json!({"to": to, "workflow": [{"channel": "sms"}, {"channel": "voice"}]}),
            400,
            "routing.default.voice",
        ),
    ] {
        let refused = app.create(&body).await;
        refused.expect_error(status, "invalid_request");
        assert!(refused.text.contains(expected), "{body}: {}", refused.text);
    }
    // Routed, but not for this tenant: a voice step is refused like a call would be.
    let app = spawn_app_with(route_every_channel_to_the_sandbox).await;
    let refused = app
        .create(&json!({"to": to, "workflow": [{"channel": "sms"}, {"channel": "voice"}]}))
        .await;
    refused.expect_error(403, "destination_blocked");
    assert!(refused.text.contains("voice"), "{}", refused.text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.outbox_is_empty(), "a refused workflow sent something");
}

#[tokio::test]
async fn a_step_due_while_otpd_was_down_goes_out_once_it_is_back() {
    let store = tempfile::tempdir().unwrap();
    let client = http_client();
    let env = [("OTPD__ROUTING__DEFAULT__WHATSAPP", "sandbox")];
    let mut first = OtpdProcess::start(store.path(), &env);
    let key = wait_for_dev_key(store.path()).await;
    let created = send(
        authed(&client, Method::POST, first.url("/v1/verifications"), &key).json(&json!({
            "to": DE_MOBILE,
            "workflow": [{"channel": "sms", "channel_timeout_seconds": SHORTEST}, {"channel": "whatsapp"}],
        })),
    )
    .await;
    created.expect_status(201);
    let id = created.str("id").to_owned();
    let code = message_code(&wait_for_messages(store.path(), &id, 1).await[0], 6);
    let due = first.get_verification(&client, &key, &id).await.body["workflow"]["next_step_at"]
        .as_str()
        .unwrap()
        .to_owned();

    first.stop();
    sleep_until(&due).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        outbox_messages(store.path(), &id).len(),
        1,
        "sent while down"
    );
    let second = OtpdProcess::start(store.path(), &env);
    let messages = wait_for_messages(store.path(), &id, 2).await;
    assert_eq!(channels_of(&messages), ["sms", "whatsapp"]);
    assert_eq!(code_in(&messages[1]), code);
    let check = second.check_code(&client, &key, &id, &code).await;
    assert_eq!(check.body["valid"], true, "{}", check.text);
}
