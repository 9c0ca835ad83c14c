//! Sends what waits in the outbox: each tenant's entries in order, one at a time (a
//! tenant's later events wait behind one that is being retried, so they arrive in the order
//! they happened), signed, until a 2xx; after a failure the entry waits
//! `first_retry_ms` · 2^(attempts − 1), at most `max_retry_ms`, plus up to a fifth at random;
//! after `retry_for_seconds` it is dropped with a warning. Expiry probes turn into
//! `verification.expired` when their verification is still pending at its expiry.

use rand::Rng;
use secrecy::ExposeSecret;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::event;
use super::outbox::{Entry, Kind, Outbox};
use super::settings::{WebhookSettings, WebhookTargets};
use super::signature;
use crate::domain::{Status, Timestamp};
use crate::store::{Store, StoreError};

/// How many entries one pass looks at.
const PASS: usize = 1_000;
/// The longest a pass waits for the next due entry (a new one wakes it at once).
const IDLE: Duration = Duration::from_secs(1);

pub fn spawn(
    outbox: Arc<Outbox>,
    targets: WebhookTargets,
    settings: WebhookSettings,
    store: Arc<dyn Store>,
    wake: Arc<tokio::sync::Notify>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .build()
        .expect("an HTTP client builds");
    let dispatcher = Dispatcher {
        outbox,
        targets,
        settings,
        store,
        client,
    };
    tokio::spawn(async move {
        loop {
            let wait = match dispatcher.pass().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "The webhook outbox could not be read; trying again.");
                    IDLE
                }
            };
            let _ = tokio::time::timeout(wait, wake.notified()).await;
        }
    });
}

struct Dispatcher {
    outbox: Arc<Outbox>,
    targets: WebhookTargets,
    settings: WebhookSettings,
    store: Arc<dyn Store>,
    client: reqwest::Client,
}

impl Dispatcher {
    /// Settles every due probe and sends or settles every due event once; returns how long
    /// until the next event is due.
    async fn pass(&self) -> Result<Duration, StoreError> {
        for (key, probe) in self.outbox.due_probes(Timestamp::now(), PASS)? {
            if let Kind::ExpiryProbe { verification } = &probe.kind {
                self.probe(&probe, verification).await?;
            }
            self.outbox.remove_probe(&key)?;
        }
        let mut next_due = Timestamp::now().plus(IDLE);
        // Tenants with an earlier event still waiting: their later ones wait too.
        let mut held: HashSet<String> = HashSet::new();
        for (key, entry) in self.outbox.oldest(PASS)? {
            let Kind::Deliver { id, body } = &entry.kind else {
                continue;
            };
            let tenant = &entry.tenant;
            if held.contains(tenant) {
                continue;
            }
            if entry.next_at > Timestamp::now() {
                held.insert(tenant.clone());
                next_due = next_due.min(entry.next_at);
                continue;
            }
            if self.send(tenant, id, body).await {
                self.outbox.remove(key)?;
                continue;
            }
            held.insert(tenant.clone());
            match self.retried(&entry) {
                Some(retry) => {
                    next_due = next_due.min(retry.next_at);
                    self.outbox.replace(key, &retry)?;
                }
                None => {
                    tracing::warn!(
                        tenant,
                        event = id,
                        "A webhook got no 2xx answer for webhooks.retry_for_seconds; dropped."
                    );
                    self.outbox.remove(key)?;
                }
            }
        }
        self.outbox.flush().await?;
        Ok(Timestamp::now()
            .until(next_due)
            .max(Duration::from_millis(10)))
    }

    /// Sends one event; true on a 2xx answer.
    async fn send(&self, tenant: &str, id: &str, body: &str) -> bool {
        let Some(target) = self.targets.get(tenant) else {
            // The tenant's webhook was removed from the settings: nothing to send to.
            return true;
        };
        let unix = Timestamp::now().0 / 1000;
        let signed = signature::sign(
            target.secret.expose_secret().as_bytes(),
            unix,
            body.as_bytes(),
        );
        let answer = self
            .client
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header("Otpd-Signature", signed)
            .header("Otpd-Event-Id", id)
            .body(body.to_owned())
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::debug!(
                    tenant,
                    event = id,
                    status = response.status().as_u16(),
                    "A webhook was refused; retrying later."
                );
                false
            }
            Err(error) => {
                tracing::debug!(tenant, event = id, %error, "A webhook could not be sent; retrying later.");
                false
            }
        }
    }

    /// `entry` after one more failed send, or `None` once it has been tried long enough.
    fn retried(&self, entry: &Entry) -> Option<Entry> {
        let now = Timestamp::now();
        if entry
            .created_at
            .plus(Duration::from_secs(self.settings.retry_for_seconds))
            <= now
        {
            return None;
        }
        let attempts = entry.attempts + 1;
        let doubled = self
            .settings
            .first_retry_ms
            .saturating_mul(1u64 << (attempts - 1).min(30));
        let pause = doubled.min(self.settings.max_retry_ms);
        let jitter = rand::thread_rng().gen_range(0..=pause / 5);
        Some(Entry {
            attempts,
            next_at: now.plus(Duration::from_millis(pause + jitter)),
            ..entry.clone()
        })
    }

    /// At a verification's expiry: `verification.expired` if it is still pending and expired
    /// (in line behind the verification's earlier events), a later probe if a resend moved
    /// its expiry, nothing if it ended otherwise.
    async fn probe(
        &self,
        probe: &Entry,
        verification: &crate::domain::VerificationId,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let next = match self.store.verification(verification)? {
            Some(record) if record.status_at(now) == Status::Expired => {
                event::expired(&record, now)
            }
            Some(record) if record.is_pending(now) => Entry {
                next_at: record.expires_at,
                ..probe.clone()
            },
            _ => return Ok(()),
        };
        self.outbox.push(std::slice::from_ref(&next)).await
    }
}
