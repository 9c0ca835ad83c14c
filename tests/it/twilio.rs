//! The Twilio Verify v2 compatible routes: HTTP Basic auth with the account SID, form
//! bodies, Twilio's resources, SIDs, statuses and error body, PSD2 binding; and Twilio's
//! official Python library driving them (examples/twilio_verify.py).

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::helpers::*;
use crate::openapi::Description;
use otpd::tenants::{account_sid, service_sid};

/// A Twilio-style caller of `app`: the dev tenant's account SID and key.
struct Twilio<'a> {
    app: &'a TestApp,
    account: String,
    service: String,
}

impl<'a> Twilio<'a> {
    /// The dev tenant.
    fn of(app: &'a TestApp) -> Self {
        Self::as_tenant(app, "dev")
    }

    /// `tenant`, whose key is `app.api_key`.
    fn as_tenant(app: &'a TestApp, tenant: &str) -> Self {
        Twilio {
            app,
            account: account_sid(tenant),
            service: service_sid(tenant),
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .anonymous(method, path)
            .basic_auth(&self.account, Some(&self.app.api_key))
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        send(self.request(Method::POST, path).form(form)).await
    }

    async fn get(&self, path: &str) -> Reply {
        send(self.request(Method::GET, path)).await
    }

    fn verifications(&self) -> String {
        format!("/v2/Services/{}/Verifications", self.service)
    }

    fn verification(&self, sid: &str) -> String {
        format!("{}/{sid}", self.verifications())
    }

    fn check_route(&self) -> String {
        format!("/v2/Services/{}/VerificationCheck", self.service)
    }

    async fn start(&self, to: &str, extra: &[(&str, &str)]) -> Reply {
        let mut form = vec![("To", to), ("Channel", "sms")];
        form.extend_from_slice(extra);
        self.post(&self.verifications(), &form).await
    }

    /// The code sent for the verification `sid`.
    async fn code_for(&self, sid: &str) -> String {
        self.app.code_for(&format!("ver_{}", &sid[2..])).await
    }
}

/// Asserts Twilio's error body with `code` and `status`.
#[track_caller]
fn expect_twilio_error(reply: &Reply, status: u16, code: u64) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(reply.body["code"].as_u64(), Some(code), "{}", reply.text);
    assert_eq!(reply.body["status"].as_u64(), Some(u64::from(status)));
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(reply.body["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn wrong_code(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

const VERIFICATIONS: &str = "/v2/Services/{ServiceSid}/Verifications";
const VERIFICATION: &str = "/v2/Services/{ServiceSid}/Verifications/{Sid}";
const CHECK: &str = "/v2/Services/{ServiceSid}/VerificationCheck";

#[tokio::test]
async fn a_verification_is_created_checked_and_read_in_twilio_s_shapes() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);

    let created = twilio.start(DE_MOBILE, &[("Locale", "de")]).await;
    described.expect_described("post", VERIFICATIONS, created.expect_status(201));
    let sid = created.str("sid").to_owned();
    assert!(sid.starts_with("VE") && sid.len() == 34, "{sid}");
    assert_eq!(created.str("service_sid"), twilio.service);
    assert_eq!(created.str("account_sid"), twilio.account);
    assert_eq!(created.str("status"), "pending");
    assert_eq!(created.str("channel"), "sms");
    assert_eq!(created.str("to"), DE_MOBILE_MASKED);
    assert_eq!(created.body["valid"], false);
    assert_eq!(
        created.body["send_code_attempts"].as_array().unwrap().len(),
        1
    );
    assert_eq!(created.str("url"), app.url(&twilio.verification(&sid)));

    let code = twilio.code_for(&sid).await;
    let wrong = twilio
        .post(
            &twilio.check_route(),
            &[("VerificationSid", &sid), ("Code", wrong_code(&code))],
        )
        .await;
    described.expect_described("post", CHECK, wrong.expect_status(200));
    assert_eq!(
        (wrong.str("status"), &wrong.body["valid"]),
        ("pending", &Value::Bool(false))
    );
    assert_eq!(wrong.str("sid"), sid);

    // By destination, as `To` and `Code`.
    let right = twilio
        .post(&twilio.check_route(), &[("To", DE_MOBILE), ("Code", &code)])
        .await;
    described.expect_described("post", CHECK, right.expect_status(200));
    assert_eq!(
        (right.str("status"), &right.body["valid"]),
        ("approved", &Value::Bool(true))
    );

    let fetched = twilio.get(&twilio.verification(&sid)).await;
    described.expect_described("get", VERIFICATION, fetched.expect_status(200));
    assert_eq!(fetched.str("status"), "approved");
    assert_eq!(fetched.body["valid"], true);

    // Its sends, as the Verification Attempts API lists them.
    let attempts = twilio
        .get(&format!("/v2/Attempts?VerificationSid={sid}&PageSize=50"))
        .await;
    described.expect_described("get", "/v2/Attempts", attempts.expect_status(200));
    let listed = attempts.body["attempts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", attempts.text);
    assert_eq!(
        listed[0]["sid"],
        fetched.body["send_code_attempts"][0]["attempt_sid"]
    );
    assert_eq!(listed[0]["verification_sid"], sid.as_str());
    assert_eq!(listed[0]["conversion_status"], "converted");
    assert_eq!(listed[0]["channel_data"]["status"], "sent");
    assert_eq!(listed[0]["channel_data"]["provider"], "sandbox");
    assert_eq!(listed[0]["channel_data"]["to"], DE_MOBILE_MASKED);
    assert_eq!(attempts.body["meta"]["key"], "attempts");
    let unfiltered = twilio.get("/v2/Attempts").await;
    described.expect_described("get", "/v2/Attempts", &unfiltered);
    expect_twilio_error(&unfiltered, 400, 60200);
    let unknown_filter = twilio
        .get(&format!("/v2/Attempts?VerificationSid={sid}&Country=DE"))
        .await;
    expect_twilio_error(&unknown_filter, 400, 60200);

    // A code is accepted once: the verification is no longer there to check.
    let again = twilio
        .post(
            &twilio.check_route(),
            &[("VerificationSid", &sid), ("Code", &code)],
        )
        .await;
    described.expect_described("post", CHECK, &again);
    expect_twilio_error(&again, 404, 20404);
    for reply in [&created, &wrong, &right, &fetched, &attempts, &again] {
        assert!(!contains_code(&reply.text, &code), "{}", reply.text);
    }
}

#[tokio::test]
async fn channel_call_after_sms_reads_the_same_code_and_a_check_by_to_finds_it() {
    let app = spawn_app_for_every_channel(|settings| {
        settings.verification.resend_cooldown_seconds = 0;
        settings
            .routing
            .regions
            .get_mut("default")
            .expect("the default route")
            .insert(otpd::domain::Channel::Voice, vec!["sandbox".into()]);
    })
    .await;
    let twilio = Twilio::of(&app);
    let by_sms = twilio.start(DE_MOBILE, &[]).await;
    by_sms.expect_status(201);
    let sid = by_sms.str("sid").to_owned();
    let code = twilio.code_for(&sid).await;

    // The person did not get the SMS: the application asks for a call, as Twilio's
    // fallback goes. It is the same verification, and the call reads the same code.
    let by_call = twilio
        .post(
            &twilio.verifications(),
            &[("To", DE_MOBILE), ("Channel", "call")],
        )
        .await;
    by_call.expect_status(201);
    assert_eq!(by_call.str("sid"), sid, "{}", by_call.text);
    assert_eq!(by_call.str("channel"), "call", "{}", by_call.text);
    let sent = app.messages_for(&format!("ver_{}", &sid[2..]), 2).await;
    assert_eq!(sent[1]["channel"], "voice", "{}", sent[1]);
    let spoken = spoken_code(sent[1]["body"].as_str().expect("the words"), 6);
    assert_eq!(spoken, code, "the call reads the code the SMS carried");

    let checked = twilio
        .post(&twilio.check_route(), &[("To", DE_MOBILE), ("Code", &code)])
        .await;
    checked.expect_status(200);
    assert_eq!(checked.str("status"), "approved", "{}", checked.text);
    assert_eq!(checked.str("channel"), "call", "{}", checked.text);
}

#[tokio::test]
async fn amount_and_payee_bind_the_code_to_the_transaction() {
    let app = spawn_app().await;
    let twilio = Twilio::of(&app);
    let payment = [("Amount", "€49.90"), ("Payee", "Acme Shop GmbH")];
    let created = twilio.start(DE_MOBILE, &payment).await;
    created.expect_status(201);
    assert_eq!(created.str("amount"), "€49.90");
    assert_eq!(created.str("payee"), "Acme Shop GmbH");
    let sid = created.str("sid").to_owned();
    let code = twilio.code_for(&sid).await;

    let check = |amount: &'static str, payee: Option<&'static str>| {
        let mut form = vec![
            ("VerificationSid", sid.clone()),
            ("Code", code.clone()),
            ("Amount", amount.to_owned()),
        ];
        if let Some(payee) = payee {
            form.push(("Payee", payee.to_owned()));
        }
        let request = twilio
            .request(Method::POST, &twilio.check_route())
            .form(&form);
        send(request)
    };
    for (amount, payee) in [
        ("€4990", Some("Acme Shop GmbH")),
        ("€49.90", Some("Mallory Ltd")),
        ("€49.90", None),
    ] {
        let refused = check(amount, payee).await;
        refused.expect_status(200);
        assert_eq!(refused.body["valid"], false, "{amount} {payee:?}");
        assert_eq!(refused.str("status"), "pending");
    }
    let approved = check("€49.90", Some("Acme Shop GmbH")).await;
    approved.expect_status(200);
    assert_eq!(approved.body["valid"], true, "{}", approved.text);
    assert_eq!(approved.str("amount"), "€49.90");
}

#[tokio::test]
async fn a_verification_is_canceled_or_approved_by_its_status() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);

    let first = twilio.start(&de_mobile(1), &[]).await;
    let sid = first.str("sid").to_owned();
    let canceled = twilio
        .post(&twilio.verification(&sid), &[("Status", "canceled")])
        .await;
    described.expect_described("post", VERIFICATION, canceled.expect_status(200));
    assert_eq!(canceled.str("status"), "canceled");
    let code = twilio.code_for(&sid).await;
    let late = twilio
        .post(
            &twilio.check_route(),
            &[("VerificationSid", &sid), ("Code", &code)],
        )
        .await;
    expect_twilio_error(&late, 404, 20404);
    let twice = twilio
        .post(&twilio.verification(&sid), &[("Status", "canceled")])
        .await;
    expect_twilio_error(&twice, 404, 20404);

    let second = twilio.start(&de_mobile(2), &[]).await;
    let sid = second.str("sid").to_owned();
    let bogus = twilio
        .post(&twilio.verification(&sid), &[("Status", "pending")])
        .await;
    described.expect_described("post", VERIFICATION, &bogus);
    expect_twilio_error(&bogus, 400, 60200);
    let approved = twilio
        .post(&twilio.verification(&sid), &[("Status", "approved")])
        .await;
    approved.expect_status(200);
    assert_eq!(approved.str("status"), "approved");
    assert_eq!(approved.body["valid"], true);
}

#[tokio::test]
async fn a_resend_within_the_cooldown_is_20429_with_retry_after() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);
    twilio.start(DE_MOBILE, &[]).await.expect_status(201);
    let again = twilio.start(DE_MOBILE, &[]).await;
    described.expect_described("post", VERIFICATIONS, &again);
    expect_twilio_error(&again, 429, 20429);
    let wait: u64 = again.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
}

#[tokio::test]
async fn a_resend_sends_the_same_code_so_a_late_first_message_still_works() {
    let app = spawn_app_with(|s| s.verification.resend_cooldown_seconds = 1).await;
    let twilio = Twilio::of(&app);
    let first = twilio.start(DE_MOBILE, &[]).await;
    first.expect_status(201);
    let sid = first.str("sid").to_owned();
    let code = twilio.code_for(&sid).await;

    let resent = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let reply = twilio.start(DE_MOBILE, &[]).await;
        if reply.status.as_u16() != 429 {
            break reply;
        }
    };
    resent.expect_status(201);
    assert_eq!(resent.str("sid"), sid);
    assert_eq!(
        resent.body["send_code_attempts"].as_array().unwrap().len(),
        2
    );
    let id = format!("ver_{}", &sid[2..]);
    let messages = app.messages_for(&id, 2).await;
    assert_eq!(
        message_code(&messages[1], 6),
        code,
        "the same code, sent again"
    );
    let right = twilio
        .post(
            &twilio.check_route(),
            &[("VerificationSid", &sid), ("Code", &code)],
        )
        .await;
    assert_eq!(right.body["valid"], true, "{}", right.text);
}

#[tokio::test]
async fn a_resend_for_another_amount_gets_a_new_code() {
    let app = spawn_app_with(|s| s.verification.resend_cooldown_seconds = 1).await;
    let twilio = Twilio::of(&app);
    let first = twilio
        .start(DE_MOBILE, &[("Amount", "10.00"), ("Payee", "Alice")])
        .await;
    let sid = first.str("sid").to_owned();
    let code = twilio.code_for(&sid).await;
    let resent = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let reply = twilio
            .start(DE_MOBILE, &[("Amount", "5000.00"), ("Payee", "Mallory")])
            .await;
        if reply.status.as_u16() != 429 {
            break reply;
        }
    };
    resent.expect_status(201);
    let messages = app.messages_for(&format!("ver_{}", &sid[2..]), 2).await;
    let new_code = message_code(&messages[1], 6);
    assert_ne!(
        new_code, code,
        "the first code must not come to confirm another payment"
    );
    let old = twilio
        .post(
            &twilio.check_route(),
            &[
                ("VerificationSid", &sid),
                ("Code", &code),
                ("Amount", "5000.00"),
                ("Payee", "Mallory"),
            ],
        )
        .await;
    assert_eq!(old.body["valid"], false, "{}", old.text);
}

#[tokio::test]
async fn a_tenant_may_have_its_twilio_resends_send_a_new_code() {
    let new_codes = otpd::access::TenantSettings {
        resend_keeps_code: Some(false),
        ..Default::default()
    };
    let (mut app, acme, _) = crate::access::app_with_acme(new_codes, |s| {
        s.verification.resend_cooldown_seconds = 1;
    });
    app.api_key = acme;
    let twilio = Twilio::as_tenant(&app, "acme");
    let sid = twilio.start(DE_MOBILE, &[]).await.str("sid").to_owned();
    let code = twilio.code_for(&sid).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if twilio.start(DE_MOBILE, &[]).await.status.as_u16() == 201 {
            break;
        }
    }
    let messages = app.messages_for(&format!("ver_{}", &sid[2..]), 2).await;
    assert_ne!(message_code(&messages[1], 6), code, "a new code");
}

#[tokio::test]
async fn credentials_are_the_account_sid_and_one_of_its_keys() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);
    let route = twilio.verifications();
    let form = [("To", DE_MOBILE), ("Channel", "sms")];

    let none = send(app.anonymous(Method::POST, &route).form(&form)).await;
    described.expect_described("post", VERIFICATIONS, &none);
    expect_twilio_error(&none, 401, 20003);
    assert_eq!(none.headers["www-authenticate"], "Basic realm=\"otpd\"");
    let bearer = send(app.request(Method::POST, &route).form(&form)).await;
    expect_twilio_error(&bearer, 401, 20003);
    let other_account = account_sid("acme");
    let wrong_account = app
        .anonymous(Method::POST, &route)
        .basic_auth(&other_account, Some(&app.api_key))
        .form(&form);
    expect_twilio_error(&send(wrong_account).await, 401, 20003);
    let wrong_key = app
        .anonymous(Method::POST, &route)
        .basic_auth(&twilio.account, Some("otpd_not_a_key"))
        .form(&form);
    expect_twilio_error(&send(wrong_key).await, 401, 20003);

    // Another account's service is not there for this one.
    let elsewhere = format!("/v2/Services/{}/Verifications", service_sid("acme"));
    let foreign = twilio.post(&elsewhere, &form).await;
    expect_twilio_error(&foreign, 404, 20404);
    assert!(app.outbox_is_empty(), "nothing was sent");
}

#[tokio::test]
async fn bad_input_gets_twilio_s_error_and_never_repeats_a_code() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);
    let route = twilio.verifications();
    for (form, says) in [
        (vec![("Channel", "sms")], "To"),
        (vec![("To", DE_MOBILE)], "Channel"),
        (vec![("To", DE_MOBILE), ("Channel", "whatsapp")], "whatsapp"),
        (
            vec![("To", DE_MOBILE), ("Channel", "sms"), ("Colour", "red")],
            "Colour",
        ),
        (
            vec![
                ("To", DE_MOBILE),
                ("Channel", "sms"),
                ("CustomCode", "482913"),
            ],
            "CustomCode",
        ),
        (
            vec![("To", DE_MOBILE), ("Channel", "sms"), ("Tags", "[1]")],
            "Tags",
        ),
        (vec![("To", "12345"), ("Channel", "sms")], "E.164"),
    ] {
        let reply = twilio.post(&route, &form).await;
        described.expect_described("post", VERIFICATIONS, &reply);
        expect_twilio_error(&reply, 400, 60200);
        assert!(
            reply.str("message").contains(says),
            "{says}: {}",
            reply.text
        );
        assert!(!reply.text.contains("482913"), "{}", reply.text);
    }
    let twice = send(
        twilio
            .request(Method::POST, &route)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("To=%2B4915112345678&To=%2B4915112345679&Channel=sms"),
    )
    .await;
    expect_twilio_error(&twice, 400, 60200);
    let json = send(
        twilio
            .request(Method::POST, &route)
            .json(&serde_json::json!({"To": DE_MOBILE, "Channel": "sms"})),
    )
    .await;
    described.expect_described("post", VERIFICATIONS, &json);
    expect_twilio_error(&json, 415, 60200);

    for code in ["77901x", "12", "779017779017"] {
        let reply = twilio
            .post(&twilio.check_route(), &[("To", DE_MOBILE), ("Code", code)])
            .await;
        described.expect_described("post", CHECK, &reply);
        expect_twilio_error(&reply, 400, 60200);
        assert!(!reply.text.contains(code), "{}", reply.text);
    }
    let neither = twilio
        .post(&twilio.check_route(), &[("Code", "123456")])
        .await;
    expect_twilio_error(&neither, 400, 60200);
    let unknown = twilio
        .post(
            &twilio.check_route(),
            &[
                ("VerificationSid", "VE00000000000000000000000000000000"),
                ("Code", "123456"),
            ],
        )
        .await;
    expect_twilio_error(&unknown, 404, 20404);

    let wrong_method = send(twilio.request(Method::DELETE, &route)).await;
    expect_twilio_error(&wrong_method, 405, 20004);
    assert_eq!(wrong_method.headers["allow"], "POST");
    assert!(app.outbox_is_empty(), "nothing was sent");
}

#[tokio::test]
async fn the_account_has_one_service_listed_created_and_fetched_as_itself() {
    let app = spawn_app().await;
    let described = Description::of(&app).await;
    let twilio = Twilio::of(&app);
    let listed = twilio.get("/v2/Services").await;
    described.expect_described("get", "/v2/Services", listed.expect_status(200));
    assert_eq!(listed.body["services"][0]["sid"], twilio.service.as_str());
    assert_eq!(listed.body["services"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["meta"]["key"], "services");
    let url = listed.body["services"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&app.address), "{url}");
    // Behind a proxy, the URLs are the proxy's.
    let proxied = send(
        twilio
            .request(Method::GET, "/v2/Services")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "verify.example.com"),
    )
    .await;
    let url = proxied.body["services"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://verify.example.com/v2/Services/VA"),
        "{url}"
    );

    let created = twilio
        .post("/v2/Services", &[("FriendlyName", "Login")])
        .await;
    described.expect_described("post", "/v2/Services", created.expect_status(201));
    assert_eq!(created.str("sid"), twilio.service);
    let unnamed = twilio.post("/v2/Services", &[]).await;
    expect_twilio_error(&unnamed, 400, 60200);

    let fetched = twilio
        .get(&format!("/v2/Services/{}", twilio.service))
        .await;
    described.expect_described("get", "/v2/Services/{Sid}", fetched.expect_status(200));
    assert_eq!(fetched.str("account_sid"), twilio.account);
    let foreign = twilio
        .get(&format!("/v2/Services/{}", service_sid("acme")))
        .await;
    expect_twilio_error(&foreign, 404, 20404);
}

/// An example that drives the routes with one of Twilio's official libraries: the program
/// that runs it, its file, and what it needs besides otpd's address and credentials.
#[derive(Clone)]
struct Example {
    program: std::path::PathBuf,
    script: &'static str,
    env: Vec<(&'static str, String)>,
}

impl Example {
    fn python() -> Self {
        Example {
            program: python_tools().join("python"),
            script: concat!(env!("CARGO_MANIFEST_DIR"), "/examples/twilio_verify.py"),
            env: Vec::new(),
        }
    }

    fn node() -> Self {
        Example {
            program: "node".into(),
            script: concat!(env!("CARGO_MANIFEST_DIR"), "/examples/twilio_verify.js"),
            env: vec![("NODE_PATH", node_tools().display().to_string())],
        }
    }

    /// Runs the example against `app` (the dev tenant) with `arguments`: what it printed,
    /// and whether it succeeded.
    async fn run(&self, app: &TestApp, arguments: &[&str]) -> (Value, bool) {
        let mut command = std::process::Command::new(&self.program);
        command
            .arg(self.script)
            .args(arguments)
            .env("OTPD_URL", &app.address)
            .env("OTPD_ACCOUNT_SID", account_sid("dev"))
            .env("OTPD_API_KEY", &app.api_key)
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("run {}: {error}", self.script));
        let printed = String::from_utf8_lossy(&output.stdout);
        let result = serde_json::from_str(printed.trim()).unwrap_or_else(|_| {
            panic!(
                "{} printed no JSON:\n{printed}\n{}",
                self.script,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (result, output.status.success())
    }
}

/// Create, a wrong check by destination, a right check by SID (with the transaction
/// bound), fetch, cancel, the rate-limit error and a missing verification, through
/// `example`'s library.
async fn an_official_library_works_against_otpd(example: Example) {
    let app = spawn_app().await;
    let payment = ["--amount", "12.00", "--payee", "Acme"];

    let (started, ok) = example
        .run(
            &app,
            &[&["start", "--to", DE_MOBILE][..], &payment].concat(),
        )
        .await;
    assert!(ok, "{started}");
    assert_eq!(started["status"], "pending");
    assert_eq!(started["amount"], "12.00");
    assert_eq!(started["send_code_attempts"], 1);
    let sid = started["sid"].as_str().unwrap().to_owned();
    let code = app.code_for(&format!("ver_{}", &sid[2..])).await;

    let wrong = ["check", "--to", DE_MOBILE, "--code", wrong_code(&code)];
    let (wrong, ok) = example.run(&app, &[&wrong[..], &payment].concat()).await;
    assert!(ok, "{wrong}");
    assert_eq!(
        (&wrong["status"], &wrong["valid"]),
        (&Value::from("pending"), &Value::Bool(false))
    );
    let right = ["check", "--sid", &sid, "--code", &code];
    let (right, ok) = example.run(&app, &[&right[..], &payment].concat()).await;
    assert!(ok, "{right}");
    assert_eq!(
        (&right["status"], &right["valid"]),
        (&Value::from("approved"), &Value::Bool(true))
    );
    let (fetched, ok) = example.run(&app, &["fetch", "--sid", &sid]).await;
    assert!(ok, "{fetched}");
    assert_eq!(fetched["status"], "approved");

    let (other, ok) = example.run(&app, &["start", "--to", &de_mobile(3)]).await;
    assert!(ok, "{other}");
    let (canceled, ok) = example
        .run(&app, &["cancel", "--sid", other["sid"].as_str().unwrap()])
        .await;
    assert!(ok, "{canceled}");
    assert_eq!(canceled["status"], "canceled");

    // The library raises Twilio's rate-limit error for a resend within the cooldown.
    let (first, ok) = example.run(&app, &["start", "--to", &de_mobile(4)]).await;
    assert!(ok, "{first}");
    let (limited, ok) = example.run(&app, &["start", "--to", &de_mobile(4)]).await;
    assert!(!ok, "{limited}");
    assert_eq!(limited["error"]["status"], 429);
    assert_eq!(limited["error"]["code"], 20429);
    let (missing, ok) = example
        .run(
            &app,
            &["fetch", "--sid", "VE00000000000000000000000000000000"],
        )
        .await;
    assert!(!ok, "{missing}");
    assert_eq!(missing["error"]["code"], 20404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_s_official_python_library_works_against_otpd() {
    an_official_library_works_against_otpd(Example::python()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_s_official_node_library_works_against_otpd() {
    an_official_library_works_against_otpd(Example::node()).await;
}

#[tokio::test]
async fn the_twilio_routes_follow_no_default_workflow() {
    use otpd::access::settings::WorkflowStepSettings;
    use otpd::domain::Channel;
    let step = |channel, channel_timeout_seconds| WorkflowStepSettings {
        channel,
        channel_timeout_seconds,
    };
    let with_workflow = otpd::access::TenantSettings {
        workflow: Some(vec![
            step(Channel::Sms, Some(120)),
            step(Channel::Whatsapp, None),
        ]),
        ..Default::default()
    };
    let (mut app, acme, _) = crate::access::app_with_acme(with_workflow, |s| {
        s.routing
            .regions
            .get_mut("default")
            .unwrap()
            .insert(Channel::Whatsapp, vec![otpd::providers::SANDBOX.to_owned()]);
    });
    app.api_key = acme;
    let twilio = Twilio::as_tenant(&app, "acme");
    let started = twilio.start(DE_MOBILE, &[]).await;
    started.expect_status(201);
    let native = app.get(&format!("ver_{}", &started.str("sid")[2..])).await;
    native.expect_status(200);
    assert!(native.body.get("workflow").is_none(), "{}", native.text);
    // The same tenant's native create follows it.
    let created = app
        .create(&serde_json::json!({"to": de_mobile(5), "channel": "sms"}))
        .await;
    created.expect_status(201);
    let followed = app.get(created.str("id")).await;
    assert_eq!(
        followed.body["workflow"]["steps"][1]["channel"], "whatsapp",
        "{}",
        followed.text
    );
}
