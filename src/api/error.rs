//! The one error shape of the API: `{"error": {"code", "message", "retry_after_seconds"?,
//! "reason"?}}`, with a `Retry-After` header where waiting helps.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::cluster::command::IssueRefused;
use crate::domain::time::retry_after_seconds;
use crate::issuance::request::InvalidRequest;
use crate::issuance::{IssueError, Refusal, RefusalKind};
use crate::telemetry::platform::ErrorObject;
use crate::verify::{CheckError, CheckRefusal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub retry_after_seconds: Option<u64>,
    /// Why, where the code alone does not say (e.g. `fraud_suspected` with `rate_limited`).
    pub reason: Option<Cow<'static, str>>,
}

/// Every error of the API, in one shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

/// What went wrong and what to do; `code` is one of the codes listed in the API's
/// description.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    #[schema(schema_with = super::openapi::error_code_schema)]
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            retry_after_seconds: None,
            reason: None,
        }
    }

    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after_seconds = Some(retry_after_seconds(wait));
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such verification for this API key's tenant. Check the id, or create one with POST /v1/verifications.",
        )
    }

    pub fn unavailable(detail: impl fmt::Display) -> Self {
        Refusal::unavailable(detail).into()
    }
}

impl ApiError {
    /// The status and headers of this error's answer, whatever shape its body takes: a
    /// `Retry-After` where waiting helps, and a closed connection after a late body.
    pub fn response_head(&self) -> actix_web::HttpResponseBuilder {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after_seconds {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a late body may still come: the connection cannot carry another
            // request.
            response.force_close();
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.response_head().json(ErrorEnvelope {
            error: ErrorBody {
                code: &self.code,
                message: &self.message,
                retry_after_seconds: self.retry_after_seconds,
                reason: self.reason.as_deref(),
            },
        })
    }
}

fn status_of(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::InvalidRequest => StatusCode::BAD_REQUEST,
        RefusalKind::Forbidden => StatusCode::FORBIDDEN,
        RefusalKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        RefusalKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RefusalKind::Conflict => StatusCode::CONFLICT,
    }
}

/// A refused issue, however far it travelled: the owner's error object as it gave it.
impl From<IssueRefused> for ApiError {
    fn from(refused: IssueRefused) -> Self {
        let ErrorObject {
            code,
            message,
            retry_after_seconds,
            reason,
        } = refused.error;
        ApiError {
            status: status_of(refused.kind),
            code: Cow::Owned(code),
            message,
            retry_after_seconds,
            reason: reason.map(Cow::Owned),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let error = ApiError {
            reason: refusal.reason.map(Cow::Borrowed),
            ..ApiError::new(status_of(refusal.kind), refusal.code, refusal.message)
        };
        match refusal.retry_after {
            Some(wait) => error.retry_after(wait),
            None => error,
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(error: IssueError) -> Self {
        error.refusal().into()
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(error: InvalidRequest) -> Self {
        match error {
            InvalidRequest::Destination(message) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_destination",
                message,
            ),
            InvalidRequest::Field(message) => ApiError::invalid_request(message),
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::NotFound => ApiError::not_found(),
            CheckError::Refused(refusal) => refusal.into(),
            CheckError::Store(error) => ApiError::unavailable(error),
        }
    }
}

impl From<CheckRefusal> for ApiError {
    fn from(refusal: CheckRefusal) -> Self {
        match refusal {
            CheckRefusal::AlreadyApproved => ApiError::new(
                StatusCode::CONFLICT,
                "already_approved",
                "This verification is already approved; a code is accepted once. Start a new verification to verify again.",
            ),
            CheckRefusal::MaxAttemptsReached => ApiError::new(
                StatusCode::CONFLICT,
                "max_attempts_reached",
                "No attempts are left for this verification; start a new verification to send a new code.",
            ),
            CheckRefusal::Canceled => ApiError::new(
                StatusCode::CONFLICT,
                "canceled",
                "This verification was canceled; start a new verification to send a new code.",
            ),
            CheckRefusal::Expired => ApiError::new(
                StatusCode::GONE,
                "expired",
                "The code has expired; start a new verification to send a new code.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn rate_limits_carry_retry_after_in_body_and_header() {
        let error: ApiError = IssueError::Cooldown {
            retry_after: Duration::from_millis(11_200),
        }
        .into();
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "12");
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "resend_cooldown");
        assert_eq!(json["error"]["retry_after_seconds"], 12);
    }

    #[actix_web::test]
    async fn a_fraud_refusal_is_rate_limited_with_its_reason() {
        let refusal = crate::fraud::FraudRefusal {
            prefix: crate::fraud::prefix::target("+2348031234567", "NG", 4)
                .unwrap()
                .prefix,
            rule: crate::fraud::Rule::SequentialNumbers,
            until: crate::domain::Timestamp::from_secs(1_795_784_400),
            retry_after: Duration::from_secs(3600),
        };
        let response = ApiError::from(IssueError::FraudSuspected(refusal)).error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "3600");
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "rate_limited");
        assert_eq!(json["error"]["reason"], "fraud_suspected");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("+2348031"), "{message}");
        assert!(message.contains("2026-11-27T13:00:00Z"), "{message}");
    }

    #[actix_web::test]
    async fn other_errors_have_no_retry_after() {
        let response = ApiError::not_found().error_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["error"].get("retry_after_seconds").is_none());
        assert!(json["error"].get("reason").is_none());
    }
}
