//! SenderActor: one per provider lane. Takes jobs from its mailbox, runs as many sends at
//! once as its lane has slots (a full house stops the mailbox, so back-pressure reaches the
//! router), retries transient failures until the code expires, and records each outcome
//! durably.

use actix::prelude::*;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

use super::breaker::Permit;
use super::health::NotNow;
use super::lane::{Called, Lane};
use super::plan::{disposition, view_trails, Disposition};
use super::protocol::{Deliver, DeliveryOutcome, DeliveryUnavailable};
use super::recorder::Recorder;
use super::retry::{next_retry, Backoff};
use super::sms_text::{segments, AutofillLines};
use super::templates::Templates;
use super::timeline;
use crate::delivery::quota::actor::CountSend;
use crate::delivery::quota::shared::{self, QuotaTake};
use crate::delivery::settings::CountryOverrides;
use crate::domain::channel::MessageForm;
use crate::domain::counters::Tally;
use crate::domain::{
    AttemptOutcome, Channel, DeliveryAttempt, DeliveryJob, JobId, NextStep, Timestamp,
};
use crate::providers::OutboundMessage;
use crate::secrets::Sealer;
use crate::store::{MessageOwner, Store, StoreError};
use crate::sync::LockUnpoisoned;
use crate::telemetry::events::{JobDropped, MessageSent, SendFailed};
use crate::telemetry::metrics::metrics;

/// How long after a code's expiry a delivery receipt for it is still matched.
const RECEIPT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// What every send needs besides its lane.
pub struct SendContext {
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    pub sealer: Sealer,
    pub templates: Templates,
    pub backoff: Backoff,
    /// Jobs being sent right now, by any sender: a redelivered copy is not sent twice.
    pub in_flight: Mutex<HashSet<JobId>>,
    /// Tries on one provider before failing over.
    pub attempts_per_provider: u32,
    /// Sender ID and template each country requires.
    pub countries: BTreeMap<String, CountryOverrides>,
    /// The lines each tenant's SMS carry so phones fill the code in (none for most).
    pub autofill: BTreeMap<String, AutofillLines>,
    /// How long a job waits for its verification to reach this node's store (a cluster
    /// node's store is a view that may trail the owner by moments); zero: the store is the
    /// truth, and a verification it lacks is gone.
    pub view_wait: Duration,
    /// Where a capped provider's messages are counted (for the whole cluster).
    pub tally: Arc<dyn Tally>,
}

pub struct SenderActor {
    lane: Arc<Lane>,
    context: Arc<SendContext>,
    router: Recipient<Deliver>,
    quota: Recipient<CountSend>,
    mailbox_capacity: usize,
}

/// How a sender's work on a job ended.
enum Ending {
    /// The outcome is recorded.
    Done,
    /// This provider could not deliver it: the router picks another.
    Failover,
}

impl SenderActor {
    pub fn new(
        lane: Lane,
        context: Arc<SendContext>,
        router: Recipient<Deliver>,
        quota: Recipient<CountSend>,
        mailbox_capacity: usize,
    ) -> Self {
        SenderActor {
            lane: Arc::new(lane),
            context,
            router,
            quota,
            mailbox_capacity,
        }
    }

    fn start_send(&self, message: Deliver, slot: OwnedSemaphorePermit) {
        let Deliver {
            job,
            done,
            mut tried,
            permit,
            skipped,
        } = message;
        let fresh = self
            .context
            .in_flight
            .lock_unpoisoned()
            .insert(job.job_id.clone());
        if !fresh {
            if let Some(permit) = permit {
                self.lane.give_back(permit, Timestamp::now());
            }
            Deliver::finish(done, DeliveryOutcome::AlreadyInFlight);
            return;
        }
        let lane = Arc::clone(&self.lane);
        let context = Arc::clone(&self.context);
        let router = self.router.clone();
        let quota = self.quota.clone();
        actix_rt::spawn(async move {
            // Boxed: the send's future runs to kilobytes (about 3), and a task copies the
            // one it is given more than once.
            let ending = Box::pin(deliver(&context, &lane, &quota, &job, permit, &skipped)).await;
            context.in_flight.lock_unpoisoned().remove(&job.job_id);
            drop(slot);
            match ending {
                Ok(Ending::Done) => Deliver::finish(done, DeliveryOutcome::Recorded),
                Ok(Ending::Failover) => {
                    tried.push(lane.id().to_owned());
                    let again = Deliver {
                        job,
                        done,
                        tried,
                        permit: None,
                        skipped,
                    };
                    if let Err(error) = router.send(again).await {
                        tracing::error!(%error, "The router stopped; the job stays in the outbox.");
                    }
                }
                Err(error) => {
                    tracing::error!(
                        provider = lane.id(),
                        job = %job.job_id,
                        %error,
                        "Could not record a delivery; the job will be delivered again."
                    );
                    Deliver::finish(done, DeliveryOutcome::NotRecorded(error.to_string()));
                }
            }
        });
    }
}

impl Actor for SenderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
    }
}

impl Handler<Deliver> for SenderActor {
    type Result = Result<(), DeliveryUnavailable>;

    fn handle(&mut self, message: Deliver, ctx: &mut Self::Context) -> Self::Result {
        match self.lane.try_slot() {
            Some(slot) => self.start_send(message, slot),
            None => {
                let lane = Arc::clone(&self.lane);
                let wait_for_slot =
                    async move { lane.slot().await }
                        .into_actor(self)
                        .map(move |slot, actor, _| match slot {
                            Some(slot) => actor.start_send(message, slot),
                            None => Deliver::finish(
                                message.done,
                                DeliveryOutcome::NotRecorded("the sender stopped".into()),
                            ),
                        });
                ctx.wait(wait_for_slot);
            }
        }
        Ok(())
    }
}

/// Sends one job through `lane` — retrying transient failures while that can still
/// beat the code's expiry, up to `attempts_per_provider` tries — and records the outcome,
/// with the timeline entries of the providers `skipped` before this one, or hands it back
/// for another provider. An error means the outcome could not be recorded.
async fn deliver(
    context: &SendContext,
    lane: &Lane,
    quota: &Recipient<CountSend>,
    job: &DeliveryJob,
    permit: Option<Permit>,
    skipped: &[DeliveryAttempt],
) -> Result<Ending, StoreError> {
    let with_skipped = |last: DeliveryAttempt| [skipped, &[last]].concat();
    let id = lane.id();
    let mut permit = match permit {
        Some(permit) => permit,
        None => match enter(context, lane, job).await {
            Some(permit) => permit,
            None => return Ok(Ending::Failover),
        },
    };
    let mut attempt = 0;
    loop {
        let verification = current_verification(context, job).await?;
        let now = Timestamp::now();
        let plan = if !context.view_wait.is_zero() && view_trails(verification.as_ref(), job) {
            // This node's view has not seen the job's send yet (a new verification, or a
            // resend the owner wrote a moment ago): the job carries all it needs.
            disposition(job, None, now).or_send_unseen(job, now)
        } else {
            disposition(job, verification.as_ref(), now)
        };
        if plan != Disposition::Send {
            lane.give_back(permit, now);
            JobDropped {
                provider: id,
                channel: job.channel,
                reason: plan.as_str(),
            }
            .emit();
            if plan == Disposition::Expired {
                let why = "the code expired before it could be sent";
                let attempt = timeline::expired(job, Some(id), now, why);
                context
                    .recorder
                    .failed(job, Some(id), why, with_skipped(attempt))
                    .await?;
                return Ok(Ending::Done);
            }
            context.recorder.outcome(job, None, None, now).await?;
            return Ok(Ending::Done);
        }
        let sent = match compose(context, job, now) {
            Ok(message) => message,
            Err(reason) => {
                lane.give_back(permit, now);
                report_failure(id, job, &reason, false);
                let attempt = timeline::unsendable(job, id, now, &reason);
                context
                    .recorder
                    .failed(job, Some(id), &reason, with_skipped(attempt))
                    .await?;
                return Ok(Ending::Done);
            }
        };
        let taken = match shared::take(context.tally.as_ref(), lane).await {
            Ok(QuotaTake::UsedUp) => {
                lane.give_back(permit, now);
                let used_up = NotNow {
                    why: AttemptOutcome::QuotaExhausted,
                    until: None,
                };
                let attempt = timeline::refused(job, id, used_up, now, NextStep::Failover);
                context.recorder.note(job, vec![attempt]);
                return Ok(Ending::Failover);
            }
            Ok(taken) => taken,
            Err(error) => {
                lane.give_back(permit, now);
                return Err(StoreError::Io(error.to_string()));
            }
        };
        let Called {
            result,
            took,
            finished,
        } = lane.call(permit, &sent).await;
        if let (Err(_), QuotaTake::Taken(taken_at)) = (&result, taken) {
            shared::give_back(context.tally.as_ref(), lane, taken_at).await;
        }
        let error = match result {
            Ok(receipt) => {
                let message = receipt
                    .provider_message_id
                    .map(|provider_message_id| MessageOwner {
                        provider_message_id,
                        verification_id: job.verification_id.clone(),
                        send_seq: job.send_seq,
                        purge_at: job.expires_at.plus(RECEIPT_WINDOW),
                    });
                MessageSent {
                    provider: id,
                    channel: job.channel,
                    call_took: took,
                    since_issue: job.created_at.until(finished),
                }
                .emit();
                if taken == QuotaTake::Uncapped {
                    quota.do_send(CountSend {
                        provider: id.to_owned(),
                    });
                }
                if job.channel == Channel::Sms {
                    let taken = segments(&sent.body);
                    metrics()
                        .sms_segments
                        .with_label_values(&[id, taken.encoding.as_str()])
                        .observe(taken.count as f64);
                }
                let attempt = timeline::called(job, id, finished, took, None, NextStep::Done);
                context
                    .recorder
                    .sent(job, id, finished, message, with_skipped(attempt))
                    .await?;
                return Ok(Ending::Done);
            }
            Err(error) => error,
        };
        attempt += 1;
        // The provider asked for a pause (its lane has recorded it), or it may have taken
        // the message without answering: another provider takes the job now rather than
        // this one after the pause, or a second time.
        let fail_over_now = error.retry_after().is_some() || error.may_have_been_taken();
        let jitter = rand::thread_rng().gen::<f64>();
        let retry = (!fail_over_now && attempt < context.attempts_per_provider)
            .then(|| {
                next_retry(
                    &context.backoff,
                    attempt - 1,
                    &error,
                    jitter,
                    finished,
                    job.expires_at,
                )
            })
            .flatten();
        report_failure(id, job, &error.to_string(), retry.is_some());
        let next = retry.map_or(NextStep::Failover, |wait| NextStep::Retry {
            after_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        });
        let tried = timeline::called(job, id, finished, took, Some(&error), next);
        context.recorder.note(job, vec![tried]);
        let Some(wait) = retry else {
            return Ok(Ending::Failover);
        };
        tokio::time::sleep(wait).await;
        permit = match enter(context, lane, job).await {
            Some(permit) => permit,
            None => return Ok(Ending::Failover),
        };
    }
}

/// Leave to call `lane`'s provider now; when refused, the refusal goes on the job's timeline
/// and the job to the next provider.
async fn enter(context: &SendContext, lane: &Lane, job: &DeliveryJob) -> Option<Permit> {
    let now = Timestamp::now();
    match lane.enter(now) {
        Ok(permit) => Some(permit),
        Err(not_now) => {
            let attempt = timeline::refused(job, lane.id(), not_now, now, NextStep::Failover);
            context.recorder.note(job, vec![attempt]);
            None
        }
    }
}

/// The job's verification as this node's store has it, waiting up to `view_wait` for the
/// job's send to arrive there.
async fn current_verification(
    context: &SendContext,
    job: &DeliveryJob,
) -> Result<Option<crate::domain::Verification>, StoreError> {
    let deadline = tokio::time::Instant::now() + context.view_wait;
    loop {
        let found = context.store.verification(&job.verification_id)?;
        if !view_trails(found.as_ref(), job) || tokio::time::Instant::now() >= deadline {
            return Ok(found);
        }
        tokio::time::sleep(VIEW_POLL).await;
    }
}

/// Pause between two looks for a verification not yet in this node's view.
const VIEW_POLL: Duration = Duration::from_millis(20);

/// Opens the sealed code and renders the message; an error says why it cannot be sent.
fn compose(
    context: &SendContext,
    job: &DeliveryJob,
    now: Timestamp,
) -> Result<OutboundMessage, String> {
    let code = context
        .sealer
        .open(&job.job_id, &job.sealed_code)
        .map_err(|error| error.to_string())?;
    let lifetime = job
        .created_at
        .until(job.expires_at)
        .max(now.until(job.expires_at));
    let minutes = lifetime.as_secs().div_ceil(60).max(1);
    let overrides = job
        .country
        .as_ref()
        .and_then(|country| context.countries.get(country));
    let template = overrides
        .and_then(|o| o.template.as_deref())
        .unwrap_or(&job.template);
    let form = job.channel.message_form();
    let body = match form {
        MessageForm::CodeAlone => code.reveal().to_owned(),
        MessageForm::Text | MessageForm::Spoken => context
            .templates
            .render(template, job.locale.as_deref(), &code, form, minutes)
            .ok_or_else(|| format!("template '{template}' is no longer configured"))?,
    };
    let body = match (job.channel, context.autofill.get(&job.tenant)) {
        (Channel::Sms, Some(lines)) => lines.apply(&body, code.reveal()),
        _ => body,
    };
    Ok(OutboundMessage {
        job_id: job.job_id.clone(),
        verification_id: job.verification_id.clone(),
        tenant: job.tenant.clone(),
        channel: job.channel,
        to: job.to.clone(),
        body,
        locale: job.locale.clone(),
        code,
        sender_id: overrides.and_then(|o| o.sender_id.clone()),
        registration: overrides
            .filter(|_| job.channel == Channel::Sms)
            .and_then(|o| o.registration(template)),
    })
}

fn report_failure(provider: &str, job: &DeliveryJob, reason: &str, will_retry: bool) {
    SendFailed {
        provider,
        channel: job.channel,
        error: reason,
        will_retry,
    }
    .emit();
}
