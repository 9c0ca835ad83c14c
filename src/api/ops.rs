//! Operations routes: liveness, readiness, metrics.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::extract::Tenant;
use super::AppState;
use crate::domain::Timestamp;
use crate::telemetry::metrics::metrics;

/// GET /healthz: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// GET /readyz: the store answers and, in broker mode, the broker is connected and takes
/// publishes.
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
    Ok(HttpResponse::Ok().json(json!({"status": "ready", "store": "ok", "bus": "ok"})))
}

/// GET /metrics: Prometheus text.
pub async fn prometheus() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics().render())
}

/// GET /v1/providers: each provider's breaker, quota, counts and send latency.
pub async fn providers(state: web::Data<AppState>, _tenant: Tenant) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "providers": state.board.views(Timestamp::now()) }))
}

/// GET /v1/cluster: every partition and the node that owns it, as the owners answer.
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
