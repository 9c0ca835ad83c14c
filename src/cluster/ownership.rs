//! This node's table of the partitions it owns. The broker decides ownership: a node owns a
//! partition from the moment a message of that partition's queue reaches it, and until its
//! broker connection closes (then the broker hands the queue to another node) or it yields
//! the partition. A new owner first catches up on the partition's changelog; only then does
//! it serve, and every command it serves holds an `Entered` until it is done, so a yield
//! can wait for the commands in flight before the broker moves the partition.

use std::sync::{Arc, Mutex};

use crate::domain::Timestamp;
use crate::sync::LockUnpoisoned;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Free,
    CatchingUp,
    Serving,
    /// Being given up: no new command enters.
    Leaving,
}

#[derive(Debug, Clone, Copy)]
struct Partition {
    stage: Stage,
    since: Option<Timestamp>,
    in_flight: usize,
}

pub struct Ownership {
    partitions: Mutex<Vec<Partition>>,
}

/// A command running on a partition this node serves.
pub struct Entered {
    ownership: Arc<Ownership>,
    partition: u16,
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(p) = self.ownership.lock().get_mut(usize::from(self.partition)) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
    }
}

impl Ownership {
    pub fn new(partitions: u16) -> Arc<Self> {
        let free = Partition {
            stage: Stage::Free,
            since: None,
            in_flight: 0,
        };
        Arc::new(Ownership {
            partitions: Mutex::new(vec![free; usize::from(partitions)]),
        })
    }

    /// A message of `partition`'s queue reached this node: it owns the partition and starts
    /// catching up. Returns whether that is news.
    pub fn claim(&self, partition: u16, now: Timestamp) -> bool {
        self.change(partition, |p| {
            if p.stage != Stage::Free {
                return false;
            }
            p.stage = Stage::CatchingUp;
            p.since = Some(now);
            true
        })
    }

    /// This node has applied `partition`'s changelog up to its own fence: it serves.
    pub fn caught_up(&self, partition: u16) {
        self.change(partition, |p| {
            if p.stage == Stage::CatchingUp {
                p.stage = Stage::Serving;
            }
        });
    }

    /// A yield that could not go on: the partition serves again.
    pub fn caught_up_again(&self, partition: u16) {
        self.change(partition, |p| {
            if p.stage == Stage::Leaving {
                p.stage = Stage::Serving;
            }
        });
    }

    /// Lets a command in, if this node serves `partition`.
    pub fn enter(self: &Arc<Self>, partition: u16) -> Option<Entered> {
        let entered = self.change(partition, |p| {
            let serving = p.stage == Stage::Serving;
            if serving {
                p.in_flight += 1;
            }
            serving
        });
        entered.then(|| Entered {
            ownership: Arc::clone(self),
            partition,
        })
    }

    /// Starts giving `partition` up: no new command enters. Returns whether it was owned.
    pub fn leave(&self, partition: u16) -> bool {
        self.change(partition, |p| {
            let owned = p.stage != Stage::Free;
            if owned {
                p.stage = Stage::Leaving;
            }
            owned
        })
    }

    /// Whether this node owns `partition` and is still catching up on it.
    pub fn catching_up_on(&self, partition: u16) -> bool {
        self.read(partition)
            .is_some_and(|p| p.stage == Stage::CatchingUp)
    }

    /// How many commands are running on `partition`.
    pub fn in_flight(&self, partition: u16) -> usize {
        self.read(partition).map_or(0, |p| p.in_flight)
    }

    /// This node gave `partition` up (the broker hands it to the next node in line).
    pub fn release(&self, partition: u16) {
        self.change(partition, |p| {
            p.stage = Stage::Free;
            p.since = None;
        });
    }

    /// The connection closed: the broker has handed every partition to other nodes. Returns
    /// how many this node owned.
    pub fn release_all(&self) -> usize {
        let mut partitions = self.lock();
        let owned = partitions.iter().filter(|p| p.stage != Stage::Free).count();
        for p in partitions.iter_mut() {
            p.stage = Stage::Free;
            p.since = None;
        }
        owned
    }

    /// Since when this node owns `partition`, if it does (catching up, serving or leaving).
    pub fn owned_since(&self, partition: u16) -> Option<Timestamp> {
        self.read(partition)
            .filter(|p| p.stage != Stage::Free)
            .and_then(|p| p.since)
    }

    pub fn serves(&self, partition: u16) -> bool {
        self.read(partition)
            .is_some_and(|p| p.stage == Stage::Serving)
    }

    /// The partitions this node owns, in any stage.
    pub fn owned(&self) -> Vec<u16> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.stage != Stage::Free)
            .map(|(i, _)| i as u16)
            .collect()
    }

    /// How many partitions this node owns but is still catching up on.
    pub fn catching_up(&self) -> usize {
        self.lock()
            .iter()
            .filter(|p| p.stage == Stage::CatchingUp)
            .count()
    }

    fn read(&self, partition: u16) -> Option<Partition> {
        self.lock().get(usize::from(partition)).copied()
    }

    fn change<T: Default>(&self, partition: u16, change: impl FnOnce(&mut Partition) -> T) -> T {
        self.lock()
            .get_mut(usize::from(partition))
            .map(change)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Partition>> {
        self.partitions.lock_unpoisoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_partition_serves_once_caught_up() {
        let ownership = Ownership::new(4);
        let now = Timestamp::now();
        assert!(ownership.claim(1, now));
        assert!(!ownership.claim(1, now), "a second message is no news");
        assert_eq!(ownership.owned_since(1), Some(now));
        assert!(ownership.enter(1).is_none(), "catching up: nothing enters");
        assert_eq!(ownership.catching_up(), 1);
        ownership.caught_up(1);
        assert!(ownership.serves(1));
        assert_eq!(ownership.catching_up(), 0);
        assert_eq!(ownership.owned(), vec![1]);
    }

    #[test]
    fn leaving_lets_nothing_new_in_and_counts_what_runs() {
        let ownership = Ownership::new(2);
        ownership.claim(0, Timestamp::now());
        ownership.caught_up(0);
        let running = ownership.enter(0).expect("serving");
        assert_eq!(ownership.in_flight(0), 1);
        assert!(ownership.leave(0));
        assert!(ownership.enter(0).is_none());
        drop(running);
        assert_eq!(ownership.in_flight(0), 0);
        ownership.release(0);
        assert_eq!(ownership.owned_since(0), None);
    }

    #[test]
    fn a_closed_connection_releases_everything() {
        let ownership = Ownership::new(3);
        ownership.claim(0, Timestamp::now());
        ownership.claim(2, Timestamp::now());
        assert_eq!(ownership.release_all(), 2);
        assert!(ownership.owned().is_empty());
        assert!(
            ownership.claim(2, Timestamp::now()),
            "owned again after a new connection"
        );
    }

    #[test]
    fn a_partition_out_of_range_is_never_owned() {
        let ownership = Ownership::new(2);
        assert!(!ownership.claim(5, Timestamp::now()));
        assert_eq!(ownership.owned_since(5), None);
        assert!(ownership.enter(5).is_none());
    }
}
