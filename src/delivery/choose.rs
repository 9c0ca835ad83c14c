//! Which provider gets a job: the first in the region's list that has not failed it yet and
//! may be used now; otherwise, when to try again, or that the code will expire first.

use std::time::Duration;

use super::health::NotNow;
use crate::domain::Timestamp;

#[derive(Debug, PartialEq, Eq)]
pub enum Choice<P> {
    /// Send through `provider`, with leave `permit`; `refused` says why each provider
    /// before it could not take the job.
    Use {
        provider: String,
        permit: P,
        refused: Vec<(String, NotNow)>,
    },
    /// Nobody can take it now: ask again at `until`; `start_over` forgets which providers
    /// already failed this job (every one of them has). `refused` says why each provider
    /// asked could not take it.
    Wait {
        until: Timestamp,
        start_over: bool,
        refused: Vec<(String, NotNow)>,
    },
    /// No provider can be tried before the code expires.
    GiveUp { refused: Vec<(String, NotNow)> },
}

/// `acquire` asks a provider for leave, or says why and until when it is unavailable
/// (`until: None`: unknown, try again after `pause`).
pub fn choose<P>(
    candidates: &[String],
    tried: &[String],
    mut acquire: impl FnMut(&str) -> Result<P, NotNow>,
    pause: Duration,
    now: Timestamp,
    expires_at: Timestamp,
) -> Choice<P> {
    let mut earliest: Option<Timestamp> = None;
    let mut refused = Vec::new();
    for provider in candidates.iter().filter(|c| !tried.contains(c)) {
        match acquire(provider) {
            Ok(permit) => {
                return Choice::Use {
                    provider: provider.clone(),
                    permit,
                    refused,
                }
            }
            Err(not_now) => {
                let until = not_now.until.unwrap_or(now.plus(pause)).max(now);
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
                refused.push((provider.clone(), not_now));
            }
        }
    }
    let (until, start_over) = match earliest {
        Some(until) => (until, false),
        None => (now.plus(pause), true),
    };
    if until >= expires_at {
        Choice::GiveUp { refused }
    } else {
        Choice::Wait {
            until,
            start_over,
            refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AttemptOutcome;

    fn open_until(until: Timestamp) -> NotNow {
        NotNow {
            why: AttemptOutcome::BreakerOpen,
            until: Some(until),
        }
    }

    const NOW: Timestamp = Timestamp(1_000_000);
    const PAUSE: Duration = Duration::from_secs(1);

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn takes_the_first_available_untried_provider() {
        let choice = choose(
            &names(&["a", "b", "c"]),
            &names(&["a"]),
            |p| {
                if p == "b" {
                    Err(open_until(NOW.plus_secs(5)))
                } else {
                    Ok(p.to_string())
                }
            },
            PAUSE,
            NOW,
            NOW.plus_secs(60),
        );
        assert_eq!(
            choice,
            Choice::Use {
                provider: "c".into(),
                permit: "c".into(),
                refused: vec![("b".into(), open_until(NOW.plus_secs(5)))],
            }
        );
    }

    #[test]
    fn waits_for_the_earliest_unavailable_one() {
        let choice: Choice<()> = choose(
            &names(&["a", "b"]),
            &[],
            |p| {
                Err(open_until(if p == "a" {
                    NOW.plus_secs(9)
                } else {
                    NOW.plus_secs(4)
                }))
            },
            PAUSE,
            NOW,
            NOW.plus_secs(60),
        );
        assert_eq!(
            choice,
            Choice::Wait {
                until: NOW.plus_secs(4),
                start_over: false,
                refused: vec![
                    ("a".into(), open_until(NOW.plus_secs(9))),
                    ("b".into(), open_until(NOW.plus_secs(4)))
                ],
            }
        );
    }

    #[test]
    fn starts_over_after_a_pause_when_every_provider_failed() {
        let choice: Choice<()> = choose(
            &names(&["a", "b"]),
            &names(&["a", "b"]),
            |_| unreachable!("tried providers are not asked"),
            PAUSE,
            NOW,
            NOW.plus_secs(60),
        );
        assert_eq!(
            choice,
            Choice::Wait {
                until: NOW.plus(PAUSE),
                start_over: true,
                refused: Vec::new(),
            }
        );
    }

    #[test]
    fn gives_up_when_the_code_expires_first() {
        let choice: Choice<()> = choose(
            &names(&["a"]),
            &[],
            |_| Err(open_until(NOW.plus_secs(30))),
            PAUSE,
            NOW,
            NOW.plus_secs(30),
        );
        assert_eq!(
            choice,
            Choice::GiveUp {
                refused: vec![("a".into(), open_until(NOW.plus_secs(30)))]
            }
        );
    }
}
