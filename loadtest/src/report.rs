//! The run's report: plain text for people, JSON (`--out`) for tools, and a percentile
//! distribution plot (`--plot`, SVG).

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

use crate::cpu::Cpu;
use crate::footprint::{LastThird, StoreSample};
use crate::tracker::{Counts, Percentiles};

/// The broker's own single hop, measured in the same run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Ceiling {
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    pub payload_bytes: usize,
    pub queue_type: &'static str,
    /// Deliveries settled by each ack: 1 acks each alone (the ratio's ceiling), more acks
    /// runs of that many at once.
    pub ack_run: u64,
}

/// The broker messages of otpd's cluster (`otpd_cluster_messages_total` of every node):
/// changelog records appended and applied, requests forwarded to an owner and served for
/// another node. Counts over the measured interval, or per operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ClusterMessages {
    pub appended: f64,
    pub applied: f64,
    pub forwarded: f64,
    pub served: f64,
}

impl ClusterMessages {
    /// Each kind as otpd's metric labels it, with its count.
    pub fn by_kind_mut(&mut self) -> [(&'static str, &mut f64); 4] {
        [
            ("appended", &mut self.appended),
            ("applied", &mut self.applied),
            ("forwarded", &mut self.forwarded),
            ("served", &mut self.served),
        ]
    }

    /// What was counted after `start`.
    pub fn since(mut self, start: &ClusterMessages) -> ClusterMessages {
        let mut start = *start;
        for ((_, now), (_, then)) in self.by_kind_mut().into_iter().zip(start.by_kind_mut()) {
            *now = (*now - *then).max(0.0);
        }
        self
    }

    fn per_op(mut self, operations: u64) -> Option<ClusterMessages> {
        if operations == 0 {
            return None;
        }
        for (_, count) in self.by_kind_mut() {
            *count /= operations as f64;
        }
        Some(self)
    }

    fn describe(mut self) -> String {
        self.by_kind_mut()
            .into_iter()
            .map(|(kind, count)| format!("{kind} {:.3}", *count))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

/// One named latency series (e.g. `end_to_end`, `create`, `check`).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub latency: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `amqp`, `http`, `verify`, `ceiling` or `replay`.
    pub mode: String,
    pub target: String,
    pub namespace: Option<String>,
    /// How messages were seen arriving: `http` (fake provider) or `sandbox` (outbox file).
    pub provider: Option<String>,
    /// Asked rate in operations per second; 0 means as fast as possible.
    pub rate: f64,
    pub concurrency: usize,
    /// Seconds from the first send to the last send.
    pub send_seconds: f64,
    /// Seconds from the first send to the last arrival (or answer).
    pub seconds: f64,
    /// Operations completed per second over `seconds` (OTPs delivered, flows, checks).
    pub per_second: f64,
    pub latency: Percentiles,
    pub series: Vec<Series>,
    pub counts: Counts,
    /// Operations that failed outright (HTTP errors, wrong answers); not losses.
    pub errors: u64,
    pub ceiling: Option<Ceiling>,
    /// `per_second` / ceiling messages per second.
    pub ratio_to_ceiling: Option<f64>,
    /// RSS of the spawned otpd at the end of the run, bytes.
    pub otpd_rss_bytes: Option<u64>,
    /// Bytes a spawned node's store took on disk at the end of the run (the mean over the
    /// nodes; each holds the whole state).
    pub store_bytes: Option<u64>,
    /// The store's size sampled over the run, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub store_samples: Vec<StoreSample>,
    /// CPU seconds otpd (all its nodes), the broker and the harness used over the measured
    /// interval: the load and its drain, not the start-up or, for `verify`, the issuing.
    pub cpu_seconds: Option<Cpu>,
    /// `cpu_seconds` per operation counted in `per_second`, in microseconds.
    pub cpu_us_per_op: Option<Cpu>,
    /// The cluster's broker messages over the measured interval (spawned nodes only).
    pub cluster_messages: Option<ClusterMessages>,
    /// `cluster_messages` per operation counted in `per_second`.
    pub cluster_messages_per_op: Option<ClusterMessages>,
    pub notes: Vec<String>,
}

impl Report {
    /// The run completed `operations` (OTPs delivered, flows, checks) in `seconds`: its
    /// rate, and the CPU each process spent on one.
    pub fn count_operations(&mut self, operations: u64) {
        self.per_second = operations as f64 / self.seconds.max(1e-6);
        self.cpu_us_per_op = self.cpu_seconds.and_then(|cpu| cpu.per_op(operations));
        self.cluster_messages_per_op = self
            .cluster_messages
            .and_then(|messages| messages.per_op(operations));
    }

    pub fn print(&self) {
        println!();
        println!("== otpd-loadtest {} against {} ==", self.mode, self.target);
        if let Some(ns) = &self.namespace {
            println!("namespace          {ns}");
        }
        if let Some(provider) = &self.provider {
            println!("provider           {provider}");
        }
        let rate = if self.rate > 0.0 {
            format!("{:.0}/s (open loop)", self.rate)
        } else {
            "max (closed loop)".into()
        };
        println!(
            "asked rate         {rate}, concurrency {}",
            self.concurrency
        );
        println!(
            "sustained          {:.1}/s over {:.2} s (sending took {:.2} s)",
            self.per_second, self.seconds, self.send_seconds
        );
        if self.latency.count > 0 {
            print_latency("latency", &self.latency);
        }
        for series in &self.series {
            print_latency(&series.name, &series.latency);
        }
        let c = self.counts;
        println!(
            "counts             published {}  delivered {}  lost {}  duplicated {}  unexpected {}  refused {}  errors {}",
            c.published, c.delivered, c.lost, c.duplicated, c.unexpected, c.refused, self.errors
        );
        if let Some(ceiling) = self.ceiling {
            println!(
                "broker ceiling     {:.1} msgs/s ({} msgs of {} bytes, {} queue, publish+confirm→consume→{})",
                ceiling.messages_per_second,
                ceiling.messages,
                ceiling.payload_bytes,
                ceiling.queue_type,
                match ceiling.ack_run {
                    1 => "ack".to_owned(),
                    run => format!("one ack per {run}"),
                }
            );
        }
        if let Some(ratio) = self.ratio_to_ceiling {
            println!("end-to-end/ceiling {ratio:.3}");
        }
        if let Some(cpu) = self.cpu_us_per_op {
            println!("CPU per operation  {}", cpu.describe_per_op());
        }
        if let Some(messages) = self.cluster_messages_per_op {
            println!("cluster msgs / op  {}", messages.describe());
        }
        if let Some(rss) = self.otpd_rss_bytes {
            println!("otpd RSS           {:.1} MiB", rss as f64 / 1_048_576.0);
        }
        if let Some(bytes) = self.store_bytes {
            println!(
                "otpd store         {:.1} MiB on disk (a node's), {:.0} bytes per verification published",
                bytes as f64 / 1_048_576.0,
                bytes as f64 / (c.published.max(1)) as f64
            );
        }
        if let Some(third) = LastThird::of(&self.store_samples) {
            let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
            println!(
                "store, last third  {:+.1} % at most over its start ({:.1} MiB as it began, {:.1} to {:.1} MiB in it); fitted trend {:+.1} %; {} samples over the run",
                100.0 * third.growth(),
                mib(third.from),
                mib(third.low),
                mib(third.peak),
                100.0 * third.trend,
                self.store_samples.len()
            );
        }
        for note in &self.notes {
            println!("note               {note}");
        }
        if !c.is_clean() {
            eprintln!();
            eprintln!(
                "!!!!! LOST {} / DUPLICATED {} MESSAGES: otpd broke its delivery guarantee in this run !!!!!",
                c.lost, c.duplicated
            );
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
    }
}

fn print_latency(name: &str, p: &Percentiles) {
    println!(
        "{:<18} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (n={})",
        name, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms, p.count
    );
}

/// Plots latency against percentile, the percentile axis in "nines" (90 %, 99 %, 99.9 %, …).
pub fn plot(path: &Path, title: &str, series: &[(&str, &Histogram<u64>)]) -> anyhow::Result<()> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| (*name, distribution(h)))
        .collect();
    let max_x = 5.0_f64;
    let max_y = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&|nines| nines_label(*nines))
        .draw()
        .map_err(draw_error)?;
    let palette = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (index, (name, points)) in curves.into_iter().enumerate() {
        let color = palette[index % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.into_iter().filter(|(x, _)| *x <= max_x),
                color.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("could not draw the plot: {error}")
}

fn nines_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{percent:.digits$}%")
}

/// (nines, latency in ms) points of the distribution: nines = -log10(1 - quantile).
fn distribution(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    for step in 0..=500 {
        let nines = step as f64 / 100.0;
        let quantile = 1.0 - 10f64.powf(-nines);
        let micros = histogram.value_at_quantile(quantile.min(1.0));
        points.push((nines, micros as f64 / 1000.0));
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cluster_messages_over_the_interval_and_per_operation() {
        let start = ClusterMessages {
            appended: 100.0,
            applied: 40.0,
            forwarded: 0.0,
            served: 0.0,
        };
        let end = ClusterMessages {
            appended: 300.0,
            applied: 240.0,
            forwarded: 50.0,
            served: 50.0,
        };
        let interval = end.since(&start);
        assert_eq!(interval.appended, 200.0);
        assert_eq!(interval.applied, 200.0);
        let per_op = interval.per_op(1000).expect("operations were done");
        assert_eq!(
            per_op.describe(),
            "appended 0.200  applied 0.200  forwarded 0.050  served 0.050"
        );
        assert_eq!(interval.per_op(0), None);
    }

    #[test]
    fn labels_the_nines() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(4.0), "99.99%");
    }

    #[test]
    fn draws_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let mut h = crate::tracker::histogram();
        for micros in 1..10_000 {
            h.record(micros).unwrap();
        }
        plot(&path, "test", &[("e2e", &h)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("e2e"));
    }
}
