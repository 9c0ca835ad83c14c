//! Twilio's error body, `{"code", "message", "more_info", "status"}`, made from otpd's own
//! refusals: the same message (it says what to do), Twilio's code for the case, and the
//! status Twilio answers it with.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

use crate::api::error::ApiError;

/// Twilio's codes otpd answers with, their status, and when.
pub const TWILIO_CODES: &[(u32, u16, &str)] = &[
    (20003, 401, "No credentials, or not an account SID and one of its tenant's API keys"),
    (20004, 405, "The route does not take that HTTP method"),
    (20403, 403, "The destination is blocked, or not permitted for the tenant"),
    (20404, 404, "No such service or verification, or it can no longer be checked or changed (approved, canceled, expired)"),
    (20429, 429, "A cooldown or a cap; wait `Retry-After` seconds"),
    (20503, 503, "otpd cannot take it now; retry"),
    (60200, 400, "A parameter is missing or malformed; the message names it (408, 413 or 415 for a body that is late, too large, or not a form)"),
    (60202, 429, "Max check attempts reached; start a new verification"),
    (60203, 429, "Max send attempts reached for the destination; wait `Retry-After` seconds"),
];

/// A refusal in Twilio's terms, carrying otpd's refusal for its message and headers.
#[derive(Debug)]
pub struct TwilioError {
    refusal: ApiError,
    code: u32,
}

/// Twilio's error body.
#[derive(Serialize, ToSchema)]
pub struct TwilioErrorBody<'a> {
    #[schema(schema_with = twilio_code_schema)]
    code: u32,
    message: &'a str,
    /// Where the code is explained.
    more_info: String,
    /// The HTTP status, again.
    status: u16,
}

/// The schema of a Twilio error's `code`: one of `TWILIO_CODES`.
fn twilio_code_schema() -> impl Into<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(TWILIO_CODES.iter().map(|(code, _, _)| *code)))
        .description(Some(
            "One of the Twilio error codes listed in the API's description.",
        ))
}

impl TwilioError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        TwilioError {
            refusal: ApiError::new(status, "twilio", message),
            code,
        }
    }

    /// 60200: a parameter is missing or malformed.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 60200, message)
    }

    /// 20003: the credentials are missing or wrong.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authenticate with HTTP Basic auth: the user name is your account SID (AC…, which `otpd tenant list` shows) and the password one of its tenant's API keys.",
        )
    }

    /// 20404: nothing of that name for this account.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {what} was not found for this account; check the SID."),
        )
    }

    /// 20004: the route does not take the request's method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            20004,
            "This route does not take that HTTP method; GET /openapi.json gives the ones it takes.",
        )
    }

    pub fn code(&self) -> u32 {
        self.code
    }
}

/// otpd's refusal, with the Twilio code and status for its case.
impl From<ApiError> for TwilioError {
    fn from(refusal: ApiError) -> Self {
        let (status, code) = match refusal.code.as_ref() {
            "not_found" | "already_approved" | "canceled" | "expired" => {
                (StatusCode::NOT_FOUND, 20404)
            }
            "max_attempts_reached" => (StatusCode::TOO_MANY_REQUESTS, 60202),
            "too_many_sends" => (StatusCode::TOO_MANY_REQUESTS, 60203),
            "unauthorized" => return TwilioError::unauthenticated(),
            "method_not_allowed" => return TwilioError::method_not_allowed(),
            "invalid_request" | "invalid_destination" | "unknown_template" => {
                (StatusCode::BAD_REQUEST, 60200)
            }
            _ => match refusal.status {
                StatusCode::TOO_MANY_REQUESTS => (refusal.status, 20429),
                StatusCode::FORBIDDEN => (refusal.status, 20403),
                status if status.is_client_error() => (status, 60200),
                _ => (StatusCode::SERVICE_UNAVAILABLE, 20503),
            },
        };
        TwilioError {
            refusal: ApiError { status, ..refusal },
            code,
        }
    }
}

impl fmt::Display for TwilioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.refusal.message)
    }
}

impl ResponseError for TwilioError {
    fn status_code(&self) -> StatusCode {
        self.refusal.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.refusal.response_head();
        if self.refusal.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"otpd\""));
        }
        response.json(TwilioErrorBody {
            code: self.code,
            message: &self.refusal.message,
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code),
            status: self.refusal.status.as_u16(),
        })
    }
}

impl actix_web::Responder for TwilioError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        self.error_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuance::IssueError;
    use actix_web::body::to_bytes;
    use std::time::Duration;

    async fn body_of(error: TwilioError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.error_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_owned());
        let body = to_bytes(response.into_body()).await.unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[actix_web::test]
    async fn a_cooldown_is_20429_with_retry_after_and_twilio_s_body() {
        let refusal: ApiError = IssueError::Cooldown {
            retry_after: Duration::from_secs(25),
        }
        .into();
        let (status, retry_after, body) = body_of(refusal.into()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after.as_deref(), Some("25"));
        assert_eq!(body["code"], 20429);
        assert_eq!(body["status"], 429);
        assert_eq!(
            body["more_info"],
            "https://www.twilio.com/docs/errors/20429"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("after the cooldown"),
            "{body}"
        );
        let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["code", "message", "more_info", "status"]);
    }

    #[actix_web::test]
    async fn closed_verifications_are_20404_and_spent_attempts_60202() {
        use crate::verify::CheckRefusal;
        for (refusal, code, status) in [
            (CheckRefusal::AlreadyApproved, 20404, 404),
            (CheckRefusal::Canceled, 20404, 404),
            (CheckRefusal::Expired, 20404, 404),
            (CheckRefusal::MaxAttemptsReached, 60202, 429),
        ] {
            let (answered, _, body) = body_of(ApiError::from(refusal).into()).await;
            assert_eq!(
                (body["code"].as_u64(), answered.as_u16()),
                (Some(code), status)
            );
        }
    }

    #[test]
    fn every_code_answered_is_listed() {
        let listed = |code: u32| TWILIO_CODES.iter().any(|(listed, _, _)| *listed == code);
        for (code, status, _) in crate::api::openapi::ERROR_CODES {
            let refusal = ApiError::new(StatusCode::from_u16(*status).unwrap(), code, "m");
            let twilio = TwilioError::from(refusal);
            assert!(
                listed(twilio.code),
                "{code} answers {}, not listed",
                twilio.code
            );
            let status = TWILIO_CODES
                .iter()
                .find(|(c, _, _)| *c == twilio.code)
                .unwrap()
                .1;
            if twilio.code == 60200 {
                assert!(twilio.refusal.status.is_client_error(), "{code}");
            } else {
                assert_eq!(twilio.refusal.status.as_u16(), status, "{code}");
            }
        }
    }
}
