//! The Issuer: the decision and the write of an issue (idempotency, templates, the fraud
//! guard, rate limits, the send policy, access, the code and its job), and the admin edits
//! that must be ordered with issues (the blocklist, lifting a fraud block). Plain methods,
//! called one at a time by the IssuanceActor.

use futures_util::future::BoxFuture;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::error::IssueError;
use super::handed_over::{self, HandedOver};
use super::policy::{self, IssueRequest, NotHandedOn, SendLimits, SendPlan};
use super::settings::{RateLimitSettings, VerificationSettings};
use super::{IssueOtp, Issued, RequestSource, StepRefusal, Surface};
use crate::access::{AdminError, BlocklistAction, BlocklistAnswer, Gate};
use crate::delivery::settings::{RegionSettings, RoutingSettings, TemplateSettings};
use crate::delivery::{JobQueue, RegionTable};
use crate::domain::rate_limit::KeyedLimiter;
use crate::domain::workflow::NoNextStep;
use crate::domain::{
    Channel, DeliveryJob, DeliveryState, DestinationKey, DestinationState, IdempotencyKey,
    IdempotencyRecord, IssueReceipt, JobId, OtpCode, PlannedStep, Status, StepTrigger, Timestamp,
    Verification, VerificationId, Workflow,
};
use crate::fraud::{Block, FraudGate, Target};
use crate::secrets::Secrets;
use crate::store::{DueStep, IssueWrite, Store, StoreError};
use crate::telemetry::events::OtpIssued;
use crate::telemetry::platform::PublishError;
use crate::webhooks::Webhooks;

/// The sections of the settings the issuer reads.
#[derive(Clone, Copy)]
pub struct IssuerSettings<'a> {
    pub verification: &'a VerificationSettings,
    pub rate_limits: &'a RateLimitSettings,
    pub regions: &'a RegionSettings,
    pub templates: &'a TemplateSettings,
    pub routing: &'a RoutingSettings,
    /// How long the store keeps a verification after its code expires.
    pub retention: Duration,
}

pub struct Issuer {
    store: Arc<dyn Store>,
    secrets: Secrets,
    regions: RegionTable,
    bus: Arc<dyn JobQueue>,
    limits: SendLimits,
    idempotency_ttl: Duration,
    known_templates: Vec<String>,
    /// The channels some provider is routed for.
    offered_channels: Vec<Channel>,
    tenant_limiter: KeyedLimiter<String>,
    client_limiter: KeyedLimiter<IpAddr>,
    /// Tenant permissions, caps and the blocklist (see `crate::access`).
    access: Gate,
    /// The SMS-pumping guard, shared with the checker (see `crate::fraud`).
    fraud: FraudGate,
    /// The jobs handed on lately, which an idempotent retry does not hand on again.
    handed_over: Arc<HandedOver>,
    /// The tenants' webhooks, told of each new verification before its job is handed on.
    webhooks: Option<Arc<Webhooks>>,
}

impl Issuer {
    pub fn new(
        settings: IssuerSettings<'_>,
        store: Arc<dyn Store>,
        secrets: Secrets,
        bus: Arc<dyn JobQueue>,
        access: Gate,
    ) -> Self {
        let v = settings.verification;
        let r = settings.rate_limits;
        Issuer {
            store,
            secrets,
            regions: RegionTable::from_settings(settings.regions),
            bus,
            limits: SendLimits {
                cooldown: Duration::from_secs(v.resend_cooldown_seconds),
                sends_per_window: v.sends_per_destination,
                window: Duration::from_secs(v.send_window_seconds),
                max_attempts: v.max_attempts,
                findable_for: settings.retention,
            },
            idempotency_ttl: Duration::from_secs(v.idempotency_ttl_seconds),
            known_templates: settings.templates.keys().cloned().collect(),
            offered_channels: settings.routing.offered(),
            tenant_limiter: KeyedLimiter::new(r.tenant_per_second, r.tenant_burst),
            client_limiter: KeyedLimiter::new(r.client_ip_per_second, r.client_ip_burst),
            access,
            fraud: FraudGate::off(),
            handed_over: Arc::new(HandedOver::new(handed_over::REMEMBERED)),
            webhooks: None,
        }
    }

    /// Tells the tenants' webhooks of each new verification.
    pub fn with_webhooks(mut self, webhooks: Option<Arc<Webhooks>>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Screens creates with the SMS-pumping guard (shared with the checker).
    pub fn with_fraud_gate(mut self, fraud: FraudGate) -> Self {
        self.fraud = fraud;
        self
    }

    /// Decides an issue and writes it (durable with the next [`Issuer::flush`]). The caller
    /// runs one at a time, so two requests for one destination never race.
    pub fn issue(&mut self, message: &IssueOtp, now: Timestamp) -> Result<Decided, IssueError> {
        if let RequestSource::Workflow {
            verification,
            trigger,
        } = &message.source
        {
            return self.take_step(message, verification, *trigger, now);
        }
        let idempotency_key = message.idempotency.as_ref().map(|input| IdempotencyKey {
            tenant: message.tenant.clone(),
            key: input.key.clone(),
        });
        if let (Some(key), Some(input)) = (&idempotency_key, &message.idempotency) {
            let remembered = self.store.idempotency(key)?;
            if let Some(remembered) = remembered.filter(|record| record.holds_at(now)) {
                if remembered.body_hash != input.body_hash {
                    return Err(IssueError::IdempotencyKeyReused);
                }
                let undelivered = self.undelivered_job(&remembered.receipt.id)?;
                return Ok(Decided::Replay {
                    receipt: remembered.receipt,
                    undelivered: undelivered.map(Box::new),
                });
            }
        }
        let fraud_target = self.screen(message, now)?;
        let workflow = self.workflow_for(message)?;
        let request = &message.request;
        let (destination_key, state) = self.destination_of(message)?;
        let pending = match &state.pending {
            Some(id) => self.store.verification(id)?,
            None => None,
        };
        let plan = policy::plan_send(&state, pending.as_ref(), &self.limits, now)?;
        self.access
            .admit(&message.tenant, request.channel, &request.destination)?;

        let slot = destination_key.slot();
        // A workflow's steps send the same code, so it is kept while one may follow.
        let keeps_code = workflow.is_some()
            || pending
                .as_ref()
                .and_then(|pending| pending.workflow.as_ref())
                .is_some_and(Workflow::has_steps_left)
            || self
                .access
                .resend_keeps_code(&message.tenant)
                .unwrap_or(message.surface.resend_keeps_code_by_default());
        let decided_on = matches!(plan, SendPlan::Resend(_))
            .then(|| pending.clone())
            .flatten();
        let (mut verification, code) =
            self.verification_for(&plan, pending, message, keeps_code, slot, now);
        if let Some(steps) = &workflow {
            policy::start_workflow(&mut verification, steps, now);
        }
        let created = matches!(plan, SendPlan::New);
        let receipt = policy::receipt(&verification, created, &self.limits);
        let job = self.job_for(&verification, request, &code, now);
        let idempotency = idempotency_key
            .zip(message.idempotency.as_ref())
            .map(|(key, input)| {
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
            job,
            decided_on,
        };
        self.commit(write, receipt, fraud_target, message, now)
    }

    /// Sends the next step of verification `id`'s workflow, with its kept code: when it is
    /// still the destination's pending verification, the step is still the one `trigger`
    /// moves to, and the destination's send window, the fraud guard and the tenant's access
    /// allow it. A step due by the clock leaves the schedule once taken.
    fn take_step(
        &mut self,
        message: &IssueOtp,
        id: &VerificationId,
        trigger: StepTrigger,
        now: Timestamp,
    ) -> Result<Decided, IssueError> {
        let fraud_target = self.screen(message, now)?;
        let request = &message.request;
        let (destination_key, state) = self.destination_of(message)?;
        let existing = match &state.pending {
            Some(pending) if pending == id => self.store.verification(id)?,
            _ => None,
        }
        .ok_or(NoNextStep::Ended)?;
        let step = policy::plan_step(
            &state,
            &existing,
            request.channel,
            trigger,
            &self.limits,
            now,
        )?;
        self.access
            .admit(&message.tenant, request.channel, &request.destination)?;
        let code = self.kept_code(&existing).ok_or(IssueError::CodeNotKept)?;
        let verification = policy::send_step(&existing, step, request, now);
        let receipt = policy::receipt(&verification, false, &self.limits);
        let job = self.job_for(&verification, request, &code, now);
        let write = IssueWrite {
            destination: policy::record_send(&state, &verification, &self.limits, now),
            destination_key,
            verification,
            idempotency: None,
            job,
            decided_on: Some(existing),
        };
        let decided = self.commit(write, receipt, fraud_target, message, now)?;
        if let StepTrigger::Due(at) = trigger {
            // The step is taken: an entry left behind is forgotten when it is due again.
            if let Err(error) = self.store.forget_step(&DueStep { at, id: id.clone() }) {
                tracing::warn!(%error, verification = %id, "Could not take a sent workflow step off the schedule.");
            }
        }
        Ok(decided)
    }

    /// Takes the step of verification `id`'s workflow due at `due`, which could not be sent,
    /// off the schedule. When it is still the step to take, it is tried again once the
    /// refusal's `retry_after` has passed, if the code outlives that; else it is recorded
    /// skipped, and the step after it is due at once (durable with the next flush).
    pub fn due_step_refused(
        &mut self,
        id: &VerificationId,
        due: Timestamp,
        refusal: &StepRefusal,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // What comes due next comes after this step, so its schedule entry is a new one.
        let now = now.max(Timestamp(due.0 + 1));
        self.store.update_verification(id, &mut |record| {
            let (pending, expires_at) = (record.is_pending(now), record.expires_at);
            let Some(workflow) = record.workflow.as_mut().filter(|_| pending) else {
                return false;
            };
            let Ok(step) = workflow.next_step(StepTrigger::Due(due)) else {
                return false;
            };
            let again_at = refusal.retry_after.map(|wait| now.plus(wait));
            workflow.refused(step, &refusal.reason, again_at, now, expires_at);
            record.updated_at = now;
            true
        })?;
        self.store.forget_step(&DueStep {
            at: due,
            id: id.clone(),
        })
    }

    /// Writes a decided send and counts it.
    fn commit(
        &mut self,
        write: IssueWrite,
        receipt: IssueReceipt,
        fraud_target: Option<Target>,
        message: &IssueOtp,
        now: Timestamp,
    ) -> Result<Decided, IssueError> {
        self.store.commit_issue(&write)?;
        if let Some(target) = &fraud_target {
            self.fraud.record_send(target, now);
        }
        OtpIssued {
            tenant: &message.tenant,
            channel: message.request.channel,
            resend: !receipt.created,
        }
        .emit();
        Ok(Decided::Issued {
            receipt,
            job: Box::new(write.job),
            idempotency: write.idempotency.map(|(key, _)| key),
            step: matches!(message.source, RequestSource::Workflow { .. }),
        })
    }

    /// The workflow a create follows: its own, or else its tenant's default when it names
    /// the default's first channel (on otpd's own API only); each step's channel offered
    /// and allowed to the tenant, so a workflow that cannot run is refused whole.
    fn workflow_for(&mut self, message: &IssueOtp) -> Result<Option<Vec<PlannedStep>>, IssueError> {
        let request = &message.request;
        let tenant_default = || {
            let steps = self.access.default_workflow(&message.tenant)?;
            (message.surface == Surface::Native && steps[0].channel == request.channel)
                .then(|| steps.to_vec())
        };
        let Some(steps) = request.workflow.clone().or_else(tenant_default) else {
            return Ok(None);
        };
        for channel in steps.iter().map(|step| step.channel) {
            if !self.offered_channels.contains(&channel) {
                return Err(IssueError::ChannelNotOffered {
                    channel,
                    offered: self.offered_channels.clone(),
                });
            }
            self.access
                .admit(&message.tenant, channel, &request.destination)?;
        }
        Ok(Some(steps))
    }

    /// The destination `message` sends to, and its state (empty if it has none yet).
    fn destination_of(
        &self,
        message: &IssueOtp,
    ) -> Result<(DestinationKey, DestinationState), StoreError> {
        let key = message.destination_key();
        let state = self.store.destination(&key)?.unwrap_or_default();
        Ok((key, state))
    }

    /// What may stop a request before its destination's state is read: a channel no
    /// provider is routed for, an unknown template, the fraud guard, the rate limits (HTTP
    /// only), a disconnected broker. Returns the fraud guard's target, to count the send once
    /// it is written.
    fn screen(&mut self, message: &IssueOtp, now: Timestamp) -> Result<Option<Target>, IssueError> {
        let request = &message.request;
        if !self.offered_channels.contains(&request.channel) {
            return Err(IssueError::ChannelNotOffered {
                channel: request.channel,
                offered: self.offered_channels.clone(),
            });
        }
        if !self.known_templates.contains(&request.template) {
            return Err(IssueError::UnknownTemplate(request.template.clone()));
        }
        let fraud_target = self
            .fraud
            .screen(request.channel, &request.destination, now)
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
        self.bus
            .ready()
            .map_err(|error| IssueError::Unavailable(error.to_string()))?;
        Ok(fraud_target)
    }

    /// The verification a send writes and the code it sends: the pending one with its kept
    /// code (a resend, when the tenant's resends keep the code) or a new code, or a new one
    /// in the destination's `slot`. Only the code's HMAC is kept, and the code itself only
    /// sealed, while resends may need it.
    fn verification_for(
        &self,
        plan: &SendPlan,
        pending: Option<Verification>,
        message: &IssueOtp,
        keeps_code: bool,
        slot: u32,
        now: Timestamp,
    ) -> (Verification, OtpCode) {
        let request = &message.request;
        let mut verification = match (plan, pending) {
            (SendPlan::Resend(_), Some(existing)) => {
                let keeps_this_code = keeps_code && policy::may_keep_code(&existing, request);
                if let Some(kept) = keeps_this_code.then(|| self.kept_code(&existing)).flatten() {
                    return (policy::resend_same_code(&existing, request, now), kept);
                }
                let code = OtpCode::generate(request.code_length);
                let hash = self.secrets.hasher.hash(existing.id.as_str(), &code);
                (policy::resend(&existing, request, hash, now), code)
            }
            _ => {
                let code = OtpCode::generate(request.code_length);
                let id = VerificationId::generate_in(slot, now);
                let hash = self.secrets.hasher.hash(id.as_str(), &code);
                let fresh =
                    policy::new_verification(id, &message.tenant, request, hash, &self.limits, now);
                (fresh, code)
            }
        };
        if keeps_code {
            let (record, code) = &mut verification;
            record.kept_code = Some(
                self.secrets
                    .sealer
                    .seal_bound(&record.kept_code_binding(), code),
            );
        }
        verification
    }

    /// The code `verification` keeps for its resends, if it keeps one that opens.
    fn kept_code(&self, verification: &Verification) -> Option<OtpCode> {
        let sealed = verification.kept_code.as_ref()?;
        match self
            .secrets
            .sealer
            .open_bound(&verification.kept_code_binding(), sealed)
        {
            Ok(code) => Some(code),
            Err(error) => {
                tracing::warn!(%error, verification = %verification.id, "A kept code did not open (was the sealing key changed?); the resend sends a new code.");
                None
            }
        }
    }

    /// Lists, adds or removes blocklist entries on behalf of tenant `by` (durable with the
    /// next flush).
    pub fn edit_blocklist(
        &mut self,
        by: &str,
        action: BlocklistAction,
        now: Timestamp,
    ) -> Result<BlocklistAnswer, AdminError> {
        self.access.blocklist(by, action, now)
    }

    /// Lifts the fraud block of `prefix` on behalf of admin tenant `by` (durable with the next
    /// flush).
    pub fn lift_fraud_block(
        &mut self,
        by: &str,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Block, AdminError> {
        self.access.require_admin(by)?;
        self.fraud
            .lift(prefix, by, now)?
            .ok_or_else(|| AdminError::NoFraudBlock(prefix.to_owned()))
    }

    /// Resolves once every write made so far is on disk.
    pub fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.store.flush()
    }

    /// The answer to a decided issue, once it is durable and its job handed on. A job that
    /// cannot be handed on is taken back out, so nothing goes out for a request answered
    /// "unavailable". Runs outside the one-at-a-time order, so the next issue need not wait.
    pub fn complete(
        &self,
        decided: Result<Decided, IssueError>,
    ) -> BoxFuture<'static, Result<Issued, IssueError>> {
        let flushed = self.store.flush();
        let jobs = Arc::clone(&self.bus);
        let store = Arc::clone(&self.store);
        let handed_over = Arc::clone(&self.handed_over);
        let webhooks = self.webhooks.clone();
        Box::pin(async move {
            let decided = decided?;
            flushed.await?;
            match decided {
                // The first attempt's job may never have reached the broker (its answer was
                // lost with the connection), or reached it through another owner: it goes
                // again, unless this node handed it on lately or is handing it on now (it
                // is on its way); a send already recorded is not repeated.
                Decided::Replay {
                    receipt,
                    undelivered,
                } => {
                    if let Some(job) = undelivered {
                        handed_over
                            .hand_on(&job.job_id, publishing(&jobs, &job))
                            .await
                            .map_err(|error| IssueError::Unavailable(error.to_string()))?;
                    }
                    Ok(Issued {
                        receipt,
                        replayed: true,
                    })
                }
                Decided::Issued {
                    receipt,
                    job,
                    idempotency,
                    step,
                } => {
                    // Before the job: the tenant hears of the verification before its send.
                    if let Some(webhooks) = &webhooks {
                        webhooks.created(&job.tenant, &receipt).await;
                    }
                    let handed_on = handed_over.hand_on(&job.job_id, publishing(&jobs, &job));
                    match handed_on.await {
                        Ok(()) => Ok(Issued {
                            receipt,
                            replayed: false,
                        }),
                        Err(error) => {
                            if step {
                                // The earlier steps' code still works: the step is only
                                // taken back, and offered again unless the broker refused it.
                                let now = Timestamp::now();
                                let not_handed_on = match error {
                                    PublishError::Refused(_) => NotHandedOn::Refused(now),
                                    _ => NotHandedOn::Retry(now.plus(STEP_RETRY)),
                                };
                                store.finish_job(&job, &|verification| {
                                    policy::take_back_step(
                                        verification,
                                        job.send_seq,
                                        not_handed_on,
                                    )
                                })?;
                            } else {
                                store.abandon_issue(&job, idempotency.as_ref())?;
                            }
                            store.flush().await?;
                            Err(IssueError::Unavailable(error.to_string()))
                        }
                    }
                }
            }
        })
    }

    /// The job of verification `id`'s current send, if it is still pending and unsent.
    fn undelivered_job(&self, id: &VerificationId) -> Result<Option<DeliveryJob>, IssueError> {
        let Some(verification) = self.store.verification(id)? else {
            return Ok(None);
        };
        if verification.status != Status::Pending || verification.delivery != DeliveryState::Queued
        {
            return Ok(None);
        }
        Ok(self
            .store
            .outbox_job(&JobId::new(id, verification.send_seq))?)
    }

    fn job_for(
        &self,
        verification: &Verification,
        request: &IssueRequest,
        code: &OtpCode,
        now: Timestamp,
    ) -> DeliveryJob {
        let region = self.regions.region_for(&request.destination);
        DeliveryJob::for_send(
            verification,
            region,
            |job_id| self.secrets.sealer.seal(job_id, code),
            now,
        )
    }
}

/// The publish of `job` to `jobs`, to run when it is handed on: the job is copied for it
/// only then, not when it was handed on lately or is being handed on now.
fn publishing<'a>(
    jobs: &'a Arc<dyn JobQueue>,
    job: &'a DeliveryJob,
) -> impl FnOnce() -> BoxFuture<'static, Result<(), PublishError>> + 'a {
    move || {
        let (jobs, job) = (Arc::clone(jobs), job.clone());
        Box::pin(async move { jobs.publish_job(&job).await })
    }
}

/// How long after a step's message could not be handed on it is offered again.
const STEP_RETRY: Duration = Duration::from_secs(5);

/// What the actor decided, before the flush.
pub enum Decided {
    /// An idempotent retry: the first answer, and the first attempt's job if its send has
    /// not happened yet.
    Replay {
        receipt: IssueReceipt,
        undelivered: Option<Box<DeliveryJob>>,
    },
    Issued {
        receipt: IssueReceipt,
        job: Box<DeliveryJob>,
        idempotency: Option<IdempotencyKey>,
        /// Whether it is a workflow's step.
        step: bool,
    },
}
