//! Which platform event becomes which webhook, for whom, and its body:
//! `{"id": "evt_…", "type", "created_at", "data": {…}}`, `data` being the event's fields
//! (never a code, never a full destination).

use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};

use super::outbox::{Entry, Kind};
use super::settings::WebhookTargets;
use crate::domain::destination::mask;
use crate::domain::{IssueReceipt, Timestamp, Verification};
use crate::telemetry::platform::{at, Event};

/// Who a webhook goes to.
enum Audience<'a> {
    Tenant(&'a str),
    /// Every tenant with a webhook: providers and fraud blocks are shared.
    Everyone,
}

/// A platform event's webhook type and audience; `None` for what webhooks do not carry
/// (`verification.created` comes from the issuer, before the code's job; a rejected
/// request is answered to its caller).
fn webhook_of(event: &Event) -> Option<(&'static str, Audience<'_>)> {
    Some(match event {
        Event::VerificationCreated { .. } | Event::VerificationRejected { .. } => return None,
        Event::DeliverySent { tenant, .. } => ("verification.sent", Audience::Tenant(tenant)),
        Event::DeliveryDelivered { tenant, .. } => {
            ("verification.delivered", Audience::Tenant(tenant))
        }
        Event::DeliveryFailed { tenant, .. } => ("verification.failed", Audience::Tenant(tenant)),
        Event::VerificationApproved { verification, .. } => (
            "verification.approved",
            Audience::Tenant(&verification.tenant),
        ),
        Event::VerificationCanceled { verification } => (
            "verification.canceled",
            Audience::Tenant(&verification.tenant),
        ),
        Event::VerificationMaxAttemptsReached { verification } => (
            "verification.max_attempts_reached",
            Audience::Tenant(&verification.tenant),
        ),
        Event::ProviderQuota { .. } => ("provider.quota", Audience::Everyone),
        Event::FraudBlocked { .. } => ("fraud.blocked", Audience::Everyone),
    })
}

/// The outbox entries `event` makes for the tenants with a webhook.
pub fn entries_for(event: &Event, targets: &WebhookTargets, now: Timestamp) -> Vec<Entry> {
    let Some((kind, audience)) = webhook_of(event) else {
        return Vec::new();
    };
    let mut data = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(fields) = data.as_object_mut() {
        fields.remove("type");
    }
    let tenants: Vec<&str> = match audience {
        Audience::Tenant(tenant) if targets.has(tenant) => vec![tenant],
        Audience::Tenant(_) => Vec::new(),
        Audience::Everyone => targets.tenants().map(String::as_str).collect(),
    };
    tenants
        .into_iter()
        .map(|tenant| deliver(tenant, kind, data.clone(), now))
        .collect()
}

/// `verification.created` for a new verification, and the probe of its expiry.
pub fn created(tenant: &str, receipt: &IssueReceipt, now: Timestamp) -> Vec<Entry> {
    let data = json!({
        "id": receipt.id.as_str(),
        "tenant": tenant,
        "channel": receipt.channel,
        "to": receipt.to_masked,
        "expires_at": at(receipt.expires_at),
    });
    let probe = Entry {
        tenant: tenant.to_owned(),
        kind: Kind::ExpiryProbe {
            verification: receipt.id.clone(),
        },
        created_at: now,
        attempts: 0,
        next_at: receipt.expires_at,
    };
    vec![deliver(tenant, "verification.created", data, now), probe]
}

/// `verification.expired` for `record`, whose code expired unused.
pub fn expired(record: &Verification, now: Timestamp) -> Entry {
    let data = json!({
        "id": record.id.as_str(),
        "tenant": record.tenant,
        "channel": record.channel,
        "to": mask(&record.to),
        "at": at(record.expires_at),
    });
    deliver(&record.tenant, "verification.expired", data, now)
}

fn deliver(tenant: &str, kind: &str, data: Value, now: Timestamp) -> Entry {
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random);
    let id = format!("evt_{}", hex::encode(random));
    let body = json!({"id": id, "type": kind, "created_at": at(now), "data": data}).to_string();
    Entry {
        tenant: tenant.to_owned(),
        kind: Kind::Deliver { id, body },
        created_at: now,
        attempts: 0,
        next_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TenantSettings;
    use crate::domain::Channel;
    use std::collections::BTreeMap;

    fn targets(names: &[&str]) -> WebhookTargets {
        let tenants: BTreeMap<String, TenantSettings> = names
            .iter()
            .map(|name| {
                let settings = TenantSettings {
                    webhook_url: Some("https://hooks.example.com/otpd".into()),
                    webhook_secret: Some("a-secret-of-sixteen+".to_owned().into()),
                    ..TenantSettings::default()
                };
                (name.to_string(), settings)
            })
            .collect();
        WebhookTargets::from_settings(&tenants).unwrap()
    }

    #[test]
    fn a_tenant_s_event_goes_to_it_and_a_shared_one_to_every_tenant() {
        let sent = Event::DeliverySent {
            id: "ver_1".into(),
            tenant: "acme".into(),
            channel: Channel::Sms,
            provider: "twilio".into(),
            at: "2026-12-03T00:00:00Z".into(),
        };
        let entries = entries_for(&sent, &targets(&["acme", "beta"]), Timestamp(5));
        assert_eq!(entries.len(), 1);
        let Kind::Deliver { body, id } = &entries[0].kind else {
            panic!()
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["type"], "verification.sent");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["data"]["provider"], "twilio");
        assert!(body["data"].get("type").is_none());
        assert!(entries_for(&sent, &targets(&["beta"]), Timestamp(5)).is_empty());

        let quota = Event::ProviderQuota {
            provider: "twilio".into(),
            period: "day".into(),
            percent: 80,
            used: 80,
            limit: 100,
            at: "2026-12-03T00:00:00Z".into(),
        };
        assert_eq!(
            entries_for(&quota, &targets(&["acme", "beta"]), Timestamp(5)).len(),
            2
        );
    }

    #[test]
    fn a_url_without_a_long_enough_secret_is_refused_by_name() {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "acme".to_owned(),
            TenantSettings {
                webhook_url: Some("https://hooks.example.com".into()),
                ..TenantSettings::default()
            },
        );
        let problems = WebhookTargets::from_settings(&tenants).err().unwrap();
        assert!(
            problems[0].contains("OTPD__TENANTS__ACME__WEBHOOK_SECRET"),
            "{problems:?}"
        );
    }
}
