//! The jobs this node hands on and handed on lately. A request retried with its idempotency
//! key after its answer was lost (a timeout, a dropped connection, a broker that blocked the
//! publish) hands the first attempt's job on again only if that job never got there: a
//! second copy of a job already on its way may reach a sender whose node does not know of
//! the first send yet (a cluster node's view trails the owner), and the code would go out
//! twice. A retry that comes while the job is being handed on waits for that publish and
//! shares its outcome: copies of one request (delivered again, forwarded by another node)
//! that arrive together once a blocked broker lets them through publish the job once.

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use crate::domain::JobId;
use crate::sync::LockUnpoisoned;
use crate::telemetry::platform::PublishError;

/// How many jobs are remembered: the last five seconds' worth at 3,000 creates a second on
/// one owner, which is when a retry of a request comes (the broker delivers a request again
/// at once; a caller retries after its timeout). About 160 bytes each, 2.6 MB in all.
pub const REMEMBERED: usize = 16_384;

/// A job's publish under way, awaited by every caller handing that job on meanwhile.
type Handing = Shared<BoxFuture<'static, Result<(), PublishError>>>;

pub struct HandedOver {
    recent: Mutex<Recent>,
}

struct Recent {
    /// How many jobs handed on are remembered.
    capacity: usize,
    /// The jobs handed on, oldest first, and the same as a set.
    order: VecDeque<JobId>,
    members: HashSet<JobId>,
    /// The jobs being handed on now.
    handing: HashMap<JobId, Handing>,
}

impl Recent {
    fn remember(&mut self, job: &JobId) {
        if !self.members.insert(job.clone()) {
            return;
        }
        self.order.push_back(job.clone());
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }
}

impl HandedOver {
    pub fn new(capacity: usize) -> Self {
        HandedOver {
            recent: Mutex::new(Recent {
                capacity: capacity.max(1),
                order: VecDeque::new(),
                members: HashSet::new(),
                handing: HashMap::new(),
            }),
        }
    }

    /// Hands `job` on with `publish`, unless it was handed on lately (then `Ok` at once) or
    /// is being handed on now (then the outcome of that publish). Once it is published, it
    /// is remembered; once that failed, the next call publishes again.
    pub async fn hand_on(
        &self,
        job: &JobId,
        publish: impl FnOnce() -> BoxFuture<'static, Result<(), PublishError>>,
    ) -> Result<(), PublishError> {
        let handing = {
            let mut recent = self.recent.lock_unpoisoned();
            if recent.members.contains(job) {
                return Ok(());
            }
            recent
                .handing
                .entry(job.clone())
                .or_insert_with(|| publish().shared())
                .clone()
        };
        let outcome = handing.clone().await;
        let mut recent = self.recent.lock_unpoisoned();
        // The first caller to see the outcome settles it; a later publish of the same job,
        // begun after this one failed, is left alone.
        if recent
            .handing
            .get(job)
            .is_some_and(|current| current.ptr_eq(&handing))
        {
            recent.handing.remove(job);
            if outcome.is_ok() {
                recent.remember(job);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VerificationId;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn job(seq: u32) -> JobId {
        JobId::new(
            &VerificationId::parse(&format!("ver_{}", "a".repeat(32))).unwrap(),
            seq,
        )
    }

    /// A publish that counts itself in `published` and comes to `outcome` once `until`
    /// resolves.
    fn publish(
        published: &Arc<AtomicUsize>,
        until: impl std::future::Future<Output = ()> + Send + 'static,
        outcome: Result<(), PublishError>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<(), PublishError>> {
        let published = Arc::clone(published);
        move || {
            published.fetch_add(1, Ordering::AcqRel);
            async move {
                until.await;
                outcome
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn remembers_the_latest_jobs_up_to_its_capacity() {
        let handed = HandedOver::new(2);
        let published = Arc::new(AtomicUsize::new(0));
        for seq in [1, 2, 2, 1] {
            let at_once = publish(&published, async {}, Ok(()));
            handed.hand_on(&job(seq), at_once).await.unwrap();
        }
        assert_eq!(
            published.load(Ordering::Acquire),
            2,
            "jobs 1 and 2 once each"
        );
        for seq in [3, 1] {
            let at_once = publish(&published, async {}, Ok(()));
            handed.hand_on(&job(seq), at_once).await.unwrap();
        }
        assert_eq!(
            published.load(Ordering::Acquire),
            4,
            "job 1, the oldest, was forgotten when job 3 came"
        );
    }

    /// Hands job 1 on twice at once, its publish held until released and coming to
    /// `outcome`: how often it was published, and what each call came to.
    async fn twice_at_once(
        handed: &HandedOver,
        outcome: Result<(), PublishError>,
    ) -> (usize, Vec<Result<(), PublishError>>) {
        let published = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let held = async move {
            let _ = released.await;
        };
        let job = job(1);
        let first = handed.hand_on(&job, publish(&published, held, outcome.clone()));
        let second = handed.hand_on(&job, publish(&published, async {}, outcome));
        let released_later = async move {
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        };
        let (first, second, ()) = tokio::join!(first, second, released_later);
        (published.load(Ordering::Acquire), vec![first, second])
    }

    #[tokio::test]
    async fn a_job_handed_on_twice_at_once_is_published_once_and_both_hear_how_it_went() {
        let handed = HandedOver::new(8);
        let (published, outcomes) = twice_at_once(&handed, Ok(())).await;
        assert_eq!(published, 1);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

        let handed = HandedOver::new(8);
        let (published, outcomes) = twice_at_once(&handed, Err(PublishError::Timeout(5000))).await;
        assert_eq!(published, 1);
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Err(PublishError::Timeout(5000)))),
            "{outcomes:?}"
        );
        // A publish that failed is not remembered: the next call publishes again.
        let again = Arc::new(AtomicUsize::new(0));
        handed
            .hand_on(&job(1), publish(&again, async {}, Ok(())))
            .await
            .unwrap();
        assert_eq!(again.load(Ordering::Acquire), 1);
    }
}
