//! Full compactions of the LSM tree, so that what the sweep removes stops taking disk.
//!
//! fjall marks a removed key with a tombstone and drops the tombstone (and what it covers)
//! only when compaction carries it into the tree's last level, the seventh. A store of
//! otpd's size fills the first level or two and never reaches the last, so every swept
//! verification left its tombstones behind for good, and the store grew with each one
//! (BENCHMARKS.md, "Removed keys dropped from the LSM tree's files"). The store's upkeep
//! thread (`Reopening::start_upkeep`) looks at the records' files every [`LOOK_EVERY`];
//! once they have grown a quarter past what the last full compaction left (and at least
//! [`GROWTH_FLOOR`]), it compacts the whole tree into its last level, which drops every
//! tombstone with what it covers. The rewrite costs about what the tree holds, so it comes
//! about once per quarter of the store written anew.

use std::time::{Duration, Instant};

use crate::telemetry::events::{StoreCompactedWhole, StoreCompactionFailed};

/// How often the records' files are looked at.
pub(super) const LOOK_EVERY: Duration = Duration::from_secs(10);
/// The least growth that calls for a full compaction: below it, the tables written out
/// since the last one are only the table in memory's latest few.
pub(super) const GROWTH_FLOOR: u64 = 32 * 1024 * 1024;

/// A tree that can be compacted whole, and tell its files' size.
pub(super) trait Compactable {
    /// The bytes of the tree's files.
    fn bytes_on_disk(&self) -> u64;
    /// Merges every table into the last level, dropping tombstones and what they cover.
    fn compact_fully(&self) -> Result<(), String>;
}

/// When the next full compaction is due, from what the last one left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compaction {
    /// The bytes the last full compaction left (or the tree held when it was opened).
    left: u64,
    /// The least growth past `left` that calls for another.
    floor: u64,
}

/// What one full compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compacted {
    pub before: u64,
    pub after: u64,
    pub took: Duration,
}

impl Compaction {
    /// From a tree of `bytes` now, with `floor` the least growth that calls for a full
    /// compaction.
    pub fn from(bytes: u64, floor: u64) -> Self {
        Compaction { left: bytes, floor }
    }

    /// Whether a tree of `bytes` has grown enough since the last one.
    pub fn due(&self, bytes: u64) -> bool {
        bytes > self.left.saturating_add((self.left / 4).max(self.floor))
    }

    /// Compacts `tree` whole if it is due; `Ok(None)` if it is not. One that failed (it
    /// writes the whole tree anew, so it needs as much free disk as the tree takes) is tried
    /// again once the tree has grown as much again, not at every look.
    pub fn run_if_due(&mut self, tree: &impl Compactable) -> Result<Option<Compacted>, String> {
        let before = tree.bytes_on_disk();
        if !self.due(before) {
            return Ok(None);
        }
        let started = Instant::now();
        if let Err(error) = tree.compact_fully() {
            self.left = before;
            return Err(error);
        }
        let after = tree.bytes_on_disk();
        self.left = after;
        Ok(Some(Compacted {
            before,
            after,
            took: started.elapsed(),
        }))
    }

    /// Looks at `tree` (every [`LOOK_EVERY`], on the store's upkeep thread): compacts it
    /// whole if that is due, and tells what came of it (a log line and
    /// `otpd_store_full_compactions_total`).
    pub fn look(&mut self, tree: &impl Compactable) {
        match self.run_if_due(tree) {
            Ok(Some(done)) => StoreCompactedWhole {
                before: done.before,
                after: done.after,
                took: done.took,
            }
            .emit(),
            Ok(None) => {}
            Err(error) => StoreCompactionFailed { error: &error }.emit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_full_compaction_is_due_past_a_quarter_of_what_the_last_left() {
        let compaction = Compaction::from(400 * MIB, 32 * MIB);
        assert!(!compaction.due(400 * MIB));
        assert!(!compaction.due(500 * MIB));
        assert!(compaction.due(500 * MIB + 1));
    }

    #[test]
    fn a_small_tree_waits_for_the_floor() {
        let compaction = Compaction::from(8 * MIB, 32 * MIB);
        assert!(!compaction.due(40 * MIB));
        assert!(compaction.due(40 * MIB + 1));
        assert!(Compaction::from(0, 32 * MIB).due(32 * MIB + 1));
    }

    /// A tree whose full compaction leaves `after` bytes, or fails while `full` is set.
    struct Tree {
        bytes: Cell<u64>,
        after: u64,
        compactions: Cell<u32>,
        full: Cell<bool>,
    }

    impl Tree {
        fn of(bytes: u64, after: u64) -> Self {
            Tree {
                bytes: Cell::new(bytes),
                after,
                compactions: Cell::new(0),
                full: Cell::new(false),
            }
        }
    }

    impl Compactable for Tree {
        fn bytes_on_disk(&self) -> u64 {
            self.bytes.get()
        }
        fn compact_fully(&self) -> Result<(), String> {
            self.compactions.set(self.compactions.get() + 1);
            if self.full.get() {
                return Err("No space left on device".into());
            }
            self.bytes.set(self.after);
            Ok(())
        }
    }

    #[test]
    fn the_next_compaction_counts_from_what_the_last_left() {
        let tree = Tree::of(200 * MIB, 120 * MIB);
        let mut compaction = Compaction::from(100 * MIB, 32 * MIB);
        let done = compaction.run_if_due(&tree).unwrap().unwrap();
        assert_eq!((done.before, done.after), (200 * MIB, 120 * MIB));
        tree.bytes.set(150 * MIB);
        assert_eq!(compaction.run_if_due(&tree).unwrap(), None);
        tree.bytes.set(152 * MIB + 1);
        assert!(compaction.run_if_due(&tree).unwrap().is_some());
        assert_eq!(tree.compactions.get(), 2);
    }

    #[test]
    fn each_full_compaction_is_counted_by_its_outcome() {
        let counted = |outcome: &str| {
            crate::telemetry::metrics::metrics()
                .full_compactions
                .with_label_values(&[outcome])
                .get()
        };
        let (done, failed) = (counted("done"), counted("failed"));
        let tree = Tree::of(200 * MIB, 120 * MIB);
        let mut compaction = Compaction::from(100 * MIB, 32 * MIB);
        compaction.look(&tree);
        assert!(counted("done") > done);
        tree.full.set(true);
        tree.bytes.set(300 * MIB);
        compaction.look(&tree);
        assert!(counted("failed") > failed);
    }

    #[test]
    fn a_failed_compaction_waits_for_the_tree_to_grow_again() {
        let tree = Tree::of(200 * MIB, 120 * MIB);
        tree.full.set(true);
        let mut compaction = Compaction::from(100 * MIB, 32 * MIB);
        assert!(compaction.run_if_due(&tree).is_err());
        assert_eq!(compaction.run_if_due(&tree).unwrap(), None);
        assert_eq!(tree.compactions.get(), 1, "tried again at the next look");

        tree.full.set(false);
        tree.bytes.set(250 * MIB + 1);
        assert!(compaction.run_if_due(&tree).unwrap().is_some());
    }
}
