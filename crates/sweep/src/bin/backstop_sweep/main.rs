//! `backstop-sweep`: remove old files under a directory, safely and in parallel.
//!
//! ```text
//! backstop-sweep ROOT [--older-than 24h] [--dry-run] [--exclude GLOB]... [--byte-goal 10GiB] [--json]
//!                     [--metrics-textfile PATH.prom [--timer-interval 6h]]
//! ```
//!
//! Prints the original service's log line (`Cleaned N files, freed X MB`) with a skip and
//! error summary, or the whole report as JSON; with `--metrics-textfile`, also adds the
//! run to the counters kept in a node_exporter textfile. Exits 0 when clean, 3 when some
//! entries failed, 4 when the report or the textfile could not be written, 2 on bad usage
//! or a root that cannot be swept, 1 on any other fatal error. Never panics on output:
//! Rust ignores `SIGPIPE`, so a closed pipe is an `EPIPE` error like any other.

mod exit_codes;
mod packaging;
mod units;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use backstop_sweep::{AgeBy, Sweep, SweepError, SweepReport, SweepTotals};
use clap::{Parser, ValueEnum};

use exit_codes::ExitCode;

/// Remove files older than a cutoff under ROOT, never following symlinks nor leaving
/// ROOT's mount.
#[derive(Debug, Parser)]
#[command(
    name = "backstop-sweep",
    version,
    after_help = "Exit status: 0 clean, 1 fatal, 2 bad usage or a root refused, \
                  3 some entries failed, 4 the report or the metrics textfile could not be \
                  written."
)]
pub(crate) struct Args {
    /// Directory to clean (it is never removed itself).
    #[arg(required_unless_present_any = ["completions", "man"])]
    root: Option<PathBuf>,
    /// Remove entries older than this: 90s, 30m, 24h, 2d, 1w (as a config file writes
    /// durations).
    #[arg(long, default_value = "24h", value_parser = units::parse_duration)]
    older_than: Duration,
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Leave entries matching this glob (relative to ROOT) alone; repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Pressure mode: remove the oldest eligible files until this much is freed (10GiB,
    /// 500MB, 4096B).
    #[arg(long, value_parser = units::parse_bytes)]
    byte_goal: Option<u64>,
    /// Which timestamp makes an entry old (default: the newer of mtime and ctime, as
    /// systemd-tmpfiles, so files extracted with old mtimes are not taken).
    #[arg(long, value_enum, default_value_t = AgeArg::MtimeCtime)]
    age_by: AgeArg,
    /// Keep directories the sweep leaves empty.
    #[arg(long)]
    keep_empty_dirs: bool,
    /// Worker threads (0: twice the cores, at least 8: see the README).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Sweep even when ROOT is /.
    #[arg(long)]
    no_preserve_root: bool,
    /// Sweep even when ROOT is on a pseudo-filesystem (proc, sysfs, devtmpfs, cgroup, …).
    #[arg(long)]
    allow_pseudo_fs: bool,
    /// Print the full report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
    /// Add this run to the counters kept in a node_exporter textfile (a name ending in
    /// .prom in the textfile collector's directory): runs by outcome, files and bytes
    /// freed, skips and errors by reason, duration, last success. The file is read back,
    /// added to and replaced atomically; a file some other program wrote is refused.
    #[arg(long, value_name = "PATH", conflicts_with = "dry_run")]
    metrics_textfile: Option<PathBuf>,
    /// How often a timer runs this sweep (with --metrics-textfile): written as
    /// backstop_sweep_interval_seconds, so an alert can tell when a sweep is overdue.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "6h",
        value_parser = units::parse_duration
    )]
    timer_interval: Duration,
    /// Print a completion script for SHELL and exit.
    #[arg(
        long,
        value_name = "SHELL",
        exclusive = true,
        help_heading = "Packaging"
    )]
    completions: Option<clap_complete::Shell>,
    /// Print the man page (roff) and exit.
    #[arg(long, exclusive = true, help_heading = "Packaging")]
    man: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AgeArg {
    /// The newer of modification and change time.
    MtimeCtime,
    /// Modification time.
    Mtime,
    /// Newest of access, modification and change time.
    Newest,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run(&args).into()
}

fn run(args: &Args) -> ExitCode {
    if let Some(shell) = args.completions {
        return write_out(&packaging::completions(shell));
    }
    if args.man {
        return match packaging::man_page() {
            Ok(page) => write_out(&page),
            Err(err) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "backstop-sweep: cannot render the man page: {err}"
                );
                ExitCode::Fatal
            }
        };
    }
    let Some(root) = &args.root else {
        // clap requires ROOT unless one of the flags above is given.
        let _ = writeln!(std::io::stderr(), "backstop-sweep: ROOT is required");
        return ExitCode::Usage;
    };
    // Read before sweeping: a textfile that cannot be kept is bad usage, found before
    // anything is removed.
    let textfile = match &args.metrics_textfile {
        None => None,
        Some(path) => match SweepTotals::read_textfile(path) {
            Ok(previous) => Some((path, previous.unwrap_or_default())),
            Err(err) => {
                let _ = writeln!(std::io::stderr(), "backstop-sweep: {err}");
                return ExitCode::Usage;
            }
        },
    };
    let first_run = SystemTime::now();
    let result = configure(args, root).and_then(|sweep| sweep.run());
    let metrics_written = textfile.is_none_or(|(path, totals)| {
        write_metrics(path, totals, &result, first_run, args.timer_interval)
    });
    let report = match result {
        Ok(report) => report,
        Err(err) => return fail(&err),
    };
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        print_summary(&mut stdout, &report)
    };
    if let Err(err) = written.and_then(|()| stdout.flush()) {
        // The sweep is done; say so, since the report is lost.
        let _ = writeln!(
            std::io::stderr(),
            "backstop-sweep: cannot write the report to stdout: {err} (the sweep ran: {})",
            report.summary_line()
        );
        return ExitCode::OutputFailed;
    }
    if !metrics_written {
        return ExitCode::OutputFailed;
    }
    if report.has_failures() {
        ExitCode::Partial
    } else {
        ExitCode::Clean
    }
}

/// The sweep the arguments describe.
fn configure(args: &Args, root: &Path) -> Result<Sweep, SweepError> {
    let mut sweep = Sweep::new(root)
        .older_than(args.older_than)
        .dry_run(args.dry_run)
        .remove_empty_dirs(!args.keep_empty_dirs)
        .threads(args.threads)
        .preserve_root(!args.no_preserve_root)
        .allow_pseudo_fs(args.allow_pseudo_fs)
        .age_by(match args.age_by {
            AgeArg::MtimeCtime => AgeBy::MtimeOrCtime,
            AgeArg::Mtime => AgeBy::Mtime,
            AgeArg::Newest => AgeBy::Newest,
        });
    if let Some(goal) = args.byte_goal {
        sweep = sweep.byte_goal(goal);
    }
    for pattern in &args.exclude {
        sweep = sweep.exclude(pattern)?;
    }
    Ok(sweep)
}

/// Adds this run (a failed one too) to the textfile's totals and replaces the file;
/// false, with a line on stderr, when it cannot be written.
fn write_metrics(
    path: &Path,
    mut totals: SweepTotals,
    result: &Result<SweepReport, SweepError>,
    first_run: SystemTime,
    every: Duration,
) -> bool {
    totals.record(result, SystemTime::now());
    totals.continue_schedule(first_run, every);
    match totals.write_textfile(path) {
        Ok(()) => true,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "backstop-sweep: {err}");
            false
        }
    }
}

/// Writes generated text to stdout; a failed write is reported, never a panic.
fn write_out(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::Clean,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "backstop-sweep: cannot write to stdout: {err}"
            );
            ExitCode::OutputFailed
        }
    }
}

fn fail(err: &SweepError) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "backstop-sweep: {err}");
    match err {
        SweepError::ThreadPool { .. } => ExitCode::Fatal,
        _ => ExitCode::Usage,
    }
}

fn print_summary(out: &mut impl Write, report: &SweepReport) -> std::io::Result<()> {
    writeln!(out, "{}", report.summary_line())?;
    let s = &report.skipped;
    writeln!(
        out,
        "removed {} files, {} symlinks, {} dirs; scanned {} entries in {:.3}s",
        report.files_removed,
        report.symlinks_removed,
        report.dirs_removed,
        report.entries_scanned,
        report.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "skipped {}: {} too young, {} excluded, {} other filesystem, {} symlink targets, {} special files, {} locked, {} replaced, {} past the byte goal",
        s.total(),
        s.too_young,
        s.excluded,
        s.other_filesystem,
        s.symlink_target,
        s.special_file,
        s.locked,
        s.replaced,
        s.goal_reached
    )?;
    if let Some(goal) = report.byte_goal {
        let met = if report.goal_met() { "met" } else { "NOT met" };
        writeln!(
            out,
            "byte goal {goal} bytes: {met} ({} bytes freed)",
            report.bytes_freed
        )?;
    }
    let e = &report.errors;
    if e.total() > 0 {
        writeln!(
            out,
            "errors {}: {} permission denied, {} vanished, {} busy, {} moved, {} other",
            e.total(),
            e.permission_denied,
            e.vanished,
            e.busy,
            e.moved,
            e.other
        )?;
        let mut stderr = std::io::stderr().lock();
        for sample in &report.error_samples {
            // stderr is where failures go; if it is gone too there is no one to tell.
            let _ = writeln!(
                stderr,
                "backstop-sweep: {}: {}",
                sample.path.display(),
                sample.message
            );
        }
    }
    Ok(())
}
