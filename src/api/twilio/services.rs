//! `/v2/Services`: each tenant has one Verify service, whose SID its verifications' routes
//! name; these routes show it.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Account;
use super::error::{TwilioError, TwilioErrorBody};
use super::form::Form;
use super::views::{ServicePage, ServiceResource};
use crate::api::AppState;

/// Lists the account's services: its one.
#[utoipa::path(
    get,
    path = "/v2/Services", operation_id = "twilio_list_services",
    tag = "twilio",
    responses(
        (status = 200, description = "The account's one service", body = ServicePage),
    ),
    security(("twilio_basic" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    account: Account,
    request: HttpRequest,
) -> Result<HttpResponse, TwilioError> {
    let base = state.origin(&request);
    Ok(HttpResponse::Ok().json(ServicePage::of(service(&state, &account, &base), &base)))
}

/// Answers with the account's one service: otpd makes no other (its settings come from
/// otpd's configuration, not from the request).
#[utoipa::path(
    post,
    path = "/v2/Services", operation_id = "twilio_create_service",
    tag = "twilio",
    request_body(content = ServiceForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "The account's one service", body = ServiceResource),
        (status = 400, description = "60200: FriendlyName is missing, or a parameter otpd does not take is given", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    account: Account,
    request: HttpRequest,
    mut form: Form,
) -> Result<HttpResponse, TwilioError> {
    form.require("FriendlyName")?;
    form.finish(&[])?;
    let service = service(&state, &account, &state.origin(&request));
    Ok(HttpResponse::Created().json(service))
}

/// Reads the account's service.
#[utoipa::path(
    get,
    path = "/v2/Services/{Sid}", operation_id = "twilio_fetch_service",
    tag = "twilio",
    params(("Sid" = String, Path, description = "The account's Verify service, `VA…`")),
    responses(
        (status = 200, description = "The service", body = ServiceResource),
        (status = 404, description = "20404: not this account's service", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn fetch(
    state: web::Data<AppState>,
    account: Account,
    sid: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, TwilioError> {
    account.own_service(&sid)?;
    let service = service(&state, &account, &state.origin(&request));
    Ok(HttpResponse::Ok().json(service))
}

/// The account's one service, as reached at `base`.
fn service(state: &AppState, account: &Account, base: &str) -> ServiceResource {
    ServiceResource::of(&account.tenant, state.defaults.code_length, base)
}

/// The parameters of a service's create.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct ServiceForm {
    /// Required, as Twilio requires it; otpd's service keeps the tenant's name.
    FriendlyName: String,
}
