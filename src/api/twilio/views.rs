//! Verifications, checks and services as Twilio's Verify v2 API shows them: its field
//! names, its SID formats (`VE`, `VA`, `AC`, `VL` + 32 hex) and its statuses.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::domain::attempt::{summarize, SendProgress};
use crate::domain::destination::mask;
use crate::domain::{Channel, DeliveryState, Status, Timestamp, Verification, VerificationId};
use crate::tenants::{account_sid, service_sid};
use crate::verify::CheckOutcome;

/// The verification's SID: its id's 32 hex digits after `VE`.
pub fn verification_sid(id: &VerificationId) -> String {
    format!("VE{}", id.digits())
}

/// The verification a SID names, if it has the form otpd gives SIDs.
pub fn parse_verification_sid(sid: &str) -> Option<VerificationId> {
    VerificationId::parse(&format!("ver_{}", sid.strip_prefix("VE")?))
}

/// The status Twilio gives a verification: otpd's, or `failed` for a pending one whose
/// code could not be delivered.
fn status_of(record: &Verification, now: Timestamp) -> &'static str {
    match record.status_at(now) {
        Status::Pending if record.delivery == DeliveryState::Failed => "failed",
        status => status.as_str(),
    }
}

/// A channel as Twilio names it: `call` for voice, the others as otpd names them.
pub fn twilio_channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Voice => "call",
        other => other.as_str(),
    }
}

/// One send of a verification's code.
#[derive(Serialize, ToSchema)]
pub struct SendCodeAttempt {
    attempt_sid: String,
    channel: &'static str,
    /// When the code was sent: known for the first send and the latest one, null between.
    time: Option<String>,
}

/// A verification.
#[derive(Serialize, ToSchema)]
pub struct VerificationResource {
    #[schema(pattern = "^VE[0-9a-f]{32}$")]
    sid: String,
    #[schema(pattern = "^VA[0-9a-f]{32}$")]
    service_sid: String,
    #[schema(pattern = "^AC[0-9a-f]{32}$")]
    account_sid: String,
    /// The destination, masked.
    to: String,
    channel: &'static str,
    #[schema(pattern = "^(pending|approved|canceled|max_attempts_reached|expired|failed)$")]
    status: &'static str,
    valid: bool,
    /// Always empty: otpd looks up no carrier.
    #[schema(value_type = Object)]
    lookup: serde_json::Map<String, serde_json::Value>,
    amount: Option<String>,
    payee: Option<String>,
    send_code_attempts: Vec<SendCodeAttempt>,
    date_created: String,
    date_updated: String,
    url: String,
}

impl VerificationResource {
    pub fn of(record: &Verification, now: Timestamp, base: &str) -> Self {
        let sid = verification_sid(&record.id);
        let service_sid = service_sid(&record.tenant);
        let transaction = record.transaction.clone().unwrap_or_default();
        VerificationResource {
            url: format!("{base}/v2/Services/{service_sid}/Verifications/{sid}"),
            send_code_attempts: send_code_attempts(record),
            sid,
            service_sid,
            account_sid: account_sid(&record.tenant),
            to: mask(&record.to),
            channel: twilio_channel_name(record.channel),
            status: status_of(record, now),
            valid: record.status == Status::Approved,
            lookup: serde_json::Map::new(),
            amount: transaction.amount,
            payee: transaction.payee,
            date_created: record.created_at.to_rfc3339(),
            date_updated: record.updated_at.to_rfc3339(),
        }
    }
}

/// The SID of send `seq` of `record`'s code.
fn attempt_sid(record: &Verification, seq: u32) -> String {
    let digest = Sha256::digest(format!("{}\0{seq}", record.id).as_bytes());
    format!("VL{}", hex::encode(&digest[..16]))
}

/// When send `seq` of `record`'s code went out: known for the first send and the latest
/// one; between them, from the send's first timeline entry while it is kept.
fn send_time(record: &Verification, seq: u32) -> Option<Timestamp> {
    match seq {
        1 => Some(record.created_at),
        last if last == record.send_seq => Some(record.last_sent_at),
        _ => record
            .timeline
            .iter()
            .find(|attempt| attempt.send == seq)
            .map(|attempt| attempt.started_at),
    }
}

/// Each send of `record`'s code so far, with an attempt SID derived from the send.
fn send_code_attempts(record: &Verification) -> Vec<SendCodeAttempt> {
    (1..=record.send_seq)
        .map(|seq| SendCodeAttempt {
            attempt_sid: attempt_sid(record, seq),
            channel: twilio_channel_name(record.channel),
            time: send_time(record, seq).map(Timestamp::to_rfc3339),
        })
        .collect()
}

/// One send of a verification's code, as Twilio's Verification Attempts API lists it.
#[derive(Serialize, ToSchema)]
pub struct AttemptResource {
    #[schema(pattern = "^VL[0-9a-f]{32}$")]
    sid: String,
    account_sid: String,
    service_sid: String,
    verification_sid: String,
    date_created: Option<String>,
    date_updated: String,
    /// `converted` for the send whose code was approved.
    #[schema(pattern = "^(converted|unconverted)$")]
    conversion_status: &'static str,
    channel: &'static str,
    /// What otpd knows of the send: the masked destination, the provider that sent it,
    /// how far it got, the provider's error code, and how many tries it took.
    #[schema(value_type = Object)]
    channel_data: serde_json::Value,
}

/// The sends of one verification.
#[derive(Serialize, ToSchema)]
pub struct AttemptPage {
    attempts: Vec<AttemptResource>,
    meta: PageMeta,
}

impl AttemptPage {
    pub fn of(record: &Verification, base: &str) -> Self {
        let verification_sid = verification_sid(&record.id);
        let attempts = (1..=record.send_seq)
            .map(|seq| {
                let send = summarize(&record.timeline, seq);
                let receipt = send.sent.and_then(|attempt| attempt.receipt.as_ref());
                let status = match send.progress {
                    SendProgress::Queued => "queued",
                    SendProgress::Sent => "sent",
                    SendProgress::Delivered => "delivered",
                    SendProgress::Undelivered => "undelivered",
                    SendProgress::Failed => "failed",
                };
                let converted = record.status == Status::Approved && seq == record.send_seq;
                AttemptResource {
                    sid: attempt_sid(record, seq),
                    account_sid: account_sid(&record.tenant),
                    service_sid: service_sid(&record.tenant),
                    verification_sid: verification_sid.clone(),
                    date_created: send_time(record, seq).map(Timestamp::to_rfc3339),
                    date_updated: record.updated_at.to_rfc3339(),
                    conversion_status: if converted {
                        "converted"
                    } else {
                        "unconverted"
                    },
                    channel: twilio_channel_name(record.channel),
                    channel_data: serde_json::json!({
                        "to": mask(&record.to),
                        "provider": send.sent.and_then(|attempt| attempt.provider.clone()),
                        "status": status,
                        "error_code": receipt.and_then(|receipt| receipt.error_code.clone()),
                        "tries": send.tries,
                    }),
                }
            })
            .collect();
        let url =
            format!("{base}/v2/Attempts?VerificationSid={verification_sid}&PageSize=50&Page=0");
        AttemptPage {
            attempts,
            meta: PageMeta::only_page(url, "attempts"),
        }
    }
}

/// What a check found: `valid` is true once, for the right code.
#[derive(Serialize, ToSchema)]
pub struct CheckResource {
    #[schema(pattern = "^VE[0-9a-f]{32}$")]
    sid: String,
    service_sid: String,
    account_sid: String,
    to: String,
    channel: &'static str,
    #[schema(pattern = "^(pending|approved|max_attempts_reached)$")]
    status: &'static str,
    valid: bool,
    amount: Option<String>,
    payee: Option<String>,
    date_created: String,
    date_updated: String,
}

impl CheckResource {
    pub fn of(record: &Verification, outcome: &CheckOutcome) -> Self {
        let transaction = record.transaction.clone().unwrap_or_default();
        CheckResource {
            sid: verification_sid(&record.id),
            service_sid: service_sid(&record.tenant),
            account_sid: account_sid(&record.tenant),
            to: mask(&record.to),
            channel: twilio_channel_name(record.channel),
            status: outcome.status.as_str(),
            valid: outcome.valid,
            amount: transaction.amount,
            payee: transaction.payee,
            date_created: record.created_at.to_rfc3339(),
            date_updated: record.updated_at.to_rfc3339(),
        }
    }
}

/// The tenant's one Verify service.
#[derive(Serialize, ToSchema)]
pub struct ServiceResource {
    #[schema(pattern = "^VA[0-9a-f]{32}$")]
    sid: String,
    account_sid: String,
    /// The tenant's name.
    friendly_name: String,
    /// The digits of a code, when the request names none: `verification.code_length`.
    code_length: u8,
    /// Whether a verification may be bound to an amount and a payee: always.
    psd2_enabled: bool,
    lookup_enabled: bool,
    /// Null: a service is as old as its tenant, whose creation otpd does not record.
    date_created: Option<String>,
    date_updated: Option<String>,
    url: String,
    links: ServiceLinks,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceLinks {
    verifications: String,
    verification_checks: String,
}

impl ServiceResource {
    pub fn of(tenant: &str, code_length: u8, base: &str) -> Self {
        let sid = service_sid(tenant);
        let url = format!("{base}/v2/Services/{sid}");
        ServiceResource {
            links: ServiceLinks {
                verifications: format!("{url}/Verifications"),
                verification_checks: format!("{url}/VerificationCheck"),
            },
            url,
            sid,
            account_sid: account_sid(tenant),
            friendly_name: tenant.to_owned(),
            code_length,
            psd2_enabled: true,
            lookup_enabled: false,
            date_created: None,
            date_updated: None,
        }
    }
}

/// A page of services: the one there is.
#[derive(Serialize, ToSchema)]
pub struct ServicePage {
    services: Vec<ServiceResource>,
    meta: PageMeta,
}

#[derive(Serialize, ToSchema)]
pub struct PageMeta {
    page: u32,
    page_size: u32,
    first_page_url: String,
    previous_page_url: Option<String>,
    url: String,
    next_page_url: Option<String>,
    key: &'static str,
}

impl PageMeta {
    /// The meta of a list whose one page, at `url`, holds it all, under `key`.
    fn only_page(url: String, key: &'static str) -> Self {
        PageMeta {
            page: 0,
            page_size: 50,
            first_page_url: url.clone(),
            previous_page_url: None,
            url,
            next_page_url: None,
            key,
        }
    }
}

impl ServicePage {
    pub fn of(service: ServiceResource, base: &str) -> Self {
        let url = format!("{base}/v2/Services?PageSize=50&Page=0");
        ServicePage {
            services: vec![service],
            meta: PageMeta::only_page(url, "services"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_sids_map_to_ids_and_back() {
        let id = VerificationId::generate_in(0x0102_0304, Timestamp::now());
        let sid = verification_sid(&id);
        assert!(sid.starts_with("VE01020304") && sid.len() == 34, "{sid}");
        // An id of another form (read from a message) gives a SID that names nothing, and
        // no panic.
        let foreign: VerificationId = serde_json::from_str("\"é\"").unwrap();
        assert_eq!(verification_sid(&foreign), "VEé");
        assert_eq!(parse_verification_sid(&sid), Some(id));
        for foreign in [
            "",
            "VE",
            "ver_0102",
            "VA0102030400000000000000000000000000",
            "VEXYZ",
        ] {
            assert_eq!(parse_verification_sid(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_failed_delivery_shows_failed_and_each_send_is_an_attempt() {
        let mut record = crate::verify::rules::tests::pending(None);
        record.send_seq = 3;
        record.last_sent_at = record.created_at.plus_secs(60);
        record.delivery = DeliveryState::Failed;
        let now = record.created_at;
        let view = VerificationResource::of(&record, now, "http://otpd");
        assert_eq!(view.status, "failed");
        let times: Vec<Option<String>> = view
            .send_code_attempts
            .iter()
            .map(|a| a.time.clone())
            .collect();
        assert_eq!(
            times,
            [
                Some(record.created_at.to_rfc3339()),
                None,
                Some(record.last_sent_at.to_rfc3339())
            ]
        );
        assert_ne!(
            view.send_code_attempts[0].attempt_sid,
            view.send_code_attempts[1].attempt_sid
        );
        assert!(
            view.url.starts_with("http://otpd/v2/Services/VA"),
            "{}",
            view.url
        );
    }
}
