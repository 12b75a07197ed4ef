//! `backstop-sim`: replay traffic and disk-pressure traces through backstop on virtual
//! time, check every invariant, and report.
//!
//! Exit codes: 0 clean, 1 an invariant was violated, 2 bad input (trace, config, flags)
//! or a run that could not complete.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use backstop_sim::config::{SimConfig, parse_duration};
use backstop_sim::replay::Progress;
use backstop_sim::report::RunOutput;
use backstop_sim::run::{self, RunOptions};
use backstop_sim::scenario::{GenParams, Generator, Scenario};
use backstop_sim_check::check::{CheckParams, CheckRunError, check_log};
use backstop_sim_check::log::LogReader;
use backstop_sim_check::trace::{TraceReader, TraceWriter};

/// Exit code: every invariant held.
const EXIT_CLEAN: u8 = 0;
/// Exit code: an invariant was violated.
const EXIT_VIOLATION: u8 = 1;
/// Exit code: bad input, or the run could not complete.
const EXIT_BAD_INPUT: u8 = 2;

/// The built-in scenario's mean request rate per second (3/min, peaking above 30/min in
/// its flash crowd).
const DAY_RATE_PER_S: f64 = 0.05;

#[derive(Parser)]
#[command(
    name = "backstop-sim",
    version,
    about = "Deterministic replay of traffic and disk-pressure traces through backstop, with invariant checks.",
    long_about = "Deterministic replay of traffic and disk-pressure traces through backstop, with invariant checks.\n\nWith no command: replays the built-in 24-hour scenario, prints the report and writes the charts and report.html to target/backstop-sim/.\n\nExit codes: 0 clean, 1 an invariant was violated, 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a trace file, or a generated scenario, and check it.
    Run(RunArgs),
    /// Write a generated scenario as a trace file.
    Gen(GenArgs),
    /// Run the checkers on a decision log against its trace.
    Check(CheckArgs),
}

#[derive(Args)]
struct ScenarioArgs {
    /// Scenario: day, steady, bursts, diurnal, flash-crowd, window-edge, many-clients,
    /// disk-fill, memory-dip.
    #[arg(long)]
    scenario: Option<Scenario>,
    /// Root seed (overrides the config's).
    #[arg(long)]
    seed: Option<u64>,
    /// Virtual length of the generated trace, e.g. 24h, 90m.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    duration: Duration,
    /// Mean requests per second.
    #[arg(long, default_value_t = DAY_RATE_PER_S)]
    rate: f64,
}

#[derive(Args)]
struct RunArgs {
    /// Trace file (JSON Lines) to replay.
    #[arg(long, conflicts_with = "scenario")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    scen: ScenarioArgs,
    /// Config file (TOML); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the decision log (JSON Lines) here.
    #[arg(long)]
    decisions_out: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write SVG charts into this directory, and the HTML report beside them
    /// (DIR/report.html) unless --html names another file.
    #[arg(long)]
    charts: Option<PathBuf>,
    /// Write the self-contained HTML report (tables and charts, opens offline) here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Parent directory for the run's scratch temp files (default: the system temp dir).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Do not print the report.
    #[arg(long)]
    quiet: bool,
    /// Replicas of the front door sharing the traffic, round-robin in arrival order
    /// (more than one needs --store).
    #[arg(long, default_value_t = 1, value_name = "K")]
    replicas: u32,
    /// The store every replica keeps its limits in: redis://HOST[:PORT][/DB]. Without
    /// it the one replica keeps them in process.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

#[derive(Args)]
struct GenArgs {
    #[command(flatten)]
    scen: ScenarioArgs,
    /// Config file (TOML): the disk capacity and rate limit the scenario targets.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output trace file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// The trace the log answers.
    #[arg(long)]
    trace: PathBuf,
    /// The decision log.
    #[arg(long)]
    decisions: PathBuf,
    /// The config of the run.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// A failure that ends the process with a code and one readable line.
struct Failure {
    code: u8,
    message: String,
}

fn bad(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_BAD_INPUT,
        message: message.to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => builtin(),
        Some(Command::Run(a)) => cmd_run(a),
        Some(Command::Gen(a)) => cmd_gen(a),
        Some(Command::Check(a)) => cmd_check(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("backstop-sim: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn load_config(path: Option<&Path>, seed: Option<u64>) -> Result<SimConfig, Failure> {
    let mut c = match path {
        Some(p) => SimConfig::load(p).map_err(bad)?,
        None => SimConfig::default(),
    };
    if let Some(s) = seed {
        c.seed = s;
    }
    Ok(c)
}

fn gen_params(a: &ScenarioArgs, scenario: Scenario, c: &SimConfig) -> Result<GenParams, Failure> {
    let p = GenParams {
        scenario,
        seed: c.seed,
        duration_us: a.duration.as_micros() as u64,
        rate_per_s: a.rate,
        rate_limit: c.limits.rate.limit,
        rate_window_us: c.rate_window_us(),
        disk_capacity_bytes: c.disk.capacity_bytes,
    };
    p.validate().map_err(bad)?;
    Ok(p)
}

fn default_charts_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("backstop-sim")
}

fn builtin() -> Result<u8, Failure> {
    cmd_run(RunArgs {
        trace: None,
        scen: ScenarioArgs {
            scenario: Some(Scenario::Day),
            seed: None,
            duration: Duration::from_secs(86_400),
            rate: DAY_RATE_PER_S,
        },
        config: None,
        decisions_out: None,
        report_json: None,
        charts: Some(default_charts_dir()),
        html: None,
        scratch: None,
        quiet: false,
        replicas: 1,
        store: None,
    })
}

/// Shows a progress bar on a terminal once a run has taken a second.
struct Bar {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
    terminal: bool,
}

impl Bar {
    fn new(total_us: Option<u64>) -> Self {
        // A trace file's length in virtual time is unknown until its end: a spinner then.
        let (bar, template) = match total_us {
            Some(t) => (
                ProgressBar::with_draw_target(Some(t / 1_000_000), ProgressDrawTarget::hidden()),
                "{bar:40} {pos}/{len} simulated s  {msg}",
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
                "{spinner} {pos} simulated s  {msg}",
            ),
        };
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Bar {
            bar,
            started: Instant::now(),
            shown: false,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, p: Progress) {
        if !self.shown && self.terminal && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position(p.t_us / 1_000_000);
        self.bar.set_message(format!("{} events", p.events));
    }
}

fn reproduce_command(a: &RunArgs, seed: u64) -> String {
    let mut cmd = String::from("cargo run --release -p backstop-sim -- run");
    match (&a.trace, a.scen.scenario) {
        (Some(t), _) => cmd += &format!(" --trace {}", t.display()),
        (None, Some(s)) => {
            cmd += &format!(
                " --scenario {s} --duration {}s --rate {}",
                a.scen.duration.as_secs_f64(),
                a.scen.rate
            )
        }
        (None, None) => {}
    }
    cmd += &format!(" --seed {seed}");
    if let Some(c) = &a.config {
        cmd += &format!(" --config {}", c.display());
    }
    if a.replicas != 1 {
        cmd += &format!(" --replicas {}", a.replicas);
    }
    if let Some(url) = &a.store {
        // A URL with credentials is not repeated on the terminal.
        let shown = if url.contains('@') { "URL" } else { url };
        cmd += &format!(" --store {shown}");
    }
    cmd + " --decisions-out decisions.jsonl"
}

/// `--replicas` and `--store`, checked before anything is read or written.
fn replicas(a: &RunArgs) -> Result<NonZeroU32, Failure> {
    let k = NonZeroU32::new(a.replicas).ok_or_else(|| bad("--replicas must be at least 1"))?;
    run::validate_replicas(k, a.store.as_deref()).map_err(bad)?;
    Ok(k)
}

/// The report's description of the input, with the replicas when there are several or
/// a store.
fn label(base: String, a: &RunArgs) -> String {
    match &a.store {
        None => base,
        Some(_) => format!(
            "{base}; {} replica{} sharing a Redis store",
            a.replicas,
            if a.replicas == 1 { "" } else { "s" }
        ),
    }
}

fn cmd_run(a: RunArgs) -> Result<u8, Failure> {
    replicas(&a)?;
    let config = load_config(a.config.as_deref(), a.scen.seed)?;
    let mut log_file = match &a.decisions_out {
        Some(p) => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(p).map_err(|e| bad(format!("creating {}: {e}", p.display())))?,
        )),
        None => None,
    };
    let replayed = replay(&a, &config, log_file.as_mut());
    let out = match replayed {
        Ok(out) => out,
        Err(f) => {
            // Nothing half-written: a run that stopped leaves no partial decision log.
            drop(log_file);
            if let Some(p) = &a.decisions_out {
                let _ = std::fs::remove_file(p);
            }
            return Err(f);
        }
    };
    if let Some(w) = log_file {
        w.into_inner()
            .map_err(|e| bad(format!("writing the decision log: {e}")))?;
    }
    finish_run(&a, &config, &out)
}

fn replay(
    a: &RunArgs,
    config: &SimConfig,
    mut log_file: Option<&mut BufWriter<File>>,
) -> Result<RunOutput, Failure> {
    let out = match (&a.trace, a.scen.scenario) {
        (Some(path), _) => {
            let f = File::open(path)
                .map_err(|e| bad(format!("opening trace {}: {e}", path.display())))?;
            let reader = TraceReader::new(BufReader::with_capacity(1 << 20, f));
            let mut bar = Bar::new(None);
            let mut cb = |p: Progress| bar.update(p);
            let opts = RunOptions {
                decisions_out: log_file.as_mut().map(|w| &mut **w as &mut dyn Write),
                scratch_parent: a.scratch.clone(),
                progress: Some(&mut cb),
                source_label: label(format!("trace {}", path.display()), a),
                replicas: replicas(a)?,
                store: a.store.clone(),
            };
            let r =
                run::run(config, reader, opts).map_err(|e| bad(format!("{}: {e}", path.display())));
            bar.bar.finish_and_clear();
            r?
        }
        (None, Some(s)) => {
            let p = gen_params(&a.scen, s, config)?;
            let mut bar = Bar::new(Some(p.duration_us));
            let mut cb = |pr: Progress| bar.update(pr);
            let text = format!(
                "scenario {s}, {} at {} req/s",
                backstop_sim::report::fmt_us(p.duration_us),
                p.rate_per_s
            );
            let opts = RunOptions {
                decisions_out: log_file.as_mut().map(|w| &mut **w as &mut dyn Write),
                scratch_parent: a.scratch.clone(),
                progress: Some(&mut cb),
                source_label: label(text, a),
                replicas: replicas(a)?,
                store: a.store.clone(),
            };
            let r = run::run(config, Generator::new(p), opts).map_err(bad);
            bar.bar.finish_and_clear();
            r?
        }
        (None, None) => return Err(bad("run needs --trace FILE or --scenario NAME")),
    };
    Ok(out)
}

fn finish_run(a: &RunArgs, config: &SimConfig, out: &RunOutput) -> Result<u8, Failure> {
    if !a.quiet {
        print!("{}", out.report.render_text());
    }
    if let Some(p) = &a.report_json {
        let text = serde_json::to_string_pretty(&out.report).map_err(bad)?;
        std::fs::write(p, text + "\n").map_err(|e| bad(format!("writing {}: {e}", p.display())))?;
    }
    let html = a
        .html
        .clone()
        .or_else(|| a.charts.as_ref().map(|d| d.join("report.html")));
    if a.charts.is_some() || html.is_some() {
        let charts = backstop_sim::charts::render(&out.series, config)
            .map_err(|e| bad(format!("drawing the charts: {e}")))?;
        if let Some(dir) = &a.charts {
            let files = backstop_sim::charts::write_all(dir, &charts)
                .map_err(|e| bad(format!("writing charts to {}: {e}", dir.display())))?;
            if !a.quiet {
                println!("  charts              {}", files.join(", "));
            }
        }
        if let Some(p) = &html {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| bad(format!("creating {}: {e}", parent.display())))?;
            }
            std::fs::write(p, backstop_sim::html::render(&out.report, &charts))
                .map_err(|e| bad(format!("writing {}: {e}", p.display())))?;
            if !a.quiet {
                println!("  html report         {}", p.display());
            }
        }
    }
    match &out.check.first {
        None => Ok(EXIT_CLEAN),
        Some(v) => {
            eprintln!("backstop-sim: {v}");
            eprintln!(
                "backstop-sim: seed {}; reproduce with: {}",
                config.seed,
                reproduce_command(a, config.seed)
            );
            Ok(EXIT_VIOLATION)
        }
    }
}

fn cmd_gen(a: GenArgs) -> Result<u8, Failure> {
    let config = load_config(a.config.as_deref(), a.scen.seed)?;
    let Some(scenario) = a.scen.scenario else {
        return Err(bad("gen needs --scenario NAME"));
    };
    let p = gen_params(&a.scen, scenario, &config)?;
    let f = File::create(&a.out).map_err(|e| bad(format!("creating {}: {e}", a.out.display())))?;
    let mut w = TraceWriter::new(BufWriter::with_capacity(1 << 20, f));
    let writing = |e: std::io::Error| bad(format!("writing {}: {e}", a.out.display()));
    let mut n = 0u64;
    for ev in Generator::new(p) {
        w.write(&ev, Generator::key_name).map_err(writing)?;
        n += 1;
    }
    w.finish().map_err(writing)?;
    eprintln!("backstop-sim: wrote {n} events to {}", a.out.display());
    Ok(EXIT_CLEAN)
}

fn cmd_check(a: CheckArgs) -> Result<u8, Failure> {
    let config = load_config(a.config.as_deref(), None)?;
    let open = |p: &Path| {
        File::open(p)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(|e| bad(format!("opening {}: {e}", p.display())))
    };
    let trace = TraceReader::new(open(&a.trace)?);
    let log = LogReader::new(open(&a.decisions)?);
    let summary = check_log(CheckParams::from(&config), trace, log).map_err(|e| match e {
        CheckRunError::Trace(e) => bad(format!("{}: {e}", a.trace.display())),
        CheckRunError::Log(e) => bad(format!("{}: {e}", a.decisions.display())),
    })?;
    match &summary.first {
        None => {
            println!(
                "backstop-sim: all invariants held over {} decision-log records",
                summary.records
            );
            Ok(EXIT_CLEAN)
        }
        Some(v) => {
            eprintln!(
                "backstop-sim: {v} ({} violation(s) in all)",
                summary.violations
            );
            eprintln!(
                "backstop-sim: the offending record is line {} of {} (seed {}); reproduce with: backstop-sim check --trace {} --decisions {}{}",
                v.record,
                a.decisions.display(),
                config.seed,
                a.trace.display(),
                a.decisions.display(),
                a.config
                    .as_ref()
                    .map(|c| format!(" --config {}", c.display()))
                    .unwrap_or_default()
            );
            Ok(EXIT_VIOLATION)
        }
    }
}
