//! Request extractors: the tenant behind the bearer key, and JSON bodies read with our
//! limits and errors (16 KiB, 413; not JSON, 415; malformed, 400).

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::time::Duration;

use super::error::ApiError;
use super::AppState;
use crate::caller_json;
use crate::issuance::request::canonical_hash;

/// The largest body the API accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a body may take to arrive where no setting says (a test's bare app).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// The tenant whose API key the request carries.
pub struct Tenant(pub String);

impl FromRequest for Tenant {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authenticate(request))
    }
}

fn authenticate(request: &HttpRequest) -> Result<Tenant, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_credentials)
        .ok_or_else(|| {
            ApiError::unauthorized("Send your API key in the header 'Authorization: Bearer <key>'.")
        })?;
    let state = request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::unavailable("the API is not configured"))?;
    state.keys.tenant_for(presented).map(Tenant).ok_or_else(|| {
        ApiError::unauthorized(
            "This API key is not valid. Check it, or create one with `otpd tenant add <name>`.",
        )
    })
}

/// The credentials of an `Authorization` value in the Bearer scheme, whose name is
/// case-insensitive (RFC 7235): `Bearer KEY`, `bearer KEY`, `BEARER  KEY`.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

/// The request header that makes a create idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A JSON body parsed into `T`. The SHA-256 of its canonical form, which a retry's body is
/// compared by, is there when the request carries an [`IDEMPOTENCY_KEY`]: no other request
/// uses it, so no other request pays for it (a check's body is never hashed).
pub struct JsonBody<T> {
    pub value: T,
    pub canonical_hash: Option<[u8; 32]>,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_json(request);
        let declared_size = refuse_declared_oversize(request);
        let deadline = body_deadline(request);
        let idempotent = request.headers().contains_key(IDEMPOTENCY_KEY);
        let mut payload = payload.take();
        Box::pin(async move {
            declared_size?;
            if !content_type_ok {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Send the body as JSON with the header 'Content-Type: application/json'.",
                ));
            }
            let body = read_limited(&mut payload, deadline).await?;
            parse(&body, idempotent)
        })
    }
}

/// How long `request`'s body may take to arrive (`http.body_timeout_seconds`).
pub fn body_deadline(request: &HttpRequest) -> Duration {
    request
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_BODY_TIMEOUT, |state| state.body_timeout)
}

/// Reads a body of at most [`MAX_BODY_BYTES`] (413 past that) that arrives within
/// `deadline` (408 past that: a client that never finishes its body holds nothing).
pub async fn read_limited<S>(payload: &mut S, deadline: Duration) -> Result<web::BytesMut, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|error| {
                ApiError::invalid_request(format!("The body could not be read: {error}."))
            })?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(deadline, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "The body did not arrive within {} s of the headers; send it whole, and with a Content-Length that matches it.",
                deadline.as_secs()
            ),
        )
    })?
}

fn parse<T: DeserializeOwned>(body: &[u8], hashed: bool) -> Result<JsonBody<T>, ApiError> {
    let tree = caller_json::parse(body).map_err(|refusal| {
        ApiError::invalid_request(format!("The body is not valid JSON: {refusal}."))
    })?;
    let canonical_hash = hashed.then(|| canonical_hash(&tree));
    let value = caller_json::fields(tree).map_err(|refusal| {
        ApiError::invalid_request(format!(
            "The body does not have the expected fields: {refusal}. GET /openapi.json describes each route's body."
        ))
    })?;
    Ok(JsonBody {
        value,
        canonical_hash,
    })
}

/// 413 at once for a request that declares a body over [`MAX_BODY_BYTES`]
/// (`Content-Length`), before any of it is read.
pub fn refuse_declared_oversize(request: &HttpRequest) -> Result<(), ApiError> {
    refuse_declared_oversize_head(request.headers())
}

/// The same, from a request's headers alone (before `100 Continue` is sent).
pub fn refuse_declared_oversize_head(headers: &header::HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES => Err(too_large()),
        _ => Ok(()),
    }
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub fn is_json(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The body is larger than {MAX_BODY_BYTES} bytes; send only the documented fields."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer k1", "bearer k1", "BEARER   k1 ", " Bearer k1"] {
            assert_eq!(bearer_credentials(value), Some("k1"), "{value:?}");
        }
        for value in ["Basic k1", "Bearer", "Bearer   ", "Bearerk1", "k1"] {
            assert_eq!(bearer_credentials(value), None, "{value:?}");
        }
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_spacing() {
        let first: JsonBody<Sample> = parse(br#"{"a": 1, "b": "x"}"#, true).unwrap();
        let second: JsonBody<Sample> = parse(br#"{"b":"x","a":1}"#, true).unwrap();
        assert!(first.canonical_hash.is_some());
        assert_eq!(first.canonical_hash, second.canonical_hash);
        let third: JsonBody<Sample> = parse(br#"{"b":"y","a":1}"#, true).unwrap();
        assert_ne!(first.canonical_hash, third.canonical_hash);
        let unhashed: JsonBody<Sample> = parse(br#"{"a": 1, "b": "x"}"#, false).unwrap();
        assert_eq!(unhashed.canonical_hash, None);
    }

    #[test]
    fn malformed_json_and_wrong_fields_are_bad_requests() {
        assert_eq!(
            parse::<Sample>(b"{", false).err().unwrap().code,
            "invalid_request"
        );
        assert_eq!(
            parse::<Sample>(br#"{"a":"x"}"#, false).err().unwrap().code,
            "invalid_request"
        );
    }
}
