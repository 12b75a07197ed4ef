//! `dist/grafana/backstop.json` is a dashboard Grafana imports as it is: one Prometheus
//! data source variable that every panel and query uses, no host or instance written
//! into any expression, the panels present, and every metric it reads named in
//! the runbook's metric list (`docs/operating.md`). That every expression parses and
//! returns series against a real Prometheus is `tests/prometheus.rs`'s part.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(&repo_file("dist/grafana/backstop.json")).unwrap()
}

/// Every panel that is not a row.
fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

#[test]
fn a_datasource_variable_serves_every_panel_and_query() {
    let dashboard = dashboard();
    assert!(
        dashboard["id"].is_null(),
        "an id ties the file to one Grafana"
    );
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["name"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let wanted = serde_json::json!({ "type": "prometheus", "uid": "${datasource}" });
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            variable["datasource"], wanted,
            "variable {}",
            variable["name"]
        );
    }
    let panels = panels(&dashboard);
    assert!(panels.len() >= 15, "{} panels", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"], wanted, "panel {title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(target["datasource"], wanted, "panel {title}");
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {title} does not say what it shows"
        );
    }
}

#[test]
fn no_expression_names_a_host_or_instance() {
    let dashboard = dashboard();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for label in ["instance", "job"] {
                for op in ["=\"", "=~\"", "!=\"", "!~\""] {
                    if let Some(at) = expr.find(&format!("{label}{op}")) {
                        let value = &expr[at + label.len() + op.len()..];
                        assert!(
                            value.starts_with('$'),
                            "{} pins {label}: {expr}",
                            panel["title"]
                        );
                    }
                }
            }
            assert!(
                !expr.contains("localhost") && !expr.contains("127.0.0.1"),
                "{expr}"
            );
        }
    }
}

#[test]
fn the_panels_the_operator_needs_are_there() {
    let dashboard = dashboard();
    let exprs: String = panels(&dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| format!("{}\n", t["expr"].as_str().unwrap()))
        .collect();
    // Request outcomes (202, 429 by scope, 503 by reason), rate budget, queue and slots
    // against their bounds, wait and run quantiles, the gate and its headroom, sweeps,
    // the store.
    for needle in [
        "instance:backstop_admitted:rate1m",
        "by (instance, scope) (instance:backstop_rate_limited:rate1m",
        "by (instance, reason) (instance:backstop_overloaded:rate1m",
        "instance:backstop_rate_budget:used_ratio5m",
        "backstop_queue_depth",
        "backstop_queue_max",
        "backstop_jobs_active",
        "backstop_jobs_max",
        "job:backstop_queue_wait_seconds:quantile_rate5m",
        "job:backstop_job_run_seconds:quantile_rate5m",
        "backstop_resource_gate_state",
        "backstop_available_memory_bytes",
        "backstop_min_available_memory_bytes",
        "backstop_free_disk_bytes",
        "backstop_min_free_disk_bytes",
        "backstop_sweep_freed_bytes_total",
        "backstop_sweep_last_success_timestamp_seconds",
        "backstop_store_errors_total",
        "backstop_store_fallback_decisions_total",
        "job:backstop_store_round_trip_seconds:quantile_rate5m",
    ] {
        assert!(exprs.contains(needle), "no panel reads {needle}");
    }
}

/// Every `backstop_*` or `makevideo_*` series the dashboard and the rules read (raw or
/// recorded) has its line in docs/operating.md (`.ci/prometheus-rules.sh` checks that
/// every alert has its section).
#[test]
fn every_metric_and_alert_is_in_the_runbook() {
    let runbook = repo_file("docs/operating.md");
    let mut sources = repo_file("dist/grafana/backstop.json");
    sources.push_str(&repo_file("dist/prometheus/backstop.rules.yml"));
    sources.push_str(&repo_file("dist/prometheus/backstop.alerts.yml"));
    let mut names = BTreeSet::new();
    let bytes = sources.as_bytes();
    for (at, _) in sources
        .match_indices("backstop")
        .chain(sources.match_indices("makevideo_"))
    {
        let start = sources[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let end = at
            + bytes[at..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b':'))
                .unwrap_or(bytes.len() - at);
        let name = &sources[start..end];
        if name.contains('_') && !name.starts_with("backstop-") {
            names.insert(name.trim_end_matches("_bucket").to_owned());
        }
    }
    assert!(names.len() > 30, "{names:?}");
    for name in &names {
        assert!(
            runbook.contains(&format!("`{name}")),
            "{name} is not in docs/operating.md"
        );
    }
}
