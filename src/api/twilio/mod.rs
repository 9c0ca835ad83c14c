//! The Twilio Verify v2 compatible routes (`/v2/Services/…`), so an application that uses
//! Twilio's helper libraries switches to otpd by base URL: HTTP Basic auth with the
//! tenant's account SID (`auth`), form bodies (`form`), Twilio's resources and SIDs
//! (`views`) and its error body and codes (`error`). The handlers (`verifications`,
//! `services`, `attempts`) call the same issuance and checking as the native routes.

pub mod attempts;
pub mod auth;
pub mod error;
pub mod form;
pub mod services;
pub mod verifications;
pub mod views;

use actix_web::{web, Resource};

use error::TwilioError;

/// Registers the Twilio-compatible routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/v2/Attempts").route(web::get().to(attempts::list)))
        .service(
            resource("/v2/Services")
                .route(web::get().to(services::list))
                .route(web::post().to(services::create)),
        )
        .service(resource("/v2/Services/{Sid}").route(web::get().to(services::fetch)))
        .service(
            resource("/v2/Services/{ServiceSid}/Verifications")
                .route(web::post().to(verifications::create)),
        )
        .service(
            resource("/v2/Services/{ServiceSid}/VerificationCheck")
                .route(web::post().to(verifications::check)),
        )
        .service(
            resource("/v2/Services/{ServiceSid}/Verifications/{Sid}")
                .route(web::get().to(verifications::fetch))
                .route(web::post().to(verifications::update)),
        );
}

/// A resource whose wrong methods get Twilio's 405.
fn resource(path: &'static str) -> Resource {
    crate::api::patterned(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(request: actix_web::HttpRequest) -> actix_web::HttpResponse {
    crate::api::with_allow_header(
        &request,
        actix_web::ResponseError::error_response(&TwilioError::method_not_allowed()),
    )
}
