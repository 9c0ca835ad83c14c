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
    let declarer = Declarer(channel);
    let t = topology;
    declarer
        .exchange(&t.dead_exchange, ExchangeKind::Fanout)
        .await?;
    declarer.queue(&t.dead_queue, FieldTable::default()).await?;
    declarer.bind(&t.dead_queue, &t.dead_exchange, "").await?;

    declarer
        .queue(&t.requests_queue, work_queue_arguments(t))
        .await?;
    declarer
        .exchange(&t.ingress_exchange, ExchangeKind::Fanout)
        .await?;
    declarer
        .bind(&t.requests_queue, &t.ingress_exchange, "")
        .await?;

    declarer
        .exchange(&t.route_exchange, ExchangeKind::Topic)
        .await?;
    for region in &t.region_queues {
        declarer
            .queue(&region.queue, work_queue_arguments(t))
            .await?;
        for pattern in &region.patterns {
            declarer
                .bind(&region.queue, &t.route_exchange, pattern)
                .await?;
        }
    }

    let mut delay_arguments = FieldTable::default();
    delay_arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(t.route_exchange.as_str().into()),
    );
    declarer.queue(&t.delay_queue, delay_arguments).await?;
    declarer
        .exchange(&t.delay_exchange, ExchangeKind::Fanout)
        .await?;
    declarer.bind(&t.delay_queue, &t.delay_exchange, "").await?;

    declarer
        .exchange(&t.guard_exchange, ExchangeKind::Fanout)
        .await?;
    declarer
        .exchange(&t.events_exchange, ExchangeKind::Topic)
        .await
}

/// Durable declarations on one channel.
pub struct Declarer<'a>(&'a Channel);

impl<'a> Declarer<'a> {
    pub fn on(channel: &'a Channel) -> Self {
        Declarer(channel)
    }

    async fn exchange(&self, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
        self.0
            .exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await
    }

    pub async fn queue(&self, name: &str, arguments: FieldTable) -> lapin::Result<()> {
        self.0
            .queue_declare(name.into(), durable_queue(), arguments)
            .await
            .map(|_| ())
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
        self.0
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }
}

/// Deletes everything `declare` made (for tests and the load harness, which use a namespace
/// of their own). Messages in the queues go with them.
pub async fn delete(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    for queue in topology.all_queue_names() {
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
