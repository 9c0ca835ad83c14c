//! Events published in bursts. An event published alone wakes the connection's I/O thread,
//! goes out in a write of its own, and has its confirm wake the task that waits for it. The
//! pump gathers the events told within `GATHER` of the first, publishes them together (the
//! I/O thread writes them out at once, and the broker confirms them in runs), and waits for
//! their confirms in one task. A caller that waits learns its event's outcome; an event
//! handed over without waiting has a loss logged by the pump, as `tell` logs one.

use futures_util::future::join_all;
use lapin::Channel;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{confirmed, event_properties, send};
use crate::telemetry::platform::{Event, PublishError};

/// How long the pump waits, after the first event of a burst, for others to join it.
const GATHER: Duration = Duration::from_millis(1);
/// The most events one burst publishes.
const BURST_MOST: usize = 512;
/// The most events waiting for a burst; past this an event is refused, not queued.
const WAITING_MOST: usize = 65_536;

/// Where the pump takes the channel each burst is published on: the connection's
/// confirm-mode channel, or why there is none (disconnected, publishes blocked).
pub type ChannelSource = Box<dyn Fn() -> Result<Arc<Channel>, PublishError> + Send + Sync>;

/// A handle to the pump; cheap to clone.
#[derive(Clone)]
pub struct EventPump {
    waiting: mpsc::Sender<Told>,
    timeout: Duration,
}

/// An event waiting for its burst.
struct Told {
    key: String,
    body: Vec<u8>,
    /// Whom to tell the outcome; `None`: nobody waits, a loss is logged.
    outcome: Option<oneshot::Sender<Result<(), PublishError>>>,
}

impl Told {
    fn of(event: &Event, outcome: Option<oneshot::Sender<Result<(), PublishError>>>) -> Self {
        Told {
            key: event.routing_key(),
            body: event.to_json(),
            outcome,
        }
    }

    fn settle(self, result: Result<(), PublishError>) {
        match self.outcome {
            Some(waiting) => {
                let _ = waiting.send(result);
            }
            None => {
                if let Err(error) = result {
                    tracing::warn!(key = %self.key, %error, "Could not publish an event.");
                }
            }
        }
    }
}

impl EventPump {
    /// Starts the pump, publishing to `exchange` on the channel `source` gives; a burst's
    /// publishes and confirms take at most `timeout`.
    pub fn start(source: ChannelSource, exchange: String, timeout: Duration) -> Self {
        let (waiting, told) = mpsc::channel(WAITING_MOST);
        tokio::spawn(pump(told, source, exchange, timeout));
        EventPump { waiting, timeout }
    }

    /// Publishes `event` in the next burst and waits for the broker's confirm.
    pub async fn publish(&self, event: &Event) -> Result<(), PublishError> {
        let (outcome, confirmed) = oneshot::channel();
        self.waiting
            .try_send(Told::of(event, Some(outcome)))
            .map_err(|error| refused(&error))?;
        // Waiting for the burst before it, then its own: a burst takes at most `timeout`.
        match tokio::time::timeout(self.timeout * 2, confirmed).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(PublishError::Timeout(self.timeout.as_millis() as u64 * 2)),
        }
    }

    /// Publishes `event` in the next burst without waiting; a loss is logged.
    pub fn hand_over(&self, event: &Event) {
        if let Err(error) = self.waiting.try_send(Told::of(event, None)) {
            let why = refused(&error);
            error.into_inner().settle(Err(why));
        }
    }
}

fn refused(error: &mpsc::error::TrySendError<Told>) -> PublishError {
    match error {
        mpsc::error::TrySendError::Full(_) => PublishError::Refused(format!(
            "{WAITING_MOST} events are waiting to be published already"
        )),
        mpsc::error::TrySendError::Closed(_) => stopped(),
    }
}

fn stopped() -> PublishError {
    PublishError::Stopped("the event publisher stopped".into())
}

/// Publishes what is told, a burst at a time, until every handle is dropped.
async fn pump(
    mut told: mpsc::Receiver<Told>,
    source: ChannelSource,
    exchange: String,
    timeout: Duration,
) {
    while let Some(burst) = next_burst(&mut told).await {
        match source() {
            Ok(channel) => publish_burst(&channel, &exchange, burst, timeout).await,
            Err(error) => burst
                .into_iter()
                .for_each(|told| told.settle(Err(error.clone()))),
        }
    }
}

/// The events told within `GATHER` of the first one to come, `BURST_MOST` at most; `None`
/// once every handle is dropped and nothing waits.
async fn next_burst(told: &mut mpsc::Receiver<Told>) -> Option<Vec<Told>> {
    let first = told.recv().await?;
    tokio::time::sleep(GATHER).await;
    let mut burst = vec![first];
    while burst.len() < BURST_MOST {
        match told.try_recv() {
            Ok(next) => burst.push(next),
            Err(_) => break,
        }
    }
    Some(burst)
}

/// Hands every event of `burst` to `channel` at once, then leaves their confirms to a task
/// of their own, so the next burst need not wait for them; all within `timeout`.
async fn publish_burst(channel: &Channel, exchange: &str, burst: Vec<Told>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let timed_out = move || PublishError::Timeout(timeout.as_millis() as u64);
    let sends = join_all(burst.iter().map(|told| {
        send(
            channel,
            exchange,
            &told.key,
            &told.body,
            event_properties(),
            false,
        )
    }));
    let Ok(sent) = tokio::time::timeout_at(deadline, sends).await else {
        let error = timed_out();
        burst
            .into_iter()
            .for_each(|told| told.settle(Err(error.clone())));
        return;
    };
    tokio::spawn(join_all(sent.into_iter().zip(burst).map(
        |(sent, told)| async move {
            let result = match sent {
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(confirmation)) => confirmed(confirmation, &told.key),
                    Ok(Err(error)) => Err(PublishError::Broker(error.to_string())),
                    Err(_) => Err(timed_out()),
                },
                Err(error) => Err(PublishError::Broker(error.to_string())),
            };
            told.settle(result);
        },
    )));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::platform::ErrorObject;

    fn rejected(request: usize) -> Event {
        Event::VerificationRejected {
            request_id: Some(format!("r-{request}")),
            tenant: "acme".into(),
            error: ErrorObject {
                code: "invalid_destination".into(),
                message: "not a phone number".into(),
                retry_after_seconds: None,
                reason: None,
            },
        }
    }

    fn request_ids(burst: &[Told]) -> Vec<String> {
        burst
            .iter()
            .map(|told| {
                let event: serde_json::Value = serde_json::from_slice(&told.body).unwrap();
                event["request_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn events_told_within_the_gathering_go_in_one_burst_in_the_order_told() {
        let (waiting, mut told) = mpsc::channel(WAITING_MOST);
        waiting.try_send(Told::of(&rejected(1), None)).unwrap();
        let burst = tokio::spawn(async move {
            let burst = next_burst(&mut told).await.unwrap();
            (burst, told)
        });
        tokio::task::yield_now().await;
        for request in 2..=4 {
            waiting
                .try_send(Told::of(&rejected(request), None))
                .unwrap();
        }
        tokio::time::sleep(GATHER * 2).await;
        waiting.try_send(Told::of(&rejected(5), None)).unwrap();

        let (burst, mut told) = burst.await.unwrap();
        assert_eq!(request_ids(&burst), ["r-1", "r-2", "r-3", "r-4"]);
        assert_eq!(burst[0].key, "verification.rejected.acme");
        let next = next_burst(&mut told).await.unwrap();
        assert_eq!(request_ids(&next), ["r-5"]);
        drop(waiting);
        assert!(next_burst(&mut told).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_takes_at_most_its_share_and_leaves_the_rest_for_the_next() {
        let (waiting, mut told) = mpsc::channel(WAITING_MOST);
        for request in 0..BURST_MOST + 3 {
            waiting
                .try_send(Told::of(&rejected(request), None))
                .unwrap();
        }
        assert_eq!(next_burst(&mut told).await.unwrap().len(), BURST_MOST);
        assert_eq!(
            request_ids(&next_burst(&mut told).await.unwrap()),
            [
                format!("r-{BURST_MOST}"),
                format!("r-{}", BURST_MOST + 1),
                format!("r-{}", BURST_MOST + 2)
            ]
        );
    }

    #[tokio::test]
    async fn a_waiting_caller_hears_its_events_outcome_and_a_full_queue_refuses_at_once() {
        let (outcome, heard) = oneshot::channel();
        Told::of(&rejected(1), Some(outcome)).settle(Err(PublishError::Blocked));
        assert!(matches!(heard.await, Ok(Err(PublishError::Blocked))));

        let (waiting, _told) = mpsc::channel(1);
        let pump = EventPump {
            waiting,
            timeout: Duration::from_secs(5),
        };
        pump.hand_over(&rejected(1));
        let refused = pump.publish(&rejected(2)).await.unwrap_err();
        assert!(
            matches!(&refused, PublishError::Refused(why) if why.contains("waiting")),
            "{refused}"
        );
    }
}
