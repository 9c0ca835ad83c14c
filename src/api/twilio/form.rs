//! Form-encoded bodies (`application/x-www-form-urlencoded`), as Twilio's API takes them:
//! each parameter once, every one of them known.

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::collections::BTreeMap;

use super::error::TwilioError;
use crate::api::error::ApiError;
use crate::api::extract::{body_deadline, read_limited, refuse_declared_oversize};

/// A form body's parameters, by name.
pub struct Form(BTreeMap<String, String>);

impl FromRequest for Form {
    type Error = TwilioError;
    type Future = LocalBoxFuture<'static, Result<Self, TwilioError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = is_form_or_absent(request);
        let declared_size = refuse_declared_oversize(request);
        let deadline = body_deadline(request);
        let mut payload = payload.take();
        Box::pin(async move {
            declared_size?;
            let body = read_limited(&mut payload, deadline).await?;
            if !body.is_empty() && !content_type_ok {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Send the parameters form-encoded, with the header 'Content-Type: application/x-www-form-urlencoded'.",
                )
                .into());
            }
            Form::parse(&body)
        })
    }
}

impl Form {
    /// The parameters of a query string, taken as a form body is.
    pub fn of_query(request: &HttpRequest) -> Result<Self, TwilioError> {
        Form::parse(request.query_string().as_bytes())
    }

    fn parse(body: &[u8]) -> Result<Self, TwilioError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            TwilioError::invalid_parameter(
                "The body is not a well-formed form: name=value pairs joined by '&', percent-encoded as UTF-8.",
            )
        })?;
        let mut parameters = BTreeMap::new();
        for (name, value) in pairs {
            if parameters.contains_key(&name) {
                return Err(TwilioError::invalid_parameter(format!(
                    "{} is given more than once; give it once.",
                    shown(&name)
                )));
            }
            parameters.insert(name, value);
        }
        Ok(Form(parameters))
    }

    /// The parameter `name`, if given.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// The parameter `name`, which must be given.
    pub fn require(&mut self, name: &str) -> Result<String, TwilioError> {
        self.take(name).ok_or_else(|| {
            TwilioError::invalid_parameter(format!(
                "Missing required parameter {name} in the post body."
            ))
        })
    }

    /// Refuses every parameter not taken yet, except the `accepted` ones (documented as
    /// accepted and ignored).
    pub fn finish(mut self, accepted: &[&str]) -> Result<(), TwilioError> {
        self.0.retain(|name, _| !accepted.contains(&name.as_str()));
        match self.0.keys().next() {
            None => Ok(()),
            Some(name) => Err(TwilioError::invalid_parameter(format!(
                "otpd does not take {}; the README lists the parameters each route takes.",
                shown(name)
            ))),
        }
    }
}

/// A parameter's name as an error message may repeat it: Twilio's names are words, and
/// anything else a caller sent as a name (digits, perhaps a code) is not repeated.
fn shown(name: &str) -> String {
    if !name.is_empty() && name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphabetic()) {
        format!("the parameter {name}")
    } else {
        "a parameter whose name is not a word".to_owned()
    }
}

/// Whether the request says its body is a form, or says nothing of it.
fn is_form_or_absent(request: &HttpRequest) -> bool {
    match request.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_once_each_and_unknown_ones_refused() {
        let mut form = Form::parse(b"To=%2B4915112345678&Channel=sms&Locale=de").unwrap();
        assert_eq!(form.take("To").as_deref(), Some("+4915112345678"));
        assert_eq!(form.require("Channel").unwrap(), "sms");
        assert!(form.require("Code").is_err());
        assert!(form.finish(&["Locale"]).is_ok());

        let form = Form::parse(b"To=a&Custom=b").unwrap();
        let refusal = form.finish(&[]).unwrap_err();
        assert_eq!(refusal.code(), 60200);
        assert!(refusal.to_string().contains("Custom"), "{refusal}");

        let twice = Form::parse(b"To=a&To=b").err().unwrap();
        assert!(
            twice.to_string().contains("To is given more than once"),
            "{twice}"
        );
        let refusal = Form::parse(b"779017=1").unwrap().finish(&[]).unwrap_err();
        assert!(!refusal.to_string().contains("779017"), "{refusal}");
        assert!(Form::parse(b"").unwrap().finish(&[]).is_ok());
    }
}
