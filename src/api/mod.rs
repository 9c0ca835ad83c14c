//! The HTTP API (actix-web): routes, extractors, the error shape, request metrics.

pub mod admin;
pub mod client_ip;
pub mod error;
pub mod extract;
pub mod framework_errors;
pub mod fraud;
pub mod openapi;
pub mod ops;
pub mod receipts;
pub mod server;
pub mod settings;
pub mod timeline;
pub mod twilio;
pub mod ui;
pub mod verifications;
pub mod workflow;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, Resource};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use crate::delivery::health::HealthBoard;
use crate::delivery::JobQueue;
use crate::issuance::request::RequestDefaults;
use crate::issuance::IssuanceActor;
use crate::store::Store;
use crate::sync::LockUnpoisoned;
use crate::telemetry::events::HttpRequestServed;
use crate::tenants::ApiKeys;
use error::ApiError;

/// What every handler can reach.
pub struct AppState {
    /// The cluster this node belongs to (broker mode).
    pub cluster: Option<Arc<dyn crate::cluster::ClusterStatus>>,
    /// Where creates, checks, reads and cancels go: here, or the partition's owner.
    pub gateway: Arc<crate::cluster::Gateway>,
    /// Blocklist and fraud-block edits.
    pub issuer: actix::Addr<IssuanceActor>,
    pub keys: Arc<ApiKeys>,
    /// The tenants whose keys may use the admin routes (`tenants.<name>.admin`).
    pub admins: std::collections::BTreeSet<String>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn JobQueue>,
    pub board: Arc<HealthBoard>,
    pub receipts: receipts::ReceiptBook,
    pub recorder: crate::delivery::recorder::Recorder,
    pub defaults: RequestDefaults,
    pub fraud: crate::fraud::FraudGate,
    /// How long a request's body may take to arrive (`http.body_timeout_seconds`).
    pub body_timeout: std::time::Duration,
    /// `https` when otpd serves TLS, else `http`: the scheme of the URLs it writes.
    pub scheme: &'static str,
    /// Whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: client_ip::TrustedProxies,
    /// Checks per client IP (`rate_limits.client_ip_*`, as for creates; kept per node).
    pub check_limiter: std::sync::Mutex<crate::domain::rate_limit::KeyedLimiter<std::net::IpAddr>>,
}

impl AppState {
    /// The client `request` comes from (see `client_ip`).
    pub fn client_ip(&self, request: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
        let peer = request.peer_addr()?.ip();
        let forwarded_for = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok());
        Some(self.trusted_proxies.client(peer, forwarded_for))
    }

    /// Refuses a check from a client over its rate (429 `rate_limited`, with Retry-After):
    /// guessing codes from one address is paced like creating them.
    pub fn admit_check(&self, request: &actix_web::HttpRequest) -> Result<(), ApiError> {
        let Some(client) = self.client_ip(request) else {
            return Ok(());
        };
        self.check_limiter
            .lock_unpoisoned()
            .check(client, crate::domain::Timestamp::now())
            .map_err(|retry_after| crate::issuance::IssueError::RateLimited { retry_after }.into())
    }

    /// Where `request` reached this otpd, `scheme://host`: the base of the URLs otpd writes
    /// and of the URL a provider signed. A proxy's `Forwarded` or `X-Forwarded-Proto` and
    /// `-Host` say it, as they do for the host; else the Host the client named, and the
    /// scheme otpd serves.
    pub fn origin(&self, request: &actix_web::HttpRequest) -> String {
        let info = request.connection_info();
        let headers = request.headers();
        let proxied = headers.contains_key(actix_web::http::header::FORWARDED)
            || headers.contains_key("x-forwarded-proto");
        let scheme = if proxied { info.scheme() } else { self.scheme };
        format!("{scheme}://{}", info.host())
    }
}

/// Registers every route. The router tries them in this order, matching a path with a
/// placeholder by a regular expression, so the routes every OTP takes (create and check)
/// come first; `/v1/verifications/check` stays before `/v1/verifications/{id}`, which
/// would take it.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v1/verifications").route(web::post().to(verifications::create)))
        .service(
            resource("/v1/verifications/{id}/check").route(web::post().to(verifications::check)),
        )
        .service(
            resource("/v1/verifications/check")
                .route(web::post().to(verifications::check_by_destination)),
        )
        .service(resource("/v1/verifications/{id}").route(web::get().to(verifications::get)))
        .service(
            resource("/v1/verifications/{id}/attempts").route(web::get().to(timeline::attempts)),
        )
        .service(
            resource("/v1/verifications/{id}/cancel").route(web::post().to(verifications::cancel)),
        )
        .service(resource("/v1/verifications/{id}/next").route(web::post().to(workflow::next)))
        .service(resource("/healthz").route(web::get().to(ops::healthz)))
        .service(resource("/readyz").route(web::get().to(ops::readyz)))
        .service(resource("/metrics").route(web::get().to(ops::prometheus)))
        .service(resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
        .service(resource("/v1/providers").route(web::get().to(ops::providers)))
        .service(resource("/v1/cluster").route(web::get().to(ops::cluster)))
        .service(
            resource("/v1/providers/{provider}/receipts")
                .route(web::post().to(receipts::receive))
                .route(web::get().to(receipts::confirm_subscription)),
        )
        .service(
            resource("/v1/admin/blocklist")
                .route(web::get().to(admin::list))
                .route(web::post().to(admin::add)),
        )
        .service(resource("/v1/admin/blocklist/{entry}").route(web::delete().to(admin::remove)))
        .service(
            resource("/v1/admin/verifications").route(web::get().to(timeline::find_by_destination)),
        )
        .service(
            resource("/v1/admin/verifications/{id}").route(web::get().to(timeline::find_by_id)),
        )
        .service(resource("/v1/fraud/blocks").route(web::get().to(fraud::blocks)))
        .service(resource("/v1/admin/fraud/blocks/{prefix}").route(web::delete().to(fraud::lift)))
        .configure(twilio::configure)
        .configure(ui::configure);
}

/// A resource whose wrong methods get the JSON 405.
fn resource(path: &'static str) -> Resource {
    patterned(path).default_service(web::to(method_not_allowed))
}

/// A resource's route pattern, kept with it, so a request's route is read from the resource
/// that took it rather than looked for again among every route (`match_pattern`).
#[derive(Clone, Copy)]
struct RoutePattern(&'static str);

/// The resource at `path`, knowing its pattern (see `route_of`).
pub(crate) fn patterned(path: &'static str) -> Resource {
    web::resource(path).app_data(RoutePattern(path))
}

/// The route pattern of a request a resource took: its own, or (for a route registered
/// without one) the one found among every route; `None` for a path no route has.
fn route_of(request: &actix_web::HttpRequest) -> Option<Cow<'static, str>> {
    match request.app_data::<RoutePattern>() {
        Some(RoutePattern(pattern)) => Some(Cow::Borrowed(pattern)),
        None => request.match_pattern().map(Cow::Owned),
    }
}

/// A 405 with the `Allow` header the description gives for the route.
async fn method_not_allowed(request: actix_web::HttpRequest) -> HttpResponse {
    let refusal = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take that HTTP method; the Allow header lists the ones it takes.",
    );
    with_allow_header(&request, actix_web::ResponseError::error_response(&refusal))
}

/// `response` with the `Allow` header the description gives for the request's route.
pub(crate) fn with_allow_header(
    request: &actix_web::HttpRequest,
    mut response: HttpResponse,
) -> HttpResponse {
    let allowed = route_of(request).and_then(|route| openapi::allowed_methods(&route));
    if let Some(allowed) = allowed {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allowed) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, value);
        }
    }
    response
}

/// The answer for routes that do not exist.
pub async fn unknown_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such route; GET /openapi.json lists every route.",
    )
}

/// Counts and times each request by its route pattern (never by its concrete path).
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let response = next.call(request).await?;
    let route = route_of(response.request()).unwrap_or(Cow::Borrowed("unmatched"));
    HttpRequestServed {
        route: &route,
        status: response.status().as_u16(),
        took: started.elapsed(),
    }
    .emit();
    Ok(response)
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _: &actix_web::HttpRequest) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}
