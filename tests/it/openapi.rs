//! `GET /openapi.json`: it lists every route, only routes that exist, and what each one
//! answers matches the schema it gives for that status.

use reqwest::Method;
use serde_json::{json, Value};

use crate::access::app_with_acme;
use crate::helpers::*;
use otpd::access::TenantSettings;

/// Every route otpd serves, as the description must list it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/verifications"),
    ("post", "/v1/verifications/check"),
    ("get", "/v1/verifications/{id}"),
    ("post", "/v1/verifications/{id}/check"),
    ("post", "/v1/verifications/{id}/cancel"),
    ("post", "/v1/verifications/{id}/next"),
    ("get", "/v1/verifications/{id}/attempts"),
    ("get", "/v1/admin/verifications"),
    ("get", "/v1/admin/verifications/{id}"),
    ("get", "/v1/admin/blocklist"),
    ("post", "/v1/admin/blocklist"),
    ("delete", "/v1/admin/blocklist/{entry}"),
    ("get", "/v1/fraud/blocks"),
    ("delete", "/v1/admin/fraud/blocks/{prefix}"),
    ("post", "/v1/providers/{provider}/receipts"),
    ("get", "/v1/providers/{provider}/receipts"),
    ("get", "/v1/providers"),
    ("get", "/v1/cluster"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v2/Services"),
    ("post", "/v2/Services"),
    ("get", "/v2/Services/{Sid}"),
    ("post", "/v2/Services/{ServiceSid}/Verifications"),
    ("post", "/v2/Services/{ServiceSid}/VerificationCheck"),
    ("get", "/v2/Services/{ServiceSid}/Verifications/{Sid}"),
    ("post", "/v2/Services/{ServiceSid}/Verifications/{Sid}"),
    ("get", "/v2/Attempts"),
];

/// The description, and a way to hold an answer against it.
pub struct Description(Value);

impl Description {
    pub async fn of(app: &TestApp) -> Self {
        let reply = send(app.anonymous(Method::GET, "/openapi.json")).await;
        reply.expect_status(200);
        Description(reply.body)
    }

    /// Fails unless `reply`, answered to `method` on `route`, has a status the description
    /// lists for it and a body its schema for that status accepts.
    #[track_caller]
    pub fn expect_described(&self, method: &str, route: &str, reply: &Reply) {
        let status = reply.status.as_str().to_owned();
        let answer = &self.0["paths"][route][method]["responses"][&status];
        assert!(
            answer.is_object(),
            "{method} {route} answered {status}, which the description does not list: {}",
            reply.body
        );
        let Some(schema) = answer["content"]["application/json"]["schema"].as_object() else {
            return;
        };
        // The schema is resolved against the whole description, for its `$ref`s.
        let mut rooted = json!({"allOf": [schema], "components": self.0["components"]});
        rooted["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        let validator = jsonschema::draft202012::new(&rooted).expect("a schema that compiles");
        let errors: Vec<String> = validator
            .iter_errors(&reply.body)
            .map(|error| format!("{} at {}", error, error.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {route} {status}: the body does not match its schema: {errors:?}\n{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn the_description_lists_every_route_and_only_routes_that_exist() {
    let app = spawn_app().await;
    let description = Description::of(&app).await;
    assert_eq!(description.0["openapi"], "3.1.0");
    let paths = description.0["paths"].as_object().expect("paths");
    let mut listed: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, operations)| {
            let operations = operations.as_object().expect("operations");
            operations
                .keys()
                .map(|method| (method.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Each listed route is served: it never gets the answer of a route that does not exist
    // or of a method it does not take.
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "ver_00000000000000000000000000000000")
            .replace("{entry}", "%2B4915112")
            .replace("{prefix}", "%2B4915112")
            .replace("{provider}", "nobody")
            .replace("{ServiceSid}", "VA00000000000000000000000000000000")
            .replace("{Sid}", "VE00000000000000000000000000000000");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let reply = send(app.request(method.clone(), &concrete)).await;
        assert_ne!(reply.status, 405, "{method} {concrete}: {}", reply.body);
        assert_ne!(
            reply.body["code"], 20004,
            "{method} {concrete}: {}",
            reply.body
        );
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("no such route"),
            "{method} {concrete}: {}",
            reply.body
        );
    }

    // A method a route does not take gets 405 with the methods it does take.
    let wrong = send(app.request(Method::PUT, "/v1/admin/blocklist")).await;
    wrong.expect_error(405, "method_not_allowed");
    assert_eq!(wrong.headers["allow"], "GET, POST");
}

#[tokio::test]
async fn what_each_route_answers_matches_the_description() {
    let (app, admin) = app_with_an_admin();
    let described = Description::of(&app).await;
    let expect = |method: &str, route: &str, reply: &Reply| {
        described.expect_described(method, route, reply);
    };

    // Operations.
    for route in ["/healthz", "/readyz"] {
        expect("get", route, &send(app.anonymous(Method::GET, route)).await);
    }
    let providers = send(app.request(Method::GET, "/v1/providers")).await;
    expect("get", "/v1/providers", providers.expect_status(200));
    let cluster = send(app.request(Method::GET, "/v1/cluster")).await;
    expect("get", "/v1/cluster", cluster.expect_status(404));
    let unauthenticated = send(app.anonymous(Method::GET, "/v1/providers")).await;
    expect("get", "/v1/providers", unauthenticated.expect_status(401));

    // A verification's life: created, replayed, read, checked wrong and right, refused.
    let create = |key: Option<&str>, body: Value| {
        let request = app.request(Method::POST, "/v1/verifications").json(&body);
        let request = match key {
            Some(key) => request.header("Idempotency-Key", key),
            None => request,
        };
        send(request)
    };
    let to = de_mobile(91);
    let created = create(Some("first"), json!({"channel": "sms", "to": to})).await;
    expect("post", "/v1/verifications", created.expect_status(201));
    let replayed = create(Some("first"), json!({"channel": "sms", "to": to})).await;
    expect("post", "/v1/verifications", replayed.expect_status(201));
    assert_eq!(replayed.str("id"), created.str("id"));
    let reused = create(
        Some("first"),
        json!({"channel": "sms", "to": de_mobile(92)}),
    )
    .await;
    expect("post", "/v1/verifications", reused.expect_status(422));
    let cooling = create(None, json!({"channel": "sms", "to": to})).await;
    expect("post", "/v1/verifications", cooling.expect_status(429));
    let malformed = create(None, json!({"channel": "pigeon", "to": to})).await;
    expect("post", "/v1/verifications", malformed.expect_status(400));
    let nowhere = create(None, json!({"channel": "sms", "to": "+1"})).await;
    expect("post", "/v1/verifications", nowhere.expect_status(422));

    let id = created.str("id").to_owned();
    let code = app.code_for(&id).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let by_id = "/v1/verifications/{id}/check";
    expect(
        "post",
        by_id,
        app.check_code(&id, wrong).await.expect_status(200),
    );
    expect(
        "post",
        by_id,
        app.check_code(&id, &code).await.expect_status(200),
    );
    expect(
        "post",
        by_id,
        app.check_code(&id, &code).await.expect_status(409),
    );
    let unknown = app
        .check_code("ver_00000000000000000000000000000000", &code)
        .await;
    expect("post", by_id, unknown.expect_status(404));
    let read = app.get(&id).await;
    expect("get", "/v1/verifications/{id}", read.expect_status(200));
    let cancel_route = "/v1/verifications/{id}/cancel";
    expect(
        "post",
        cancel_route,
        app.cancel(&id).await.expect_status(409),
    );
    let pending = create(None, json!({"channel": "sms", "to": de_mobile(93)})).await;
    let canceled = app.cancel(pending.str("id")).await;
    expect("post", cancel_route, canceled.expect_status(200));

    // A fallback workflow: created, read with its steps, moved on, then out of steps.
    let following = create(
        None,
        json!({"to": de_mobile(94), "workflow": [{"channel": "sms"}, {"channel": "sms"}]}),
    )
    .await;
    expect("post", "/v1/verifications", following.expect_status(201));
    let following = following.str("id");
    let read = app.get(following).await;
    expect("get", "/v1/verifications/{id}", read.expect_status(200));
    assert_eq!(read.body["workflow"]["steps"][1]["status"], "scheduled");
    let next_route = "/v1/verifications/{id}/next";
    let next_of =
        |id: &str| send(app.request(Method::POST, &format!("/v1/verifications/{id}/next")));
    // Within the cooldown a step waits, like a resend; a verification that is over has
    // none left.
    expect(
        "post",
        next_route,
        next_of(following).await.expect_status(429),
    );
    expect("post", next_route, next_of(&id).await.expect_status(409));
    let unknown = next_of("ver_00000000000000000000000000000000").await;
    expect("post", next_route, unknown.expect_status(404));
    let attempts = send(app.request(
        Method::GET,
        &format!("/v1/verifications/{following}/attempts"),
    ))
    .await;
    expect(
        "get",
        "/v1/verifications/{id}/attempts",
        attempts.expect_status(200),
    );

    let other = create(
        None,
        json!({"channel": "email", "to": "person@example.com"}),
    )
    .await;
    let other_code = app.code_for(other.str("id")).await;
    let by_destination = app
        .check_by_destination(
            &json!({"channel": "email", "to": "person@example.com", "code": other_code}),
        )
        .await;
    expect(
        "post",
        "/v1/verifications/check",
        by_destination.expect_status(200),
    );

    // The admin routes, with an admin's key and without.
    let as_admin = |method: Method, path: &str| app.request_as(&admin, method, path);
    let entry = json!({"entry": "+4915199", "note": "pumping"});
    let added = send(as_admin(Method::POST, "/v1/admin/blocklist").json(&entry)).await;
    expect("post", "/v1/admin/blocklist", added.expect_status(201));
    let again = send(as_admin(Method::POST, "/v1/admin/blocklist").json(&entry)).await;
    expect("post", "/v1/admin/blocklist", again.expect_status(200));
    let listed = send(as_admin(Method::GET, "/v1/admin/blocklist")).await;
    expect("get", "/v1/admin/blocklist", listed.expect_status(200));
    let not_admin = send(app.request(Method::GET, "/v1/admin/blocklist")).await;
    expect("get", "/v1/admin/blocklist", not_admin.expect_status(403));
    let entry_route = "/v1/admin/blocklist/{entry}";
    let removed = send(as_admin(Method::DELETE, "/v1/admin/blocklist/%2B4915199")).await;
    expect("delete", entry_route, removed.expect_status(204));
    let gone = send(as_admin(Method::DELETE, "/v1/admin/blocklist/%2B4915199")).await;
    expect("delete", entry_route, gone.expect_status(404));

    let blocks = send(app.request(Method::GET, "/v1/fraud/blocks")).await;
    expect("get", "/v1/fraud/blocks", blocks.expect_status(200));
    let no_block = send(as_admin(Method::DELETE, "/v1/admin/fraud/blocks/%2B4915")).await;
    expect(
        "delete",
        "/v1/admin/fraud/blocks/{prefix}",
        no_block.expect_status(404),
    );
    let no_provider = send(app.request(Method::POST, "/v1/providers/nobody/receipts")).await;
    expect(
        "post",
        "/v1/providers/{provider}/receipts",
        no_provider.expect_status(404),
    );
}

/// An app with the tenant `acme` (its key as `api_key`) and the admin tenant `ops`; returns
/// it with ops' key.
fn app_with_an_admin() -> (TestApp, String) {
    let (mut app, acme, admin) = app_with_acme(TenantSettings::default(), |_| {});
    app.api_key = acme;
    (app, admin)
}

/// How a schemathesis run authenticates, and which routes it tries.
enum Caller<'a> {
    /// A bearer API key, on the native routes.
    Native(&'a str),
    /// HTTP Basic with a tenant's account SID and key, on the Twilio-compatible routes.
    Twilio { tenant: &'a str, key: &'a str },
}

/// Runs schemathesis against `app` as `caller`; fails the test with its report on any
/// failure. Every check runs but `positive_data_acceptance`: a destination's validity (a
/// number's numbering plan) and a provider's receipt format are not expressible in a schema,
/// so data the schema allows may rightly be refused.
fn run_schemathesis(st: &std::path::Path, app: &TestApp, caller: &Caller) {
    let mut command = std::process::Command::new(st);
    match caller {
        Caller::Native(key) => {
            command.args(["run", &app.url("/openapi.json")]);
            command.args(["--header", &format!("Authorization: Bearer {key}")]);
            command.args(["--exclude-path-regex", "^/v2/"]);
        }
        Caller::Twilio { tenant, key } => {
            // The account's service SID, which no generator would guess, in every path.
            let config = app.store_dir().join("schemathesis-twilio.toml");
            let service = otpd::tenants::service_sid(tenant);
            let settings = format!("[parameters]\n\"path.ServiceSid\" = \"{service}\"\n");
            std::fs::write(&config, settings).expect("write the schemathesis settings");
            command.arg("--config-file").arg(&config);
            command.args(["run", &app.url("/openapi.json")]);
            let account = otpd::tenants::account_sid(tenant);
            command.args(["--auth", &format!("{account}:{key}")]);
            command.args(["--include-path-regex", "^/v2/"]);
        }
    }
    let output = command
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "25", "--seed", "7", "--workers", "2"])
        .args(["--request-timeout", "10", "--no-color"])
        .current_dir(app.store_dir())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let scenarios = report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Scenarios:"))
        .and_then(|count| count.trim().parse::<u32>().ok());
    assert!(
        scenarios.is_some_and(|count| count > 0),
        "the stateful phase (create, then check, read, cancel) ran no scenario:\n{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_description() {
    let (app, admin) = app_with_an_admin();
    Description::of(&app).await;
    let tenant = app.api_key.clone();
    tokio::task::spawn_blocking(move || {
        let st = python_tools().join("st");
        run_schemathesis(&st, &app, &Caller::Native(&tenant));
        run_schemathesis(&st, &app, &Caller::Native(&admin));
        let twilio = Caller::Twilio {
            tenant: "acme",
            key: &tenant,
        };
        run_schemathesis(&st, &app, &twilio);
    })
    .await
    .expect("the schemathesis runs");
}
