//! The fields of a create request (HTTP body or AMQP message) and their validation into an
//! [`IssueRequest`]; every refusal says what to send instead.

use serde::Deserialize;
use std::time::Duration;

use super::policy::IssueRequest;
use super::settings::{MAX_TTL_SECONDS, MIN_TTL_SECONDS};
use crate::delivery::templates::DEFAULT_TEMPLATE;
use crate::domain::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use crate::domain::workflow::{self, PlannedStep};
use crate::domain::{Channel, Destination, Transaction};

const MAX_SESSION_ID_LENGTH: usize = 128;
const MAX_AMOUNT_LENGTH: usize = 64;
const MAX_PAYEE_LENGTH: usize = 256;
const MAX_LOCALE_LENGTH: usize = 35;

/// What a caller sends to create a verification.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct CreateFields {
    /// An E.164 phone number (`sms`, `voice`, `whatsapp`) or an email address (`email`).
    pub to: String,
    /// The channel to send on. May be left out when `workflow` is given (its first step's
    /// channel), and must then be the same.
    #[schema(value_type = Option<crate::domain::Channel>)]
    pub channel: Option<String>,
    /// A fallback workflow: the code goes out on the first step's channel and, while it is
    /// not verified, on each next step's after the step before's timeout, the same code each
    /// time, until the steps run out or the code expires. Every step goes to `to`.
    #[schema(min_items = 1, max_items = 5)]
    pub workflow: Option<Vec<WorkflowStepFields>>,
    /// The wait after each step before the next, for the steps that do not give their own;
    /// 60 when absent.
    #[schema(minimum = 15, maximum = 900)]
    pub channel_timeout_seconds: Option<u64>,
    /// A language tag for the message, such as `de` or `pt-BR`.
    pub locale: Option<String>,
    /// The message template's name; `default` when absent.
    pub template: Option<String>,
    /// Binds the code to a session: a check must name the same one.
    #[schema(min_length = 1, max_length = 128)]
    pub session_id: Option<String>,
    /// The amount of the transaction the code confirms, as the person is shown it (PSD2
    /// dynamic linking): a check must name the same.
    #[schema(min_length = 1, max_length = 64)]
    pub amount: Option<String>,
    /// The payee of the transaction the code confirms: a check must name the same.
    #[schema(min_length = 1, max_length = 256)]
    pub payee: Option<String>,
    /// Digits in the code; the server's default when absent.
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u64>,
    /// How long the code lives, in seconds; the server's default when absent.
    #[schema(minimum = 30, maximum = 900)]
    pub ttl_seconds: Option<u64>,
}

/// One step of a create's workflow.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowStepFields {
    #[schema(value_type = crate::domain::Channel)]
    pub channel: String,
    /// How long to wait after this step's send before the next step goes out.
    #[schema(minimum = 15, maximum = 900)]
    pub channel_timeout_seconds: Option<u64>,
}

/// Values a request falls back to.
#[derive(Debug, Clone, Copy)]
pub struct RequestDefaults {
    pub code_length: u8,
    pub ttl_seconds: u64,
}

/// A request otpd will not issue a code for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The destination is not a valid phone number or address (API: 422 invalid_destination).
    #[error("{0}")]
    Destination(String),
    /// Any other field is wrong (API: 400 invalid_request).
    #[error("{0}")]
    Field(String),
}

impl InvalidRequest {
    /// The API error code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidRequest::Destination(_) => "invalid_destination",
            InvalidRequest::Field(_) => "invalid_request",
        }
    }
}

/// Checks every field and builds the request, or says what is wrong.
pub fn validate(
    fields: CreateFields,
    defaults: &RequestDefaults,
) -> Result<IssueRequest, InvalidRequest> {
    let workflow = fields
        .workflow
        .as_deref()
        .map(|steps| parse_workflow(steps, fields.channel_timeout_seconds))
        .transpose()?;
    let named = fields.channel.as_deref().map(parse_channel).transpose()?;
    let channel = match (named, &workflow) {
        (Some(channel), Some(steps)) if channel != steps[0].channel => {
            return Err(InvalidRequest::Field(format!(
                "'channel' must be the workflow's first channel ({}), or be left out.",
                steps[0].channel
            )))
        }
        (Some(channel), _) => channel,
        (None, Some(steps)) => steps[0].channel,
        (None, None) => {
            return Err(InvalidRequest::Field(format!(
                "'channel' is missing: give the channel to send on ({}), or a 'workflow' of channels to try in turn.",
                Channel::names()
            )))
        }
    };
    if workflow.is_none() && fields.channel_timeout_seconds.is_some() {
        return Err(InvalidRequest::Field(
            "'channel_timeout_seconds' sets the wait between a 'workflow''s steps; give a workflow, or leave it out.".into(),
        ));
    }
    let destination = parse_destination(channel, &fields.to)?;
    let code_length = match fields.code_length {
        None => defaults.code_length,
        Some(length) => u8::try_from(length)
            .ok()
            .filter(|l| (MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(l))
            .ok_or_else(|| {
                InvalidRequest::Field(format!(
                    "'code_length' is {length}; it must be from {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH}."
                ))
            })?,
    };
    let ttl_seconds = fields.ttl_seconds.unwrap_or(defaults.ttl_seconds);
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        return Err(InvalidRequest::Field(format!(
            "'ttl_seconds' is {ttl_seconds}; it must be from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}."
        )));
    }
    if let Some(locale) = &fields.locale {
        let well_formed = !locale.is_empty()
            && locale.len() <= MAX_LOCALE_LENGTH
            && locale
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(InvalidRequest::Field(
                "'locale' must be a language tag such as \"de\" or \"pt-BR\".".into(),
            ));
        }
    }
    validate_session_id(fields.session_id.as_deref())?;
    let transaction = validate_transaction(fields.amount, fields.payee)?;
    Ok(IssueRequest {
        channel,
        destination,
        locale: fields.locale,
        template: fields
            .template
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned()),
        session_id: fields.session_id,
        transaction,
        code_length,
        ttl: Duration::from_secs(ttl_seconds),
        workflow,
    })
}

/// A create's workflow: each step's channel, and its timeout or else `default_timeout`.
fn parse_workflow(
    steps: &[WorkflowStepFields],
    default_timeout: Option<u64>,
) -> Result<Vec<PlannedStep>, InvalidRequest> {
    let steps = steps
        .iter()
        .map(|step| {
            let channel = parse_channel(&step.channel)?;
            Ok((channel, step.channel_timeout_seconds.or(default_timeout)))
        })
        .collect::<Result<Vec<_>, InvalidRequest>>()?;
    workflow::plan(&steps).map_err(|invalid| InvalidRequest::Field(invalid.to_string()))
}

/// SHA-256 of a JSON value's canonical text (object keys sorted, no spaces): two requests
/// with the same content hash the same, however their keys were ordered.
pub fn canonical_hash(tree: &serde_json::Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    // Written into the hash as it is serialized: the same bytes as `tree.to_string()`
    // (stored hashes stay valid), without the string.
    let mut hasher = Sha256::new();
    serde_json::to_writer(&mut hasher, tree).expect("a JSON value serializes");
    hasher.finalize().into()
}

pub fn validate_session_id(session_id: Option<&str>) -> Result<(), InvalidRequest> {
    match session_id {
        Some(id) if id.is_empty() || id.chars().count() > MAX_SESSION_ID_LENGTH => {
            Err(InvalidRequest::Field(format!(
                "'session_id' must be 1 to {MAX_SESSION_ID_LENGTH} characters."
            )))
        }
        _ => Ok(()),
    }
}

/// The transaction an `amount` and a `payee` name, if any: each, when given, is 1 to its
/// limit of printable characters.
pub fn validate_transaction(
    amount: Option<String>,
    payee: Option<String>,
) -> Result<Option<Transaction>, InvalidRequest> {
    let check = |name: &str, value: &Option<String>, limit: usize| match value {
        Some(value)
            if value.is_empty()
                || value.chars().count() > limit
                || value.chars().any(char::is_control) =>
        {
            Err(InvalidRequest::Field(format!(
                "'{name}' must be 1 to {limit} printable characters."
            )))
        }
        _ => Ok(()),
    };
    check("amount", &amount, MAX_AMOUNT_LENGTH)?;
    check("payee", &payee, MAX_PAYEE_LENGTH)?;
    Ok(Transaction::of(amount, payee))
}

pub fn parse_channel(raw: &str) -> Result<Channel, InvalidRequest> {
    raw.parse::<Channel>()
        .map_err(|message| InvalidRequest::Field(format!("The {message}.")))
}

pub fn parse_destination(channel: Channel, raw: &str) -> Result<Destination, InvalidRequest> {
    Destination::parse(channel, raw)
        .map_err(|error| InvalidRequest::Destination(format!("{error}.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: RequestDefaults = RequestDefaults {
        code_length: 6,
        ttl_seconds: 300,
    };

    fn fields() -> CreateFields {
        CreateFields {
            to: "+4915112345678".into(),
            channel: Some("sms".into()),
            workflow: None,
            channel_timeout_seconds: None,
            locale: None,
            template: None,
            session_id: None,
            amount: None,
            payee: None,
            code_length: None,
            ttl_seconds: None,
        }
    }

    #[test]
    fn the_canonical_hash_is_of_the_sorted_compact_text_stored_hashes_were_made_of() {
        use sha2::{Digest, Sha256};
        let tree = serde_json::json!({"to": "+4915112345678", "channel": "sms", "ttl_seconds": 60});
        let text = r#"{"channel":"sms","to":"+4915112345678","ttl_seconds":60}"#;
        let expected: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(canonical_hash(&tree), expected);
    }

    #[test]
    fn fills_defaults() {
        let request = validate(fields(), &DEFAULTS).unwrap();
        assert_eq!(request.code_length, 6);
        assert_eq!(request.ttl, Duration::from_secs(300));
        assert_eq!(request.template, DEFAULT_TEMPLATE);
    }

    #[test]
    fn bounds_are_inclusive() {
        for (length, ok) in [(3, false), (4, true), (10, true), (11, false)] {
            let f = CreateFields {
                code_length: Some(length),
                ..fields()
            };
            assert_eq!(validate(f, &DEFAULTS).is_ok(), ok, "code_length {length}");
        }
        for (ttl, ok) in [(29, false), (30, true), (900, true), (901, false)] {
            let f = CreateFields {
                ttl_seconds: Some(ttl),
                ..fields()
            };
            assert_eq!(validate(f, &DEFAULTS).is_ok(), ok, "ttl {ttl}");
        }
        // Characters, as the message says, not UTF-8 bytes (each 'é' is two).
        for (length, ok) in [(0, false), (1, true), (128, true), (129, false)] {
            let f = CreateFields {
                session_id: Some("é".repeat(length)),
                ..fields()
            };
            assert_eq!(validate(f, &DEFAULTS).is_ok(), ok, "session_id {length}");
        }
    }

    #[test]
    fn amount_and_payee_bind_a_transaction_within_their_limits() {
        let request = validate(fields(), &DEFAULTS).unwrap();
        assert_eq!(request.transaction, None);
        let f = CreateFields {
            amount: Some("19.99 EUR".into()),
            payee: Some("Acme GmbH".into()),
            ..fields()
        };
        let bound = validate(f, &DEFAULTS).unwrap().transaction.unwrap();
        assert_eq!(bound.amount.as_deref(), Some("19.99 EUR"));
        assert_eq!(bound.payee.as_deref(), Some("Acme GmbH"));
        for (amount, ok) in [
            (String::new(), false),
            ("€".repeat(64), true),
            ("€".repeat(65), false),
            ("1\n2".into(), false),
        ] {
            let f = CreateFields {
                amount: Some(amount.clone()),
                ..fields()
            };
            assert_eq!(validate(f, &DEFAULTS).is_ok(), ok, "amount {amount:?}");
        }
        let f = CreateFields {
            payee: Some("p".repeat(257)),
            ..fields()
        };
        assert!(validate(f, &DEFAULTS).is_err());
    }

    #[test]
    fn destination_errors_are_told_apart() {
        let f = CreateFields {
            to: "12345".into(),
            ..fields()
        };
        assert_eq!(
            validate(f, &DEFAULTS).unwrap_err().code(),
            "invalid_destination"
        );
        let f = CreateFields {
            channel: Some("fax".into()),
            ..fields()
        };
        let error = validate(f, &DEFAULTS).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
        assert!(error
            .to_string()
            .contains("\"sms\", \"email\", \"voice\" or \"whatsapp\""));
    }
}
