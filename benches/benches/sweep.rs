//! backstop-sweep side by side with `find -delete`, `find -print` and a single-threaded
//! walkdir + `remove_file` loop, on the same disk, on trees regenerated identically for
//! every timed run.
//!
//! Not criterion: one sample takes seconds and destroys its input. Each run regenerates
//! the tree (same names, sizes and mtimes), `sync`s, and times one contender; the
//! contenders take turns within a round so that drift on a shared machine hits them all.
//! Prints medians and median ratios.
//!
//! ```text
//! cargo bench -p backstop-benches --bench sweep
//! SWEEP_BENCH_FILES=20000 SWEEP_BENCH_DIRS=200 SWEEP_BENCH_RUNS=5 cargo bench -p backstop-benches --bench sweep
//! ```
//! `SWEEP_BENCH_DIR` chooses where the trees live (default: the system temp dir);
//! `SWEEP_BENCH_DELETE=0` times only the scans; `SWEEP_BENCH_QUICK=1` deletes with only
//! the default, 2 threads and `find -delete`.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backstop_sweep::{AgeBy, Sweep, default_threads, default_threads_in_memory};
use rayon::prelude::*;
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};

const FILE_BYTES: usize = 100;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `files` files spread over `dirs` directories; every other file is two days old, the
/// rest an hour old.
fn generate(root: &Path, files: usize, dirs: usize, base: SystemTime) {
    if root.exists() {
        std::fs::remove_dir_all(root).unwrap();
    }
    std::fs::create_dir_all(root).unwrap();
    let stamp = |t: SystemTime| {
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as _,
        }
    };
    let old = stamp(base - 2 * DAY);
    let young = stamp(base - Duration::from_secs(3600));
    let content = vec![b'x'; FILE_BYTES];
    (0..dirs).into_par_iter().for_each(|d| {
        let dir = root.join(format!("d{d:05}"));
        std::fs::create_dir(&dir).unwrap();
        let dir_fd =
            rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for f in (d..files).step_by(dirs) {
            let fd = rustix::fs::openat(
                dir_fd.as_fd(),
                format!("f{f:07}").as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
                Mode::RUSR | Mode::WUSR,
            )
            .unwrap();
            rustix::io::write(&fd, &content).unwrap();
            let t = if f % 2 == 0 { old } else { young };
            rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
            )
            .unwrap();
        }
    });
    rustix::fs::sync();
}

fn count_files(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

fn find(root: &Path, action: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("find")
        .arg(root)
        .args(["-type", "f", "-mmin", "+1440", action])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "find {action} failed");
    elapsed
}

fn walkdir_delete(root: &Path) -> Duration {
    let started = Instant::now();
    let cutoff = SystemTime::now() - DAY;
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_file()
            && entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .is_some_and(|t| t < cutoff)
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    started.elapsed()
}

fn backstop(root: &Path, dry_run: bool, skip_locked: bool, threads: usize) -> (Duration, u64) {
    let started = Instant::now();
    // By mtime, as `find -mmin` judges: the generated tree's ctimes are all "now".
    let report = Sweep::new(root)
        .age_by(AgeBy::Mtime)
        .dry_run(dry_run)
        .skip_locked(skip_locked)
        .threads(threads)
        .run()
        .unwrap();
    (started.elapsed(), report.files_removed)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn median_f64(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The first three fields of `/proc/loadavg`: how busy the shared machine was.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Prints each contender's median and two ratios to `reference`: of the medians, and the
/// median of the per-round ratios (contenders of one round ran back to back, so the
/// latter is less exposed to drift in the machine's load).
fn table(operation: &str, names: &[&str], times: &[Vec<Duration>], reference: usize) {
    let reference_median = median(times[reference].clone());
    for (i, name) in names.iter().enumerate() {
        if times[i].is_empty() {
            continue; // left out (SWEEP_BENCH_QUICK)
        }
        let m = median(times[i].clone());
        let per_round: Vec<f64> = times[i]
            .iter()
            .zip(&times[reference])
            .map(|(t, r)| r.as_secs_f64() / t.as_secs_f64())
            .collect();
        let rounds = per_round
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {operation} | {name} | {:.3} s | {:.2}× | {:.2}× ({rounds}) |",
            m.as_secs_f64(),
            reference_median.as_secs_f64() / m.as_secs_f64(),
            median_f64(per_round),
        );
    }
}

type Contender = (&'static str, fn(&Path) -> Duration);

fn main() {
    let files = env_usize("SWEEP_BENCH_FILES", 200_000);
    let dirs = env_usize("SWEEP_BENCH_DIRS", 2_000);
    let runs = env_usize("SWEEP_BENCH_RUNS", 3).max(1);
    // SWEEP_BENCH_DELETE=0 times only the scans (quick, and no disk writes).
    let delete_runs = if env_usize("SWEEP_BENCH_DELETE", 1) == 0 {
        0
    } else {
        runs
    };
    let base_dir = std::env::var_os("SWEEP_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let root = base_dir.join(format!("backstop-sweep-bench-{}", std::process::id()));
    let base = SystemTime::now();
    let (disk, memory) = (default_threads(), default_threads_in_memory());
    println!(
        "tree: {files} files ({FILE_BYTES} B) in {dirs} dirs, half older than 24 h; {runs} runs; default threads {disk} on a disk and for dry runs, {memory} deleting on tmpfs; under {}",
        base_dir.display()
    );
    println!("load average at start: {}", load());

    let deleters: [Contender; 6] = [
        ("backstop-sweep", |r| backstop(r, false, true, 0).0),
        ("backstop-sweep, 2 threads", |r| {
            backstop(r, false, true, 2).0
        }),
        ("backstop-sweep, skip_locked(false)", |r| {
            backstop(r, false, false, 0).0
        }),
        ("backstop-sweep, 1 thread", |r| {
            backstop(r, false, true, 1).0
        }),
        ("find -delete", |r| find(r, "-delete")),
        ("walkdir + remove_file (1 thread)", walkdir_delete),
    ];
    const FIND_DELETE: usize = 4;
    let mut delete_times: Vec<Vec<Duration>> = vec![Vec::new(); deleters.len()];
    // SWEEP_BENCH_QUICK=1: only the default, 2 threads and find (slow disks, busy machines).
    let quick = env_usize("SWEEP_BENCH_QUICK", 0) == 1;
    for run in 0..delete_runs {
        for k in 0..deleters.len() {
            let i = (k + run) % deleters.len();
            let (name, f) = deleters[i];
            if quick && ![0, 1, FIND_DELETE].contains(&i) {
                continue;
            }
            generate(&root, files, dirs, base);
            let t = f(&root);
            let left = count_files(&root);
            assert_eq!(
                left,
                files / 2,
                "{name} left {left} files, expected {}",
                files / 2
            );
            println!("run {run} delete {name:<34} {:>9.3} s", t.as_secs_f64());
            delete_times[i].push(t);
        }
    }
    println!("load average after deleting: {}", load());

    generate(&root, files, dirs, base);
    let scanners: [Contender; 5] = [
        ("backstop-sweep dry run", |r| {
            let (t, n) = backstop(r, true, true, 0);
            assert_eq!(n as usize, count_files(r) / 2);
            t
        }),
        ("backstop-sweep dry run, skip_locked(false)", |r| {
            backstop(r, true, false, 0).0
        }),
        ("backstop-sweep dry run, 1 thread", |r| {
            backstop(r, true, true, 1).0
        }),
        (
            "backstop-sweep dry run, skip_locked(false), 1 thread",
            |r| backstop(r, true, false, 1).0,
        ),
        ("find -print", |r| find(r, "-print")),
    ];
    const FIND_PRINT: usize = 4;
    let mut scan_times: Vec<Vec<Duration>> = vec![Vec::new(); scanners.len()];
    // Warm the cache once so that every timed scan starts alike.
    let _ = find(&root, "-print");
    for run in 0..runs.max(5) {
        let mut line = format!("run {run} scan");
        for k in 0..scanners.len() {
            let i = (k + run) % scanners.len();
            let (name, f) = scanners[i];
            let t = f(&root);
            line += &format!(" | {name} {:.3} s", t.as_secs_f64());
            scan_times[i].push(t);
        }
        println!("{line}");
    }
    std::fs::remove_dir_all(&root).unwrap();
    println!("load average at the end: {}", load());

    println!();
    println!(
        "| operation | contender | median | find ÷ contender (medians) | median of per-round ratios |"
    );
    println!("|---|---|---:|---:|---|");
    let names: Vec<&str> = deleters.iter().map(|(name, _)| *name).collect();
    if delete_runs > 0 {
        table("delete", &names, &delete_times, FIND_DELETE);
    }
    let names: Vec<&str> = scanners.iter().map(|(name, _)| *name).collect();
    table("scan", &names, &scan_times, FIND_PRINT);
}
