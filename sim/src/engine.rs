//! The discrete-event engine: one thread, virtual time, events ordered by (time, phase,
//! order of creation). See `sim/README.md` for the precise semantics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::check::{CheckParams, CheckSummary, Checker};
use crate::config::SimConfig;
use crate::disk::{DiskError, TempDisk};
use crate::layout::{file_bytes, stage_files, stage_start_us};
use crate::log::{Outcome, Record, Trigger};
use crate::report::{Report, Series, Stats};
use crate::rng::{SimRng, Stream};
use crate::scenario::Generator;
use crate::service::{Admit, Executor, Held, Service, ServiceError, SimDoor};
use crate::trace::{Event, Request, TraceError, TraceReader};
use std::num::NonZeroU32;

/// Where trace events come from: a file or a generator.
pub trait EventSource {
    /// The next event in time order, `None` at the end.
    fn next_event(&mut self) -> Result<Option<Event>, TraceError>;

    /// The name of interned client key `k`, for the per-client stage; `None` names it
    /// `key-<k>`.
    fn key_name(&self, k: u32) -> Option<String> {
        let _ = k;
        None
    }
}

impl<R: BufRead> EventSource for TraceReader<R> {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        TraceReader::next_event(self)
    }

    fn key_name(&self, k: u32) -> Option<String> {
        self.keys().name(k).map(str::to_owned)
    }
}

/// Events already in memory (any iterator), e.g. for benchmarks.
///
/// The iterator must yield events in time order with unique request ids; unlike
/// [`TraceReader`] it is not validated.
#[derive(Debug, Clone)]
pub struct Events<I>(pub I);

impl<I: Iterator<Item = Event>> EventSource for Events<I> {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        Ok(self.0.next())
    }
}

impl EventSource for Generator {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        Ok(self.next())
    }

    fn key_name(&self, k: u32) -> Option<String> {
        Some(Generator::key_name(k))
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The trace is malformed.
    #[error("{0}")]
    Trace(#[from] TraceError),
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] backstop_core::ConfigError),
    /// The scratch directory failed.
    #[error("{0}")]
    Disk(#[from] DiskError),
    /// Writing the decision log failed.
    #[error("writing the decision log: {0}")]
    Log(std::io::Error),
    /// A replica could not answer.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// Replicas that cannot share one limit, or a store that cannot be used.
    #[error("{0}")]
    Replicas(String),
}

/// Progress of a run, reported every few thousand events.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Virtual time reached, µs.
    pub t_us: u64,
    /// Trace events consumed.
    pub events: u64,
}

/// Everything a run needs besides the config and the trace.
pub struct RunOptions<'a> {
    /// Where to write the decision log (buffer it).
    pub decisions_out: Option<&'a mut dyn Write>,
    /// Parent of the scratch directory (the system temp dir when `None`).
    pub scratch_parent: Option<PathBuf>,
    /// Called every 65 536 trace events.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
    /// Describes the input in the report (a path or a scenario).
    pub source_label: String,
    /// How many replicas of the front door share the traffic (round-robin in arrival
    /// order). More than one needs [`store`](Self::store): replicas that keep their
    /// limits in process would each enforce the whole limit.
    pub replicas: NonZeroU32,
    /// The store the replicas share (`redis://…`), or `None` for in-process limits.
    pub store: Option<String>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            decisions_out: None,
            scratch_parent: None,
            progress: None,
            source_label: String::new(),
            replicas: NonZeroU32::MIN,
            store: None,
        }
    }
}

/// Why `replicas` and `store` cannot run together, if they cannot.
///
/// # Errors
///
/// A one-line reason.
pub fn validate_replicas(replicas: NonZeroU32, store: Option<&str>) -> Result<(), String> {
    match store {
        None if replicas.get() > 1 => Err(format!(
            "--replicas {replicas} needs --store URL: replicas without a shared store would each \
             keep their own limits ({replicas} × the rate limit, queue and slots)"
        )),
        None => Ok(()),
        Some(url) => crate::store::validate_url(url),
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutput {
    /// The report (its `wall` section is the only part that varies between runs).
    pub report: Report,
    /// Time series for charts.
    pub series: Series,
    /// The checkers' verdict.
    pub check: CheckSummary,
}

#[derive(Debug)]
struct Queued<T> {
    req: Request,
    /// The real queue's ticket and its replica: the place is held until the job starts.
    ticket: Held<T>,
}

#[derive(Debug)]
struct RunningJob<P> {
    req: Request,
    /// The real slot's permit and its replica, released when the job ends.
    permit: Held<P>,
    start_us: u64,
    /// When it crashes, if it does (within its run).
    crash_at_us: Option<u64>,
    next_stage: u32,
    /// Start order: breaks ties between this job's events and others' at one instant.
    order: u64,
}

/// Internal event kinds; at one instant ends come before stage writes.
const KIND_END: u8 = 0;
const KIND_STAGE: u8 = 1;

struct Engine<'a, D: SimDoor, X> {
    cfg: SimConfig,
    service: Service<D, X>,
    disk: TempDisk,
    checker: Checker,
    log: Option<&'a mut dyn Write>,
    crashes: SimRng,
    queue: VecDeque<Queued<D::Ticket>>,
    /// Running jobs by slot; `free` lists unused slots.
    slots: Vec<Option<RunningJob<D::Permit>>>,
    free: Vec<usize>,
    /// (time, kind, start order, slot).
    heap: BinaryHeap<Reverse<(u64, u8, u64, usize)>>,
    starts: u64,
    memory_bytes: u64,
    background_bytes: u64,
    pressure_bytes: u64,
    last_pressure_us: Option<u64>,
    stats: Stats,
    series: Series,
}

/// Replays `source` through the modelled service under `config`, checking every
/// invariant as it goes.
///
/// ```
/// use backstop_sim::config::SimConfig;
/// use backstop_sim::engine::{run, RunOptions};
/// use backstop_sim::trace::TraceReader;
/// let trace = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":1000,\"files\":2,\"bytes\":10}\n\
///              {\"t_us\":0,\"type\":\"request\",\"id\":2,\"job_us\":1000}\n";
/// let mut config = SimConfig::default();
/// config.limits.rate.limit = 1;
/// let out = run(&config, TraceReader::new(trace.as_bytes()), RunOptions::default())?;
/// assert_eq!(out.report.sim.admitted, 1);
/// assert_eq!(out.report.sim.rate_limited, 1);
/// assert_eq!(out.check.violations, 0);
/// # Ok::<(), backstop_sim::engine::SimError>(())
/// ```
pub fn run<S: EventSource>(
    config: &SimConfig,
    source: S,
    opts: RunOptions<'_>,
) -> Result<RunOutput, SimError> {
    config.validate()?;
    validate_replicas(opts.replicas, opts.store.as_deref()).map_err(SimError::Replicas)?;
    match opts.store.clone() {
        None => {
            let service = Service::new(&config.limits, config.per_key.as_ref())?;
            run_with(config, source, opts, service)
        }
        Some(url) => crate::store::run(config, source, opts, &url),
    }
}

/// [`run`] on a service already built: replicas of a door of one's own (tests build
/// several handles on one shared in-process door with it). The service's replicas must be
/// on the clock it was built with, and `opts.replicas` and `opts.store` are not read.
///
/// # Errors
///
/// As [`run`].
pub fn run_with<S: EventSource, D: SimDoor, X: Executor>(
    config: &SimConfig,
    mut source: S,
    opts: RunOptions<'_>,
    service: Service<D, X>,
) -> Result<RunOutput, SimError> {
    let wall_start = Instant::now();
    let RunOptions {
        decisions_out,
        scratch_parent,
        mut progress,
        source_label,
        replicas: _,
        store: _,
    } = opts;
    let mut e = Engine {
        service,
        disk: TempDisk::new(scratch_parent.as_deref())?,
        checker: Checker::new(CheckParams::from(config)),
        log: decisions_out,
        crashes: SimRng::new(config.seed, Stream::Crashes),
        queue: VecDeque::with_capacity(config.limits.queue.max.min(1 << 16) as usize),
        slots: Vec::new(),
        free: Vec::new(),
        heap: BinaryHeap::new(),
        starts: 0,
        memory_bytes: u64::MAX,
        background_bytes: 0,
        pressure_bytes: config.pressure_bytes(),
        last_pressure_us: None,
        stats: Stats::new(),
        series: Series::new(),
        cfg: config.clone(),
    };
    // The gate is judged once before anything happens: a disk smaller than the free-space
    // minimum is short from t = 0, before the first sweep or reading.
    e.update_gate(0)?;
    let interval_us = config.sweep.interval.as_micros() as u64;
    let mut next_sweep_us = 0u64;
    let mut next_trace = source.next_event()?;
    let mut events = 0u64;
    let mut now_us = 0u64;
    // Client names, resolved once per key and only when the per-client stage is on.
    let mut key_names: Vec<String> = Vec::new();
    let per_key = config.per_key.is_some();
    loop {
        let internal = e.heap.peek().map(|Reverse((t, ..))| *t);
        let trace_t = next_trace.as_ref().map(Event::t_us);
        let horizon = match (internal, trace_t) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        // Earliest first; at one instant job events, then sweeps, then trace events.
        // Sweeps run only while something else is pending (a run ends when nothing is).
        let sweep_first =
            next_sweep_us < horizon || (next_sweep_us == horizon && internal != Some(horizon));
        if sweep_first {
            now_us = next_sweep_us;
            e.sweep(next_sweep_us, Trigger::Schedule)?;
            e.pressure_check(now_us)?;
            next_sweep_us = next_sweep_us.saturating_add(interval_us);
        } else if internal == Some(horizon) {
            let Reverse((t, kind, _, slot)) = e.heap.pop().expect("peeked");
            now_us = t;
            if kind == KIND_END {
                e.end_job(t, slot)?;
            } else {
                e.stage(t, slot)?;
            }
            e.pressure_check(t)?;
        } else {
            let ev = next_trace.take().expect("horizon came from the trace");
            now_us = ev.t_us();
            let key = match ev {
                Event::Request(Request { key: Some(k), .. }) if per_key => {
                    let k = k as usize;
                    while key_names.len() <= k {
                        let i = key_names.len() as u32;
                        key_names.push(source.key_name(i).unwrap_or_else(|| format!("key-{i}")));
                    }
                    Some(key_names[k].as_str())
                }
                _ => None,
            };
            e.trace_event(ev, key)?;
            e.pressure_check(now_us)?;
            next_trace = source.next_event()?;
            events += 1;
            if events & 0xFFFF == 0 {
                if let Some(p) = progress.as_mut() {
                    p(Progress {
                        t_us: now_us,
                        events,
                    });
                }
            }
        }
    }
    if let Some(log) = e.log.as_mut() {
        log.flush().map_err(SimError::Log)?;
    }
    let check = e.checker.finish();
    let report = e.stats.report(
        &e.cfg,
        &source_label,
        now_us,
        e.queue.len() as u64,
        e.slots.iter().flatten().count() as u64,
        &check,
        wall_start.elapsed(),
        events,
    );
    Ok(RunOutput {
        report,
        series: e.series,
        check,
    })
}

impl<D: SimDoor, X: Executor> Engine<'_, D, X> {
    #[inline]
    fn emit(&mut self, rec: Record) -> Result<(), SimError> {
        self.checker.on_record(&rec);
        if let Some(log) = self.log.as_mut() {
            rec.write_json(log).map_err(SimError::Log)?;
            self.stats.decisions_written += 1;
        }
        Ok(())
    }

    fn disk_used(&self) -> u64 {
        self.background_bytes.saturating_add(self.disk.temp_bytes())
    }

    fn update_gate(&mut self, t_us: u64) -> Result<(), SimError> {
        let used = self.disk_used();
        self.stats.disk_peak(used, self.disk.temp_bytes());
        self.series.disk(t_us, used);
        let free = self.cfg.disk.capacity_bytes.saturating_sub(used);
        if let Some(change) =
            self.service
                .observe(t_us.saturating_mul(1000), self.memory_bytes, free)
        {
            self.stats.gate_change(t_us, change);
            self.emit(Record::Gate {
                t_us,
                open: change.is_none(),
                reason: change,
            })?;
        }
        Ok(())
    }

    fn dispatch(&mut self, t_us: u64) -> Result<(), SimError> {
        // Every slot is taken by a job this engine started: a start would only be
        // refused (a round trip each with a store). Should the door hold fewer slots
        // than that, the checkers see a slot idle while a job waits.
        if self.slots.len() - self.free.len() >= self.cfg.limits.jobs.max as usize {
            return Ok(());
        }
        while let Some(q) = self.queue.pop_front() {
            match self
                .service
                .try_start(t_us.saturating_mul(1000), q.ticket)?
            {
                Ok(permit) => {
                    self.series.queue(t_us, self.queue.len() as u64);
                    self.start_job(t_us, q.req, permit)?;
                }
                Err(ticket) => {
                    // No slot, or the gate is closed: it stays at the head of the queue.
                    self.queue.push_front(Queued { req: q.req, ticket });
                    break;
                }
            }
        }
        Ok(())
    }

    fn start_job(
        &mut self,
        t_us: u64,
        req: Request,
        permit: Held<D::Permit>,
    ) -> Result<(), SimError> {
        self.emit(Record::JobStart { t_us, id: req.id })?;
        self.stats.job_started(t_us - req.t_us);
        // One crash draw per started job, in start order, then its instant.
        let crash_at_us = if self.crashes.chance(self.cfg.crash_fraction) {
            Some(t_us + self.crashes.below(req.job_us.saturating_add(1)))
        } else {
            None
        };
        self.starts += 1;
        let order = self.starts;
        let job = RunningJob {
            req,
            permit,
            start_us: t_us,
            crash_at_us,
            next_stage: 0,
            order,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(job);
                s
            }
            None => {
                self.slots.push(Some(job));
                self.slots.len() - 1
            }
        };
        let end_us = crash_at_us.unwrap_or(t_us + req.job_us);
        self.heap.push(Reverse((end_us, KIND_END, order, slot)));
        // A job writes the stages due strictly before it ends (ends come first at an
        // instant): one ending at its start instant, zero-length or crashed, writes none.
        if t_us < end_us {
            self.write_stage(t_us, slot)?;
        }
        Ok(())
    }

    /// Writes the job's next stage and schedules the one after, if it comes before the
    /// job ends.
    fn write_stage(&mut self, t_us: u64, slot: usize) -> Result<(), SimError> {
        let stages = self.cfg.disk.stages;
        let job = self.slots[slot].as_mut().expect("running");
        let stage = job.next_stage;
        job.next_stage += 1;
        let (req, start_us, crash_at_us, order) =
            (job.req, job.start_us, job.crash_at_us, job.order);
        let range = stage_files(req.files, stages, stage);
        if !range.is_empty() {
            let bytes: u64 = range
                .clone()
                .map(|i| file_bytes(req.files, req.bytes, i))
                .sum();
            self.disk.write_files(
                req.id,
                stage,
                range.clone(),
                |i| file_bytes(req.files, req.bytes, i),
                t_us,
            )?;
            self.emit(Record::FilesWritten {
                t_us,
                id: req.id,
                stage,
                files: range.len() as u32,
                bytes,
            })?;
        }
        if stage + 1 < stages {
            let next_us = stage_start_us(start_us, req.job_us, stages, stage + 1);
            let end_us = crash_at_us.unwrap_or(start_us + req.job_us);
            // A stage due exactly at the end never runs: ends come first at an instant.
            if next_us < end_us {
                self.heap.push(Reverse((next_us, KIND_STAGE, order, slot)));
            }
        }
        if !range.is_empty() {
            self.update_gate(t_us)?;
        }
        Ok(())
    }

    fn stage(&mut self, t_us: u64, slot: usize) -> Result<(), SimError> {
        self.write_stage(t_us, slot)?;
        self.dispatch(t_us)
    }

    fn end_job(&mut self, t_us: u64, slot: usize) -> Result<(), SimError> {
        let job = self.slots[slot].take().expect("running");
        self.free.push(slot);
        let crashed = job.crash_at_us.is_some();
        if crashed {
            self.disk.abandon_job(job.req.id);
        } else {
            self.disk.remove_job(job.req.id)?;
        }
        self.service.finish(job.permit)?;
        self.stats.job_ended(crashed);
        self.emit(Record::JobEnd {
            t_us,
            id: job.req.id,
            crashed,
        })?;
        self.update_gate(t_us)?;
        self.dispatch(t_us)
    }

    fn sweep(&mut self, t_us: u64, trigger: Trigger) -> Result<(), SimError> {
        let (older_than, goal) = match trigger {
            Trigger::Schedule => (self.cfg.sweep.max_age, None),
            Trigger::Pressure => (
                self.cfg.sweep.pressure_max_age,
                Some(self.disk_used().saturating_sub(self.pressure_bytes)),
            ),
        };
        let older_than_us = older_than.as_micros() as u64;
        let outcome = self.disk.sweep(t_us, older_than_us, goal)?;
        let mut bytes_freed = 0;
        for &(id, file, f) in &outcome.removed {
            bytes_freed += f.bytes;
            self.emit(Record::FileRemoved { t_us, id, file })?;
        }
        let files_removed = outcome.removed.len() as u64;
        self.stats.sweep(
            trigger,
            files_removed,
            bytes_freed,
            outcome.files_removed_real,
            outcome.elapsed,
        );
        self.series.sweep(t_us, trigger, files_removed);
        self.emit(Record::Sweep {
            t_us,
            trigger,
            older_than_us,
            byte_goal: goal,
            files_removed,
            bytes_freed,
        })?;
        self.update_gate(t_us)?;
        self.dispatch(t_us)
    }

    /// After every event: a pressure sweep when the disk is fuller than the threshold and
    /// none ran within the cooldown.
    #[inline]
    fn pressure_check(&mut self, t_us: u64) -> Result<(), SimError> {
        let cooled = self.last_pressure_us.is_none_or(|l| {
            t_us >= l.saturating_add(self.cfg.sweep.pressure_cooldown.as_micros() as u64)
        });
        if cooled && self.disk_used() > self.pressure_bytes {
            self.last_pressure_us = Some(t_us);
            self.sweep(t_us, Trigger::Pressure)?;
        }
        Ok(())
    }

    #[inline]
    fn trace_event(&mut self, ev: Event, key: Option<&str>) -> Result<(), SimError> {
        self.checker.expect_input(&ev);
        match ev {
            Event::Request(req) => self.request(req, key),
            Event::Memory {
                t_us,
                available_bytes,
            } => {
                self.emit(Record::Memory {
                    t_us,
                    available_bytes,
                })?;
                self.memory_bytes = available_bytes;
                self.update_gate(t_us)?;
                self.dispatch(t_us)
            }
            Event::Disk { t_us, used_bytes } => {
                self.emit(Record::Disk { t_us, used_bytes })?;
                self.background_bytes = used_bytes;
                self.update_gate(t_us)?;
                self.dispatch(t_us)
            }
        }
    }

    #[inline]
    fn request(&mut self, req: Request, key: Option<&str>) -> Result<(), SimError> {
        let t_us = req.t_us;
        let admit = self.service.try_admit(t_us.saturating_mul(1000), key)?;
        let mut ticket = None;
        let (outcome, reason, retry_after_us) = match admit {
            Admit::Admitted(t) => {
                ticket = Some(t);
                (Outcome::Admitted, None, None)
            }
            Admit::RateLimited { retry_after_ns } => (
                Outcome::RateLimited,
                None,
                Some(retry_after_ns.div_ceil(1000)),
            ),
            Admit::Overloaded {
                reason,
                retry_after_hint_ns,
            } => (
                Outcome::Overloaded,
                Some(reason),
                retry_after_hint_ns.map(|n| n.div_ceil(1000)),
            ),
        };
        self.stats.decision(outcome, reason);
        self.series.decision(t_us, outcome);
        self.emit(Record::Decision {
            t_us,
            id: req.id,
            outcome,
            reason,
            retry_after_us,
        })?;
        if let Some(ticket) = ticket {
            self.queue.push_back(Queued { req, ticket });
            self.stats.queue_depth(self.queue.len() as u64);
            self.series.queue(t_us, self.queue.len() as u64);
            self.dispatch(t_us)?;
        }
        Ok(())
    }
}

/// Runs with the report's wall-clock section dropped: what determinism promises.
pub fn deterministic_json(report: &Report) -> String {
    serde_json::to_string_pretty(&report.deterministic()).expect("report serialises")
}
