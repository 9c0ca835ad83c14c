//! Counters the whole cluster shares: a tenant's sends and spend against its caps, and a
//! capped provider's messages against its quota. A send is counted before it is made and
//! given back if it was not, so a cap is never passed, however many nodes send.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::records::{QuotaUsage, TenantUsage};
use super::slot::slot_of;
use super::Timestamp;

/// A number the cluster counts against caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Counter {
    /// A tenant's sends and spend, against its `sends_per_*` and `spend_per_*` caps.
    Tenant(String),
    /// A provider's messages, against its `quotas.<id>` caps.
    Provider(String),
}

impl Counter {
    /// The slot whose partition keeps this counter.
    pub fn slot(&self) -> u32 {
        match self {
            Counter::Tenant(name) => slot_of(&[b"~counter", b"tenant", name.as_bytes()]),
            Counter::Provider(id) => slot_of(&[b"~counter", b"provider", id.as_bytes()]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Counts one send costing `cost` (1 for a provider's message), unless it would pass a cap.
    Take { cost: u64 },
    /// Takes back a send counted at `taken_at` that was not made after all.
    GiveBack { cost: u64, taken_at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub counter: Counter,
    pub change: Change,
}

/// A counter's usage as its owner keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Usage {
    Tenant(TenantUsage),
    Provider(QuotaUsage),
}

/// What a count did: whether the send was counted (a give-back always is), the usage after
/// it, and the owner's time it was counted at (its periods are the owner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallied {
    pub granted: bool,
    pub usage: Usage,
    pub at: Timestamp,
}

/// Where counts go: to their counter's keeper (in a cluster, its partition's owner, on
/// this node or another).
#[async_trait]
pub trait Tally: Send + Sync {
    async fn count(&self, count: Count) -> Result<Tallied, CountFailed>;
}

/// A count that could not be made: its keeper did not answer, or could not store it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the count against a cap could not be made: {0}")]
pub struct CountFailed(pub String);
