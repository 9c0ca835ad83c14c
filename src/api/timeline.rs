//! "Why didn't my user get the code?": a verification's delivery timeline
//! (`GET /v1/verifications/{id}/attempts`), and a destination's recent verifications for an
//! admin who has a number and nothing else (`GET /v1/admin/verifications?to=…`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::Tenant;
use super::verifications::VerificationView;
use super::workflow::WorkflowView;
use super::AppState;
use crate::access::AdminError;
use crate::domain::destination::mask;
use crate::domain::{
    Channel, DeliveryAttempt, Destination, DestinationKey, NextStep, Timestamp, Verification,
    VerificationId,
};
use crate::store::Store;

/// A verification's delivery timeline; only the latest `attempt::TIMELINE_LENGTH` entries
/// are kept.
#[derive(Serialize, ToSchema)]
pub(super) struct TimelineView {
    id: String,
    status: &'static str,
    /// How far the current code's message has got: `queued`, `sent`, `delivered`, `failed`.
    delivery: &'static str,
    /// Every try to send its codes, oldest first; only the latest 32 are kept, and
    /// `dropped` says how many came before them.
    attempts: Vec<AttemptView>,
    dropped: u32,
    /// Its fallback workflow's steps, each with the `send` its entries carry, when it
    /// follows one.
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: Option<WorkflowView>,
}

/// One try to send a code, or a moment when no provider could be tried.
#[derive(Serialize, ToSchema)]
pub(super) struct AttemptView {
    /// 1 for the verification's first entry, +1 for each after it.
    attempt: u32,
    /// Which send it belongs to: 1 for the first code, +1 per resend.
    send: u32,
    channel: Channel,
    /// The provider tried; none when no provider could be.
    provider: Option<String>,
    region: String,
    started_at: String,
    duration_ms: u32,
    #[schema(
        pattern = "^(sent|transient|permanent|timeout|breaker_open|quota_exhausted|paused|expired_before_send)$"
    )]
    outcome: &'static str,
    /// What the provider answered (its HTTP status, error code and message), or why it
    /// could not be tried. Never the code or the message.
    detail: Option<String>,
    /// What otpd did next: `done`, `retry`, `failover` or `wait`.
    #[schema(pattern = "^(done|retry|failover|wait)$")]
    next: &'static str,
    /// For `retry`: the pause before it, milliseconds.
    retry_in_ms: Option<u32>,
    /// For `wait`: until when no provider could be used.
    wait_until: Option<String>,
    /// How many times the same refusal came again before anything else happened.
    repeats: u32,
    /// The provider's delivery receipt, on the entry that sent the message.
    receipt: Option<ReceiptView>,
}

/// A provider's delivery receipt.
#[derive(Serialize, ToSchema)]
pub(super) struct ReceiptView {
    #[schema(pattern = "^(delivered|failed)$")]
    status: &'static str,
    at: String,
    /// From the moment the provider was called to the receipt's time.
    time_to_deliver_ms: u64,
    /// The provider's error code, when it reported the message undelivered.
    error_code: Option<String>,
}

impl TimelineView {
    fn of(record: &Verification, now: Timestamp) -> Self {
        TimelineView {
            id: record.id.to_string(),
            status: record.status_at(now).as_str(),
            delivery: record.delivery.as_str(),
            attempts: record.timeline.iter().map(AttemptView::of).collect(),
            dropped: record.timeline.first().map_or(0, |first| first.number - 1),
            workflow: WorkflowView::of_record(record, now),
        }
    }
}

impl AttemptView {
    fn of(attempt: &DeliveryAttempt) -> Self {
        let (next, retry_in_ms, wait_until) = match attempt.next {
            NextStep::Done => ("done", None, None),
            NextStep::Retry { after_ms } => ("retry", Some(after_ms), None),
            NextStep::Failover => ("failover", None, None),
            NextStep::Wait { until } => ("wait", None, Some(until.to_rfc3339())),
        };
        AttemptView {
            attempt: attempt.number,
            send: attempt.send,
            channel: attempt.channel,
            provider: attempt.provider.clone(),
            region: attempt.region.clone(),
            started_at: attempt.started_at.to_rfc3339(),
            duration_ms: attempt.took_ms,
            outcome: attempt.outcome.as_str(),
            detail: attempt.detail.clone(),
            next,
            retry_in_ms,
            wait_until,
            repeats: attempt.repeats,
            receipt: attempt.receipt.as_ref().map(|receipt| ReceiptView {
                status: receipt.status.as_str(),
                at: receipt.at.to_rfc3339(),
                time_to_deliver_ms: u64::try_from(attempt.started_at.until(receipt.at).as_millis())
                    .unwrap_or(u64::MAX),
                error_code: receipt.error_code.clone(),
            }),
        }
    }
}

/// Every try to send a verification's codes, and the receipts.
#[utoipa::path(
    get,
    path = "/v1/verifications/{id}/attempts", operation_id = "list_delivery_attempts",
    tag = "verifications",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    responses(
        (status = 200, description = "The verification's delivery timeline", body = TimelineView),
        (status = 404, description = "No such verification for this tenant", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn attempts(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = VerificationId::parse(&id).ok_or_else(ApiError::not_found)?;
    let record = state.gateway.get(&tenant.0, &id).await?;
    Ok(HttpResponse::Ok().json(TimelineView::of(&record, Timestamp::now())))
}

/// What a support desk asks for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupQuery {
    to: String,
}

/// A destination's recent verifications, of every tenant, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct LookupView {
    /// The destination as otpd reads it, masked.
    to: String,
    verifications: Vec<FoundVerification>,
}

/// A verification an admin looked up, whichever tenant's it is.
#[derive(Serialize, ToSchema)]
pub(super) struct FoundVerification {
    tenant: String,
    #[serde(flatten)]
    verification: VerificationView,
    /// Its delivery timeline, as `GET /v1/verifications/{id}/attempts` gives it.
    attempts: Vec<AttemptView>,
}

impl FoundVerification {
    fn of(record: &Verification, now: Timestamp) -> Self {
        FoundVerification {
            tenant: record.tenant.clone(),
            verification: VerificationView::of(record, now),
            attempts: record.timeline.iter().map(AttemptView::of).collect(),
        }
    }
}

/// A destination's recent verifications (up to 10 per tenant and channel, while the store
/// keeps them), for an admin key.
#[utoipa::path(
    get,
    path = "/v1/admin/verifications", operation_id = "find_verifications_by_destination",
    tag = "admin",
    params(("to" = String, Query, description = "An E.164 number (`+4915112345678`) or an email address")),
    responses(
        (status = 200, description = "Its recent verifications, newest first; none when otpd has none", body = LookupView),
        (status = 400, description = "`to` is missing or is not a number or an address", body = ErrorEnvelope),
        (status = 403, description = "The API key's tenant is not an admin", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn find_by_destination(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, tenant)?;
    let query: LookupQuery = serde_urlencoded::from_str(request.query_string()).map_err(|_| {
        ApiError::invalid_request(
            "Give the destination as the one query parameter `to`: an E.164 number such as +4915112345678 (write + as %2B) or an email address.",
        )
    })?;
    let (channels, destination) = Destination::read_any(&query.to).ok_or_else(|| {
        ApiError::invalid_request(
            "`to` is neither an E.164 number such as +4915112345678 nor an email address.",
        )
    })?;
    let now = Timestamp::now();
    let tenants = state.keys.tenants();
    let found = recent_verifications(state.store.as_ref(), &tenants, &channels, &destination)
        .map_err(ApiError::unavailable)?;
    let verifications = found
        .iter()
        .map(|record| FoundVerification::of(record, now))
        .collect();
    Ok(HttpResponse::Ok().json(LookupView {
        to: mask(destination.as_str()),
        verifications,
    }))
}

/// Any tenant's verification, with its timeline, for an admin key.
#[utoipa::path(
    get,
    path = "/v1/admin/verifications/{id}", operation_id = "find_verification_by_id",
    tag = "admin",
    params(("id" = String, Path, description = "The verification's id, `ver_…`")),
    responses(
        (status = 200, description = "The verification, its tenant and its delivery timeline", body = FoundVerification),
        (status = 403, description = "The API key's tenant is not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such verification", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ),
    security(("api_key" = []))
)]
pub async fn find_by_id(
    state: web::Data<AppState>,
    tenant: Tenant,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, tenant)?;
    let not_found = || {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "No verification has this id. Check it, or look the destination up with GET /v1/admin/verifications?to=….",
        )
    };
    let id = VerificationId::parse(&id).ok_or_else(not_found)?;
    let record = state
        .store
        .verification(&id)
        .map_err(ApiError::unavailable)?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(FoundVerification::of(&record, Timestamp::now())))
}

fn require_admin(state: &AppState, tenant: Tenant) -> Result<(), ApiError> {
    if state.admins.contains(&tenant.0) {
        Ok(())
    } else {
        Err(AdminError::Forbidden(tenant.0).into())
    }
}

/// The verifications this node's store lists under `destination`, for each tenant and
/// channel, newest first. In a cluster the store is this node's view of every partition,
/// which may trail the owners by moments.
fn recent_verifications(
    store: &dyn Store,
    tenants: &[String],
    channels: &[Channel],
    destination: &Destination,
) -> Result<Vec<Verification>, crate::store::StoreError> {
    let mut keys: Vec<DestinationKey> = Vec::new();
    for tenant in tenants {
        for channel in channels {
            let key = DestinationKey::new(tenant, *channel, destination.as_str());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    let mut found = Vec::new();
    for key in keys {
        let Some(state) = store.destination(&key)? else {
            continue;
        };
        for id in &state.recent {
            if let Some(record) = store.verification(id)? {
                found.push(record);
            }
        }
    }
    found.sort_by_key(|record| std::cmp::Reverse(record.created_at));
    Ok(found)
}
