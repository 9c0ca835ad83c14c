//! What one node's guard counts, for the other nodes' guards. In a cluster a node serves the
//! destinations of the partitions it owns, so the sends to one prefix (and their
//! conversions) are spread over the nodes; each node tells the others what it counted, and
//! every guard judges a prefix on the whole cluster's traffic.

use serde::{Deserialize, Serialize};

use super::prefix::Target;
use crate::domain::Timestamp;

/// One count of a node's guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// A code was sent to `target` at `at`.
    Sent { target: Target, at: Timestamp },
    /// The code sent to `target` at `sent_at` was verified at `at`.
    Converted {
        target: Target,
        sent_at: Timestamp,
        at: Timestamp,
    },
}

/// Signals a node has not told yet, at most this many: when the broker takes them slower
/// than they come, the newest wait for room or are dropped (the guard's figures are
/// statistics: a gap only delays a block).
pub const SIGNALS_WAITING: usize = 65_536;

/// Encodes a batch of signals for the other nodes.
pub fn encode(signals: &[Signal]) -> Vec<u8> {
    postcard::to_allocvec(signals).expect("signals always encode")
}

/// Decodes a batch another node told; `None` when it is unreadable.
pub fn decode(bytes: &[u8]) -> Option<Vec<Signal>> {
    postcard::from_bytes(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::prefix::target;

    #[test]
    fn a_batch_reads_back_as_it_was_told() {
        let number = target("+2348031234567", "NG", 4).unwrap();
        let batch = vec![
            Signal::Sent {
                target: number.clone(),
                at: Timestamp(1_000),
            },
            Signal::Converted {
                target: number,
                sent_at: Timestamp(1_000),
                at: Timestamp(31_000),
            },
        ];
        assert_eq!(decode(&encode(&batch)), Some(batch));
        assert_eq!(decode(b"\xff\xff\xff"), None);
    }
}
