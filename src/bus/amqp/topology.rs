//! The broker topology as plain data: names, queue arguments and bindings, derived from the
//! settings, checked (every routing key reaches exactly one region queue), then declared
//! idempotently.

use super::settings::AmqpSettings;
use crate::cluster::ClusterSettings;

/// How the requests queue is stored by the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Quorum,
    Classic,
}

/// A region queue and the routing-key patterns bound to it on the route exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionQueue {
    pub region: String,
    pub queue: String,
    pub patterns: Vec<String>,
}

/// Every exchange, queue and binding otpd uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub requests_queue: String,
    pub requests_queue_kind: QueueKind,
    /// Fanout exchange bound to the requests queue, for platforms that publish to an exchange.
    pub ingress_exchange: String,
    /// Topic exchange that routes delivery jobs by `<channel>.<region>.<country>`.
    pub route_exchange: String,
    pub region_queues: Vec<RegionQueue>,
    /// Topic exchange for `verification.*` and `delivery.*` events.
    pub events_exchange: String,
    /// Fanout exchange and queue for messages otpd will not process.
    pub dead_exchange: String,
    pub dead_queue: String,
    /// Where delivery jobs wait when no provider can take them yet: published to this
    /// fanout exchange under their routing key, each expires after its wait and is
    /// dead-lettered from the queue of the same name back to the route exchange, key intact.
    pub delay_exchange: String,
    pub delay_queue: String,
    /// Deliveries of one message before the broker dead-letters it (quorum queues).
    pub delivery_limit: u32,
    /// The stream holding the cluster's record (its partition count), written once by the
    /// cluster's first node.
    pub cluster_stream: String,
    /// One queue per partition, consumed by every node with single active consumer: the
    /// broker makes the one consumer it delivers to the partition's owner.
    pub partition_queues: Vec<String>,
    /// The changelog streams, each shared by the partitions `cluster::stream_of` maps to
    /// it, which every node applies to its store.
    pub changelogs: Vec<String>,
    /// Fanout exchange the pumping guards tell each other their counts through; each node
    /// binds a queue of its own while connected.
    pub guard_exchange: String,
}

impl Topology {
    /// Whether `queue` is one otpd declares: a reply sent there would be read by otpd
    /// itself (a platform's own queue may well be named under the namespace too).
    pub fn is_own(&self, queue: &str) -> bool {
        self.all_queue_names().contains(&queue)
    }

    /// The names under `[amqp]`, for a cluster of `cluster.partitions` partitions sharing
    /// `cluster.streams()` changelog streams.
    pub fn from_settings(settings: &AmqpSettings, cluster: &ClusterSettings) -> Self {
        let ns = &settings.namespace;
        let region_queues = settings
            .region_queues
            .iter()
            .map(|(region, patterns)| RegionQueue {
                region: region.clone(),
                queue: format!("{ns}.region.{region}"),
                patterns: patterns.clone(),
            })
            .collect();
        Topology {
            requests_queue: format!("{ns}.requests"),
            requests_queue_kind: if settings.requests_queue_type == "classic" {
                QueueKind::Classic
            } else {
                QueueKind::Quorum
            },
            ingress_exchange: format!("{ns}.ingress"),
            route_exchange: format!("{ns}.route"),
            region_queues,
            events_exchange: format!("{ns}.events"),
            dead_exchange: format!("{ns}.dead"),
            dead_queue: format!("{ns}.dead"),
            delay_exchange: format!("{ns}.delay"),
            delay_queue: format!("{ns}.delay"),
            delivery_limit: settings.delivery_limit,
            cluster_stream: format!("{ns}.cluster"),
            partition_queues: (0..cluster.partitions)
                .map(|partition| partition_queue(ns, partition))
                .collect(),
            changelogs: (0..cluster.streams())
                .map(|stream| format!("{ns}.changelog.{stream:04}"))
                .collect(),
            guard_exchange: format!("{ns}.guard"),
        }
    }

    /// Every queue otpd declares: the work queues, the partition queues and the streams.
    pub fn all_queue_names(&self) -> Vec<&str> {
        let mut names = self.queue_names();
        names.extend(self.partition_queues.iter().map(String::as_str));
        names.extend(self.changelogs.iter().map(String::as_str));
        names.push(self.cluster_stream.as_str());
        names
    }

    /// The queues that carry requests, jobs and dead letters.
    pub fn queue_names(&self) -> Vec<&str> {
        let mut names = vec![
            self.requests_queue.as_str(),
            self.dead_queue.as_str(),
            self.delay_queue.as_str(),
        ];
        names.extend(self.region_queues.iter().map(|q| q.queue.as_str()));
        names
    }

    /// Every exchange otpd declares.
    pub fn exchange_names(&self) -> Vec<&str> {
        vec![
            self.ingress_exchange.as_str(),
            self.route_exchange.as_str(),
            self.events_exchange.as_str(),
            self.dead_exchange.as_str(),
            self.delay_exchange.as_str(),
            self.guard_exchange.as_str(),
        ]
    }

    /// The region queues a node consumes: those named, or all when none are.
    pub fn consumed_queues(&self, only: &[String]) -> Vec<&RegionQueue> {
        self.region_queues
            .iter()
            .filter(|queue| only.is_empty() || only.contains(&queue.region))
            .collect()
    }

    /// The region queues a routing key reaches.
    pub fn queues_for(&self, key: &str) -> Vec<&str> {
        self.region_queues
            .iter()
            .filter(|queue| queue.patterns.iter().any(|p| topic_matches(p, key)))
            .map(|queue| queue.queue.as_str())
            .collect()
    }

    /// Problems with the bindings: every key otpd can produce (`keys`) must reach exactly
    /// one queue.
    pub fn check_routing(&self, keys: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        for key in keys {
            match self.queues_for(key).as_slice() {
                [_] => {}
                [] => problems.push(format!(
                    "amqp.region_queues: routing key '{key}' reaches no region queue; add a pattern that matches it"
                )),
                many => problems.push(format!(
                    "amqp.region_queues: routing key '{key}' reaches {} queues ({}); each key must reach exactly one",
                    many.len(),
                    many.join(", ")
                )),
            }
        }
        problems
    }
}

/// The queue of `partition` (zero-padded, so the queues sort in partition order).
pub fn partition_queue(namespace: &str, partition: u16) -> String {
    format!("{namespace}.partition.{partition:04}")
}

/// AMQP topic matching: words split by '.', `*` matches one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    matches_words(&pattern, &key)
}

fn matches_words(pattern: &[&str], key: &[&str]) -> bool {
    match (pattern.split_first(), key.split_first()) {
        (None, None) => true,
        (Some((&"#", rest)), _) => {
            matches_words(rest, key) || (!key.is_empty() && matches_words(pattern, &key[1..]))
        }
        (Some((&"*", rest)), Some((_, key_rest))) => matches_words(rest, key_rest),
        (Some((word, rest)), Some((key_word, key_rest))) => {
            word == key_word && matches_words(rest, key_rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::region::every_routing_key;
    use crate::delivery::settings::RegionSettings;
    use crate::domain::Channel;
    use std::collections::BTreeMap;

    fn keys() -> Vec<String> {
        every_routing_key(
            &RegionSettings {
                default: "world".into(),
                countries: BTreeMap::from([
                    ("eu".into(), vec!["DE".into(), "FR".into()]),
                    ("apac".into(), vec!["AU".into()]),
                ]),
            },
            &[Channel::Sms, Channel::Email],
        )
    }

    fn topology(queues: &[(&str, &[&str])]) -> Topology {
        let settings = AmqpSettings {
            region_queues: queues
                .iter()
                .map(|(name, patterns)| {
                    (
                        name.to_string(),
                        patterns.iter().map(|p| p.to_string()).collect(),
                    )
                })
                .collect(),
            ..AmqpSettings::default()
        };
        Topology::from_settings(
            &settings,
            &ClusterSettings {
                partitions: 2,
                changelog_streams: 2,
                ..ClusterSettings::default()
            },
        )
    }

    #[test]
    fn own_queues_are_those_otpd_declares() {
        let topology = topology(&[("eu", &["sms.eu.*"])]);
        let own = [
            topology.requests_queue.clone(),
            topology.region_queues[0].queue.clone(),
            topology.dead_queue.clone(),
            topology.partition_queues[1].clone(),
            topology.changelogs[0].clone(),
        ];
        for own in &own {
            assert!(topology.is_own(own), "{own}");
        }
        // A platform's queue may be named under the namespace too.
        for theirs in [
            "amq.rabbitmq.reply-to",
            "otp.replies",
            "otp",
            "otp.requests.x",
            "",
        ] {
            assert!(!topology.is_own(theirs), "{theirs}");
        }
    }

    #[test]
    fn topic_matching_follows_amqp_rules() {
        assert!(topic_matches("sms.eu.*", "sms.eu.de"));
        assert!(!topic_matches("sms.eu.*", "sms.eu.de.x"));
        assert!(topic_matches("email.#", "email.world.xx"));
        assert!(topic_matches("email.#", "email"));
        assert!(topic_matches("#", "sms.eu.de"));
        assert!(topic_matches("sms.#.de", "sms.eu.de"));
        assert!(!topic_matches("sms.*", "sms.eu.de"));
    }

    #[test]
    fn names_derive_from_the_namespace() {
        let topology = topology(&[("eu", &["sms.eu.*"])]);
        assert_eq!(topology.requests_queue, "otp.requests");
        assert_eq!(topology.route_exchange, "otp.route");
        assert_eq!(topology.region_queues[0].queue, "otp.region.eu");
        assert_eq!(topology.dead_queue, "otp.dead");
        assert_eq!(
            topology.partition_queues,
            vec!["otp.partition.0000", "otp.partition.0001"]
        );
        assert_eq!(topology.cluster_stream, "otp.cluster");
        assert!(topology.all_queue_names().contains(&"otp.partition.0001"));
    }

    #[test]
    fn complete_disjoint_bindings_pass() {
        let topology = topology(&[
            ("eu", &["sms.eu.*"]),
            ("apac", &["sms.apac.*"]),
            ("world", &["sms.world.*"]),
            ("email", &["email.#"]),
        ]);
        assert_eq!(topology.check_routing(&keys()), Vec::<String>::new());
    }

    #[test]
    fn keys_reaching_none_or_two_queues_are_reported() {
        let topology = topology(&[
            ("eu", &["sms.eu.*"]),
            ("everything", &["sms.#"]),
            ("email", &["email.#"]),
        ]);
        let problems = topology.check_routing(&keys()).join("\n");
        assert!(
            problems.contains("'sms.eu.de' reaches 2 queues"),
            "{problems}"
        );
        let lonely = self::topology(&[("eu", &["sms.eu.*"])]);
        let problems = lonely.check_routing(&keys()).join("\n");
        assert!(
            problems.contains("'sms.apac.au' reaches no region queue"),
            "{problems}"
        );
        assert!(
            problems.contains("'email.world.xx' reaches no region queue"),
            "{problems}"
        );
    }

    #[test]
    fn a_node_can_consume_some_regions() {
        let topology = topology(&[("eu", &["sms.eu.*"]), ("apac", &["sms.apac.*"])]);
        assert_eq!(topology.consumed_queues(&[]).len(), 2);
        let only = topology.consumed_queues(&["apac".into()]);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].queue, "otp.region.apac");
    }
}
