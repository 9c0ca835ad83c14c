//! `/v2/Services/{ServiceSid}/Verifications` and `/VerificationCheck`: Twilio's form
//! parameters decoded, otpd's issuance and checking called, Twilio's resources answered.

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::Account;
use super::error::{TwilioError, TwilioErrorBody};
use super::form::Form;
use super::views::{
    parse_verification_sid, twilio_channel_name, CheckResource, VerificationResource,
};
use crate::api::error::ApiError;
use crate::api::verifications::{counted, run_check};
use crate::api::AppState;
use crate::cluster::command::{CheckTarget, IssueAnswer};
use crate::domain::channel::AddressKind;
use crate::domain::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::domain::{Channel, DestinationKey, OtpCode, Presented, Timestamp, VerificationId};
use crate::issuance::request::{
    parse_destination, validate, validate_transaction, CreateFields, InvalidRequest,
};
use crate::issuance::{IssueOtp, RequestSource, Surface};
use crate::verify::{CheckError, Closing};

/// Parameters of Twilio's create that otpd takes and does nothing with (the README says
/// why for each).
const IGNORED_ON_CREATE: &[&str] = &[
    "CustomFriendlyName",
    "CustomMessage",
    "SendDigits",
    "AppHash",
    "TemplateSid",
    "TemplateCustomSubstitutions",
    "DeviceIp",
    "EnableSnaClientToken",
    "RiskCheck",
    "RateLimits",
    "ChannelConfiguration",
];

/// Creates a verification and sends its code, or sends the pending one's again.
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/Verifications", operation_id = "twilio_create_verification",
    tag = "twilio",
    params(("ServiceSid" = String, Path, description = "The account's Verify service, `VA…`")),
    request_body(content = CreateForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Created, or a pending one's code sent again", body = VerificationResource),
        (status = 400, description = "60200: a parameter is missing or malformed", body = TwilioErrorBody),
        (status = 403, description = "20403: the destination is blocked or not permitted", body = TwilioErrorBody),
        (status = 404, description = "20404: no such service for this account", body = TwilioErrorBody),
        (status = 429, description = "20429 (a cooldown or a cap) or 60203 (max send attempts); wait Retry-After", body = TwilioErrorBody),
        (status = 503, description = "20503: otpd cannot take it now; retry", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    account: Account,
    service: web::Path<String>,
    request: HttpRequest,
    mut form: Form,
) -> Result<HttpResponse, TwilioError> {
    account.own_service(&service)?;
    let to = form.require("To")?;
    let channel = form.require("Channel")?;
    let fields = CreateFields {
        channel: Some(twilio_channel(&channel, &to)?.as_str().to_owned()),
        workflow: None,
        channel_timeout_seconds: None,
        to,
        locale: form.take("Locale"),
        template: None,
        session_id: None,
        amount: form.take("Amount"),
        payee: form.take("Payee"),
        code_length: None,
        ttl_seconds: None,
    };
    if let Some(tags) = form.take("Tags") {
        check_tags(&tags)?;
    }
    if form.take("CustomCode").is_some() {
        return Err(TwilioError::invalid_parameter(
            "otpd makes every code itself, so that only its HMAC is kept; leave CustomCode out.",
        ));
    }
    form.finish(IGNORED_ON_CREATE)?;
    let issue = IssueOtp {
        tenant: account.tenant.clone(),
        source: RequestSource::Http {
            client_ip: state.client_ip(&request),
        },
        surface: Surface::TwilioCompatible,
        request: validate(fields, &state.defaults).map_err(invalid)?,
        idempotency: None,
    };
    let receipt = match state.gateway.issue(issue).await {
        IssueAnswer::Issued(receipt) => receipt,
        IssueAnswer::Refused(refused) => return Err(ApiError::from(refused).into()),
    };
    let record = state
        .gateway
        .get(&account.tenant, &receipt.id)
        .await
        .map_err(|_| {
            TwilioError::from(ApiError::unavailable(format!(
                "the verification {} was created and its code is on its way, but it could not be read back; fetch it with GET",
                super::views::verification_sid(&receipt.id)
            )))
        })?;
    let view = VerificationResource::of(&record, Timestamp::now(), &state.origin(&request));
    Ok(HttpResponse::Created().json(view))
}

/// Checks a code, against a verification named by its SID or by its destination.
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/VerificationCheck", operation_id = "twilio_check_verification",
    tag = "twilio",
    params(("ServiceSid" = String, Path, description = "The account's Verify service, `VA…`")),
    request_body(content = CheckForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Checked; `valid` says whether the code was right (and the amount and payee, when bound)", body = CheckResource),
        (status = 400, description = "60200: a parameter is missing or malformed", body = TwilioErrorBody),
        (status = 404, description = "20404: no such verification pending (never made, approved, canceled or expired)", body = TwilioErrorBody),
        (status = 429, description = "60202: max check attempts reached; 20429: too many checks from this client, wait Retry-After", body = TwilioErrorBody),
        (status = 503, description = "20503: otpd cannot take it now; retry", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn check(
    state: web::Data<AppState>,
    account: Account,
    service: web::Path<String>,
    request: HttpRequest,
    mut form: Form,
) -> Result<HttpResponse, TwilioError> {
    account.own_service(&service)?;
    state.admit_check(&request)?;
    let code = form.require("Code")?;
    let code = OtpCode::parse(&code).ok_or_else(|| {
        TwilioError::invalid_parameter(format!(
            "Code must be the {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} digits that were sent."
        ))
    })?;
    let to = form.take("To");
    let sid = form.take("VerificationSid");
    let transaction =
        validate_transaction(form.take("Amount"), form.take("Payee")).map_err(invalid)?;
    form.finish(&[])?;
    let presented = Presented {
        session_id: None,
        transaction,
    };
    let result = match (sid, to) {
        (Some(sid), None) => match parse_verification_sid(&sid) {
            Some(id) => {
                run_check(
                    &state,
                    &account.tenant,
                    CheckTarget::Id(id),
                    &code,
                    presented,
                )
                .await
            }
            None => counted(&account.tenant, Err(CheckError::NotFound)),
        },
        (None, Some(to)) => {
            let target = CheckTarget::Destination(destination_key(&account.tenant, &to)?);
            run_check(&state, &account.tenant, target, &code, presented).await
        }
        (Some(_), Some(_)) => {
            return Err(TwilioError::invalid_parameter(
                "Give To or VerificationSid, not both.",
            ))
        }
        (None, None) => {
            return Err(TwilioError::invalid_parameter(
                "Missing required parameter To or VerificationSid in the post body.",
            ))
        }
    };
    let (record, outcome) = result.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(CheckResource::of(&record, &outcome)))
}

/// Reads a verification.
#[utoipa::path(
    get,
    path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", operation_id = "twilio_fetch_verification",
    tag = "twilio",
    params(
        ("ServiceSid" = String, Path, description = "The account's Verify service, `VA…`"),
        ("Sid" = String, Path, description = "The verification's SID, `VE…`"),
    ),
    responses(
        (status = 200, description = "The verification", body = VerificationResource),
        (status = 404, description = "20404: no such verification for this account", body = TwilioErrorBody),
        (status = 503, description = "20503: otpd cannot take it now; retry", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn fetch(
    state: web::Data<AppState>,
    account: Account,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, TwilioError> {
    let (service, sid) = path.into_inner();
    account.own_service(&service)?;
    let id = verification(&sid)?;
    let record = state
        .gateway
        .get(&account.tenant, &id)
        .await
        .map_err(ApiError::from)?;
    let view = VerificationResource::of(&record, Timestamp::now(), &state.origin(&request));
    Ok(HttpResponse::Ok().json(view))
}

/// Cancels or approves a pending verification (`Status=canceled` or `approved`).
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/Verifications/{Sid}", operation_id = "twilio_update_verification",
    tag = "twilio",
    params(
        ("ServiceSid" = String, Path, description = "The account's Verify service, `VA…`"),
        ("Sid" = String, Path, description = "The verification's SID, `VE…`"),
    ),
    request_body(content = UpdateForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The verification, canceled or approved", body = VerificationResource),
        (status = 400, description = "60200: Status is missing or neither canceled nor approved", body = TwilioErrorBody),
        (status = 404, description = "20404: no such verification pending for this account", body = TwilioErrorBody),
        (status = 503, description = "20503: otpd cannot take it now; retry", body = TwilioErrorBody),
    ),
    security(("twilio_basic" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    account: Account,
    path: web::Path<(String, String)>,
    request: HttpRequest,
    mut form: Form,
) -> Result<HttpResponse, TwilioError> {
    let (service, sid) = path.into_inner();
    account.own_service(&service)?;
    let closing = match form.require("Status")?.as_str() {
        "canceled" => Closing::Cancel,
        "approved" => Closing::Approve,
        _ => {
            return Err(TwilioError::invalid_parameter(
                "Status must be canceled or approved.",
            ))
        }
    };
    form.finish(&[])?;
    let id = verification(&sid)?;
    let now = Timestamp::now();
    let record = state
        .gateway
        .close(&account.tenant, &id, closing, now)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(VerificationResource::of(
        &record,
        now,
        &state.origin(&request),
    )))
}

/// The verification `sid` names, or 20404.
fn verification(sid: &str) -> Result<VerificationId, TwilioError> {
    parse_verification_sid(sid)
        .ok_or_else(|| TwilioError::not_found(&format!("/Verifications/{sid}")))
}

/// otpd's channel for Twilio's `Channel` (`call` is voice); Twilio's channels otpd does not
/// have are refused. Whether this deployment offers the channel is the issuer's to say.
fn twilio_channel(channel: &str, to: &str) -> Result<Channel, TwilioError> {
    let names = || {
        Channel::all()
            .map(twilio_channel_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match channel {
        "auto" => Ok(channel_of(to)),
        "sna" => Err(TwilioError::invalid_parameter(format!(
            "Channel sna is not offered by otpd; it sends by {}.",
            names()
        ))),
        _ => Channel::all()
            .find(|known| twilio_channel_name(*known) == channel)
            .ok_or_else(|| {
                TwilioError::invalid_parameter(format!(
                    "Channel must be one of {}, or auto.",
                    names()
                ))
            }),
    }
}

/// The channel a destination is reached by: email for an address, sms for a number.
fn channel_of(to: &str) -> Channel {
    let kind = if to.contains('@') {
        AddressKind::Email
    } else {
        AddressKind::Phone
    };
    Channel::all()
        .find(|channel| channel.address_kind() == kind)
        .unwrap_or(Channel::Sms)
}

/// The destination a check by `To` is for.
fn destination_key(tenant: &str, to: &str) -> Result<DestinationKey, TwilioError> {
    let channel = channel_of(to);
    let destination = parse_destination(channel, to).map_err(invalid)?;
    Ok(DestinationKey::new(tenant, channel, destination.as_str()))
}

/// `Tags` must be a JSON object of strings, as Twilio takes it; otpd keeps none of it.
fn check_tags(tags: &str) -> Result<(), TwilioError> {
    let object: Option<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(tags).ok();
    match object {
        Some(object) if object.values().all(serde_json::Value::is_string) => Ok(()),
        _ => Err(TwilioError::invalid_parameter(
            "Tags must be a JSON object whose values are strings.",
        )),
    }
}

fn invalid(error: InvalidRequest) -> TwilioError {
    ApiError::from(error).into()
}

/// The parameters of a create.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct CreateForm {
    /// An E.164 phone number (sms) or an email address (email).
    #[schema(example = "+4915112345678")]
    To: String,
    /// `sms`, `email`, `call`, `whatsapp`, or `auto` (email for an address, sms for a
    /// number).
    #[schema(example = "sms")]
    Channel: String,
    /// A language tag for the message, such as `de` or `pt-BR`.
    Locale: Option<String>,
    /// The transaction's amount (PSD2): a check must give the same.
    Amount: Option<String>,
    /// The transaction's payee (PSD2): a check must give the same.
    Payee: Option<String>,
    /// A JSON object of strings; accepted, not kept.
    Tags: Option<String>,
}

/// The parameters of a check: `Code`, and `To` or `VerificationSid`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct CheckForm {
    /// The digits that were sent.
    #[schema(pattern = "^[0-9]{4,10}$", example = "123456")]
    Code: String,
    #[schema(example = "+4915112345678")]
    To: Option<String>,
    #[schema(pattern = "^VE[0-9a-f]{32}$")]
    VerificationSid: Option<String>,
    Amount: Option<String>,
    Payee: Option<String>,
}

/// The parameters of an update.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct UpdateForm {
    /// `canceled` or `approved`.
    #[schema(pattern = "^(canceled|approved)$")]
    Status: String,
}
