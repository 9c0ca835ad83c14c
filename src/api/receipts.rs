//! POST /v1/providers/{provider}/receipts: authenticates a provider's delivery receipt in
//! its own format, then records it on the verification and tells the platform.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde_json::json;
use std::collections::HashMap;

use super::error::ApiError;
use super::extract::{is_json, read_limited, Tenant};
use super::AppState;
use crate::config::{Settings, SANDBOX};
use crate::delivery::receipt::{apply_receipt, receipt_event};
use crate::domain::Timestamp;
use crate::providers::receipts::{
    params_from_json, parse_form, parse_generic, parse_twilio, parse_vonage, verify_shared_secret,
    verify_twilio_signature, Receipt, ReceiptError, SECRET_HEADER, SECRET_QUERY_PARAM,
    TWILIO_SIGNATURE_HEADER,
};
use crate::providers::ProviderSettings;
use crate::telemetry::metrics::metrics;

/// How long a receipt waits for its send to be recorded: lookups and the pause between them.
const OWNER_LOOKUPS: u32 = 20;
const OWNER_LOOKUP_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How each provider's receipts are read and authenticated.
#[derive(Clone)]
pub enum ReceiptFormat {
    /// Form fields signed with `X-Twilio-Signature` (the account's auth token).
    Twilio { auth_token: SecretString },
    /// Vonage DLR (form or JSON), with a shared secret.
    Vonage { secret: Option<SecretString> },
    /// otpd's JSON (`message_id`, `status`), with a shared secret.
    Generic { secret: Option<SecretString> },
    /// otpd's JSON, authenticated by a tenant API key (development only).
    Sandbox,
}

/// The receipt formats of the configured providers, and the public URL Twilio signs.
#[derive(Clone, Default)]
pub struct ReceiptBook {
    formats: HashMap<String, ReceiptFormat>,
    public_url: Option<String>,
}

impl ReceiptBook {
    pub fn from_settings(settings: &Settings) -> Self {
        let secret = |id: &str| settings.receipt_secrets.get(id).cloned();
        let mut formats: HashMap<String, ReceiptFormat> = settings
            .providers
            .iter()
            .filter_map(|(id, provider)| {
                let format = match provider {
                    ProviderSettings::Twilio(config) => ReceiptFormat::Twilio {
                        auth_token: config.auth_token.clone(),
                    },
                    ProviderSettings::Vonage(_) => ReceiptFormat::Vonage { secret: secret(id) },
                    ProviderSettings::Http(_) => ReceiptFormat::Generic { secret: secret(id) },
                    ProviderSettings::Smtp(_) | ProviderSettings::Sandbox(_) => return None,
                };
                Some((id.clone(), format))
            })
            .collect();
        if settings.sandbox.enabled {
            formats.insert(SANDBOX.to_owned(), ReceiptFormat::Sandbox);
        }
        ReceiptBook {
            formats,
            public_url: settings.http.public_url.clone(),
        }
    }
}

pub async fn receive(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    request: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let provider = provider.into_inner();
    let format = state.receipts.formats.get(&provider).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No provider '{provider}' takes delivery receipts here; check the URL given to the provider."),
        )
    })?;
    if matches!(format, ReceiptFormat::Sandbox) {
        authenticate_tenant(&request)?;
    }
    let body = read_limited(&mut payload).await?;
    let receipt = read_receipt(
        &format,
        &request,
        &body,
        state.receipts.public_url.as_deref(),
    )?;
    let recorded = record(&state, &provider, &receipt).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": if recorded { "recorded" } else { "ignored" } })))
}

fn authenticate_tenant(request: &HttpRequest) -> Result<Tenant, ApiError> {
    use actix_web::FromRequest;
    Tenant::from_request(request, &mut actix_web::dev::Payload::None).into_inner()
}

fn read_receipt(
    format: &ReceiptFormat,
    request: &HttpRequest,
    body: &[u8],
    public_url: Option<&str>,
) -> Result<Receipt, ApiError> {
    let secret_given = || {
        request
            .headers()
            .get(SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(request, SECRET_QUERY_PARAM))
    };
    let unauthenticated = |secret: &Option<SecretString>| match secret {
        Some(secret) => verify_shared_secret(secret, secret_given().as_deref()),
        None => Err(ReceiptError::Unauthenticated),
    };
    let result = match format {
        ReceiptFormat::Twilio { auth_token } => {
            let params = parse_form(body)?;
            let url = signed_url(request, public_url);
            let signature = request
                .headers()
                .get(TWILIO_SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            verify_twilio_signature(auth_token, &url, &params, signature)?;
            parse_twilio(&params)
        }
        ReceiptFormat::Vonage { secret } => {
            unauthenticated(secret)?;
            let params = if is_json(request) {
                params_from_json(body)?
            } else {
                parse_form(body)?
            };
            parse_vonage(&params)
        }
        ReceiptFormat::Generic { secret } => {
            unauthenticated(secret)?;
            parse_generic(&params_from_json(body)?)
        }
        ReceiptFormat::Sandbox => parse_generic(&params_from_json(body)?),
    };
    Ok(result?)
}

impl From<ReceiptError> for ApiError {
    fn from(error: ReceiptError) -> Self {
        match error {
            ReceiptError::Unauthenticated => ApiError::unauthorized(
                "The receipt's signature or secret is missing or wrong; check the provider's credentials and receipt_secrets in the settings.",
            ),
            other => ApiError::invalid_request(format!("{other}.")),
        }
    }
}

/// The URL the provider called, as it signed it.
fn signed_url(request: &HttpRequest, public_url: Option<&str>) -> String {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.path().to_owned(), |pq| pq.as_str().to_owned());
    match public_url {
        Some(base) => format!("{}{path_and_query}", base.trim_end_matches('/')),
        None => {
            let info = request.connection_info();
            format!("{}://{}{path_and_query}", info.scheme(), info.host())
        }
    }
}

fn query_param(request: &HttpRequest, name: &str) -> Option<String> {
    parse_form(request.query_string().as_bytes())
        .ok()?
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// Applies the receipt to its verification; false when it matched nothing or changed nothing.
async fn record(state: &AppState, provider: &str, receipt: &Receipt) -> Result<bool, ApiError> {
    let store = &state.store;
    let unavailable = |error| ApiError::unavailable(error);
    // A provider may report before its send is recorded here: look again for a moment.
    let mut owner = None;
    for _ in 0..OWNER_LOOKUPS {
        owner = store
            .message_owner(provider, &receipt.provider_message_id)
            .map_err(unavailable)?;
        if owner.is_some() {
            break;
        }
        tokio::time::sleep(OWNER_LOOKUP_PAUSE).await;
    }
    let Some(owner) = owner else {
        return Ok(false);
    };
    let now = Timestamp::now();
    let mut applied = None;
    let updated = store
        .update_verification(&owner.verification_id, &mut |record| {
            applied = apply_receipt(record, owner.send_seq, receipt.status, now);
            applied.is_some()
        })
        .map_err(unavailable)?;
    let (Some(state_now), Some(record)) = (applied, updated) else {
        return Ok(false);
    };
    store.flush().await.map_err(unavailable)?;
    if let Some(sent_at) = record.sent_at {
        metrics()
            .time_to_delivered
            .with_label_values(&[provider])
            .observe(sent_at.until(now).as_secs_f64());
    }
    let event = receipt_event(
        &record,
        provider,
        state_now,
        receipt.error_code.as_deref(),
        now,
    );
    if let Err(error) = state.bus.publish_event(&event).await {
        tracing::warn!(key = %event.routing_key(), %error, "Could not publish a receipt event.");
    }
    Ok(true)
}
