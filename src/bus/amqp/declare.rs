//! Declares the topology on the broker, idempotently: safe at every (re)connect.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::topology::{QueueKind, Topology};

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Arguments of a work queue: its kind, where rejected messages go, and (quorum) how many
/// deliveries a message gets before it is dead-lettered, so nothing is requeued forever.
fn work_queue_arguments(topology: &Topology) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(topology.dead_exchange.as_str().into()),
    );
    if topology.requests_queue_kind == QueueKind::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongUInt(topology.delivery_limit),
        );
    }
    arguments
}

pub async fn declare(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    let none = FieldTable::default;
    channel
        .exchange_declare(
            topology.dead_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            none(),
        )
        .await?;
    channel
        .queue_declare(topology.dead_queue.as_str().into(), durable_queue(), none())
        .await?;
    channel
        .queue_bind(
            topology.dead_queue.as_str().into(),
            topology.dead_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;

    channel
        .queue_declare(
            topology.requests_queue.as_str().into(),
            durable_queue(),
            work_queue_arguments(topology),
        )
        .await?;
    channel
        .exchange_declare(
            topology.ingress_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            none(),
        )
        .await?;
    channel
        .queue_bind(
            topology.requests_queue.as_str().into(),
            topology.ingress_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;

    channel
        .exchange_declare(
            topology.route_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange(),
            none(),
        )
        .await?;
    for region in &topology.region_queues {
        channel
            .queue_declare(
                region.queue.as_str().into(),
                durable_queue(),
                work_queue_arguments(topology),
            )
            .await?;
        for pattern in &region.patterns {
            channel
                .queue_bind(
                    region.queue.as_str().into(),
                    topology.route_exchange.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    none(),
                )
                .await?;
        }
    }

    let mut delay_arguments = FieldTable::default();
    delay_arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(topology.route_exchange.as_str().into()),
    );
    channel
        .queue_declare(
            topology.delay_queue.as_str().into(),
            durable_queue(),
            delay_arguments,
        )
        .await?;
    channel
        .exchange_declare(
            topology.delay_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            none(),
        )
        .await?;
    channel
        .queue_bind(
            topology.delay_queue.as_str().into(),
            topology.delay_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;

    channel
        .exchange_declare(
            topology.events_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange(),
            none(),
        )
        .await?;
    Ok(())
}

/// Deletes everything `declare` made (for tests and the load harness, which use a namespace
/// of their own). Messages in the queues go with them.
pub async fn delete(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    for queue in topology.queue_names() {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in topology.exchange_names() {
        channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}
