//! The threads otpd's actors run on: issuance, delivery and the broker link (HTTP has its
//! own workers, the broker client its I/O thread, the store its flushers).
//!
//! Each hand-over between actors on different threads wakes a sleeping thread. On a machine
//! of two cores those wake-ups cost more than a third thread gives: with issuance on one
//! thread and delivery sharing the other with the broker link, otpd spent about a tenth less
//! CPU per OTP and sent as many or more OTPs a second (BENCHMARKS.md, "The actors on two
//! threads").

use serde::Deserialize;

/// `[runtime]`: how many threads the actors share.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSettings {
    /// 1, 2 or 3; 0 (the default) chooses by the machine: two threads on up to two cores,
    /// three on more.
    #[serde(default)]
    pub actor_threads: usize,
}

/// The most threads the actors can use: one each.
const ONE_EACH: usize = 3;

/// Up to this many cores, the actors share two threads.
const CORES_FOR_TWO_THREADS: usize = 2;

impl RuntimeSettings {
    pub fn validate(&self) -> Vec<String> {
        if self.actor_threads > ONE_EACH {
            return vec![format!(
                "runtime.actor_threads is {}; it must be 1, 2 or 3 (issuance, delivery and the \
                 broker link each on its own), or 0 to choose by the number of cores",
                self.actor_threads
            )];
        }
        Vec::new()
    }

    /// The number of actor threads: the setting, or one chosen for `cores`.
    pub fn thread_count(&self, cores: usize) -> usize {
        match self.actor_threads {
            0 if cores <= CORES_FOR_TWO_THREADS => 2,
            0 => ONE_EACH,
            n => n,
        }
    }
}

/// The cores this process may run on (its CPU quota counted), 1 if the system cannot say.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The threads the actors run on, and which of them each part uses.
pub struct Arbiters {
    pub issuance: actix::ArbiterHandle,
    pub delivery: actix::ArbiterHandle,
    pub broker: actix::ArbiterHandle,
    threads: Vec<actix::Arbiter>,
}

impl Arbiters {
    /// Starts the threads the settings ask for on this machine. With two, issuance has one
    /// and delivery shares the other with the broker link.
    pub fn start(settings: &RuntimeSettings) -> Self {
        let threads: Vec<actix::Arbiter> = (0..settings.thread_count(cores()))
            .map(|_| actix::Arbiter::new())
            .collect();
        // Issuance first, then delivery, then the broker link, each taking the last thread
        // when there are fewer than three.
        let nth = |index: usize| threads[index.min(threads.len() - 1)].handle();
        Arbiters {
            issuance: nth(0),
            delivery: nth(1),
            broker: nth(2),
            threads,
        }
    }

    pub fn stop(&self) {
        for thread in self.threads.iter().rev() {
            thread.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(actor_threads: usize) -> RuntimeSettings {
        RuntimeSettings { actor_threads }
    }

    #[test]
    fn unset_the_actors_share_two_threads_on_two_cores_and_have_one_each_on_more() {
        assert_eq!(asking(0).thread_count(1), 2);
        assert_eq!(asking(0).thread_count(2), 2);
        assert_eq!(asking(0).thread_count(3), 3);
        assert_eq!(asking(0).thread_count(16), 3);
        assert_eq!(asking(1).thread_count(2), 1);
        assert_eq!(asking(3).thread_count(1), 3);
    }

    #[test]
    fn more_threads_than_actors_are_refused_with_what_to_give() {
        assert!(asking(3).validate().is_empty());
        let problems = asking(4).validate();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("runtime.actor_threads is 4"));
        assert!(problems[0].contains("1, 2 or 3"));
    }
}
