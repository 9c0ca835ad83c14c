//! `/v2/Attempts`: the sends of a verification's code, as Twilio's Verification Attempts
//! API lists them, from the verification's delivery timeline.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Account;
use super::error::{TwilioError, TwilioErrorBody};
use super::form::Form;
use super::views::{parse_verification_sid, AttemptPage};
use crate::api::error::ApiError;
use crate::api::AppState;

/// Lists the sends of one verification (`VerificationSid`); one page holds them all.
#[utoipa::path(
    get,
    path = "/v2/Attempts", operation_id = "twilio_list_attempts",
    tag = "twilio",
    params(
        ("VerificationSid" = String, Query, description = "The verification whose sends to list, `VE…`"),
        ("PageSize" = Option<u32>, Query, description = "Taken and ignored: one page holds every send"),
        ("Page" = Option<u32>, Query, description = "Taken and ignored"),
    ),
    responses(
        (status = 200, description = "The verification's sends", body = AttemptPage),
        (status = 400, description = "60200: VerificationSid is missing, or a filter otpd does not take is given", body = TwilioErrorBody),
        (status = 404, description = "20404: no such verification for this account", body = TwilioErrorBody),
        (status = 503, description = "20503: otpd cannot take it now; retry", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    account: Account,
    request: HttpRequest,
) -> Result<HttpResponse, TwilioError> {
    let mut query = Form::of_query(&request)?;
    let sid = query.take("VerificationSid").ok_or_else(|| {
        TwilioError::invalid_parameter(
            "Missing required parameter VerificationSid in the query: otpd lists the attempts of one verification at a time.",
        )
    })?;
    query.finish(&["PageSize", "Page"])?;
    let id = parse_verification_sid(&sid)
        .ok_or_else(|| TwilioError::not_found(&format!("/Attempts?VerificationSid={sid}")))?;
    let record = state
        .gateway
        .get(&account.tenant, &id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(AttemptPage::of(&record, &state.origin(&request))))
}
