//! `deploy/`: the Prometheus alerting rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), and the rules and the Grafana dashboard name only metrics otpd
//! defines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Runs promtool with `arguments` in deploy/prometheus; fails with its output.
fn promtool(arguments: &[&str]) {
    let output = Command::new("promtool")
        .args(arguments)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("run promtool (Debian's package prometheus; .ci/run installs it)");
    assert!(
        output.status.success(),
        "promtool {arguments:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alerting_rules_are_valid_and_fire_only_when_they_should() {
    promtool(&["check", "rules", "otpd-alerts.yml"]);
    promtool(&["test", "rules", "otpd-alerts.test.yml"]);
}

/// The metric names `text` mentions (`otpd_…`), a histogram's series by its own name.
fn metrics_named_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("otpd_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboards_and_rules_name_only_metrics_otpd_defines() {
    let defined: BTreeSet<String> = otpd::telemetry::metrics::metrics()
        .names()
        .into_iter()
        .collect();
    let rules = std::fs::read_to_string(deploy("prometheus/otpd-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy("grafana/otpd.json")).unwrap();
    let dashboard_json: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dashboard_json["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            targets
                .iter()
                .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("otpd_"))),
            "{}",
            panel["title"]
        );
    }
    for (file, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        let named = metrics_named_in(text);
        assert!(named.len() >= 5, "{file}: {named:?}");
        let unknown: Vec<&String> = named.difference(&defined).collect();
        assert!(
            unknown.is_empty(),
            "the {file} name metrics otpd does not define: {unknown:?}"
        );
    }
}
