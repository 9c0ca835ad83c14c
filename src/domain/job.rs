//! A delivery job: what a sender needs to deliver one code, with the code sealed.

use super::{Channel, Timestamp, Verification, VerificationId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// `<verification id>.<send seq>`: one job per code sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    pub fn new(verification: &VerificationId, send_seq: u32) -> Self {
        JobId(format!("{verification}.{send_seq}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its verification's [`VerificationId::made`] (empty for a job id of another form).
    pub fn made(&self) -> &str {
        self.0.get(12..20).unwrap_or_default()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to send one code. The code travels sealed (AEAD, bound to the job id),
/// so no queue, outbox or log line ever holds it in clear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub job_id: JobId,
    pub verification_id: VerificationId,
    pub send_seq: u32,
    pub tenant: String,
    pub channel: Channel,
    pub to: String,
    pub country: Option<String>,
    pub region: String,
    pub locale: Option<String>,
    pub template: String,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub sealed_code: Vec<u8>,
}

impl DeliveryJob {
    /// The job of `verification`'s current send: to its destination in `region`, with the
    /// code sealed for this job (`seal` is given the job id), created at `now`.
    pub fn for_send(
        verification: &Verification,
        region: &str,
        seal: impl FnOnce(&JobId) -> Vec<u8>,
        now: Timestamp,
    ) -> Self {
        let job_id = JobId::new(&verification.id, verification.send_seq);
        DeliveryJob {
            sealed_code: seal(&job_id),
            job_id,
            verification_id: verification.id.clone(),
            send_seq: verification.send_seq,
            tenant: verification.tenant.clone(),
            channel: verification.channel,
            to: verification.to.clone(),
            country: verification.country.clone(),
            region: region.to_owned(),
            locale: verification.locale.clone(),
            template: verification.template.clone(),
            expires_at: verification.expires_at,
            created_at: now,
        }
    }
}
