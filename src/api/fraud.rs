//! The /v1/fraud routes: the SMS-pumping guard's active blocks, with the rule and figures.

use actix_web::{web, HttpResponse};
use serde_json::json;

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
