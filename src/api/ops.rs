//! Operations routes: liveness, readiness, metrics.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::Tenant;
use super::AppState;
use crate::cluster::ClusterView;
use crate::delivery::health::ProviderView;
use crate::domain::Timestamp;
use crate::telemetry::metrics::metrics;

/// The process is up.
#[derive(Serialize, ToSchema)]
pub(super) struct Alive {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The node takes requests.
#[derive(Serialize, ToSchema)]
pub(super) struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    #[schema(example = "ok")]
    store: &'static str,
    #[schema(example = "ok")]
    bus: &'static str,
}

/// Every provider's health.
#[derive(Serialize, ToSchema)]
pub(super) struct Providers {
    providers: Vec<ProviderView>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Alive)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

/// The store answers and, in broker mode, the broker is connected and takes publishes.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations", responses(
    (status = 200, description = "Ready for requests", body = Ready),
    (status = 503, description = "Not ready; the message says which part is not", body = ErrorEnvelope),
))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .store
        .check_health()
        .map_err(|error| ApiError::unavailable(format!("store: {error}")))?;
    state
        .bus
        .ready()
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    if let Some(cluster) = &state.cluster {
        if !cluster.is_ready() {
            return Err(ApiError::unavailable(
                "this node has not joined the cluster yet, or is catching up on a partition it owns",
            ));
        }
    }
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready",
        store: "ok",
        bus: "ok",
    }))
}

/// Prometheus metrics, as text.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
))]
pub async fn prometheus() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics().render())
}

/// Each provider's breaker, quota, counts and send latency.
#[utoipa::path(get, path = "/v1/providers", operation_id = "list_providers", tag = "operations", responses(
    (status = 200, description = "Every provider as this node sees it", body = Providers),
), security(("api_key" = [])))]
pub async fn providers(state: web::Data<AppState>, _tenant: Tenant) -> HttpResponse {
    HttpResponse::Ok().json(Providers {
        providers: state.board.views(Timestamp::now()),
    })
}

/// Who owns each partition (broker mode).
#[utoipa::path(get, path = "/v1/cluster", operation_id = "get_cluster", tag = "operations", responses(
    (status = 200, description = "Each partition's owner and each node's lag", body = ClusterView),
    (status = 404, description = "Embedded mode: there is no cluster", body = ErrorEnvelope),
    (status = 503, description = "The broker could not be asked now; retry", body = ErrorEnvelope),
), security(("api_key" = [])))]
pub async fn cluster(
    state: web::Data<AppState>,
    _tenant: Tenant,
) -> Result<HttpResponse, ApiError> {
    let Some(cluster) = &state.cluster else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "no_cluster",
            "otpd runs in embedded mode: one node, no partitions. Set OTPD__AMQP__URL to run nodes as a cluster.",
        ));
    };
    let view = cluster
        .view()
        .await
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    Ok(HttpResponse::Ok().json(view))
}
