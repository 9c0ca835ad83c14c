//! The requests consumer: decodes each platform request, issues its code through the
//! gateway (here, or on the partition's owner), tells the platform the outcome (event, reply), then acks. Bad messages go
//! to the dead-letter queue once; nothing is requeued forever (the queue's delivery limit).

use lapin::message::Delivery;

use super::message::{check_reply_to, decode_request, Refusal};
use super::settle::{dead_lettered, requeue, Settle};
use super::{Consumers, Publisher};
use crate::cluster::command::IssueAnswer;
use crate::domain::IssueReceipt;
use crate::issuance::{IdempotencyInput, IssueOtp, RequestSource, Surface};
use crate::telemetry::platform::{ErrorObject, Event};

/// Handles one request; what to tell the broker of it.
pub async fn handle(publisher: &Publisher, consumers: &Consumers, delivery: &Delivery) -> Settle {
    let reply_to = delivery
        .properties
        .reply_to()
        .as_ref()
        .map(|q| q.as_str().to_owned());
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|c| c.as_str().to_owned());
    let topology = &publisher.topology;
    let decoded =
        check_reply_to(reply_to.as_deref(), |queue| topology.is_own(queue)).and_then(|()| {
            decode_request(
                &delivery.data,
                |tenant| consumers.keys.has_tenant(tenant),
                &consumers.defaults,
            )
        });
    let outcome = match decoded {
        Err(refusal) => {
            let queue = &topology.requests_queue;
            let result = publisher
                .dead_letter(&delivery.data, refusal.reason, &refusal.message, queue)
                .await;
            if let Err(settle) = dead_lettered(result, "request").await {
                return settle;
            }
            tracing::info!(reason = refusal.reason, "Request dead-lettered.");
            rejected_event(&refusal)
        }
        Ok(request) => {
            let issued = consumers
                .gateway
                .issue(IssueOtp {
                    tenant: request.tenant.clone(),
                    source: RequestSource::Broker,
                    surface: Surface::Native,
                    request: request.request,
                    idempotency: Some(IdempotencyInput {
                        key: format!("amqp:{}", request.request_id),
                        body_hash: request.body_hash,
                    }),
                })
                .await;
            match issued {
                IssueAnswer::Issued(receipt) => Some(created_event(
                    &receipt,
                    &request.request_id,
                    &request.tenant,
                )),
                IssueAnswer::Refused(refused) if refused.transient => {
                    tracing::warn!(reason = %refused.error.message, "Could not issue now; the request will be delivered again.");
                    return requeue().await;
                }
                IssueAnswer::Refused(refused) => Some(Event::VerificationRejected {
                    request_id: Some(request.request_id),
                    tenant: request.tenant,
                    error: refused.error,
                }),
            }
        }
    };
    if let Some(event) = outcome {
        tell_platform(
            publisher,
            &event,
            reply_to.as_deref(),
            correlation_id.as_deref(),
        )
        .await;
    }
    Settle::Ack
}

fn created_event(receipt: &IssueReceipt, request_id: &str, tenant: &str) -> Event {
    Event::VerificationCreated {
        id: receipt.id.to_string(),
        request_id: Some(request_id.to_owned()),
        tenant: tenant.to_owned(),
        channel: receipt.channel,
        to: receipt.to_masked.clone(),
        expires_at: receipt.expires_at.to_rfc3339(),
        replayed: false,
    }
}

fn rejected_event(refusal: &Refusal) -> Option<Event> {
    let tenant = refusal.tenant.clone()?;
    Some(Event::VerificationRejected {
        request_id: refusal.request_id.clone(),
        tenant,
        error: ErrorObject {
            code: refusal.reason.to_owned(),
            message: refusal.message.clone(),
            retry_after_seconds: None,
            reason: None,
        },
    })
}

/// Publishes the outcome event, and replies when the request asked for it. The outcome is
/// already durable; a lost event is logged, not retried.
async fn tell_platform(
    publisher: &Publisher,
    event: &Event,
    reply_to: Option<&str>,
    correlation_id: Option<&str>,
) {
    let published = publisher.event(event);
    let replied = async {
        match reply_to {
            Some(queue) => publisher.reply(queue, correlation_id, event).await,
            None => Ok(()),
        }
    };
    let (published, replied) = futures_util::join!(published, replied);
    for (what, result) in [("event", published), ("reply", replied)] {
        if let Err(error) = result {
            tracing::warn!(key = %event.routing_key(), what, %error, "Could not tell the platform.");
        }
    }
}
