//! The transports: delivery jobs and events travel in process (`embedded`) or through
//! RabbitMQ (`amqp`). Both implement the seams delivery and telemetry define
//! (`JobQueue`, `DelayQueue`, `EventSink`).

pub mod amqp;
pub mod embedded;
