//! Broker mode as a cluster: the state is split into `cluster.partitions` partitions, and
//! the broker makes exactly one node the owner of each (a single-active-consumer queue per
//! partition). This module holds what does not touch the broker: the settings, the
//! partition count every node must agree on, this node's table of the partitions it owns,
//! and the views `GET /v1/cluster` answers with. The broker side is `bus::amqp::cluster`.

pub mod changelog;
pub mod command;
pub mod counters;
pub mod gateway;
pub mod lasting;
pub mod owner;
pub mod ownership;
pub mod scoped;
pub mod settings;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use gateway::{Forwarder, Gateway};
pub use owner::{Executor, Owner};
pub use ownership::Ownership;
pub use settings::ClusterSettings;

/// The partition of `partitions` a destination's slot belongs to.
pub fn partition_of(slot: u32, partitions: u16) -> u16 {
    (slot % u32::from(partitions.max(1))) as u16
}

/// The partition count a cluster was started with, as recorded in the broker by its first
/// node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub partitions: u16,
    /// The node that recorded it, and when (RFC 3339), for the operator's benefit.
    pub recorded_by: String,
    pub recorded_at: String,
}

/// Why a node may not join the cluster on its broker namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cluster.partitions is {configured} on this node, but the cluster on namespace '{namespace}' \
     was started with {recorded} partitions (recorded by node {recorded_by} at {recorded_at}); \
     the count is fixed for the life of a cluster: set OTPD__CLUSTER__PARTITIONS={recorded}, \
     or start a new cluster under another amqp.namespace"
)]
pub struct PartitionMismatch {
    pub namespace: String,
    pub configured: u16,
    pub recorded: u16,
    pub recorded_by: String,
    pub recorded_at: String,
}

/// Whether a node configured with `configured` partitions may join the cluster `record`
/// describes.
pub fn agree(
    namespace: &str,
    configured: u16,
    record: &ClusterRecord,
) -> Result<(), PartitionMismatch> {
    if record.partitions == configured {
        return Ok(());
    }
    Err(PartitionMismatch {
        namespace: namespace.to_owned(),
        configured,
        recorded: record.partitions,
        recorded_by: record.recorded_by.clone(),
        recorded_at: record.recorded_at.clone(),
    })
}

/// What the owner of a partition says of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerReport {
    pub partition: u16,
    pub node: String,
    /// When this node became the partition's owner (RFC 3339).
    pub owner_since: String,
    /// The owner's changelog lag, in records (absent from an older node).
    #[serde(default)]
    pub node_lag: Option<u64>,
}

/// One partition as `GET /v1/cluster` shows it; `owner` is `None` when no node answered for
/// it in time (no node consumes its queue, or its owner just died).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartitionView {
    pub partition: u16,
    pub owner: Option<String>,
    pub owner_since: Option<String>,
}

/// A node that owns partitions, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node: String,
    /// How many partitions it owns.
    pub partitions: u16,
    /// Records appended to the changelogs of the partitions it follows (the others') that
    /// it has not applied yet, measured every few seconds; `None` if it did not say.
    pub changelog_lag: Option<u64>,
}

/// The cluster as seen from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    pub partitions: Vec<PartitionView>,
    /// The nodes that own partitions, by name.
    pub nodes: Vec<NodeView>,
}

impl ClusterView {
    /// Lays the owners' reports over every partition in order.
    pub fn assemble(node: &str, partitions: u16, reports: Vec<OwnerReport>) -> Self {
        let mut views: Vec<PartitionView> = (0..partitions)
            .map(|partition| PartitionView {
                partition,
                owner: None,
                owner_since: None,
            })
            .collect();
        let mut nodes: BTreeMap<String, NodeView> = BTreeMap::new();
        for report in reports {
            let Some(view) = views.get_mut(usize::from(report.partition)) else {
                continue;
            };
            let owner = nodes
                .entry(report.node.clone())
                .or_insert_with(|| NodeView {
                    node: report.node.clone(),
                    partitions: 0,
                    changelog_lag: None,
                });
            owner.partitions += 1;
            owner.changelog_lag = owner.changelog_lag.max(report.node_lag);
            view.owner = Some(report.node);
            view.owner_since = Some(report.owner_since);
        }
        ClusterView {
            node: node.to_owned(),
            partitions: views,
            nodes: nodes.into_values().collect(),
        }
    }
}

/// Why the cluster could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterUnavailable {
    #[error("the broker is not connected")]
    Disconnected,
    #[error("this node is still starting")]
    Starting,
    #[error("the partition is changing hands")]
    Moving,
    #[error("the partition's owner did not answer within {0} ms")]
    Timeout(u64),
    #[error("the broker failed: {0}")]
    Broker(String),
    #[error("{}", crate::telemetry::platform::BLOCKED)]
    Blocked,
}

impl ClusterUnavailable {
    /// Whether asking again in a moment may be answered: the owner died or the partition
    /// is moving, and the broker hands it to another node within a tick.
    pub fn is_passing(&self) -> bool {
        matches!(
            self,
            ClusterUnavailable::Timeout(_) | ClusterUnavailable::Moving
        )
    }
}

/// The cluster as the HTTP API can see it.
#[async_trait]
pub trait ClusterStatus: Send + Sync {
    /// Asks every partition's owner, bounded in time.
    async fn view(&self) -> Result<ClusterView, ClusterUnavailable>;

    /// Whether this node has joined (connected, agreed on the partition count) and caught
    /// up on every partition it owns.
    fn is_ready(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partitions: u16) -> ClusterRecord {
        ClusterRecord {
            partitions,
            recorded_by: "node-a".into(),
            recorded_at: "2026-12-02T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_same_count_agrees() {
        assert_eq!(agree("otp", 32, &record(32)), Ok(()));
    }

    #[test]
    fn a_mismatch_names_both_counts_and_the_way_out() {
        let message = agree("otp", 16, &record(32)).unwrap_err().to_string();
        assert!(message.contains("cluster.partitions is 16"), "{message}");
        assert!(message.contains("started with 32 partitions"), "{message}");
        assert!(
            message.contains("OTPD__CLUSTER__PARTITIONS=32"),
            "{message}"
        );
        assert!(message.contains("node-a"), "{message}");
    }

    #[test]
    fn the_view_lists_every_partition_and_each_owning_node_with_its_lag() {
        let view = ClusterView::assemble(
            "n1",
            3,
            vec![
                OwnerReport {
                    partition: 2,
                    node: "n2".into(),
                    owner_since: "t".into(),
                    node_lag: Some(7),
                },
                OwnerReport {
                    partition: 0,
                    node: "n2".into(),
                    owner_since: "t".into(),
                    node_lag: Some(9),
                },
                // A report for a partition the cluster does not have is ignored.
                OwnerReport {
                    partition: 9,
                    node: "n3".into(),
                    owner_since: "t".into(),
                    node_lag: None,
                },
            ],
        );
        let owners: Vec<_> = view.partitions.iter().map(|p| p.owner.clone()).collect();
        assert_eq!(owners, vec![Some("n2".into()), None, Some("n2".into())]);
        assert_eq!(
            view.nodes,
            vec![NodeView {
                node: "n2".into(),
                partitions: 2,
                changelog_lag: Some(9),
            }]
        );
    }
}
