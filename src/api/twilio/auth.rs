//! HTTP Basic auth as Twilio's helper libraries send it: the user name is the tenant's
//! account SID (`AC` + 32 hex), the password one of the tenant's API keys.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;

use super::error::TwilioError;
use crate::api::AppState;
use crate::tenants::{account_sid, service_sid};

/// The tenant whose account SID and API key the request carries.
pub struct Account {
    pub tenant: String,
}

impl Account {
    /// Refuses a service SID that is not this account's Verify service.
    pub fn own_service(&self, sid: &str) -> Result<(), TwilioError> {
        if sid == service_sid(&self.tenant) {
            Ok(())
        } else {
            Err(TwilioError::not_found(&format!("/Services/{sid}")))
        }
    }
}

impl FromRequest for Account {
    type Error = TwilioError;
    type Future = std::future::Ready<Result<Self, TwilioError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authenticate(request))
    }
}

fn authenticate(request: &HttpRequest) -> Result<Account, TwilioError> {
    let (user, key) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(basic_credentials)
        .ok_or_else(TwilioError::unauthenticated)?;
    let state = request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(TwilioError::unauthenticated)?;
    // One answer for a wrong key and for a key of another account: neither says which.
    let tenant = state
        .keys
        .tenant_for(&key)
        .filter(|tenant| account_sid(tenant) == user)
        .ok_or_else(TwilioError::unauthenticated)?;
    Ok(Account { tenant })
}

/// The user name and password of an `Authorization` value in the Basic scheme (whose name
/// is case-insensitive, RFC 7235).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_in_any_case_of_the_scheme() {
        // "AC1:otpd_key" in base64.
        for value in [
            "Basic QUMxOm90cGRfa2V5",
            "basic QUMxOm90cGRfa2V5 ",
            "BASIC  QUMxOm90cGRfa2V5",
        ] {
            assert_eq!(
                basic_credentials(value),
                Some(("AC1".to_owned(), "otpd_key".to_owned())),
                "{value}"
            );
        }
        for value in [
            "Bearer QUMxOm90cGRfa2V5",
            "Basic",
            "Basic !!!",
            "Basic QUMx",
        ] {
            assert_eq!(basic_credentials(value), None, "{value}");
        }
    }
}
