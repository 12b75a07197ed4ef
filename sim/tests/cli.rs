//! The binary: exit codes 0/1/2, error lines naming the line, `gen` → `run` → `check`.

mod common;

use std::process::Output;

use common::sim;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn gen_run_check_round_trip_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = sim(
        &[
            "gen",
            "--scenario",
            "window-edge",
            "--seed",
            "3",
            "--duration",
            "10m",
            "--rate",
            "0.2",
            "--out",
            "t.jsonl",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sim(
        &[
            "run",
            "--trace",
            "t.jsonl",
            "--seed",
            "3",
            "--decisions-out",
            "d.jsonl",
            "--report-json",
            "r.json",
            "--charts",
            "charts",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("r.json")).unwrap()).unwrap();
    assert!(
        report["sim"]["rate_limited"].as_u64().unwrap() > 0,
        "the adversary meets 429s"
    );
    assert_eq!(report["sim"]["checks"]["violations"], 0);
    for chart in ["outcomes.svg", "queue.svg", "disk.svg"] {
        let svg = std::fs::read_to_string(d.join("charts").join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
        // The page beside the charts holds the same SVG.
        let page = std::fs::read_to_string(d.join("charts").join("report.html")).unwrap();
        assert!(
            page.contains(svg.trim_end()),
            "{chart} inline in report.html"
        );
    }
    let o = sim(
        &["check", "--trace", "t.jsonl", "--decisions", "d.jsonl"],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // The generated stream and the replayed file decide identically.
    let o = sim(
        &[
            "run",
            "--scenario",
            "window-edge",
            "--seed",
            "3",
            "--duration",
            "10m",
            "--rate",
            "0.2",
            "--decisions-out",
            "d2.jsonl",
            "--html",
            "pages/run.html",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // --html alone writes the page (and its directory), and no SVG files.
    let page = std::fs::read_to_string(d.join("pages/run.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    assert!(!d.join("pages/outcomes.svg").exists());
    // (The crash stream is seeded from --seed in both.)
    let from_file = std::fs::read(d.join("d.jsonl")).unwrap();
    let from_stream = std::fs::read(d.join("d2.jsonl")).unwrap();
    assert!(from_file == from_stream, "decision logs differ");
}

#[test]
fn tampered_log_fails_check_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        sim(
            &[
                "gen",
                "--scenario",
                "steady",
                "--duration",
                "10m",
                "--rate",
                "1",
                "--out",
                "t.jsonl"
            ],
            d
        )
        .status
        .success()
    );
    let o = sim(
        &[
            "run",
            "--trace",
            "t.jsonl",
            "--decisions-out",
            "d.jsonl",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let log = std::fs::read_to_string(d.join("d.jsonl")).unwrap();
    // Turn the first 429 into an admission: 31 passes in one window.
    let tampered = log.replacen(
        "\"outcome\":\"rate_limited\",\"reason\":null,\"retry_after_us\":",
        "\"outcome\":\"admitted\",\"reason\":null,\"x\":",
        1,
    );
    assert_ne!(tampered, log);
    std::fs::write(d.join("bad.jsonl"), tampered).unwrap();
    let o = sim(
        &["check", "--trace", "t.jsonl", "--decisions", "bad.jsonl"],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("1 rate safety"), "{e}");
    assert!(e.contains("offending event: {"), "{e}");
    assert!(
        e.contains("reproduce with: backstop-sim check --trace t.jsonl"),
        "{e}"
    );
}

#[test]
fn malformed_trace_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("t.jsonl"),
        "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":5}\n\n{\"t_us\":1,\"type\":\"request\",\"id\":1,\"job_us\":5}\n",
    )
    .unwrap();
    let o = sim(
        &[
            "run",
            "--trace",
            "t.jsonl",
            "--decisions-out",
            "d.jsonl",
            "--quiet",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !d.join("d.jsonl").exists(),
        "no half-written decision log is left"
    );
    let e = stderr(&o);
    assert!(e.contains("line 3") && e.contains("duplicate"), "{e}");
    assert_eq!(e.lines().count(), 1, "one readable line: {e}");
}

#[test]
fn bad_config_and_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("c.toml"), "[limits]\nmax_quuee = 3\n").unwrap();
    let o = sim(
        &[
            "run",
            "--scenario",
            "steady",
            "--duration",
            "1m",
            "--config",
            "c.toml",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("max_quuee"), "{}", stderr(&o));
    let o = sim(&["run", "--scenario", "nope"], d);
    assert_eq!(o.status.code(), Some(2));
    let o = sim(&["run", "--scenario", "steady", "--duration", "-5s"], d);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn replicas_and_store_are_checked_with_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "run",
        "--scenario",
        "steady",
        "--duration",
        "10m",
        "--quiet",
    ];
    for (extra, needle) in [
        (&["--replicas", "0"][..], "--replicas must be at least 1"),
        (&["--replicas", "3"][..], "--replicas 3 needs --store URL"),
        (&["--store", "http://127.0.0.1:6379"][..], "malformed URL"),
        (
            &["--replicas", "2", "--store", "redis://:secret@host:port"][..],
            "malformed URL",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = sim(&args, d);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line, got {err}");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert!(
            !err.contains("secret"),
            "the password is never shown: {err}"
        );
    }
}

#[test]
fn one_replica_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "run",
            "--scenario",
            "window-edge",
            "--duration",
            "30m",
            "--rate",
            "0.2",
            "--quiet",
            "--decisions-out",
            out,
        ];
        args.extend_from_slice(extra);
        let o = sim(&args, d);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read(d.join(out)).unwrap()
    };
    let plain = run(&[], "a.jsonl");
    let one = run(&["--replicas", "1"], "b.jsonl");
    assert!(!plain.is_empty());
    assert!(plain == one, "--replicas 1 decides as the default");
}
