//! The SMS-pumping guard's routes: its active blocks, with the rule and figures
//! (`/v1/fraud/blocks`), and an admin lifting one by hand (`/v1/admin/fraud/blocks/{prefix}`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::decode_entry;
use super::error::{ApiError, ErrorEnvelope};
use super::extract::Tenant;
use super::AppState;
use crate::domain::Timestamp;
use crate::fraud::BlockView;

/// The prefixes blocked now.
#[derive(Serialize, ToSchema)]
pub(super) struct Blocks {
    blocks: Vec<BlockView>,
}

/// The block an admin lifted.
#[derive(Serialize, ToSchema)]
pub(super) struct Lifted {
    lifted: BlockView,
}

/// Every prefix blocked now (blocks are global, so any tenant sees them).
#[utoipa::path(get, path = "/v1/fraud/blocks", operation_id = "list_fraud_blocks", tag = "fraud", responses(
    (status = 200, description = "The active blocks, each with its rule and figures", body = Blocks),
), security(("api_key" = [])))]
pub async fn blocks(state: web::Data<AppState>, _tenant: Tenant) -> HttpResponse {
    let blocks: Vec<BlockView> = state
        .fraud
        .active_blocks(Timestamp::now())
        .iter()
        .map(BlockView::of)
        .collect();
    HttpResponse::Ok().json(Blocks { blocks })
}

/// An admin lifts a block it judged mistaken; counting for the prefix starts afresh.
#[utoipa::path(delete, path = "/v1/admin/fraud/blocks/{prefix}", operation_id = "lift_fraud_block", tag = "fraud",
    params(("prefix" = String, Path, description = "The blocked prefix, its `+` as `%2B` or as it is")),
    responses(
        (status = 200, description = "The block that was lifted", body = Lifted),
        (status = 404, description = "No such block", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ), security(("api_key" = [])))]
pub async fn lift(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let prefix = decode_entry(request.match_info().get("prefix").unwrap_or_default());
    let block = state.gateway.lift_fraud_block(&tenant.0, &prefix).await?;
    Ok(HttpResponse::Ok().json(Lifted {
        lifted: BlockView::of(&block),
    }))
}
