//! The admin routes (`/v1/admin/blocklist`) and the API errors of access control.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorEnvelope};
use super::extract::{JsonBody, Tenant};
use super::AppState;
use crate::access::{AccessDenied, AdminError, BlockEntry, BlocklistAction, BlocklistAnswer};
use crate::issuance::Refusal;

/// An entry for the blocklist.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEntryBody {
    /// A full E.164 number, a prefix of one (`+2348`), an email address or a domain.
    entry: String,
    /// Why it is blocked, for the people who read the list.
    note: Option<String>,
}

/// One blocklist entry.
#[derive(Serialize, ToSchema)]
pub(super) struct EntryView<'a> {
    entry: &'a str,
    note: Option<&'a str>,
    added_at: String,
    added_by: &'a str,
}

impl<'a> EntryView<'a> {
    fn of(entry: &'a BlockEntry) -> Self {
        EntryView {
            entry: &entry.entry,
            note: entry.note.as_deref(),
            added_at: entry.added_at.to_rfc3339(),
            added_by: &entry.added_by,
        }
    }
}

async fn edit(
    state: &AppState,
    tenant: Tenant,
    action: BlocklistAction,
) -> Result<BlocklistAnswer, ApiError> {
    state
        .gateway
        .edit_blocklist(&tenant.0, action)
        .await
        .map_err(ApiError::from)
}

/// The blocklist.
#[derive(Serialize, ToSchema)]
pub(super) struct Entries<'a> {
    entries: Vec<EntryView<'a>>,
}

/// The blocklist's entries.
#[utoipa::path(get, path = "/v1/admin/blocklist", operation_id = "list_blocklist", tag = "admin", responses(
    (status = 200, description = "Every entry", body = Entries),
    (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
), security(("api_key" = [])))]
pub async fn list(state: web::Data<AppState>, tenant: Tenant) -> Result<HttpResponse, ApiError> {
    match edit(&state, tenant, BlocklistAction::List).await? {
        BlocklistAnswer::Entries(entries) => {
            let entries = entries.iter().map(EntryView::of).collect();
            Ok(HttpResponse::Ok().json(Entries { entries }))
        }
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// Adds an entry: 201 when new, 200 when it was there (its note is replaced).
#[utoipa::path(post, path = "/v1/admin/blocklist", operation_id = "add_blocklist_entry", tag = "admin", request_body = AddEntryBody,
    responses(
        (status = 201, description = "Added", body = EntryView),
        (status = 200, description = "It was there; its note is replaced", body = EntryView),
        (status = 400, description = "Not an entry otpd can block", body = ErrorEnvelope),
        (status = 409, description = "The blocklist is full", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ), security(("api_key" = [])))]
pub async fn add(
    state: web::Data<AppState>,
    tenant: Tenant,
    body: JsonBody<AddEntryBody>,
) -> Result<HttpResponse, ApiError> {
    let action = BlocklistAction::Add {
        entry: body.value.entry,
        note: body.value.note,
    };
    match edit(&state, tenant, action).await? {
        BlocklistAnswer::Added { entry, created } => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(HttpResponse::build(status).json(EntryView::of(&entry)))
        }
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// Removes an entry.
#[utoipa::path(delete, path = "/v1/admin/blocklist/{entry}", operation_id = "remove_blocklist_entry", tag = "admin",
    params(("entry" = String, Path, description = "The entry, its `+` as `%2B` or as it is")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such entry", body = ErrorEnvelope),
        (status = 503, description = "otpd cannot take it now; retry", body = ErrorEnvelope),
    ), security(("api_key" = [])))]
pub async fn remove(
    state: web::Data<AppState>,
    tenant: Tenant,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let raw = request.match_info().get("entry").unwrap_or_default();
    let entry = decode_entry(raw);
    match edit(&state, tenant, BlocklistAction::Remove { entry }).await? {
        BlocklistAnswer::Removed(_) => Ok(HttpResponse::NoContent().finish()),
        _ => Err(ApiError::unavailable("unexpected answer")),
    }
}

/// The entry in a path segment: `%2B2348`, `%2b2348` or `+2348` all mean `+2348`.
pub(super) fn decode_entry(raw: &str) -> String {
    match raw.get(..3) {
        Some(head) if head.eq_ignore_ascii_case("%2B") => format!("+{}", &raw[3..]),
        _ => raw.to_owned(),
    }
}

impl From<AccessDenied> for ApiError {
    fn from(denied: AccessDenied) -> Self {
        Refusal::from(&denied).into()
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
            }
            AdminError::Invalid(invalid) => ApiError::invalid_request(format!("{invalid}.")),
            AdminError::NotFound(_) | AdminError::NoFraudBlock(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            AdminError::Full => {
                ApiError::new(StatusCode::CONFLICT, "blocklist_full", error.to_string())
            }
            AdminError::Store(error) => ApiError::unavailable(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_plus_of_a_path_entry() {
        assert_eq!(decode_entry("%2B2348"), "+2348");
        assert_eq!(decode_entry("%2b2348"), "+2348");
        assert_eq!(decode_entry("+2348"), "+2348");
        assert_eq!(decode_entry("2348"), "2348");
    }

    #[test]
    fn caps_are_rate_limits_with_a_wait_and_blocks_are_forbidden() {
        use crate::access::caps::CapReached;
        let capped: ApiError = AccessDenied::CapReached {
            tenant: "acme".into(),
            cap: CapReached {
                setting: "sends_per_hour",
                limit: 3,
                retry_after: std::time::Duration::from_secs(90),
            },
        }
        .into();
        assert_eq!(capped.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(capped.code, "rate_limited");
        assert_eq!(capped.retry_after_seconds, Some(90));
        assert!(capped.message.contains("tenants.acme.sends_per_hour"));
        let blocked: ApiError = AccessDenied::Blocklisted.into();
        assert_eq!(blocked.status, StatusCode::FORBIDDEN);
        assert_eq!(blocked.code, "destination_blocked");
        assert_eq!(blocked.retry_after_seconds, None);
    }
}
