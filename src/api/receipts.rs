//! POST /v1/providers/{provider}/receipts: hands the call to the provider's receipt reader
//! (its own format and authentication), then each receipt it carries to delivery's
//! recorder. GET on the same URL answers a vendor's subscription check (WhatsApp's).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::Arc;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{body_deadline, is_json, read_limited, refuse_declared_oversize, Tenant};
use super::AppState;
use crate::providers::receipts::{
    parse_form, ReceiptCall, ReceiptError, ReceiptHead, ReceiptReader,
};
use crate::providers::BuiltProvider;

/// The receipt readers of the providers that post receipts, and the public URL they sign.
#[derive(Clone, Default)]
pub struct ReceiptBook {
    readers: HashMap<String, Arc<dyn ReceiptReader>>,
    public_url: Option<String>,
}

impl ReceiptBook {
    pub fn new(providers: &[BuiltProvider], public_url: Option<String>) -> Self {
        let readers = providers
            .iter()
            .filter_map(|p| Some((p.id.clone(), Arc::clone(p.receipts.as_ref()?))))
            .collect();
        ReceiptBook {
            readers,
            public_url,
        }
    }
}

/// What otpd made of a delivery receipt.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ReceiptTaken {
    /// `recorded`, or `ignored` when the call is about no message otpd knows.
    #[schema(example = "recorded")]
    status: &'static str,
    /// The receipts the call carried that otpd recorded (a vendor may batch several).
    #[schema(example = 1)]
    recorded: usize,
}

/// A provider's delivery receipt, in that provider's own format and authentication (its
/// signature, or for an `http` provider a tenant's API key).
#[utoipa::path(post, path = "/v1/providers/{provider}/receipts", operation_id = "receive_delivery_receipt", tag = "providers",
    params(("provider" = String, Path, description = "The provider's id in the settings")),
    request_body(content = String, description = "The provider's receipt, form-encoded or JSON as it sends it",
        content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Taken", body = ReceiptTaken),
        (status = 400, description = "Not a receipt otpd can read", body = ErrorEnvelope),
        (status = 401, description = "The signature or key is missing or wrong", body = ErrorEnvelope),
        (status = 404, description = "No such provider takes receipts", body = ErrorEnvelope),
        (status = 408, description = "The body did not arrive in time", body = ErrorEnvelope),
        (status = 413, description = "The body is too large", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ))]
pub async fn receive(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let provider = provider.into_inner();
    let reader = reader_of(&state, &provider)?;
    if reader.needs_tenant_key() {
        authenticate_tenant(&request)?;
    }
    refuse_declared_oversize(&request)?;
    let url = signed_url(&state, &request);
    let query = parse_form(request.query_string().as_bytes()).unwrap_or_default();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let head = ReceiptHead {
        url: &url,
        header: &header,
        query: &query,
    };
    reader.admit(&head)?;
    let body = read_limited(&mut payload, body_deadline(&request)).await?;
    let call = ReceiptCall {
        head,
        body: &body,
        is_json: is_json(&request),
    };
    let mut recorded = 0;
    for receipt in reader.read(&call)? {
        let known = state
            .recorder
            .receipt(&provider, &receipt)
            .await
            .map_err(ApiError::unavailable)?;
        recorded += usize::from(known);
    }
    Ok(HttpResponse::Ok().json(ReceiptTaken {
        status: if recorded > 0 { "recorded" } else { "ignored" },
        recorded,
    }))
}

/// A vendor's check that this URL takes its webhooks (WhatsApp: `hub.mode=subscribe`,
/// `hub.verify_token`, `hub.challenge`): the challenge, as plain text, when the token is
/// the one configured.
#[utoipa::path(get, path = "/v1/providers/{provider}/receipts", operation_id = "confirm_receipt_subscription", tag = "providers",
    params(("provider" = String, Path, description = "The provider's id in the settings")),
    responses(
        (status = 200, description = "The challenge, echoed", body = String, content_type = "text/plain"),
        (status = 400, description = "No challenge to answer", body = ErrorEnvelope),
        (status = 401, description = "The verify token is missing or wrong", body = ErrorEnvelope),
        (status = 404, description = "No such provider takes receipts, or it makes no such check", body = ErrorEnvelope),
    ))]
pub async fn confirm_subscription(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let provider = provider.into_inner();
    let reader = reader_of(&state, &provider)?;
    let query = parse_form(request.query_string().as_bytes()).unwrap_or_default();
    match reader.confirm_subscription(&query) {
        Some(challenge) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(challenge?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Provider '{provider}' makes no subscription check; it POSTs its receipts to this URL."),
        )),
    }
}

/// The receipt reader of `provider`, or 404.
fn reader_of(state: &AppState, provider: &str) -> Result<Arc<dyn ReceiptReader>, ApiError> {
    state.receipts.readers.get(provider).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No provider '{provider}' takes delivery receipts here; check the URL given to the provider."),
        )
    })
}

fn authenticate_tenant(request: &HttpRequest) -> Result<Tenant, ApiError> {
    use actix_web::FromRequest;
    Tenant::from_request(request, &mut actix_web::dev::Payload::None).into_inner()
}

impl From<ReceiptError> for ApiError {
    fn from(error: ReceiptError) -> Self {
        match error {
            ReceiptError::Unauthenticated => ApiError::unauthorized(
                "The receipt's signature or secret is missing or wrong; check the provider's credentials and receipt_secrets in the settings.",
            ),
            other => ApiError::invalid_request(format!("{other}.")),
        }
    }
}

/// The URL the provider called, as it signed it: under `receipts.public_url`, or where the
/// request reached otpd.
fn signed_url(state: &AppState, request: &HttpRequest) -> String {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned());
    match state.receipts.public_url.as_deref() {
        Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
        None => format!("{}{path_and_query}", state.origin(request)),
    }
}
