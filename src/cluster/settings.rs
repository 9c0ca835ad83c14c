//! `[cluster]`: how many partitions the cluster's state is split into and how many
//! changelog streams they share (both fixed for its life), and this node's name. Broker
//! mode only: embedded mode is one node without partitions.

use serde::Deserialize;

/// The most partitions a cluster may have: each is a queue on the broker.
pub const MAX_PARTITIONS: u16 = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Partitions of the cluster's state, 1 to 1024. Fixed for the life of a cluster and
    /// recorded in the broker: a node configured otherwise refuses to start. Default 32.
    pub partitions: u16,
    /// Changelog streams the partitions share, at least 1; more than `partitions` count as
    /// `partitions` (see `streams`). Partition p appends to stream p mod this. Fewer streams
    /// are fewer appends per flush (the broker's cost is per append); more spread the
    /// appends over a clustered broker's nodes. Fixed for the life of a cluster and recorded
    /// like `partitions`. Default 2.
    pub changelog_streams: u16,
    /// This node's name in logs, metrics and `GET /v1/cluster`. Default: the host name and
    /// a random suffix, new at each start.
    pub node_id: Option<String>,
    /// How often each node asks every partition queue who owns it, milliseconds: a node
    /// learns that it became a partition's owner within one tick. Default 500.
    pub tick_ms: u64,
    /// Longest wait for the answer to a request sent on to a partition's owner,
    /// milliseconds; then the caller gets a 503 it may retry. Default 2000.
    pub command_timeout_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            partitions: 32,
            changelog_streams: 2,
            node_id: None,
            tick_ms: 500,
            command_timeout_ms: 2000,
        }
    }
}

impl ClusterSettings {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            problems.push(format!(
                "cluster.partitions is {}; give 1 to {MAX_PARTITIONS} (every node of a cluster the same)",
                self.partitions
            ));
        }
        if self.changelog_streams == 0 {
            problems.push(
                "cluster.changelog_streams is 0; give 1 or more (every node of a cluster the same)"
                    .to_owned(),
            );
        }
        if let Some(id) = &self.node_id {
            if !is_node_id(id) {
                problems.push(format!(
                    "cluster.node_id is '{id}'; use 1 to 64 letters, digits, '-', '_' and '.'"
                ));
            }
        }
        if !(100..=60_000).contains(&self.command_timeout_ms) {
            problems.push(format!(
                "cluster.command_timeout_ms is {}; give 100 to 60000",
                self.command_timeout_ms
            ));
        }
        if !(50..=10_000).contains(&self.tick_ms) {
            problems.push(format!(
                "cluster.tick_ms is {}; give 50 to 10000",
                self.tick_ms
            ));
        }
        problems
    }

    /// The changelog streams the partitions share: `changelog_streams`, at most one per
    /// partition (a cluster of one partition has one stream whatever the default says).
    pub fn streams(&self) -> u16 {
        self.changelog_streams.clamp(1, self.partitions.max(1))
    }

    /// The same partitions with a changelog stream each: every stream a cluster of them may
    /// have, whatever its nodes share (to delete a namespace's topology whole).
    pub fn with_every_stream(&self) -> ClusterSettings {
        ClusterSettings {
            changelog_streams: self.partitions,
            ..self.clone()
        }
    }

    /// This node's id: the configured one, or the host name with a random suffix.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(default_node_id)
    }
}

fn is_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn default_node_id() -> String {
    let host: String = hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "otpd".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(48)
        .collect();
    let host = if host.is_empty() { "otpd".into() } else { host };
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(ClusterSettings::default().validate().is_empty());
    }

    #[test]
    fn partitions_and_ticks_out_of_range_are_refused_with_the_value() {
        let settings = ClusterSettings {
            partitions: 0,
            changelog_streams: 0,
            tick_ms: 5,
            ..ClusterSettings::default()
        };
        let problems = settings.validate().join("\n");
        assert!(problems.contains("cluster.partitions is 0"), "{problems}");
        assert!(problems.contains("cluster.tick_ms is 5"), "{problems}");
        assert!(
            problems.contains("cluster.changelog_streams is 0"),
            "{problems}"
        );
    }

    #[test]
    fn streams_beyond_the_partitions_count_as_one_per_partition() {
        let one_partition = ClusterSettings {
            partitions: 1,
            ..ClusterSettings::default()
        };
        assert!(one_partition.validate().is_empty());
        assert_eq!(one_partition.streams(), 1);
        let more_streams_than_partitions = ClusterSettings {
            partitions: 4,
            changelog_streams: 8,
            ..ClusterSettings::default()
        };
        assert_eq!(more_streams_than_partitions.streams(), 4);
        assert_eq!(ClusterSettings::default().streams(), 2);
        assert_eq!(ClusterSettings::default().with_every_stream().streams(), 32);
    }

    #[test]
    fn a_node_id_must_be_a_plain_name() {
        let settings = ClusterSettings {
            node_id: Some("a b".into()),
            ..ClusterSettings::default()
        };
        assert!(settings.validate()[0].contains("cluster.node_id is 'a b'"));
    }

    #[test]
    fn the_default_node_id_is_a_valid_name_and_new_each_time() {
        let (a, b) = (default_node_id(), default_node_id());
        assert!(is_node_id(&a), "{a}");
        assert_ne!(a, b);
    }
}
