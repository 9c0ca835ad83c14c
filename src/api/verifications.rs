//! The /v1/verifications routes: decode, call issuance or checking, encode.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{JsonBody, Tenant, IDEMPOTENCY_KEY};
use super::workflow::WorkflowView;
use super::AppState;
use crate::cluster::command::{CheckTarget, IssueAnswer};
use crate::domain::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::domain::destination::mask;
use crate::domain::{
    Channel, DestinationKey, IssueReceipt, OtpCode, Presented, Timestamp, Verification,
    VerificationId,
};
use crate::issuance::request::{
    parse_channel, parse_destination, validate, validate_session_id, validate_transaction,
    CreateFields,
};
use crate::issuance::{IdempotencyInput, IssueOtp, RequestSource, Surface};
use crate::telemetry::events::CodeChecked;
use crate::verify::{CheckError, CheckOutcome, CheckRefusal, Closing};

const MAX_IDEMPOTENCY_KEY_LENGTH: usize = 255;

/// A code to check against one verification.
#[derive(Deserialize, ToSchema)]
pub struct CheckBody {
    /// The digits that were sent, as a string.
    #[schema(pattern = "^[0-9]{4,10}$")]
    code: String,
    /// The session the verification was created for, if it was bound to one.
    #[schema(min_length = 1, max_length = 128)]
    session_id: Option<String>,
    /// The transaction's amount, if the verification was created with one.
    #[schema(min_length = 1, max_length = 64)]
    amount: Option<String>,
    /// The transaction's payee, if the verification was created with one.
    #[schema(min_length = 1, max_length = 256)]
    payee: Option<String>,
}

/// A code to check against the pending verification of a destination.
#[derive(Deserialize, ToSchema)]
pub struct CheckByDestinationBody {
    /// The destination the code was sent to, as it was given at create.
    to: String,
    #[schema(value_type = Channel)]
    channel: String,
    /// The digits that were sent, as a string.
    #[schema(pattern = "^[0-9]{4,10}$")]
    code: String,
    /// The session the verification was created for, if it was bound to one.
    #[schema(min_length = 1, max_length = 128)]
    session_id: Option<String>,
    /// The transaction's amount, if the verification was created with one.
    #[schema(min_length = 1, max_length = 64)]
    amount: Option<String>,
    /// The transaction's payee, if the verification was created with one.
    #[schema(min_length = 1, max_length = 256)]
    payee: Option<String>,
}

/// A verification just created (201), or a pending one whose code was sent anew (200).
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedView {
    id: String,
    status: &'static str,
    channel: Channel,
    to: String,
    expires_at: String,
    resend_available_at: String,
    attempts_remaining: u32,
}

/// What a check found: `valid` is true once, for the right code.
#[derive(Serialize, ToSchema)]
pub(super) struct CheckView<'a> {
    id: &'a str,
    valid: bool,
    status: &'static str,
    attempts_remaining: u32,
}

/// A verification as it stands; `to` is masked.
#[derive(Serialize, ToSchema)]
pub(super) struct VerificationView {
    /// Its fallback workflow, when it follows one.
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: Option<WorkflowView>,
    id: String,
    status: &'static str,
    channel: Channel,
    to: String,
    delivery: &'static str,
    provider: Option<String>,
    attempts_remaining: u32,
    created_at: String,
    updated_at: String,
    expires_at: String,
    sent_at: Option<String>,
}

impl VerificationView {
    pub(super) fn of(record: &Verification, now: Timestamp) -> Self {
        VerificationView {
            id: record.id.to_string(),
            status: record.status_at(now).as_str(),
            channel: record.channel,
            to: mask(&record.to),
            delivery: record.delivery.as_str(),
            provider: record.provider.clone(),
            attempts_remaining: record.attempts_remaining(),
            created_at: record.created_at.to_rfc3339(),
            updated_at: record.updated_at.to_rfc3339(),
            expires_at: record.expires_at.to_rfc3339(),
            sent_at: record.sent_at.map(Timestamp::to_rfc3339),
            workflow: WorkflowView::of_record(record, now),
        }
    }
}

/// Creates a verification and sends its code, or resends the pending one's.
#[utoipa::path(
    post,
    path = "/v1/verifications", operation_id = "create_verification",
    tag = "verifications",
    request_body = CreateFields,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters; the same key and body replay the first answer")),
    responses(
        (status = 201, description = "Created; the code is on its way (a retry under the same Idempotency-Key gets this answer again)", body = CreatedView),
        (status = 200, description = "A verification was pending for this destination and its cooldown had passed: the same id, a new code on its way", body = CreatedView),
        (status = 400, description = "A field is missing or malformed", body = ErrorEnvelope),
        (status = 403, description = "The destination or its prefix is blocked", body = ErrorEnvelope),
        (status = 422, description = "Not a valid destination, or an Idempotency-Key reused with another body", body = ErrorEnvelope),
        (status = 429, description = "Cooldown, send limit or cap; wait Retry-After", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
    body: JsonBody<CreateFields>,
) -> Result<HttpResponse, ApiError> {
    let idempotency = idempotency_input(&request, &body)?;
    let issue = IssueOtp {
        tenant: tenant.0,
        source: RequestSource::Http {
            client_ip: state.client_ip(&request),
        },
        surface: Surface::Native,
        request: validate(body.value, &state.defaults).map_err(ApiError::from)?,
        idempotency,
    };
    match state.gateway.issue(issue).await {
        IssueAnswer::Issued(receipt) => Ok(created_response(&receipt)),
        IssueAnswer::Refused(refused) => Err(refused.into()),
    }
}

pub(super) fn created_response(receipt: &IssueReceipt) -> HttpResponse {
    let status = if receipt.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(CreatedView {
        id: receipt.id.to_string(),
        status: "pending",
        channel: receipt.channel,
        to: receipt.to_masked.clone(),
        expires_at: receipt.expires_at.to_rfc3339(),
        resend_available_at: receipt.resend_available_at.to_rfc3339(),
        attempts_remaining: receipt.attempts_remaining,
    })
}

fn idempotency_input(
    request: &HttpRequest,
    body: &JsonBody<CreateFields>,
) -> Result<Option<IdempotencyInput>, ApiError> {
    // The body is hashed exactly when the header is there (`JsonBody`).
    let (Some(value), Some(body_hash)) =
        (request.headers().get(IDEMPOTENCY_KEY), body.canonical_hash)
    else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LENGTH)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters."
            ))
        })?;
    Ok(Some(IdempotencyInput {
        key: format!("http:{key}"),
        body_hash,
    }))
}

fn parse_code(raw: &str) -> Result<OtpCode, ApiError> {
    OtpCode::parse(raw).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "'code' must be the {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} digits that were sent, as a string."
        ))
    })
}

/// Checks a code against the verification `id`.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/check", operation_id = "check_verification",
    tag = "verifications",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    request_body = CheckBody,
    responses(
        (status = 200, description = "Checked; `valid` says whether the code was right", body = CheckView),
        (status = 400, description = "A field is missing or malformed", body = ErrorEnvelope),
        (status = 404, description = "No such verification for this tenant", body = ErrorEnvelope),
        (status = 409, description = "Already approved, canceled, or out of attempts", body = ErrorEnvelope),
        (status = 410, description = "The code expired", body = ErrorEnvelope),
        (status = 429, description = "Too many checks from this client; wait Retry-After", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn check(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
    request: HttpRequest,
    body: JsonBody<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    state.admit_check(&request)?;
    let body = body.value;
    let code = parse_code(&body.code)?;
    let presented = presented(body.session_id, body.amount, body.payee)?;
    let result = match VerificationId::parse(&id) {
        Some(id) => run_check(&state, &tenant.0, CheckTarget::Id(id), &code, presented).await,
        None => counted(&tenant.0, Err(CheckError::NotFound)),
    };
    check_view(result)
}

/// Checks a code against the pending verification of a destination.
#[utoipa::path(
    post,
    path = "/v1/verifications/check", operation_id = "check_verification_by_destination",
    tag = "verifications",
    request_body = CheckByDestinationBody,
    responses(
        (status = 200, description = "Checked; `valid` says whether the code was right", body = CheckView),
        (status = 400, description = "A field is missing or malformed", body = ErrorEnvelope),
        (status = 404, description = "No verification is pending for this destination", body = ErrorEnvelope),
        (status = 422, description = "Not a valid destination", body = ErrorEnvelope),
        (status = 409, description = "Already approved, canceled, or out of attempts", body = ErrorEnvelope),
        (status = 410, description = "The code expired", body = ErrorEnvelope),
        (status = 429, description = "Too many checks from this client; wait Retry-After", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn check_by_destination(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
    body: JsonBody<CheckByDestinationBody>,
) -> Result<HttpResponse, ApiError> {
    state.admit_check(&request)?;
    let body = body.value;
    let code = parse_code(&body.code)?;
    let presented = presented(body.session_id, body.amount, body.payee)?;
    let channel = parse_channel(&body.channel).map_err(ApiError::from)?;
    let destination = parse_destination(channel, &body.to).map_err(ApiError::from)?;
    let key = DestinationKey::new(&tenant.0, channel, destination.as_str());
    let target = CheckTarget::Destination(key);
    check_view(run_check(&state, &tenant.0, target, &code, presented).await)
}

/// What a check presents besides its code, validated as a create's fields are.
fn presented(
    session_id: Option<String>,
    amount: Option<String>,
    payee: Option<String>,
) -> Result<Presented, ApiError> {
    validate_session_id(session_id.as_deref()).map_err(ApiError::from)?;
    Ok(Presented {
        session_id,
        transaction: validate_transaction(amount, payee).map_err(ApiError::from)?,
    })
}

/// The answer to a check.
fn check_view(
    result: Result<(Verification, CheckOutcome), CheckError>,
) -> Result<HttpResponse, ApiError> {
    let (record, outcome) = result?;
    Ok(HttpResponse::Ok().json(CheckView {
        id: record.id.as_str(),
        valid: outcome.valid,
        status: outcome.status.as_str(),
        attempts_remaining: outcome.attempts_remaining,
    }))
}

/// Checks `code` against the verification `target` names, and counts the outcome.
pub(super) async fn run_check(
    state: &AppState,
    tenant: &str,
    target: CheckTarget,
    code: &OtpCode,
    presented: Presented,
) -> Result<(Verification, CheckOutcome), CheckError> {
    let result = state
        .gateway
        .check(tenant, target, code, presented, Timestamp::now())
        .await;
    counted(tenant, result)
}

/// A check's result, once counted by its outcome.
pub(super) fn counted(
    tenant: &str,
    result: Result<(Verification, CheckOutcome), CheckError>,
) -> Result<(Verification, CheckOutcome), CheckError> {
    CodeChecked {
        tenant,
        outcome: check_outcome_label(&result),
    }
    .emit();
    result
}

fn check_outcome_label(result: &Result<(Verification, CheckOutcome), CheckError>) -> &'static str {
    match result {
        Ok((_, outcome)) if outcome.valid => "approved",
        Ok(_) => "wrong",
        Err(CheckError::NotFound) => "not_found",
        Err(CheckError::Refused(CheckRefusal::AlreadyApproved)) => "already_approved",
        Err(CheckError::Refused(CheckRefusal::MaxAttemptsReached)) => "max_attempts_reached",
        Err(CheckError::Refused(CheckRefusal::Canceled)) => "canceled",
        Err(CheckError::Refused(CheckRefusal::Expired)) => "expired",
        Err(CheckError::Store(_)) => "unavailable",
    }
}

/// Reads a verification.
#[utoipa::path(
    get,
    path = "/v1/verifications/{id}", operation_id = "get_verification",
    tag = "verifications",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 404, description = "No such verification for this tenant", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VerificationId::parse(&id).ok_or_else(ApiError::not_found)?;
    let record = state.gateway.get(&tenant.0, &id).await?;
    Ok(HttpResponse::Ok().json(VerificationView::of(&record, Timestamp::now())))
}

/// Cancels a verification: its code no longer verifies.
#[utoipa::path(
    post,
    path = "/v1/verifications/{id}/cancel", operation_id = "cancel_verification",
    tag = "verifications",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    responses(
        (status = 200, description = "Canceled; the verification as it stands now", body = VerificationView),
        (status = 404, description = "No such verification for this tenant", body = ErrorEnvelope),
        (status = 409, description = "Already approved: there is nothing left to cancel", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VerificationId::parse(&id).ok_or_else(ApiError::not_found)?;
    let now = Timestamp::now();
    let record = state
        .gateway
        .close(&tenant.0, &id, Closing::Cancel, now)
        .await?;
    Ok(HttpResponse::Ok().json(VerificationView::of(&record, now)))
}
