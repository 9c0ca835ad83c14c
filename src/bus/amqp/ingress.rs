//! The requests consumer: decodes each platform request, issues its code through the
//! IssuanceActor, tells the platform the outcome (event, reply), then acks. Bad messages go
//! to the dead-letter queue once; nothing is requeued forever (the queue's delivery limit).

use lapin::message::Delivery;

use super::message::{decode_request, Refusal};
use super::settle::{dead_lettered, requeue, settle_delivery, Settle};
use super::{Consumers, Publisher};
use crate::domain::time::retry_after_seconds;
use crate::domain::IssueReceipt;
use crate::issuance::{self, IdempotencyInput, IssueError, IssueOtp, RequestSource};
use crate::telemetry::platform::{ErrorObject, Event};

pub async fn handle(publisher: &Publisher, consumers: &Consumers, delivery: Delivery) {
    let settle = process(publisher, consumers, &delivery).await;
    settle_delivery(&delivery, settle, "request").await;
}

async fn process(publisher: &Publisher, consumers: &Consumers, delivery: &Delivery) -> Settle {
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
    let outcome = match decode_request(
        &delivery.data,
        |tenant| consumers.keys.has_tenant(tenant),
        &consumers.defaults,
    ) {
        Err(refusal) => {
            let queue = &publisher.topology.requests_queue;
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
                .issuer
                .send(IssueOtp {
                    tenant: request.tenant.clone(),
                    source: RequestSource::Broker,
                    request: request.request,
                    idempotency: Some(IdempotencyInput {
                        key: format!("amqp:{}", request.request_id),
                        body_hash: request.body_hash,
                    }),
                })
                .await;
            match issued {
                Ok(Ok(receipt)) => Some(created_event(
                    &receipt,
                    &request.request_id,
                    &request.tenant,
                )),
                Ok(Err(IssueError::Store(error))) => {
                    tracing::warn!(%error, "Store unavailable; the request will be delivered again.");
                    return requeue().await;
                }
                Ok(Err(IssueError::Unavailable(reason))) => {
                    tracing::warn!(%reason, "Delivery unavailable; the request will be delivered again.");
                    return requeue().await;
                }
                Ok(Err(error)) => Some(Event::VerificationRejected {
                    request_id: Some(request.request_id),
                    tenant: request.tenant,
                    error: error_object(error.refusal()),
                }),
                Err(error) => {
                    tracing::warn!(%error, "Issuer unavailable; the request will be delivered again.");
                    return requeue().await;
                }
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

fn error_object(refusal: issuance::Refusal) -> ErrorObject {
    ErrorObject {
        code: refusal.code.to_owned(),
        message: refusal.message,
        retry_after_seconds: refusal.retry_after.map(retry_after_seconds),
        reason: refusal.reason.map(str::to_owned),
    }
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
