//! IssuanceActor: the one place creates are decided, one at a time, so two requests for the
//! same destination never race. It applies rate limits, idempotency and the send policy,
//! writes the verification and its delivery job in one batch, and — outside the actor —
//! waits for the flush and hands the job to the router.

use actix::prelude::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::policy::{self, IssueRequest, SendLimits, SendPlan, SendRefusal};
use super::rate_limit::KeyedLimiter;
use crate::config::Settings;
use crate::delivery::JobQueue;
use crate::delivery::RegionTable;
use crate::domain::{
    DeliveryJob, DestinationKey, IdempotencyKey, IdempotencyRecord, IssueReceipt, JobId, OtpCode,
    Timestamp, Verification, VerificationId,
};
use crate::secrets::Secrets;
use crate::store::{IssueWrite, Store, StoreError};
use crate::telemetry::events::{IssueRefused, OtpIssued};

/// Issue (or resend) a code.
#[derive(Message)]
#[rtype(result = "Result<IssueReceipt, IssueError>")]
pub struct IssueOtp {
    pub tenant: String,
    pub source: RequestSource,
    pub request: IssueRequest,
    pub idempotency: Option<IdempotencyInput>,
}

/// Where a request came from: HTTP requests are rate limited per tenant and client IP;
/// broker requests are paced by the queue's prefetch instead.
#[derive(Debug, Clone, Copy)]
pub enum RequestSource {
    Http { client_ip: Option<IpAddr> },
    Broker,
}

/// An idempotency key (namespaced by its source) and the hash of the request body.
#[derive(Debug, Clone)]
pub struct IdempotencyInput {
    pub key: String,
    pub body_hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("resend cooldown")]
    Cooldown { retry_after: Duration },
    #[error("too many sends")]
    TooManySends { retry_after: Duration },
    #[error("idempotency key reused with another body")]
    IdempotencyKeyReused,
    #[error("unknown template '{0}'")]
    UnknownTemplate(String),
    #[error(transparent)]
    Access(#[from] crate::access::AccessDenied),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delivery is unavailable: {0}")]
    Unavailable(String),
    #[error("the number's prefix is blocked as suspected SMS pumping")]
    FraudSuspected(crate::fraud::FraudRefusal),
}

impl From<SendRefusal> for IssueError {
    fn from(refusal: SendRefusal) -> Self {
        match refusal {
            SendRefusal::Cooldown { retry_after } => IssueError::Cooldown { retry_after },
            SendRefusal::TooManySends { retry_after } => IssueError::TooManySends { retry_after },
        }
    }
}

impl IssueError {
    fn reason(&self) -> &'static str {
        match self {
            IssueError::RateLimited { .. } => "rate_limited",
            IssueError::Cooldown { .. } => "resend_cooldown",
            IssueError::TooManySends { .. } => "too_many_sends",
            IssueError::IdempotencyKeyReused => "idempotency_key_reused",
            IssueError::UnknownTemplate(_) => "unknown_template",
            IssueError::Access(denied) => denied.reason(),
            IssueError::Store(_) | IssueError::Unavailable(_) => "unavailable",
            IssueError::FraudSuspected(_) => "fraud_suspected",
        }
    }
}

pub struct IssuanceActor {
    pub(crate) store: Arc<dyn Store>,
    secrets: Secrets,
    regions: RegionTable,
    bus: Arc<dyn JobQueue>,
    limits: SendLimits,
    idempotency_ttl: Duration,
    known_templates: Vec<String>,
    tenant_limiter: KeyedLimiter<String>,
    client_limiter: KeyedLimiter<IpAddr>,
    mailbox_capacity: usize,
    /// Tenant permissions, caps and the blocklist (see `crate::access`).
    pub(crate) access: crate::access::Gate,
    /// The SMS-pumping guard, shared with the checker (see `crate::fraud`).
    pub(crate) fraud: crate::fraud::FraudGate,
}

impl IssuanceActor {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        secrets: Secrets,
        bus: Arc<dyn JobQueue>,
        access: crate::access::Gate,
    ) -> Self {
        let v = &settings.verification;
        let r = &settings.rate_limits;
        IssuanceActor {
            store,
            secrets,
            regions: RegionTable::from_settings(&settings.regions),
            bus,
            limits: SendLimits {
                cooldown: Duration::from_secs(v.resend_cooldown_seconds),
                sends_per_window: v.sends_per_destination,
                window: Duration::from_secs(v.send_window_seconds),
                max_attempts: v.max_attempts,
            },
            idempotency_ttl: Duration::from_secs(v.idempotency_ttl_seconds),
            known_templates: settings.templates.keys().cloned().collect(),
            tenant_limiter: KeyedLimiter::new(r.tenant_per_second, r.tenant_burst),
            client_limiter: KeyedLimiter::new(r.client_ip_per_second, r.client_ip_burst),
            mailbox_capacity: settings.delivery.mailbox_capacity,
            access,
            fraud: crate::fraud::FraudGate::off(),
        }
    }

    /// Screens creates with the SMS-pumping guard (shared with the checker).
    pub fn with_fraud_gate(mut self, fraud: crate::fraud::FraudGate) -> Self {
        self.fraud = fraud;
        self
    }

    /// The decision and the write; everything here runs inside the actor, one request at a time.
    fn issue(&mut self, message: &IssueOtp, now: Timestamp) -> Result<Decided, IssueError> {
        if let Some(input) = &message.idempotency {
            let key = IdempotencyKey {
                tenant: message.tenant.clone(),
                key: input.key.clone(),
            };
            if let Some(remembered) = self.store.idempotency(&key)? {
                return if remembered.body_hash == input.body_hash {
                    Ok(Decided::Replay(remembered.receipt))
                } else {
                    Err(IssueError::IdempotencyKeyReused)
                };
            }
        }
        let request = &message.request;
        if !self.known_templates.contains(&request.template) {
            return Err(IssueError::UnknownTemplate(request.template.clone()));
        }
        let fraud_target = self
            .fraud
            .screen(&request.destination, now)
            .map_err(IssueError::FraudSuspected)?;
        if let RequestSource::Http { client_ip } = message.source {
            self.tenant_limiter
                .check(message.tenant.clone(), now)
                .map_err(|retry_after| IssueError::RateLimited { retry_after })?;
            if let Some(ip) = client_ip {
                self.client_limiter
                    .check(ip, now)
                    .map_err(|retry_after| IssueError::RateLimited { retry_after })?;
            }
        }
        if !self.bus.is_ready() {
            return Err(IssueError::Unavailable(
                "the broker is not connected".into(),
            ));
        }

        let destination_key = DestinationKey {
            tenant: message.tenant.clone(),
            channel: request.channel,
            to: request.destination.as_str().to_owned(),
        };
        let state = self
            .store
            .destination(&destination_key)?
            .unwrap_or_default();
        let pending = match &state.pending {
            Some(id) => self.store.verification(id)?,
            None => None,
        };
        let plan = policy::plan_send(&state, pending.as_ref(), &self.limits, now)?;
        self.access
            .admit(&message.tenant, request.channel, &request.destination, now)?;

        let code = OtpCode::generate(request.code_length);
        let verification = match (&plan, pending) {
            (SendPlan::Resend(_), Some(existing)) => {
                let hash = self.secrets.hasher.hash(existing.id.as_str(), &code);
                policy::resend(&existing, request, hash, now)
            }
            _ => {
                let id = VerificationId::generate();
                let hash = self.secrets.hasher.hash(id.as_str(), &code);
                policy::new_verification(id, &message.tenant, request, hash, &self.limits, now)
            }
        };
        let created = matches!(plan, SendPlan::New);
        let receipt = policy::receipt(&verification, created, &self.limits);
        let job = self.job_for(&verification, request, &code, now);
        let idempotency = message.idempotency.as_ref().map(|input| {
            let key = IdempotencyKey {
                tenant: message.tenant.clone(),
                key: input.key.clone(),
            };
            let record = IdempotencyRecord {
                body_hash: input.body_hash,
                receipt: receipt.clone(),
                expires_at: now.plus(self.idempotency_ttl),
            };
            (key, record)
        });
        let write = IssueWrite {
            destination: policy::record_send(&state, &verification, &self.limits, now),
            destination_key,
            verification,
            idempotency,
            job: job.clone(),
        };
        self.store.commit_issue(&write)?;
        if let Some(target) = &fraud_target {
            self.fraud.record_send(target, now);
        }
        OtpIssued {
            tenant: &message.tenant,
            channel: request.channel,
            resend: !created,
        }
        .emit();
        Ok(Decided::Issued {
            receipt,
            job: Box::new(job),
            idempotency: write.idempotency.map(|(key, _)| key),
        })
    }

    fn job_for(
        &self,
        verification: &Verification,
        request: &IssueRequest,
        code: &OtpCode,
        now: Timestamp,
    ) -> DeliveryJob {
        let job_id = JobId::new(&verification.id, verification.send_seq);
        DeliveryJob {
            sealed_code: self.secrets.sealer.seal(&job_id, code),
            job_id,
            verification_id: verification.id.clone(),
            send_seq: verification.send_seq,
            tenant: verification.tenant.clone(),
            channel: verification.channel,
            to: verification.to.clone(),
            country: verification.country.clone(),
            region: self.regions.region_for(&request.destination).to_owned(),
            locale: verification.locale.clone(),
            template: verification.template.clone(),
            expires_at: verification.expires_at,
            created_at: now,
        }
    }
}

/// What the actor decided, before the flush.
enum Decided {
    Replay(IssueReceipt),
    Issued {
        receipt: IssueReceipt,
        job: Box<DeliveryJob>,
        idempotency: Option<IdempotencyKey>,
    },
}

impl Actor for IssuanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<IssueOtp> for IssuanceActor {
    type Result = ResponseFuture<Result<IssueReceipt, IssueError>>;

    fn handle(&mut self, message: IssueOtp, _: &mut Self::Context) -> Self::Result {
        let decided = self.issue(&message, Timestamp::now());
        if let Err(error) = &decided {
            IssueRefused {
                tenant: &message.tenant,
                reason: error.reason(),
            }
            .emit();
        }
        let flushed = self.store.flush();
        let bus = Arc::clone(&self.bus);
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            let decided = decided?;
            flushed.await?;
            match decided {
                Decided::Replay(receipt) => Ok(receipt),
                Decided::Issued {
                    receipt,
                    job,
                    idempotency,
                } => match bus.publish_job(&job).await {
                    Ok(()) => Ok(receipt),
                    Err(error) => {
                        // Nothing may go out for a request that is answered "unavailable".
                        store.abandon_issue(&job, idempotency.as_ref())?;
                        store.flush().await?;
                        Err(IssueError::Unavailable(error.to_string()))
                    }
                },
            }
        })
    }
}
