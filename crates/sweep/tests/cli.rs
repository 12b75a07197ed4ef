//! The `backstop-sweep` binary: output, JSON and exit codes.

mod common;

use std::process::Command;

use common::{file, old, young};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_backstop-sweep"))
}

fn tree() -> tempfile::TempDir {
    // The CLI judges ages by the real clock: "old" is 2 days before the virtual now,
    // which is years ahead of it, so set real-clock ages here.
    let dir = tempfile::tempdir().unwrap();
    let real_now = std::time::SystemTime::now();
    let shift = common::now().duration_since(real_now).unwrap();
    file(&dir.path().join("a/old1"), 2_000_000, old() - shift);
    file(&dir.path().join("old2"), 10, old() - shift);
    file(&dir.path().join("young"), 10, young() - shift);
    common::set_mtime(&dir.path().join("a"), old() - shift);
    dir
}

#[test]
fn prints_the_original_log_line_and_exits_zero() {
    let dir = tree();
    let out = bin()
        .arg(dir.path())
        .args(["--dry-run", "--age-by", "mtime"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("Would clean 2 files, freed 2.0 MB"),
        "{stdout}"
    );
    assert!(stdout.contains("1 too young"), "{stdout}");
    assert!(dir.path().join("a/old1").exists());

    let out = bin()
        .arg(dir.path())
        .args(["--age-by", "mtime"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("Cleaned 2 files, freed 2.0 MB"),
        "{stdout}"
    );
    assert!(!dir.path().join("a").exists());
    assert!(dir.path().join("young").exists());
}

#[test]
fn json_output_is_the_report() {
    let dir = tree();
    let out = bin()
        .arg(dir.path())
        .args(["--json", "--older-than", "1d", "--exclude", "a/**"])
        .args(["--age-by", "mtime"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: backstop_sweep::SweepReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(report.skipped.excluded, 1);
    assert_eq!(report.root, dir.path());
}

#[test]
fn bad_usage_exits_two_with_a_message_naming_the_problem() {
    let dir = tree();
    let out = bin()
        .arg(dir.path())
        .args(["--older-than", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));

    let missing = dir.path().join("no-such-dir");
    let out = bin().arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-dir") && stderr.contains("No such file"),
        "{stderr}"
    );

    let out = bin()
        .arg(dir.path())
        .args(["--exclude", "a["])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a["));
}

#[test]
fn failed_entries_exit_three_and_are_named() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tree();
    std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = bin();
    cmd.arg(dir.path()).args(["--age-by", "mtime"]);
    // SAFETY: the closure runs in the forked child before exec and makes only prctl
    // calls, which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            // Without these even root is held to permission bits (as an unprivileged
            // service would be); failures just mean we were not privileged anyway.
            use rustix::thread::CapabilitySet;
            let _ =
                rustix::thread::remove_capability_from_bounding_set(CapabilitySet::DAC_OVERRIDE);
            let _ =
                rustix::thread::remove_capability_from_bounding_set(CapabilitySet::DAC_READ_SEARCH);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    std::fs::set_permissions(dir.path().join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 permission denied"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/a: cannot open directory: Permission denied"),
        "{stderr}"
    );
}

/// `--json > /dev/full` and a closed pipe: the sweep has already removed files when the
/// write fails. The failure goes to stderr with exit 4, never a panic (exit 101).
#[test]
fn a_report_that_cannot_be_written_exits_four_without_panicking() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let closed_pipe = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    for (what, json) in [
        ("full", true),
        ("full", false),
        ("pipe", true),
        ("pipe", false),
    ] {
        let dir = tree();
        let mut cmd = bin();
        cmd.arg(dir.path()).args(["--age-by", "mtime"]);
        if json {
            cmd.arg("--json");
        }
        if what == "full" {
            cmd.stdout(full());
        } else {
            cmd.stdout(closed_pipe());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{what} json={json}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("cannot write the report to stdout")
                && stderr.contains("Cleaned 2 files"),
            "{stderr}"
        );
        assert!(!dir.path().join("old2").exists(), "the sweep itself ran");
    }
}

#[test]
fn slash_is_refused_with_the_flag_to_use() {
    let out = bin().args(["/", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--no-preserve-root"), "{stderr}");
    let out = bin().args(["/sys", "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sysfs"));
}
