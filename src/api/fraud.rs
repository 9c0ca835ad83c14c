//! The SMS-pumping guard's routes: its active blocks, with the rule and figures
//! (`/v1/fraud/blocks`), and an admin lifting one by hand (`/v1/admin/fraud/blocks/{prefix}`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::admin::decode_entry;
use super::error::ApiError;
use super::extract::Tenant;
use super::AppState;
use crate::domain::Timestamp;
use crate::fraud::BlockView;

/// GET /v1/fraud/blocks: every prefix blocked now (blocks are global, so any tenant sees them).
pub async fn blocks(state: web::Data<AppState>, _tenant: Tenant) -> HttpResponse {
    let blocks: Vec<BlockView> = state
        .fraud
        .active_blocks(Timestamp::now())
        .iter()
        .map(BlockView::of)
        .collect();
    HttpResponse::Ok().json(json!({ "blocks": blocks }))
}

/// DELETE /v1/admin/fraud/blocks/{prefix} (`%2B2348031`): an admin lifts a block it judged
/// mistaken; counting for the prefix starts afresh. 200 with the block that was lifted.
pub async fn lift(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let prefix = decode_entry(request.match_info().get("prefix").unwrap_or_default());
    let block = state.gateway.lift_fraud_block(&tenant.0, &prefix).await?;
    Ok(HttpResponse::Ok().json(json!({ "lifted": BlockView::of(&block) })))
}
