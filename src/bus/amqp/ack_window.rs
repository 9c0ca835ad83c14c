//! Which of a consumer's deliveries to settle with the broker, and how. One `multiple` ack
//! settles a run of deliveries for about what an ack of one costs the broker (a quorum queue
//! writes each ack to its log), so deliveries are acked together once every earlier one on
//! the channel is done. A delivery done behind one still being handled waits at most a
//! hold, then is acked alone: a slow delivery keeps no other past the hold, and never
//! holds the consumer's prefetch. A requeue is sent at once.
//!
//! Delivery tags are the channel's, and the channel has one consumer, so a tag is
//! `received` only after every smaller one: an ack of a run never covers a delivery this
//! window has not seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The deliveries of one channel not yet settled, by delivery tag.
#[derive(Debug, Default)]
pub struct AckWindow {
    open: BTreeMap<u64, Handled>,
    requeue: Vec<u64>,
}

/// Where an open delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Its handler has not finished.
    Not,
    /// Finished at this instant; to be acked.
    Since(Instant),
}

/// What to send the broker now, in this order: each requeue, each ack of one delivery, then
/// the ack of a run (every delivery up to and including `run`'s tag).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    pub requeue: Vec<u64>,
    pub alone: Vec<u64>,
    pub run: Option<u64>,
}

impl AckWindow {
    /// A delivery came, with a larger tag than any before it.
    pub fn received(&mut self, tag: u64) {
        self.open.insert(tag, Handled::Not);
    }

    /// The delivery's handler finished at `now`; it is to be acked.
    pub fn acked(&mut self, tag: u64, now: Instant) {
        if let Some(handled) = self.open.get_mut(&tag) {
            *handled = Handled::Since(now);
        }
    }

    /// The delivery is to be handed back to the queue.
    pub fn requeued(&mut self, tag: u64) {
        if self.open.remove(&tag).is_some() {
            self.requeue.push(tag);
        }
    }

    /// What is due at `now`, each delivery in it no longer open: the requeues, the run of
    /// finished deliveries at the front, and each finished one behind an unfinished delivery
    /// that has waited `hold`.
    pub fn due(&mut self, now: Instant, hold: Duration) -> Due {
        let requeue = std::mem::take(&mut self.requeue);
        let mut run = None;
        while let Some(entry) = self.open.first_entry() {
            if *entry.get() == Handled::Not {
                break;
            }
            run = Some(entry.remove_entry().0);
        }
        let mut alone = Vec::new();
        self.open.retain(|&tag, handled| match *handled {
            Handled::Since(since) if now.saturating_duration_since(since) >= hold => {
                alone.push(tag);
                false
            }
            _ => true,
        });
        Due {
            requeue,
            alone,
            run,
        }
    }

    /// When the next delivery waiting behind an unfinished one is due to be acked alone.
    pub fn next_due(&self, hold: Duration) -> Option<Instant> {
        self.open
            .values()
            .filter_map(|handled| match handled {
                Handled::Since(since) => Some(*since + hold),
                Handled::Not => None,
            })
            .min()
    }

    /// How many deliveries are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(20);

    fn window(tags: std::ops::RangeInclusive<u64>) -> AckWindow {
        let mut window = AckWindow::default();
        tags.for_each(|tag| window.received(tag));
        window
    }

    #[test]
    fn deliveries_finished_in_order_are_acked_as_one_run() {
        let now = Instant::now();
        let mut window = window(1..=4);
        (1..=3).for_each(|tag| window.acked(tag, now));
        assert_eq!(
            window.due(now, HOLD),
            Due {
                run: Some(3),
                ..Due::default()
            }
        );
        assert_eq!(window.len(), 1, "the fourth is still being handled");
        assert_eq!(window.due(now + HOLD * 10, HOLD), Due::default());
    }

    #[test]
    fn a_delivery_finished_behind_an_unfinished_one_waits_the_hold_then_goes_alone() {
        let now = Instant::now();
        let mut window = window(1..=3);
        window.acked(2, now);
        window.acked(3, now + HOLD / 2);
        assert_eq!(
            window.due(now, HOLD),
            Due::default(),
            "the first is unfinished"
        );
        assert_eq!(window.next_due(HOLD), Some(now + HOLD));
        assert_eq!(
            window.due(now + HOLD, HOLD),
            Due {
                alone: vec![2],
                ..Due::default()
            }
        );
        assert_eq!(window.next_due(HOLD), Some(now + HOLD / 2 + HOLD));
        window.acked(1, now + HOLD);
        assert_eq!(
            window.due(now + HOLD, HOLD),
            Due {
                run: Some(3),
                ..Due::default()
            },
            "the run covers the one acked alone, which the broker no longer counts"
        );
        assert_eq!(window.len(), 0);
    }

    #[test]
    fn a_run_never_reaches_past_an_unfinished_delivery() {
        let now = Instant::now();
        let mut window = window(1..=5);
        [1, 2, 4, 5]
            .into_iter()
            .for_each(|tag| window.acked(tag, now));
        assert_eq!(window.due(now, HOLD).run, Some(2));
        assert_eq!(window.due(now, HOLD).run, None, "3 is unfinished");
    }

    #[test]
    fn a_requeue_goes_at_once_and_the_run_may_pass_it() {
        let now = Instant::now();
        let mut window = window(1..=3);
        window.acked(1, now);
        window.requeued(2);
        window.acked(3, now);
        assert_eq!(
            window.due(now, HOLD),
            Due {
                requeue: vec![2],
                run: Some(3),
                ..Due::default()
            },
            "sent before the run, so the run does not ack it"
        );
        assert_eq!(window.len(), 0);
    }

    #[test]
    fn a_delivery_settled_twice_or_never_received_is_ignored() {
        let now = Instant::now();
        let mut window = window(1..=1);
        window.acked(7, now);
        window.requeued(8);
        window.requeued(1);
        window.requeued(1);
        window.acked(1, now);
        assert_eq!(
            window.due(now, HOLD),
            Due {
                requeue: vec![1],
                ..Due::default()
            }
        );
    }
}
