//! The transport seam between the actors: delivery jobs and events travel through a `Bus`,
//! in process (`embedded`) or through RabbitMQ (`amqp`).

pub mod amqp;
pub mod embedded;
pub mod events;

use async_trait::async_trait;

use crate::domain::DeliveryJob;
pub use events::Event;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("the broker is not connected")]
    Disconnected,
    #[error("the broker did not answer within {0} ms")]
    Timeout(u64),
    #[error("the broker refused the message: {0}")]
    Refused(String),
    #[error("the broker failed: {0}")]
    Broker(String),
    #[error("delivery is not running: {0}")]
    Stopped(String),
}

/// Where events go: the broker's events exchange, or nowhere in embedded mode.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn publish_event(&self, event: &Event) -> Result<(), BusError>;
}

/// Hands delivery jobs on, durably.
#[async_trait]
pub trait Bus: EventSink {
    /// Embedded: into the router's mailbox. Broker: to the routing exchange, confirmed.
    async fn publish_job(&self, job: &DeliveryJob) -> Result<(), BusError>;

    /// Whether a publish can succeed now (the broker is connected).
    fn is_ready(&self) -> bool;
}
