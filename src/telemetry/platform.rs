//! Events for platforms: `verification.created|rejected.<tenant>`,
//! `verification.approved|canceled|max_attempts_reached.<tenant>`,
//! `delivery.sent|delivered|failed.<tenant>`, and the global `fraud.blocked.<country>`.
//! No event ever carries a code or a full destination.

use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;

use crate::domain::fraud::BlockView;
use crate::domain::{Channel, Timestamp};

/// Why a message could not be handed to the transport.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("the broker is not connected")]
    Disconnected,
    #[error("the broker did not answer within {0} ms")]
    Timeout(u64),
    #[error("the broker refused the message: {0}")]
    Refused(String),
    #[error("the broker failed: {0}")]
    Broker(String),
    #[error("delivery is not running: {0}")]
    Stopped(String),
    #[error("{BLOCKED}")]
    Blocked,
}

/// Why nothing is published while the broker blocks publishers.
pub const BLOCKED: &str = "the broker is blocking publishes until its memory or disk alarm clears";

/// Where events go: the broker's events exchange, or nowhere in embedded mode.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn publish_event(&self, event: &Event) -> Result<(), PublishError>;

    /// Publishes `event` in the background, logging a loss, when this sink can do so
    /// without a task of the caller's; gives it back when it cannot.
    fn publish_later(&self, event: Event) -> Option<Event> {
        Some(event)
    }
}

/// Events have nowhere to go without a broker.
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn publish_event(&self, event: &Event) -> Result<(), PublishError> {
        tracing::trace!(key = %event.routing_key(), "Event (embedded mode: not published).");
        Ok(())
    }

    fn publish_later(&self, event: Event) -> Option<Event> {
        tracing::trace!(key = %event.routing_key(), "Event (embedded mode: not published).");
        None
    }
}

/// The error object of the API, as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorObject {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Why, where the code alone does not say (`fraud_suspected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "verification.created")]
    VerificationCreated {
        id: String,
        request_id: Option<String>,
        tenant: String,
        channel: Channel,
        /// Masked destination.
        to: String,
        expires_at: String,
        /// True when an earlier request with the same request id already created it.
        replayed: bool,
    },
    #[serde(rename = "verification.rejected")]
    VerificationRejected {
        request_id: Option<String>,
        tenant: String,
        error: ErrorObject,
    },
    /// A verification was approved: `by` a right `code`, or a `request` to approve it.
    #[serde(rename = "verification.approved")]
    VerificationApproved {
        #[serde(flatten)]
        verification: Ended,
        by: &'static str,
    },
    #[serde(rename = "verification.canceled")]
    VerificationCanceled {
        #[serde(flatten)]
        verification: Ended,
    },
    /// The last attempt was wrong: the verification takes no more checks.
    #[serde(rename = "verification.max_attempts_reached")]
    VerificationMaxAttemptsReached {
        #[serde(flatten)]
        verification: Ended,
    },
    #[serde(rename = "delivery.sent")]
    DeliverySent {
        id: String,
        tenant: String,
        channel: Channel,
        provider: String,
        at: String,
    },
    #[serde(rename = "delivery.delivered")]
    DeliveryDelivered {
        id: String,
        tenant: String,
        channel: Channel,
        provider: String,
        at: String,
    },
    #[serde(rename = "provider.quota")]
    ProviderQuota {
        provider: String,
        period: String,
        percent: u8,
        used: u64,
        limit: u64,
        at: String,
    },
    #[serde(rename = "delivery.failed")]
    DeliveryFailed {
        id: String,
        tenant: String,
        channel: Channel,
        provider: String,
        reason: String,
        at: String,
    },
    /// The SMS-pumping guard blocked a number prefix (for every tenant: blocks are global).
    #[serde(rename = "fraud.blocked")]
    FraudBlocked {
        #[serde(flatten)]
        block: BlockView,
    },
}

/// The verification an ending's event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ended {
    pub id: String,
    pub tenant: String,
    pub channel: Channel,
    /// Masked destination.
    pub to: String,
    pub at: String,
}

impl Event {
    /// `<type>.<tenant>`, e.g. `verification.created.acme`.
    pub fn routing_key(&self) -> String {
        let (kind, tenant) = match self {
            Event::VerificationApproved { verification, .. } => {
                ("verification.approved", &verification.tenant)
            }
            Event::VerificationCanceled { verification } => {
                ("verification.canceled", &verification.tenant)
            }
            Event::VerificationMaxAttemptsReached { verification } => {
                ("verification.max_attempts_reached", &verification.tenant)
            }
            Event::VerificationCreated { tenant, .. } => ("verification.created", tenant),
            Event::VerificationRejected { tenant, .. } => ("verification.rejected", tenant),
            Event::DeliverySent { tenant, .. } => ("delivery.sent", tenant),
            Event::DeliveryFailed { tenant, .. } => ("delivery.failed", tenant),
            Event::DeliveryDelivered { tenant, .. } => ("delivery.delivered", tenant),
            Event::ProviderQuota { provider, .. } => ("provider.quota", provider),
            Event::FraudBlocked { block } => {
                return format!("fraud.blocked.{}", block.country.to_ascii_lowercase());
            }
        };
        format!("{kind}.{tenant}")
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Room for an event as most are, so that writing one seldom grows its buffer.
        let mut json = Vec::with_capacity(512);
        serde_json::to_writer(&mut json, self)
            .map(|()| json)
            .unwrap_or_default()
    }
}

/// How long telling the platform may take.
const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Tells the platform `event`, within `EVENT_TIMEOUT`; a lost event is logged, not retried
/// (what it tells of is durable already).
pub async fn tell(events: &dyn EventSink, event: Event) {
    match tokio::time::timeout(EVENT_TIMEOUT, events.publish_event(&event)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(key = %event.routing_key(), %error, "Could not publish an event.")
        }
        Err(_) => tracing::warn!(key = %event.routing_key(), "Publishing an event timed out."),
    }
}

/// Tells the platform `event` without waiting for it: handed to the sink when it publishes
/// in the background, else told from a task of its own. A lost event is logged.
pub fn tell_later(events: &Arc<dyn EventSink>, event: Event) {
    if let Some(event) = events.publish_later(event) {
        let events = Arc::clone(events);
        tokio::spawn(async move { tell(events.as_ref(), event).await });
    }
}

/// The time format of every event.
pub fn at(time: Timestamp) -> String {
    time.to_rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_and_keyed_by_tenant() {
        let event = Event::VerificationRejected {
            request_id: Some("r-1".into()),
            tenant: "acme".into(),
            error: ErrorObject {
                code: "invalid_destination".into(),
                message: "…".into(),
                retry_after_seconds: None,
                reason: None,
            },
        };
        assert_eq!(event.routing_key(), "verification.rejected.acme");
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["type"], "verification.rejected");
        assert_eq!(json["error"]["code"], "invalid_destination");
        assert!(json["error"].get("retry_after_seconds").is_none());
        assert!(json["error"].get("reason").is_none());
    }

    #[test]
    fn fraud_blocks_are_keyed_by_country_and_carry_their_figures() {
        let event = Event::FraudBlocked {
            block: BlockView {
                prefix: "+2348031".into(),
                country: "NG".into(),
                rule: "sequential_numbers".into(),
                mode: "enforce".into(),
                figures: serde_json::json!({"sends": 412, "conversion": 0.0}),
                explanation: "…".into(),
                started_at: "2026-11-27T12:00:00Z".into(),
                until: "2026-11-27T13:00:00Z".into(),
            },
        };
        assert_eq!(event.routing_key(), "fraud.blocked.ng");
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(json["type"], "fraud.blocked");
        assert_eq!(json["prefix"], "+2348031");
        assert_eq!(json["rule"], "sequential_numbers");
        assert_eq!(json["figures"]["sends"], 412);
    }
}
