//! Each subcommand, tiny, with --spawn against the real RabbitMQ on 127.0.0.1:5672: nothing
//! lost, nothing duplicated, a JSON report that parses.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn harness() -> &'static str {
    env!("CARGO_BIN_EXE_otpd-loadtest")
}

/// The otpd binary of this build, built first if this test run did not build it.
fn otpd() -> &'static PathBuf {
    static OTPD: OnceLock<PathBuf> = OnceLock::new();
    OTPD.get_or_init(|| {
        let dir = PathBuf::from(harness())
            .parent()
            .expect("the harness is in a directory")
            .to_path_buf();
        let otpd = dir.join("otpd");
        if !otpd.is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut command = Command::new(cargo);
            command.args(["build", "-p", "otpd", "--bin", "otpd"]);
            if dir.ends_with("release") {
                command.arg("--release");
            }
            let status = command.status().expect("run cargo build");
            assert!(status.success(), "cargo build --bin otpd failed");
        }
        otpd
    })
}

/// The broker: RabbitMQ on 127.0.0.1:5672, or `LOADTEST_AMQP_URL` (a loopback URL).
fn amqp_url() -> String {
    std::env::var("LOADTEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn run(subcommand: &str, extra: &[&str]) -> Value {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let plot = tempfile::Builder::new()
        .suffix(".svg")
        .tempfile()
        .expect("temp file");
    let started = Instant::now();
    let output = Command::new(harness())
        .arg(subcommand)
        .args([
            "--spawn",
            "--duration",
            "5s",
            "--drain-timeout",
            "15s",
            "--concurrency",
            "32",
        ])
        .arg("--amqp-url")
        .arg(amqp_url())
        .arg("--otpd-bin")
        .arg(otpd())
        .arg("--out")
        .arg(out.path())
        .arg("--plot")
        .arg(plot.path())
        .args(extra)
        .output()
        .expect("run otpd-loadtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "otpd-loadtest {subcommand} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "too slow: {:?}",
        started.elapsed()
    );
    let text = std::fs::read_to_string(out.path()).expect("the JSON report");
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    if !["ceiling", "replay"].contains(&subcommand) {
        let svg = std::fs::read_to_string(plot.path()).expect("the plot");
        assert!(svg.starts_with("<svg"), "the plot is an SVG");
    }
    assert!(
        stdout.contains("sustained"),
        "a plain-text report: {stdout}"
    );
    report
}

fn counts(report: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &report["counts"];
    let get = |name: &str| {
        c[name]
            .as_u64()
            .unwrap_or_else(|| panic!("counts.{name} in {report}"))
    };
    (
        get("published"),
        get("delivered"),
        get("lost"),
        get("duplicated"),
        get("unexpected"),
    )
}

#[test]
fn amqp_delivers_every_request_once() {
    let report = run("amqp", &["--requests", "200", "--ceiling-duration", "1s"]);
    assert_eq!(counts(&report), (200, 200, 0, 0, 0), "{report}");
    assert_eq!(report["errors"], 0);
    assert!(report["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["ceiling"]["messages_per_second"].as_f64().unwrap() > 0.0);
    assert!(report["ratio_to_ceiling"].as_f64().unwrap() > 0.0);
    let cpu = &report["cpu_us_per_op"];
    assert!(
        cpu["otpd"].as_f64().unwrap() > 0.0,
        "otpd's CPU per OTP: {report}"
    );
    assert!(cpu["broker"].as_f64().unwrap() > 0.0, "{report}");
    assert!(cpu["harness"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["cluster_messages_per_op"]["appended"]
            .as_f64()
            .unwrap()
            > 0.0,
        "every OTP is written to the changelog: {report}"
    );
}

#[test]
fn amqp_through_smpp_delivers_every_request_once_over_two_binds() {
    let report = run(
        "amqp",
        &[
            "--requests",
            "200",
            "--provider",
            "smpp",
            "--smpp-binds",
            "2",
            "--with-ceiling",
            "false",
        ],
    );
    assert_eq!(counts(&report), (200, 200, 0, 0, 0), "{report}");
    assert_eq!(report["provider"], "smpp", "{report}");
}

#[test]
fn amqp_open_loop_keeps_count() {
    let report = run(
        "amqp",
        &[
            "--requests",
            "200",
            "--rate",
            "100",
            "--with-ceiling",
            "false",
        ],
    );
    assert_eq!(counts(&report), (200, 200, 0, 0, 0), "{report}");
    assert!(report["ceiling"].is_null());
    assert!(report["store_bytes"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn http_flows_create_and_check() {
    let report = run("http", &["--requests", "100"]);
    assert_eq!(counts(&report), (100, 100, 0, 0, 0), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["per_second"].as_f64().unwrap() > 0.0);
    assert!(
        report["store_bytes"].as_u64().unwrap() > 0,
        "the store's size on disk: {report}"
    );
}

#[test]
fn verify_checks_wrong_then_right() {
    let report = run("verify", &["--requests", "100"]);
    assert_eq!(counts(&report), (100, 100, 0, 0, 0), "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        report["latency"]["count"], 200,
        "two checks per verification"
    );
    for side in ["otpd", "broker", "harness"] {
        assert!(
            report["cpu_us_per_op"][side].as_f64().is_some(),
            "the CPU of {side} per check: {report}"
        );
    }
    assert!(
        report["cluster_messages_per_op"]["appended"]
            .as_f64()
            .unwrap()
            > 0.0,
        "a check's attempt is written to the changelog: {report}"
    );
}

#[test]
fn verify_checks_ids_no_verification_has() {
    let report = run("verify", &["--requests", "100", "--check-mode", "unknown"]);
    assert_eq!(counts(&report), (100, 100, 0, 0, 0), "{report}");
    assert_eq!(report["errors"], 0, "each check answered 404: {report}");
    assert_eq!(
        report["latency"]["count"], 100,
        "one check per verification"
    );
}

#[test]
fn replay_reads_a_stream_back_from_its_start() {
    let report = run("replay", &["--requests", "3000", "--record-bytes", "2000"]);
    let (published, delivered, lost, duplicated, _) = counts(&report);
    assert_eq!((published, delivered), (3000, 3000), "{report}");
    assert_eq!((lost, duplicated), (0, 0), "{report}");
    assert!(report["per_second"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["cpu_us_per_op"]["broker"].as_f64().is_some(),
        "the broker's CPU per record read: {report}"
    );
}

#[test]
fn ceiling_measures_the_broker_alone() {
    let report = run("ceiling", &["--requests", "200"]);
    assert_eq!(report["ceiling"]["messages"], 200, "{report}");
    assert_eq!(report["ceiling"]["ack_run"], 1, "{report}");
    assert!(report["per_second"].as_f64().unwrap() > 0.0);
    // Acked 16 at a time: the last 8 never fill a run, and are still counted as consumed.
    let report = run("ceiling", &["--requests", "200", "--ack-run", "16"]);
    assert_eq!(report["ceiling"]["messages"], 200, "{report}");
    assert_eq!(report["ceiling"]["ack_run"], 16, "{report}");
}
