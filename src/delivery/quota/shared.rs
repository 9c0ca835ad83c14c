//! A capped provider's quota counted as one for the whole cluster: each message is taken
//! from the provider's counter before its call and given back when the call fails, so the
//! nodes together never pass the cap. A provider without caps is counted by each node for
//! itself (by the QuotaActor), with no round trip.

use crate::delivery::lane::Lane;
use crate::domain::counters::{Change, Count, CountFailed, Counter, Tally, Usage};
use crate::domain::Timestamp;

/// What taking a message from the provider's quota gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaTake {
    /// The provider has no caps: count the message once it is accepted.
    Uncapped,
    /// Counted at this time (the counter keeper's), to be given back if the call fails.
    Taken(Timestamp),
    /// A cap is reached: another provider must take the message.
    UsedUp,
}

/// Takes one message from `lane`'s quota, showing the usage the keeper answered with on
/// the lane's board.
pub async fn take(tally: &dyn Tally, lane: &Lane) -> Result<QuotaTake, CountFailed> {
    if !lane.quota_capped() {
        return Ok(QuotaTake::Uncapped);
    }
    let tallied = tally
        .count(Count {
            counter: Counter::Provider(lane.id().to_owned()),
            change: Change::Take { cost: 1 },
        })
        .await?;
    if let Usage::Provider(usage) = tallied.usage {
        lane.show_quota(usage);
    }
    Ok(if tallied.granted {
        QuotaTake::Taken(tallied.at)
    } else {
        QuotaTake::UsedUp
    })
}

/// Gives back a message taken at `taken_at` whose call did not go through.
pub async fn give_back(tally: &dyn Tally, lane: &Lane, taken_at: Timestamp) {
    let count = Count {
        counter: Counter::Provider(lane.id().to_owned()),
        change: Change::GiveBack { cost: 1, taken_at },
    };
    match tally.count(count).await {
        Ok(tallied) => {
            if let Usage::Provider(usage) = tallied.usage {
                lane.show_quota(usage);
            }
        }
        Err(error) => tracing::warn!(
            provider = lane.id(),
            %error,
            "Could not give back a message counted against the provider's quota; it stays counted."
        ),
    }
}
