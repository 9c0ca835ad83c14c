//! The CPU each process of a run used over its measured interval: otpd (every spawned
//! node), the broker and this harness, read from `/proc` (Linux) at the interval's two ends.

use serde::Serialize;

use crate::spawn;

/// CPU seconds of each side of a run, or per operation in microseconds
/// (`cpu_us_per_op`). A side is `None` where its process could not be read (a `--target`
/// otpd of another's, a broker not on this machine, a node that died in the run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    pub otpd: Option<f64>,
    pub broker: Option<f64>,
    pub harness: Option<f64>,
}

impl Cpu {
    /// Microseconds per operation, for `operations` done in the interval these seconds
    /// were used in; nothing when no operation was done.
    pub fn per_op(&self, operations: u64) -> Option<Cpu> {
        if operations == 0 {
            return None;
        }
        let per_op = |seconds: Option<f64>| seconds.map(|s| 1e6 * s / operations as f64);
        Some(Cpu {
            otpd: per_op(self.otpd),
            broker: per_op(self.broker),
            harness: per_op(self.harness),
        })
    }

    /// "otpd 254 µs  broker 230 µs  harness 60 µs", `unknown` for a side not read.
    pub fn describe_per_op(&self) -> String {
        let side = |name: &str, micros: Option<f64>| match micros {
            Some(micros) => format!("{name} {micros:.1} µs"),
            None => format!("{name} unknown"),
        };
        [
            side("otpd", self.otpd),
            side("broker", self.broker),
            side("harness", self.harness),
        ]
        .join("  ")
    }
}

/// The processes of a run and what each had used when the measured interval began.
pub struct CpuMeter {
    otpd: Vec<Option<u32>>,
    broker: Option<u32>,
    start: Reading,
}

/// CPU seconds used so far: each otpd node's, the broker's, the harness's.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    nodes: Vec<Option<f64>>,
    broker: Option<f64>,
    harness: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring now, the otpd nodes being the processes `otpd` (none for a
    /// `--target` otpd; `None` for a node not running).
    pub fn start(otpd: Vec<Option<u32>>) -> CpuMeter {
        let broker = spawn::broker_pid();
        let start = read(&otpd, broker);
        CpuMeter {
            otpd,
            broker,
            start,
        }
    }

    /// The measured interval begins again now (after a run's preparation).
    pub fn restart(&mut self) {
        self.start = read(&self.otpd, self.broker);
    }

    /// What was used since the interval began: all nodes together, the broker and the
    /// harness first, then each node's.
    pub fn used_by_each(&self) -> (Cpu, Vec<Option<f64>>) {
        let now = read(&self.otpd, self.broker);
        let nodes: Vec<Option<f64>> = self
            .start
            .nodes
            .iter()
            .zip(&now.nodes)
            .map(|(start, now)| since(*start, *now))
            .collect();
        let otpd = if nodes.is_empty() {
            None
        } else {
            nodes.iter().copied().sum::<Option<f64>>()
        };
        let total = Cpu {
            otpd,
            broker: since(self.start.broker, now.broker),
            harness: since(self.start.harness, now.harness),
        };
        (total, nodes)
    }
}

fn read(otpd: &[Option<u32>], broker: Option<u32>) -> Reading {
    Reading {
        nodes: otpd
            .iter()
            .map(|pid| pid.and_then(spawn::process_cpu_seconds))
            .collect(),
        broker: broker.and_then(spawn::process_cpu_seconds),
        harness: spawn::process_cpu_seconds(std::process::id()),
    }
}

fn since(start: Option<f64>, now: Option<f64>) -> Option<f64> {
    Some((now? - start?).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divides_each_side_by_the_operations_in_microseconds() {
        let used = Cpu {
            otpd: Some(5.0),
            broker: Some(2.5),
            harness: None,
        };
        assert_eq!(
            used.per_op(20_000),
            Some(Cpu {
                otpd: Some(250.0),
                broker: Some(125.0),
                harness: None,
            })
        );
        assert_eq!(used.per_op(0), None, "no operation, no figure");
        assert_eq!(
            used.per_op(20_000).unwrap().describe_per_op(),
            "otpd 250.0 µs  broker 125.0 µs  harness unknown"
        );
    }

    #[test]
    fn measures_this_harness_and_nothing_for_a_process_that_is_gone() {
        let meter = CpuMeter::start(vec![Some(u32::MAX)]);
        let spin = std::time::Instant::now();
        let mut sum = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            sum = sum.wrapping_add(std::hint::black_box(1));
        }
        assert!(sum > 0);
        let (used, nodes) = meter.used_by_each();
        assert!(
            used.harness.expect("this process is read") >= 0.02,
            "60 ms of spinning shows: {used:?}"
        );
        assert_eq!(nodes, vec![None]);
        assert_eq!(used.otpd, None, "a node not read makes the sum unknown");
    }
}
