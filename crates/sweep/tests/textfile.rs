//! `backstop-sweep --metrics-textfile`: the node_exporter textfile a timer's runs keep,
//! read by Prometheus's own text-format parser and linter (`promtool check metrics`,
//! the parser node_exporter's textfile collector uses) and checked against the runs'
//! own JSON reports.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/promtool.sh` installs it);
//! without it the promtool checks fail under `CI=true` and are skipped, with a message,
//! elsewhere (testkit's `Promtool`, whose own tests show it refuses broken text).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use backstop_sweep::SweepReport;
use backstop_testkit::prometheus::Promtool;
use common::{file, old, young};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_backstop-sweep"))
}

/// The samples of a text-format file, `series` → value, each line split once.
fn values(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A tree with two old files (one in an old directory) and a young one, aged in real
/// time, as the CLI judges ages by the real clock.
fn tree(root: &Path) {
    let shift = common::now().duration_since(SystemTime::now()).unwrap();
    file(&root.join("a/old1"), 20_000, old() - shift);
    file(&root.join("old2"), 10, old() - shift);
    file(&root.join("young"), 10, young() - shift);
    common::set_mtime(&root.join("a"), old() - shift);
}

fn sweep(root: &Path, textfile: &Path, extra: &[&str]) -> Output {
    bin()
        .arg(root)
        .args(["--age-by", "mtime", "--json", "--metrics-textfile"])
        .arg(textfile)
        .args(extra)
        .output()
        .unwrap()
}

fn report(out: &Output) -> SweepReport {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_textfile_sums_every_run_and_passes_promtool() {
    let promtool = Promtool::find();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let metrics = tempfile::tempdir().unwrap();
    let textfile = metrics.path().join("backstop_sweep.prom");
    tree(&root);

    let before_first = unix_now();
    let first = report(&sweep(&root, &textfile, &[]));
    let after_first = unix_now();
    file(
        &root.join("b/old3"),
        30_000,
        old() - common::now().duration_since(SystemTime::now()).unwrap(),
    );
    let second = report(&sweep(&root, &textfile, &[]));
    let after_second = unix_now();
    let text = std::fs::read_to_string(&textfile).unwrap();
    let v = values(&text);

    assert_eq!(v["backstop_sweep_runs_total{outcome=\"clean\"}"], 2.0);
    assert_eq!(v["backstop_sweep_runs_total{outcome=\"failed\"}"], 0.0);
    assert_eq!(
        v["backstop_sweep_removed_total{kind=\"file\"}"],
        (first.files_removed + second.files_removed) as f64
    );
    assert_eq!(first.files_removed + second.files_removed, 3);
    assert_eq!(
        v["backstop_sweep_removed_total{kind=\"dir\"}"],
        (first.dirs_removed + second.dirs_removed) as f64
    );
    assert_eq!(
        v["backstop_sweep_freed_bytes_total"],
        (first.bytes_freed + second.bytes_freed) as f64
    );
    assert!(second.bytes_freed > 0);
    assert_eq!(
        v["backstop_sweep_skipped_total{reason=\"too_young\"}"],
        (first.skipped.too_young + second.skipped.too_young) as f64
    );
    assert_eq!(v["backstop_sweep_duration_seconds_count"], 2.0);
    assert_eq!(
        v["backstop_sweep_duration_seconds_bucket{le=\"+Inf\"}"],
        2.0
    );
    let last_success = v["backstop_sweep_last_success_timestamp_seconds"];
    assert!(
        (after_first..=after_second).contains(&last_success),
        "{last_success} not in {after_first}..={after_second}"
    );
    let start = v["backstop_sweep_schedule_start_timestamp_seconds"];
    assert!((before_first..=after_first).contains(&start), "{start}");
    assert_eq!(v["backstop_sweep_interval_seconds"], 6.0 * 3600.0);

    // A run that cannot sweep counts as failed and leaves the last success alone; the
    // interval follows the flag, the start stays the first run's.
    let out = sweep(
        &dir.path().join("gone"),
        &textfile,
        &["--timer-interval", "1h"],
    );
    assert_eq!(out.status.code(), Some(2));
    let after_failure = std::fs::read_to_string(&textfile).unwrap();
    let w = values(&after_failure);
    assert_eq!(w["backstop_sweep_runs_total{outcome=\"failed\"}"], 1.0);
    assert_eq!(w["backstop_sweep_runs_total{outcome=\"clean\"}"], 2.0);
    assert_eq!(
        w["backstop_sweep_last_success_timestamp_seconds"],
        last_success
    );
    assert_eq!(w["backstop_sweep_schedule_start_timestamp_seconds"], start);
    assert_eq!(w["backstop_sweep_interval_seconds"], 3600.0);

    let Some(promtool) = promtool else { return };
    for text in [&text, &after_failure] {
        let (status, said) = promtool.check_metrics(text);
        assert_eq!(status, Some(0), "promtool check metrics:\n{said}\n{text}");
        assert_eq!(said, "", "promtool has remarks:\n{text}");
    }
}

#[test]
fn a_textfile_that_cannot_be_kept_is_refused_before_anything_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    tree(&root);
    let foreign = dir.path().join("node.prom");
    std::fs::write(&foreign, "node_load1 0.5\n").unwrap();
    let missing_dir = dir.path().join("no-such-dir/backstop_sweep.prom");
    let not_prom = dir.path().join("backstop_sweep.txt");
    for (textfile, says) in [
        (&foreign, "left alone"),
        (&missing_dir, "no-such-dir"),
        (&not_prom, "must end in .prom"),
    ] {
        let out = sweep(&root, textfile, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", textfile.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(root.join("old2").exists(), "nothing swept");
    }
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "node_load1 0.5\n"
    );
    assert!(!not_prom.exists());

    let out = bin()
        .arg(&root)
        .args(["--dry-run", "--metrics-textfile"])
        .arg(dir.path().join("x.prom"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a dry run frees nothing to count"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dry-run"));
}

/// The sweep ran and removed its files; only the textfile could not be replaced (no
/// file can be created in /proc): exit 4, as for a report that cannot be written.
#[test]
fn a_textfile_that_cannot_be_written_exits_four_after_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    tree(&root);
    let out = sweep(&root, Path::new("/proc/backstop_sweep.prom"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("/proc/backstop_sweep.prom"), "{stderr}");
    assert!(!root.join("old2").exists(), "the sweep itself ran");
    let report: SweepReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.files_removed, 2);
}
