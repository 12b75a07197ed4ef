//! What ships in `crates/sweep/dist/`: completion scripts and the man page, which must
//! be exactly what the binary generates from its clap definitions, and the systemd
//! units, whose command line must be one the binary accepts.
//!
//! After changing the command line, regenerate the shipped files with
//! `BACKSTOP_SWEEP_BLESS=1 cargo test -p backstop-sweep --test dist`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_backstop-sweep"))
}

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist")
}

fn generated(args: &[&str]) -> Vec<u8> {
    let out = bin().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    out.stdout
}

#[test]
fn shipped_completions_and_man_page_are_what_the_binary_generates() {
    let bless = std::env::var_os("BACKSTOP_SWEEP_BLESS").is_some();
    for (args, file) in [
        (
            &["--completions", "bash"][..],
            "completions/backstop-sweep.bash",
        ),
        (&["--completions", "zsh"][..], "completions/_backstop-sweep"),
        (
            &["--completions", "fish"][..],
            "completions/backstop-sweep.fish",
        ),
        (&["--man"][..], "man/backstop-sweep.1"),
    ] {
        let fresh = generated(args);
        let path = dist().join(file);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let shipped = std::fs::read(&path).unwrap_or_default();
        assert!(
            shipped == fresh,
            "{} is stale: regenerate with BACKSTOP_SWEEP_BLESS=1 cargo test -p backstop-sweep --test dist",
            path.display()
        );
    }
    let man = String::from_utf8(generated(&["--man"])).unwrap();
    for flag in [
        "older\\-than",
        "dry\\-run",
        "no\\-preserve\\-root",
        "json",
        "metrics\\-textfile",
    ] {
        assert!(man.contains(flag), "man page lacks --{flag}");
    }
    let bash = String::from_utf8(generated(&["--completions", "bash"])).unwrap();
    assert!(bash.contains("--older-than") && bash.contains("--age-by"));
}

#[test]
fn version_prints_the_crate_version() {
    let out = generated(&["--version"]);
    assert_eq!(
        String::from_utf8(out).unwrap().trim(),
        format!("backstop-sweep {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `key=value` lines of a unit file (comments and sections dropped).
fn unit(name: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(dist().join(name))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn value<'a>(unit: &'a [(String, String)], key: &str) -> &'a str {
    unit.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}="))
}

#[test]
fn the_systemd_units_run_the_documented_sweep_every_six_hours_hardened() {
    let service = unit("backstop-sweep.service");
    let exec: Vec<&str> = value(&service, "ExecStart").split_whitespace().collect();
    assert!(exec[0].ends_with("/backstop-sweep"), "{exec:?}");
    assert_eq!(exec[1], "/tmp/makevideo");
    assert_eq!(&exec[2..4], ["--older-than", "24h"]);
    assert_eq!(exec[4], "--metrics-textfile");
    let textfile = Path::new(exec[5]);
    assert_eq!(
        &exec[6..],
        ["--timer-interval", "6h"],
        "the timer's interval"
    );
    assert_eq!(value(&service, "Type"), "oneshot");
    assert_eq!(value(&service, "ProtectSystem"), "strict");
    let writable: Vec<&str> = value(&service, "ReadWritePaths")
        .split_whitespace()
        .collect();
    assert_eq!(
        writable,
        [exec[1], textfile.parent().unwrap().to_str().unwrap()],
        "the root and the textfile's directory, nothing else"
    );
    assert_eq!(value(&service, "NoNewPrivileges"), "yes");
    assert_eq!(
        value(&service, "PrivateTmp"),
        "no",
        "the files are in the real /tmp"
    );
    assert_eq!(value(&service, "SuccessExitStatus"), "3");
    assert!(!value(&service, "User").is_empty());

    // The binary accepts that command line (on temp dirs), and writes the textfile.
    let root = tempfile::tempdir().unwrap();
    let textfile_dir = tempfile::tempdir().unwrap();
    let written = textfile_dir.path().join(textfile.file_name().unwrap());
    let out = bin()
        .arg(root.path())
        .args(&exec[2..4])
        .arg(exec[4])
        .arg(&written)
        .args(&exec[6..])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(
        text.contains("backstop_sweep_runs_total{outcome=\"clean\"} 1\n"),
        "{text}"
    );

    let timer = unit("backstop-sweep.timer");
    assert_eq!(value(&timer, "OnCalendar"), "*-*-* 00/6:00:00");
    assert_eq!(value(&timer, "Persistent"), "true");
    assert_eq!(value(&timer, "WantedBy"), "timers.target");
}
