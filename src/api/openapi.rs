//! The API's OpenAPI 3.1 description, generated from the handlers and the types they read
//! and write, served at `GET /openapi.json`; and the one list of error codes with what a
//! caller should do about each.

use actix_web::HttpResponse;
use std::collections::HashMap;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use super::twilio::error::TWILIO_CODES;
use super::{admin, fraud, ops, receipts, timeline, twilio, verifications, workflow};

/// Every error code the API answers with: its HTTP status and what a caller should do.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("invalid_request", 400, "Fix the field the message names; the request did nothing."),
    ("unauthorized", 401, "Send `Authorization: Bearer <API key>` with a key of your tenant."),
    ("forbidden", 403, "Use an admin tenant's key for the admin routes."),
    ("destination_blocked", 403, "Do not retry: the destination is blocked by the operator or not permitted for your tenant."),
    ("not_found", 404, "Check the id or the route; a verification is only found with its own tenant's key."),
    ("no_cluster", 404, "Embedded mode has no cluster to show."),
    ("method_not_allowed", 405, "Use the method this description gives for the route."),
    ("request_timeout", 408, "Send the whole request, its body within `http.body_timeout_seconds`, on a new connection."),
    ("already_approved", 409, "The verification succeeded already; the code cannot be used again."),
    ("canceled", 409, "The verification was canceled; create a new one."),
    ("max_attempts_reached", 409, "Too many wrong codes; create a new verification."),
    ("blocklist_full", 409, "Remove entries, or block a prefix instead of single numbers."),
    ("no_next_step", 409, "The verification has no workflow step left to send, or its workflow ended; create a new verification to send a new code."),
    ("code_not_kept", 409, "The verification's code cannot be sent again (otpd's sealing key changed); create a new verification."),
    ("expired", 410, "The code's lifetime passed; create a new verification."),
    ("payload_too_large", 413, "Send a smaller body."),
    ("request_header_fields_too_large", 431, "Send smaller headers, on a new connection."),
    ("unsupported_media_type", 415, "Send the body as `application/json`."),
    ("invalid_destination", 422, "Give an E.164 number (`+` and digits) for sms, an address for email."),
    ("unknown_template", 422, "Name a template the settings define, or leave `template` out."),
    ("idempotency_key_reused", 422, "Use a new Idempotency-Key for a request with another body."),
    ("resend_cooldown", 429, "Wait `retry_after_seconds`, then ask again: the pending code is resent."),
    ("too_many_sends", 429, "Wait `retry_after_seconds`: the destination had its sends for the window."),
    ("rate_limited", 429, "Wait `retry_after_seconds`; `reason` says which limit (a tenant cap, or `fraud_suspected`)."),
    ("unavailable", 503, "Retry after `retry_after_seconds` (a create with the same Idempotency-Key replays its first answer)."),
];

/// The description, built once.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpd",
        description = "Issues one-time passcodes, delivers them, and verifies them.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        verifications::create,
        verifications::check,
        verifications::check_by_destination,
        verifications::get,
        verifications::cancel,
        workflow::next,
        timeline::attempts,
        timeline::find_by_destination,
        timeline::find_by_id,
        admin::list,
        admin::add,
        admin::remove,
        fraud::blocks,
        fraud::lift,
        receipts::receive,
        receipts::confirm_subscription,
        ops::healthz,
        ops::readyz,
        ops::prometheus,
        ops::providers,
        ops::cluster,
        openapi_json,
        twilio::services::list,
        twilio::services::create,
        twilio::services::fetch,
        twilio::verifications::create,
        twilio::verifications::check,
        twilio::verifications::fetch,
        twilio::verifications::update,
        twilio::attempts::list,
    ),
    modifiers(&Conventions),
)]
struct ApiDescription;

/// What holds for every route: the bearer API key (HTTP Basic on the Twilio-compatible
/// routes) and its refusals, the error codes in the description, the refusals of any body.
struct Conventions;

/// What any route that reads a body may answer before it looks at the fields.
const BODY_REFUSALS: &[(&str, &str)] = &[
    (
        "408",
        "The body did not arrive within `http.body_timeout_seconds`",
    ),
    ("413", "The body is larger than the route takes"),
    ("415", "The body is not sent in the route's media type"),
];

/// Where the Twilio-compatible routes live: their errors have Twilio's shape.
const TWILIO_ROUTES: &str = "/v2/";

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "twilio_basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        let description = openapi.info.description.get_or_insert_with(String::new);
        description.push_str(&error_table());
        description.push_str(&twilio_error_table());
        for (route, item) in openapi.paths.paths.iter_mut() {
            let admin_only = route.starts_with("/v1/admin/");
            let error_schema = if route.starts_with(TWILIO_ROUTES) {
                "TwilioErrorBody"
            } else {
                "ErrorEnvelope"
            };
            for operation in operations_mut(item) {
                let mut refusals: Vec<(&str, &str)> = Vec::new();
                if operation.security.is_some() {
                    refusals.push(("401", "No valid API key"));
                }
                if admin_only {
                    refusals.push(("403", "The key's tenant is not an admin"));
                }
                if operation.request_body.is_some() {
                    refusals.extend_from_slice(BODY_REFUSALS);
                }
                for (status, meaning) in refusals {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(meaning, error_schema).into());
                }
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn error_response(meaning: &str, schema: &str) -> Response {
    let schema = RefOr::Ref(Ref::from_schema_name(schema));
    Response::builder()
        .description(meaning)
        .content("application/json", Content::new(Some(schema)))
        .build()
}

/// A created verification's id is the one its check, read and cancel take: the links of a
/// 201 to create, written into the JSON (utoipa 5 writes a link's `operationId` in snake
/// case, which no client reads). The same for the Twilio-compatible create's SID.
fn link_to_the_created(description: &mut serde_json::Value) {
    let created = &mut description["paths"]["/v1/verifications"]["post"]["responses"]["201"];
    for (name, operation) in [
        ("check", "check_verification"),
        ("read", "get_verification"),
        ("cancel", "cancel_verification"),
        ("next", "next_workflow_step"),
    ] {
        created["links"][name] = serde_json::json!({
            "operationId": operation,
            "parameters": {"id": "$response.body#/id"},
        });
    }
    let created = &mut description["paths"]["/v2/Services/{ServiceSid}/Verifications"]["post"]
        ["responses"]["201"];
    for (name, operation) in [
        ("fetch", "twilio_fetch_verification"),
        ("update", "twilio_update_verification"),
    ] {
        created["links"][name] = serde_json::json!({
            "operationId": operation,
            "parameters": {
                "ServiceSid": "$request.path.ServiceSid",
                "Sid": "$response.body#/sid",
            },
        });
    }
}

/// The error codes as a Markdown table.
fn error_table() -> String {
    let mut table = String::from(
        "\n\nEvery error is `{\"error\": {\"code\", \"message\", \"retry_after_seconds\"?, \"reason\"?}}`, \
         with a `Retry-After` header where waiting helps. The codes:\n\n\
         | code | status | what to do |\n|---|---|---|\n",
    );
    for (code, status, advice) in ERROR_CODES {
        table.push_str(&format!("| `{code}` | {status} | {advice} |\n"));
    }
    table
}

/// Twilio's error codes the `/v2/` routes answer with, as a Markdown table.
fn twilio_error_table() -> String {
    let mut table = String::from(
        "\n\nThe Twilio-compatible routes (`/v2/…`, HTTP Basic auth: the account SID and an API key) \
         answer errors as `{\"code\", \"message\", \"more_info\", \"status\"}` with Twilio's codes:\n\n\
         | code | status | when |\n|---|---|---|\n",
    );
    for (code, status, when) in TWILIO_CODES {
        table.push_str(&format!("| {code} | {status} | {when} |\n"));
    }
    table
}

/// The schema of an error's `code`: one of `ERROR_CODES`.
pub(super) fn error_code_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code)))
        .description(Some(
            "One of the error codes listed in the API's description.",
        ))
}

/// The description, built once; the JSON served and the `Allow` headers both read it.
fn built() -> &'static serde_json::Value {
    static BUILT: OnceLock<serde_json::Value> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut description = serde_json::to_value(ApiDescription::openapi())
            .expect("the API description serialises");
        link_to_the_created(&mut description);
        description
    })
}

/// The description as JSON.
pub fn description() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| built().to_string())
}

/// The methods each route takes, by its pattern (`/v1/verifications/{id}`), as an `Allow`
/// header gives them.
pub fn allowed_methods(route: &str) -> Option<&'static str> {
    static ALLOWED: OnceLock<HashMap<String, String>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            let paths = built()["paths"].as_object().into_iter().flatten();
            paths
                .map(|(route, operations)| {
                    let methods: Vec<String> = operations
                        .as_object()
                        .into_iter()
                        .flat_map(|operations| operations.keys())
                        .map(|method| method.to_uppercase())
                        .collect();
                    (route.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(route)
        .map(String::as_str)
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", operation_id = "get_openapi", tag = "operations", responses(
    (status = 200, description = "The OpenAPI 3.1 description of every route", content_type = "application/json"),
))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(description())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_openapi_3_1_and_lists_each_error_code_once() {
        let description: serde_json::Value = serde_json::from_str(description()).expect("JSON");
        assert!(description["openapi"].as_str().unwrap().starts_with("3.1"));
        let codes =
            &description["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), ERROR_CODES.len());
        let mut seen = std::collections::HashSet::new();
        assert!(ERROR_CODES.iter().all(|(code, _, _)| seen.insert(code)));
    }

    #[test]
    fn each_link_leads_to_an_operation_that_exists() {
        let description: serde_json::Value = serde_json::from_str(description()).expect("JSON");
        let operations: std::collections::HashSet<&str> = description["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        let links = description["paths"]["/v1/verifications"]["post"]["responses"]["201"]["links"]
            .as_object()
            .expect("links from a created verification");
        assert_eq!(links.len(), 4);
        for link in links.values() {
            let target = link["operationId"].as_str().unwrap();
            assert!(operations.contains(target), "{target}");
        }
    }
}
