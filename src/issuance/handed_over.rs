//! The jobs this node handed on lately. A request retried with its idempotency key after its
//! answer was lost (a timeout, a dropped connection) hands the first attempt's job on again
//! only if that job never got there: a second copy of a job already on its way may reach a
//! sender whose node does not know of the first send yet (a cluster node's view trails the
//! owner), and the code would go out twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::domain::JobId;
use crate::sync::LockUnpoisoned;

/// How many jobs are remembered: the last five seconds' worth at 3,000 creates a second on
/// one owner, which is when a retry of a request comes (the broker delivers a request again
/// at once; a caller retries after its timeout). About 160 bytes each, 2.6 MB in all.
pub const REMEMBERED: usize = 16_384;

pub struct HandedOver {
    capacity: usize,
    recent: Mutex<(VecDeque<JobId>, HashSet<JobId>)>,
}

impl HandedOver {
    pub fn new(capacity: usize) -> Self {
        HandedOver {
            capacity: capacity.max(1),
            recent: Mutex::default(),
        }
    }

    /// `job` reached the broker (or this node's router): it will be delivered.
    pub fn remember(&self, job: &JobId) {
        let mut recent = self.recent.lock_unpoisoned();
        let (order, members) = &mut *recent;
        if !members.insert(job.clone()) {
            return;
        }
        order.push_back(job.clone());
        if order.len() > self.capacity {
            if let Some(oldest) = order.pop_front() {
                members.remove(&oldest);
            }
        }
    }

    /// Whether `job` was handed on lately.
    pub fn knows(&self, job: &JobId) -> bool {
        let recent = self.recent.lock_unpoisoned();
        recent.1.contains(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VerificationId;

    fn job(seq: u32) -> JobId {
        JobId::new(
            &VerificationId::parse(&format!("ver_{}", "a".repeat(32))).unwrap(),
            seq,
        )
    }

    #[test]
    fn remembers_the_latest_jobs_up_to_its_capacity() {
        let handed = HandedOver::new(2);
        handed.remember(&job(1));
        handed.remember(&job(2));
        handed.remember(&job(2));
        assert!(handed.knows(&job(1)) && handed.knows(&job(2)));
        handed.remember(&job(3));
        assert!(!handed.knows(&job(1)), "the oldest is forgotten");
        assert!(handed.knows(&job(2)) && handed.knows(&job(3)));
        assert!(!handed.knows(&job(4)));
    }
}
