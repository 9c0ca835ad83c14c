//! Broker mode as a cluster: the state is split into `cluster.partitions` partitions, and
//! the broker makes exactly one node the owner of each (a single-active-consumer queue per
//! partition). This module holds what does not touch the broker: the settings, the
//! partition and changelog stream counts every node must agree on, this node's table of
//! the partitions it owns, and the views `GET /v1/cluster` answers with. The broker side is
//! `bus::amqp::cluster`.

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

/// The changelog stream of `streams` a partition's changes are appended to. Partitions
/// share streams, so a flush that touched many partitions is a few appends, not one per
/// partition (the broker's cost is per append, whatever its size).
pub fn stream_of(partition: u16, streams: u16) -> u16 {
    partition % streams.max(1)
}

/// The partitions of `partitions` whose changes go to `stream` of `streams`.
pub fn partitions_of(stream: u16, partitions: u16, streams: u16) -> impl Iterator<Item = u16> {
    (stream..partitions).step_by(usize::from(streams.max(1)))
}

/// The partition and changelog stream counts a cluster was started with, as recorded in the
/// broker by its first node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub partitions: u16,
    /// Absent from the record of a cluster started before partitions shared streams: it
    /// has a stream per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog_streams: Option<u16>,
    /// The node that recorded it, and when (RFC 3339), for the operator's benefit.
    pub recorded_by: String,
    pub recorded_at: String,
}

impl ClusterRecord {
    /// The changelog streams the cluster's partitions share.
    pub fn streams(&self) -> u16 {
        self.changelog_streams.unwrap_or(self.partitions)
    }
}

/// Why a node may not join the cluster on its broker namespace: a count fixed for the
/// cluster's life (`setting`, counting `what`) differs from what its first node recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cluster.{setting} is {configured} on this node, but the cluster on namespace '{namespace}' \
     was started with {recorded} {what} (recorded by node {recorded_by} at {recorded_at}); \
     the count is fixed for the life of a cluster: set OTPD__CLUSTER__{}={recorded}, \
     or start a new cluster under another amqp.namespace with every node on an empty store.dir",
    setting.to_uppercase()
)]
pub struct CountMismatch {
    pub namespace: String,
    pub setting: &'static str,
    pub what: &'static str,
    pub configured: u16,
    pub recorded: u16,
    pub recorded_by: String,
    pub recorded_at: String,
}

/// Whether a node configured with `partitions` sharing `streams` changelog streams may join
/// the cluster `record` describes.
pub fn agree(
    namespace: &str,
    partitions: u16,
    streams: u16,
    record: &ClusterRecord,
) -> Result<(), CountMismatch> {
    let counts = [
        ("partitions", "partitions", partitions, record.partitions),
        (
            "changelog_streams",
            "changelog streams",
            streams,
            record.streams(),
        ),
    ];
    match counts
        .into_iter()
        .find(|(_, _, configured, recorded)| configured != recorded)
    {
        None => Ok(()),
        Some((setting, what, configured, recorded)) => Err(CountMismatch {
            namespace: namespace.to_owned(),
            setting,
            what,
            configured,
            recorded,
            recorded_by: record.recorded_by.clone(),
            recorded_at: record.recorded_at.clone(),
        }),
    }
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
    /// Records appended to the changelog streams it follows (those carrying partitions
    /// other nodes serve) that it has not applied yet, measured every few seconds; `None` if
    /// it did not say.
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

    fn record(partitions: u16, changelog_streams: Option<u16>) -> ClusterRecord {
        ClusterRecord {
            partitions,
            changelog_streams,
            recorded_by: "node-a".into(),
            recorded_at: "2026-12-02T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_same_counts_agree() {
        assert_eq!(agree("otp", 32, 4, &record(32, Some(4))), Ok(()));
    }

    #[test]
    fn a_mismatch_names_both_counts_and_the_way_out() {
        let message = agree("otp", 16, 4, &record(32, Some(4)))
            .unwrap_err()
            .to_string();
        assert!(message.contains("cluster.partitions is 16"), "{message}");
        assert!(message.contains("started with 32 partitions"), "{message}");
        assert!(
            message.contains("OTPD__CLUSTER__PARTITIONS=32"),
            "{message}"
        );
        assert!(message.contains("node-a"), "{message}");

        let message = agree("otp", 32, 2, &record(32, Some(4)))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("cluster.changelog_streams is 2"),
            "{message}"
        );
        assert!(
            message.contains("started with 4 changelog streams"),
            "{message}"
        );
        assert!(
            message.contains("OTPD__CLUSTER__CHANGELOG_STREAMS=4"),
            "{message}"
        );
    }

    #[test]
    fn a_cluster_recorded_before_streams_were_shared_has_one_per_partition() {
        let old: ClusterRecord = serde_json::from_str(
            r#"{"partitions":32,"recorded_by":"node-a","recorded_at":"2026-12-02T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(old.streams(), 32);
        assert_eq!(agree("otp", 32, 32, &old), Ok(()));
        assert!(agree("otp", 32, 4, &old).is_err());
    }

    #[test]
    fn each_stream_carries_every_partition_that_maps_to_it_and_no_other() {
        for (partitions, streams) in [(32, 4), (8, 3), (5, 5), (7, 1)] {
            let mut seen = Vec::new();
            for stream in 0..streams {
                for partition in partitions_of(stream, partitions, streams) {
                    assert_eq!(stream_of(partition, streams), stream);
                    seen.push(partition);
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..partitions).collect::<Vec<_>>());
        }
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
