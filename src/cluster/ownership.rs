//! This node's table of the partitions it owns. The broker decides ownership: a node owns a
//! partition from the moment a message of that partition's queue reaches it, and until its
//! broker connection closes (then the broker hands the queue to another node).

use std::sync::Mutex;

use crate::domain::Timestamp;

pub struct Ownership {
    /// Per partition, since when this node owns it.
    since: Mutex<Vec<Option<Timestamp>>>,
}

impl Ownership {
    pub fn new(partitions: u16) -> Self {
        Ownership {
            since: Mutex::new(vec![None; usize::from(partitions)]),
        }
    }

    /// A message of `partition`'s queue reached this node: it owns the partition. Returns
    /// whether that is news.
    pub fn claim(&self, partition: u16, now: Timestamp) -> bool {
        let mut since = self.lock();
        match since.get_mut(usize::from(partition)) {
            Some(slot @ None) => {
                *slot = Some(now);
                true
            }
            _ => false,
        }
    }

    /// This node gave `partition` up (the broker hands it to the next node in line).
    pub fn release(&self, partition: u16) {
        if let Some(slot) = self.lock().get_mut(usize::from(partition)) {
            *slot = None;
        }
    }

    /// The connection closed: the broker has handed every partition to other nodes. Returns
    /// how many this node owned.
    pub fn release_all(&self) -> usize {
        let mut since = self.lock();
        let owned = since.iter().filter(|slot| slot.is_some()).count();
        since.iter_mut().for_each(|slot| *slot = None);
        owned
    }

    /// Since when this node owns `partition`, if it does.
    pub fn owned_since(&self, partition: u16) -> Option<Timestamp> {
        self.lock().get(usize::from(partition)).copied().flatten()
    }

    /// How many partitions this node owns.
    pub fn count(&self) -> usize {
        self.lock().iter().filter(|slot| slot.is_some()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Timestamp>>> {
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_every_partition_is_released() {
        let ownership = Ownership::new(4);
        let now = Timestamp::now();
        assert!(ownership.claim(1, now));
        assert!(!ownership.claim(1, now), "a second message is no news");
        assert!(ownership.claim(3, now));
        assert_eq!(ownership.owned_since(1), Some(now));
        assert_eq!(ownership.owned_since(0), None);
        assert_eq!(ownership.count(), 2);
        assert_eq!(ownership.release_all(), 2);
        assert_eq!(ownership.count(), 0);
        assert!(
            ownership.claim(1, now),
            "owned again after a new connection"
        );
    }

    #[test]
    fn a_partition_out_of_range_is_never_owned() {
        let ownership = Ownership::new(2);
        assert!(!ownership.claim(5, Timestamp::now()));
        assert_eq!(ownership.owned_since(5), None);
    }
}
