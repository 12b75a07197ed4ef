//! The invariant checkers. They read only the trace and the decision log, so they judge
//! any run (`backstop-sim check`) and, inline, every run of the engine.
//!
//! Numbering follows `sim/README.md`: 1 rate safety, 2 no false 429, 3 queue, 4 jobs,
//! 5 cleanup, 6 conservation.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use backstop_core::RateScope;
use backstop_core::model::{KeyedModel, Refused, WindowModel, rate_stages};
use serde::Serialize;

use crate::config::SimConfig;
use crate::engine::EventSource;
use crate::layout::{file_bytes, stage_files};
use crate::log::{GateReason, Outcome, OverloadReason, Record, Trigger};
use crate::log::{LogError, LogReader};
use crate::trace::TraceError;
use crate::trace::{Event, Request};

/// Which invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// 1: no window holds more than `limit` passes.
    RateSafety,
    /// 2: every 429 found a full window and carries the exact `retry_after`.
    NoFalse429,
    /// 3: the queue bound and `queue_full` only at the bound.
    Queue,
    /// 4: slots, FIFO, the gate, no idle slot while a job waits.
    Jobs,
    /// 4 (gate): the gate state agrees with the readings and thresholds.
    Gate,
    /// 5: sweeps remove old files and only old files.
    Cleanup,
    /// 6: one decision per request; jobs start and end once.
    Conservation,
    /// The log contradicts itself (out of order, counts that do not add up).
    Log,
}

impl Invariant {
    /// Number and name, as the README lists them.
    pub fn title(self) -> &'static str {
        match self {
            Invariant::RateSafety => "1 rate safety",
            Invariant::NoFalse429 => "2 no false 429",
            Invariant::Queue => "3 queue",
            Invariant::Jobs => "4 jobs",
            Invariant::Gate => "4 jobs (resource gate)",
            Invariant::Cleanup => "5 cleanup",
            Invariant::Conservation => "6 conservation",
            Invariant::Log => "log consistency",
        }
    }
}

/// The first broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which one.
    pub invariant: Invariant,
    /// 1-based index of the offending record in the decision log.
    pub record: u64,
    /// Its virtual time.
    pub t_us: u64,
    /// What is wrong.
    pub message: String,
    /// The offending record, as its decision-log line.
    pub event: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} violated at decision-log record {} (t_us {}): {}; offending event: {}",
            self.invariant.title(),
            self.record,
            self.t_us,
            self.message,
            self.event
        )
    }
}

/// The parameters the checkers need from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckParams {
    /// Passes allowed per window.
    pub rate_limit: u32,
    /// Window, µs.
    pub rate_window_us: u64,
    /// Queue bound.
    pub max_queue: u32,
    /// Job slots.
    pub job_slots: u32,
    /// Stages per job.
    pub stages: u32,
    /// Gate thresholds and margins.
    pub min_memory_bytes: u64,
    /// Memory reopen margin.
    pub memory_margin_bytes: u64,
    /// Minimum free disk.
    pub min_disk_bytes: u64,
    /// Disk reopen margin.
    pub disk_margin_bytes: u64,
    /// Disk capacity.
    pub capacity_bytes: u64,
    /// Usage above which the disk is under pressure.
    pub pressure_bytes: u64,
    /// The per-client stage: (passes per window, window µs), when configured.
    pub per_key: Option<(u32, u64)>,
}

impl From<&SimConfig> for CheckParams {
    fn from(c: &SimConfig) -> Self {
        const MIB: u64 = 1 << 20;
        let l = &c.limits;
        let r = &l.resources;
        // A disabled gate never closes: no threshold to fall below, none to clear.
        let gate = |mib: u64| {
            if r.enabled {
                mib.saturating_mul(MIB)
            } else {
                0
            }
        };
        CheckParams {
            rate_limit: l.rate.limit,
            rate_window_us: c.rate_window_us(),
            // Simulated requests are of the normal class: the critical reserve is not theirs.
            max_queue: l.queue.max - l.queue.critical_reserve,
            job_slots: l.jobs.max,
            stages: c.disk.stages,
            min_memory_bytes: gate(r.min_available_memory_mib),
            memory_margin_bytes: gate(r.memory_margin_mib),
            min_disk_bytes: gate(r.min_free_disk_mib),
            disk_margin_bytes: gate(r.disk_margin_mib),
            capacity_bytes: c.disk.capacity_bytes,
            pressure_bytes: c.pressure_bytes(),
            per_key: c
                .per_key
                .as_ref()
                .map(|k| (k.limit, k.window.as_micros() as u64)),
        }
    }
}

/// What the checkers saw, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckSummary {
    /// Records checked.
    pub records: u64,
    /// Violations found (only the first is kept).
    pub violations: u64,
    /// The first.
    pub first: Option<Violation>,
    /// Admitted jobs still queued at the end.
    pub still_queued: u64,
    /// Jobs still running at the end.
    pub still_running: u64,
}

#[derive(Debug, Clone, Copy)]
struct JobSpec {
    id: u64,
    job_us: u64,
    files: u32,
    bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    spec: JobSpec,
    start_us: u64,
}

/// A present temp file in the checker's model.
#[derive(Debug, Clone, Copy)]
struct TempFile {
    mtime_us: u64,
    bytes: u64,
}

/// A trace time in the nanoseconds of the window model. Exact: trace times are below
/// `MAX_TIME_US`, under `u64::MAX / 1000` (asserted in `trace.rs`); saturating for a
/// hand-made log beyond it, which then fails its checks rather than panicking.
fn ns(t_us: u64) -> u64 {
    t_us.saturating_mul(1_000)
}

/// A model time or wait back in trace microseconds: exact for what [`ns`] gave.
fn us(t_ns: u64) -> u64 {
    t_ns / 1_000
}

/// Streaming checker: feed it each trace input with [`expect_input`](Self::expect_input)
/// just before the record that answers it, and every record with
/// [`on_record`](Self::on_record).
#[derive(Debug)]
pub struct Checker {
    p: CheckParams,
    records: u64,
    last_t_us: u64,
    violations: u64,
    first: Option<Violation>,
    /// The trace input the next Decision/Memory/Disk record must answer.
    pending: Option<Event>,
    /// The passes of the global window, in the shared reference model (times in ns, see
    /// [`ns`]).
    passes: WindowModel,
    /// Per-client passes, when the per-client stage is on (its table never full: the
    /// checkers do not judge `too_many_keys`).
    clients: Option<KeyedModel<u32>>,
    waiting: VecDeque<JobSpec>,
    running: Vec<Running>,
    gate_open: bool,
    memory_bytes: Option<u64>,
    background_bytes: u64,
    temp_bytes: u64,
    files: BTreeMap<(u64, u32), TempFile>,
    removed: Vec<(u64, u32, TempFile)>,
    /// The record being checked, for violation messages.
    current: Option<Record>,
}

impl Checker {
    /// A checker for a run with these parameters.
    pub fn new(p: CheckParams) -> Self {
        Checker {
            passes: WindowModel::new(p.rate_limit, ns(p.rate_window_us)),
            clients: p
                .per_key
                .map(|(limit, w)| KeyedModel::new((limit, ns(w)), usize::MAX)),
            waiting: VecDeque::new(),
            running: Vec::with_capacity(p.job_slots as usize),
            p,
            records: 0,
            last_t_us: 0,
            violations: 0,
            first: None,
            pending: None,
            gate_open: true,
            memory_bytes: None,
            background_bytes: 0,
            temp_bytes: 0,
            files: BTreeMap::new(),
            removed: Vec::new(),
            current: None,
        }
    }

    /// The first violation so far.
    pub fn first_violation(&self) -> Option<&Violation> {
        self.first.as_ref()
    }

    /// Called only on a violation, so building `message` costs nothing on clean runs.
    fn fail(&mut self, invariant: Invariant, t_us: u64, message: String) {
        self.violations += 1;
        if self.first.is_none() {
            let event = match self.current {
                Some(rec) => {
                    let mut line = Vec::new();
                    // Writing into a Vec cannot fail.
                    let _ = rec.write_json(&mut line);
                    String::from_utf8_lossy(&line).trim_end().to_owned()
                }
                None => "(end of the decision log)".to_owned(),
            };
            self.first = Some(Violation {
                invariant,
                record: self.records,
                t_us,
                message,
                event,
            });
        }
    }

    /// The trace event the next input-answering record must match.
    pub fn expect_input(&mut self, event: &Event) {
        if let Some(prev) = self.pending.replace(*event) {
            self.fail(Invariant::Conservation, prev.t_us(), {
                format!("trace event {prev:?} got no record in the decision log")
            });
        }
    }

    fn take_input(&mut self, rec: &Record) -> Option<Event> {
        let input = self.pending.take();
        if input.is_none() {
            self.fail(Invariant::Conservation, rec.t_us(), {
                format!("{rec:?} answers no trace event (the trace has none left)")
            });
        }
        input
    }

    /// No slot idles while the gate is open and a job waits; the gate agrees with the
    /// readings. Holds at every point where the engine has finished reacting to a cause.
    fn settled(&mut self, t_us: u64) {
        if self.gate_open
            && !self.waiting.is_empty()
            && self.running.len() < self.p.job_slots as usize
        {
            let (w, r) = (self.waiting.len(), self.running.len());
            self.fail(Invariant::Jobs, t_us, {
                format!("{w} job(s) wait and the gate is open, but only {r} of the slots run")
            });
        }
        let mut must_close = None;
        let mut may_open = true;
        if let Some(m) = self.memory_bytes {
            if m < self.p.min_memory_bytes {
                must_close = Some(GateReason::LowMemory);
            }
            if m <= self
                .p
                .min_memory_bytes
                .saturating_add(self.p.memory_margin_bytes)
            {
                may_open = false;
            }
        }
        let free = self.free_disk_bytes();
        if free < self.p.min_disk_bytes {
            must_close = must_close.or(Some(GateReason::LowDisk));
        }
        if free
            <= self
                .p
                .min_disk_bytes
                .saturating_add(self.p.disk_margin_bytes)
        {
            may_open = false;
        }
        if let Some(reason) = must_close.filter(|_| self.gate_open) {
            self.fail(Invariant::Gate, t_us, {
                format!(
                    "the gate is open although {} is below its threshold",
                    reason.as_str()
                )
            });
        }
        if may_open && !self.gate_open {
            self.fail(Invariant::Gate, t_us, {
                "the gate is closed although every reading is above threshold + margin".into()
            });
        }
    }

    fn free_disk_bytes(&self) -> u64 {
        self.p.capacity_bytes.saturating_sub(self.used_disk_bytes())
    }

    fn used_disk_bytes(&self) -> u64 {
        self.background_bytes.saturating_add(self.temp_bytes)
    }

    /// A pass of the global window: it must be one the rule allows.
    fn rate_pass(&mut self, t_us: u64) {
        if let Err(wait_ns) = self.passes.record(ns(t_us)) {
            let (w, limit) = (self.p.rate_window_us, self.p.rate_limit);
            // The rule waits for the `limit`-th pass before this one, still in the window.
            let oldest = us(ns(t_us).saturating_add(wait_ns)).saturating_sub(w);
            self.fail(Invariant::RateSafety, t_us, {
                format!("{} requests passed the rate limiter in ({}, {t_us}] (oldest at {oldest}), limit {limit}", limit as u64 + 1, t_us.saturating_sub(w))
            });
        }
    }

    /// A pass of client `key`'s own limit (when the per-client stage is on).
    fn key_pass(&mut self, t_us: u64, key: Option<u32>) {
        let (Some(clients), Some(key)) = (&mut self.clients, key) else {
            return;
        };
        if clients.record(&key, ns(t_us)).is_err() {
            let (limit, w) = clients.shape(&key);
            let n = limit as u64 + 1;
            self.fail(Invariant::RateSafety, t_us, format!("{n} requests of client key #{key} passed its limit in ({}, {t_us}], limit {limit}", t_us.saturating_sub(us(w))));
        }
    }

    /// A 429 must be what the rate stages, in their order, say now: the global window
    /// first, then the client's own (whose refusal does not charge the global one).
    fn rate_refusal(&mut self, t_us: u64, key: Option<u32>, retry_after_us: Option<u64>) {
        let now_ns = ns(t_us);
        let client = self.clients.as_ref().zip(key.as_ref());
        let message = match rate_stages(&self.passes, client, now_ns) {
            Err(Refused::RateLimited { wait_ns, scope }) => {
                let exact = us(wait_ns);
                if retry_after_us == Some(exact) {
                    return;
                }
                let which = if scope == RateScope::Global {
                    ""
                } else {
                    "per-client "
                };
                format!("{which}429 retry_after_us is {retry_after_us:?}, exact is {exact}")
            }
            Err(other) => format!("429 where the rate stages say {other:?}"),
            Ok(()) => match client {
                Some((clients, key)) => {
                    let n = clients.window(key).map_or(0, |w| w.in_window(now_ns));
                    let limit = clients.shape(key).0;
                    format!(
                        "429 with {n} passes in client key #{key}'s window (limit {limit}) and room in the global one"
                    )
                }
                None => format!(
                    "429 with only {} passes in the window, limit {}",
                    self.passes.in_window(now_ns),
                    self.p.rate_limit
                ),
            },
        };
        self.fail(Invariant::NoFalse429, t_us, message);
    }

    /// Checks one record.
    pub fn on_record(&mut self, rec: &Record) {
        self.records += 1;
        self.current = Some(*rec);
        let t = rec.t_us();
        if t < self.last_t_us {
            let last = self.last_t_us;
            self.fail(Invariant::Log, t, format!("time goes back from {last}"));
        }
        self.last_t_us = t;
        match *rec {
            // Consequences of the cause before them, not causes.
            Record::JobStart { .. } | Record::Gate { .. } => {}
            Record::FilesWritten { stage: 0, .. } => {}
            // A sweep is one cause: settled before its first removal, not between
            // removals (the gate hears of them only once the sweep is over).
            Record::FileRemoved { .. } | Record::Sweep { .. } if !self.removed.is_empty() => {}
            _ => self.settled(t),
        }
        match *rec {
            Record::Decision {
                t_us,
                id,
                outcome,
                reason,
                retry_after_us,
            } => self.on_decision(rec, t_us, id, outcome, reason, retry_after_us),
            Record::JobStart { t_us, id } => self.on_job_start(t_us, id),
            Record::JobEnd { t_us, id, crashed } => self.on_job_end(t_us, id, crashed),
            Record::Gate { t_us, open, reason } => {
                if open == self.gate_open {
                    self.fail(
                        Invariant::Log,
                        t_us,
                        format!("gate record open={open} does not change the state"),
                    );
                }
                if open == reason.is_some() {
                    self.fail(
                        Invariant::Log,
                        t_us,
                        "a gate closes with a reason and opens without one".into(),
                    );
                }
                self.gate_open = open;
            }
            Record::Memory {
                t_us,
                available_bytes,
            } => {
                match self.take_input(rec) {
                    Some(Event::Memory {
                        t_us: et,
                        available_bytes: eb,
                    }) if et == t_us && eb == available_bytes => {}
                    Some(other) => self.fail(
                        Invariant::Conservation,
                        t_us,
                        format!("memory record does not match the trace's next event {other:?}"),
                    ),
                    None => {}
                }
                self.memory_bytes = Some(available_bytes);
            }
            Record::Disk { t_us, used_bytes } => {
                match self.take_input(rec) {
                    Some(Event::Disk {
                        t_us: et,
                        used_bytes: eb,
                    }) if et == t_us && eb == used_bytes => {}
                    Some(other) => self.fail(
                        Invariant::Conservation,
                        t_us,
                        format!("disk record does not match the trace's next event {other:?}"),
                    ),
                    None => {}
                }
                self.background_bytes = used_bytes;
            }
            Record::FilesWritten {
                t_us,
                id,
                stage,
                files,
                bytes,
            } => self.on_files_written(t_us, id, stage, files, bytes),
            Record::FileRemoved { t_us, id, file } => match self.files.remove(&(id, file)) {
                Some(f) => {
                    self.temp_bytes -= f.bytes;
                    self.removed.push((id, file, f));
                }
                None => self.fail(
                    Invariant::Cleanup,
                    t_us,
                    format!("file {file} of job {id} removed but not present"),
                ),
            },
            Record::Sweep {
                t_us,
                trigger,
                older_than_us,
                byte_goal: _,
                files_removed,
                bytes_freed,
            } => self.on_sweep(t_us, trigger, older_than_us, files_removed, bytes_freed),
        }
    }

    fn on_decision(
        &mut self,
        rec: &Record,
        t_us: u64,
        id: u64,
        outcome: Outcome,
        reason: Option<OverloadReason>,
        retry_after_us: Option<u64>,
    ) {
        let req: Option<Request> = match self.take_input(rec) {
            Some(Event::Request(r)) if r.id == id && r.t_us == t_us => Some(r),
            Some(other) => {
                self.fail(Invariant::Conservation, t_us, format!("decision for request {id} at {t_us}, but the trace's next event is {other:?}"));
                None
            }
            None => None,
        };
        let key = req.and_then(|r| r.key);
        let spec = req.map(|r| JobSpec {
            id,
            job_us: r.job_us,
            files: r.files,
            bytes: r.bytes,
        });
        match outcome {
            Outcome::Admitted => {
                self.rate_pass(t_us);
                self.key_pass(t_us, key);
                if self.waiting.len() >= self.p.max_queue as usize {
                    let n = self.waiting.len();
                    self.fail(
                        Invariant::Queue,
                        t_us,
                        format!(
                            "admitted with {n} jobs already waiting, max_queue {}",
                            self.p.max_queue
                        ),
                    );
                }
                if let Some(spec) = spec {
                    self.waiting.push_back(spec);
                }
            }
            Outcome::RateLimited => self.rate_refusal(t_us, key, retry_after_us),
            Outcome::Overloaded => match reason {
                Some(OverloadReason::QueueFull) => {
                    // A 503 after the rate limiter passed the request still counts in the window.
                    self.rate_pass(t_us);
                    self.key_pass(t_us, key);
                    if self.waiting.len() != self.p.max_queue as usize {
                        let n = self.waiting.len();
                        self.fail(
                            Invariant::Queue,
                            t_us,
                            format!(
                                "queue_full with {n} waiting, max_queue {}",
                                self.p.max_queue
                            ),
                        );
                    }
                }
                // Refused by the per-client stage, which comes before the global window
                // is charged: neither window counts it.
                Some(OverloadReason::TooManyKeys) => {}
                None => self.fail(Invariant::Log, t_us, "503 without a reason".into()),
            },
        }
    }

    fn on_job_start(&mut self, t_us: u64, id: u64) {
        if !self.gate_open {
            self.fail(
                Invariant::Jobs,
                t_us,
                format!("job {id} started while the gate was closed"),
            );
        }
        if self.running.len() >= self.p.job_slots as usize {
            let n = self.running.len();
            self.fail(
                Invariant::Jobs,
                t_us,
                format!(
                    "job {id} started with {n} running, job_slots {}",
                    self.p.job_slots
                ),
            );
        }
        match self.waiting.front() {
            Some(s) if s.id == id => {
                let spec = *s;
                self.waiting.pop_front();
                self.running.push(Running {
                    spec,
                    start_us: t_us,
                });
            }
            Some(s) => {
                let head = s.id;
                if let Some(pos) = self.waiting.iter().position(|s| s.id == id) {
                    self.fail(
                        Invariant::Jobs,
                        t_us,
                        format!("job {id} started before job {head}, queued earlier (not FIFO)"),
                    );
                    let spec = self.waiting.remove(pos).expect("position is in range");
                    self.running.push(Running {
                        spec,
                        start_us: t_us,
                    });
                } else {
                    self.fail(
                        Invariant::Conservation,
                        t_us,
                        format!("job {id} started but is not queued"),
                    );
                }
            }
            None => self.fail(
                Invariant::Conservation,
                t_us,
                format!("job {id} started but is not queued"),
            ),
        }
    }

    fn on_job_end(&mut self, t_us: u64, id: u64, crashed: bool) {
        let Some(pos) = self.running.iter().position(|r| r.spec.id == id) else {
            self.fail(
                Invariant::Conservation,
                t_us,
                format!("job {id} ended but is not running"),
            );
            return;
        };
        let r = self.running.swap_remove(pos);
        let due = r.start_us + r.spec.job_us;
        if !crashed && t_us != due {
            self.fail(
                Invariant::Jobs,
                t_us,
                format!("job {id} ended at {t_us}, due at {due}"),
            );
        }
        if crashed && !(r.start_us..=due).contains(&t_us) {
            self.fail(
                Invariant::Jobs,
                t_us,
                format!(
                    "job {id} crashed at {t_us}, outside its run {}..={due}",
                    r.start_us
                ),
            );
        }
        if !crashed {
            // A clean end removes whatever of its files the sweeps left.
            let gone: Vec<_> = self
                .files
                .range((id, 0)..=(id, u32::MAX))
                .map(|(k, f)| (*k, f.bytes))
                .collect();
            for (k, b) in gone {
                self.files.remove(&k);
                self.temp_bytes -= b;
            }
        }
    }

    fn on_files_written(&mut self, t_us: u64, id: u64, stage: u32, files: u32, bytes: u64) {
        let Some(r) = self.running.iter().find(|r| r.spec.id == id).copied() else {
            self.fail(
                Invariant::Conservation,
                t_us,
                format!("job {id} wrote files but is not running"),
            );
            return;
        };
        let range = stage_files(r.spec.files, self.p.stages, stage);
        let expected_bytes: u64 = range
            .clone()
            .map(|i| file_bytes(r.spec.files, r.spec.bytes, i))
            .sum();
        if range.len() as u32 != files || expected_bytes != bytes {
            self.fail(Invariant::Log, t_us, format!("job {id} stage {stage} wrote {files} files / {bytes} B, its layout says {} / {expected_bytes}", range.len()));
        }
        for i in range {
            let b = file_bytes(r.spec.files, r.spec.bytes, i);
            self.files.insert(
                (id, i),
                TempFile {
                    mtime_us: t_us,
                    bytes: b,
                },
            );
            self.temp_bytes += b;
        }
    }

    fn on_sweep(
        &mut self,
        t_us: u64,
        trigger: Trigger,
        older_than_us: u64,
        files_removed: u64,
        bytes_freed: u64,
    ) {
        let removed = std::mem::take(&mut self.removed);
        // Ages, not cutoffs: `t − older_than` would clamp at 0 early in a run.
        let age = |f: &TempFile| t_us.saturating_sub(f.mtime_us);
        if let Some((id, file, f)) = removed.iter().find(|(_, _, f)| age(f) < older_than_us) {
            let (id, file, age) = (*id, *file, t_us.saturating_sub(f.mtime_us));
            self.fail(Invariant::Cleanup, t_us, format!("{} sweep removed file {file} of job {id}, {age} µs old, younger than the cutoff {older_than_us} µs", trigger.as_str()));
        }
        let sum: u64 = removed.iter().map(|(_, _, f)| f.bytes).sum();
        if removed.len() as u64 != files_removed || sum != bytes_freed {
            let n = removed.len();
            self.fail(Invariant::Log, t_us, format!("sweep says {files_removed} files / {bytes_freed} B, its file_removed lines say {n} / {sum}"));
        }
        // Strictly older than the cutoff: a file exactly at it may go either way.
        let oldest_left = self
            .files
            .iter()
            .filter(|(_, f)| age(f) > older_than_us)
            .min_by_key(|(_, f)| f.mtime_us)
            .map(|(k, f)| (*k, *f));
        match trigger {
            Trigger::Schedule => {
                if let Some(((id, file), f)) = oldest_left {
                    self.fail(Invariant::Cleanup, t_us, format!("after the scheduled sweep, file {file} of job {id} ({} µs old) remains, older than {older_than_us} µs", t_us.saturating_sub(f.mtime_us)));
                }
            }
            Trigger::Pressure => {
                let used = self.used_disk_bytes();
                if used > self.p.pressure_bytes {
                    if let Some(((id, file), _)) = oldest_left {
                        self.fail(Invariant::Cleanup, t_us, format!("after the pressure sweep the disk holds {used} B (threshold {} B) and file {file} of job {id}, removable, remains", self.p.pressure_bytes));
                    }
                }
                // Oldest first: nothing removed is younger than something eligible left.
                let newest_removed = removed.iter().map(|(_, _, f)| f.mtime_us).max();
                if let (Some(nr), Some(((id, file), f))) = (newest_removed, oldest_left) {
                    if f.mtime_us < nr {
                        self.fail(Invariant::Cleanup, t_us, format!("pressure sweep was not oldest-first: file {file} of job {id} (mtime {}) remains, a file with mtime {nr} was removed", f.mtime_us));
                    }
                }
            }
        }
    }

    /// Ends the check: nothing may be left unanswered.
    pub fn finish(&mut self) -> CheckSummary {
        self.current = None;
        let t = self.last_t_us;
        self.settled(t);
        if let Some(prev) = self.pending.take() {
            self.fail(
                Invariant::Conservation,
                prev.t_us(),
                format!("trace event {prev:?} got no record in the decision log"),
            );
        }
        CheckSummary {
            records: self.records,
            violations: self.violations,
            first: self.first.clone(),
            still_queued: self.waiting.len() as u64,
            still_running: self.running.len() as u64,
        }
    }
}

/// Why a standalone check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckRunError {
    /// The trace is malformed.
    #[error("{0}")]
    Trace(#[from] TraceError),
    /// The decision log is malformed.
    #[error("{0}")]
    Log(#[from] LogError),
}

/// Checks a decision log against its trace: what `backstop-sim check` runs.
///
/// Each decision, memory and disk record answers the trace's next event; trace events
/// left over at the end had no answer (a conservation violation).
pub fn check_log<S: EventSource, R: std::io::BufRead>(
    params: CheckParams,
    mut trace: S,
    mut log: LogReader<R>,
) -> Result<CheckSummary, CheckRunError> {
    let mut checker = Checker::new(params);
    while let Some(rec) = log.next_record()? {
        if matches!(
            rec,
            Record::Decision { .. } | Record::Memory { .. } | Record::Disk { .. }
        ) {
            if let Some(ev) = trace.next_event()? {
                checker.expect_input(&ev);
            }
        }
        checker.on_record(&rec);
    }
    if let Some(ev) = trace.next_event()? {
        checker.expect_input(&ev);
    }
    Ok(checker.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Outcome::*, Record as R};

    fn params() -> CheckParams {
        CheckParams {
            rate_limit: 2,
            rate_window_us: 10,
            max_queue: 1,
            job_slots: 1,
            stages: 1,
            min_memory_bytes: 100,
            memory_margin_bytes: 10,
            min_disk_bytes: 100,
            disk_margin_bytes: 10,
            capacity_bytes: 10_000,
            pressure_bytes: 8_000,
            per_key: None,
        }
    }

    fn req(t_us: u64, id: u64, job_us: u64, files: u32, bytes: u64) -> Event {
        Event::Request(Request {
            t_us,
            id,
            key: None,
            job_us,
            files,
            bytes,
        })
    }

    fn dec(t_us: u64, id: u64, outcome: Outcome, retry_after_us: Option<u64>) -> Record {
        let reason = (outcome == Overloaded).then_some(OverloadReason::QueueFull);
        R::Decision {
            t_us,
            id,
            outcome,
            reason,
            retry_after_us,
        }
    }

    /// Feeds (input, records) steps; returns the first violated invariant.
    fn run(p: CheckParams, steps: &[(Option<Event>, Vec<Record>)]) -> Option<Invariant> {
        let mut c = Checker::new(p);
        for (input, recs) in steps {
            if let Some(e) = input {
                c.expect_input(e);
            }
            for r in recs {
                c.on_record(r);
            }
        }
        c.finish().first.map(|v| v.invariant)
    }

    fn admit_and_run(t: u64, id: u64) -> (Option<Event>, Vec<Record>) {
        (
            Some(req(t, id, 1, 0, 0)),
            vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
        )
    }

    fn end(t: u64, id: u64) -> (Option<Event>, Vec<Record>) {
        (
            None,
            vec![R::JobEnd {
                t_us: t + 1,
                id,
                crashed: false,
            }],
        )
    }

    #[test]
    fn a_clean_log_passes() {
        let mut p = params();
        p.max_queue = 5;
        let steps = vec![
            admit_and_run(0, 1),
            end(0, 1),
            admit_and_run(5, 2),
            end(5, 2),
            (
                Some(req(9, 3, 1, 0, 0)),
                vec![dec(9, 3, RateLimited, Some(1))],
            ),
            admit_and_run(10, 4),
            end(10, 4),
        ];
        assert_eq!(run(p, &steps), None);
    }

    #[test]
    fn too_many_passes_in_a_window_is_caught() {
        let mut p = params();
        p.max_queue = 5;
        p.job_slots = 5;
        let steps = vec![
            admit_and_run(0, 1),
            admit_and_run(5, 2),
            admit_and_run(9, 3),
        ];
        assert_eq!(run(p, &steps), Some(Invariant::RateSafety));
    }

    #[test]
    fn false_or_inexact_429_is_caught() {
        let steps = vec![
            admit_and_run(0, 1),
            (
                Some(req(1, 2, 1, 0, 0)),
                vec![dec(1, 2, RateLimited, Some(9))],
            ),
        ];
        assert_eq!(run(params(), &steps), Some(Invariant::NoFalse429));
        let mut p = params();
        p.job_slots = 2;
        let steps = vec![
            admit_and_run(0, 1),
            admit_and_run(2, 2),
            (
                Some(req(3, 3, 1, 0, 0)),
                vec![dec(3, 3, RateLimited, Some(8))],
            ),
        ];
        assert_eq!(run(p, &steps), Some(Invariant::NoFalse429), "exact is 7");
    }

    fn keyed(t_us: u64, id: u64, key: u32) -> Event {
        Event::Request(Request {
            t_us,
            id,
            key: Some(key),
            job_us: 1,
            files: 0,
            bytes: 0,
        })
    }

    #[test]
    fn per_client_limits_are_judged_per_client() {
        let mut p = params();
        p.rate_limit = 10;
        p.max_queue = 10;
        p.job_slots = 10;
        p.per_key = Some((1, 10));
        let admit = |t, id, key| {
            (
                Some(keyed(t, id, key)),
                vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
            )
        };
        // Client 7 twice in one window: the second is its own 429, exact, and does not
        // count globally.
        let ok = vec![
            admit(0, 1, 7),
            (Some(keyed(2, 2, 7)), vec![dec(2, 2, RateLimited, Some(8))]),
            admit(3, 3, 8),
        ];
        assert_eq!(run(p.clone(), &ok), None);
        let inexact = vec![
            admit(0, 1, 7),
            (Some(keyed(2, 2, 7)), vec![dec(2, 2, RateLimited, Some(9))]),
        ];
        assert_eq!(run(p.clone(), &inexact), Some(Invariant::NoFalse429));
        let other_client = vec![
            admit(0, 1, 7),
            (Some(keyed(2, 2, 8)), vec![dec(2, 2, RateLimited, Some(8))]),
        ];
        assert_eq!(
            run(p.clone(), &other_client),
            Some(Invariant::NoFalse429),
            "client 8 had room"
        );
        let twice = vec![admit(0, 1, 7), admit(2, 2, 7)];
        assert_eq!(run(p, &twice), Some(Invariant::RateSafety));
    }

    #[test]
    fn a_clients_own_429_does_not_use_the_global_window() {
        // Global 2 per 10, each client 1 per 10: client 7's refused second request leaves
        // the second global place to client 8, and a 429 for client 8 there is false.
        let mut p = params();
        p.max_queue = 10;
        p.job_slots = 10;
        p.per_key = Some((1, 10));
        let admit = |t, id, key| {
            (
                Some(keyed(t, id, key)),
                vec![dec(t, id, Admitted, None), R::JobStart { t_us: t, id }],
            )
        };
        let own_429 = |t, id| {
            (
                Some(keyed(t, id, 7)),
                vec![dec(t, id, RateLimited, Some(10 - t))],
            )
        };
        let fair = vec![admit(0, 1, 7), own_429(1, 2), own_429(2, 3), admit(3, 4, 8)];
        assert_eq!(run(p.clone(), &fair), None);
        let locked_out = vec![
            admit(0, 1, 7),
            own_429(1, 2),
            (Some(keyed(3, 4, 8)), vec![dec(3, 4, RateLimited, Some(7))]),
        ];
        assert_eq!(run(p, &locked_out), Some(Invariant::NoFalse429));
    }

    #[test]
    fn queue_full_below_the_bound_is_caught() {
        let steps = vec![
            admit_and_run(0, 1),
            (Some(req(1, 2, 1, 0, 0)), vec![dec(1, 2, Overloaded, None)]),
        ];
        assert_eq!(run(params(), &steps), Some(Invariant::Queue));
    }

    #[test]
    fn idle_slot_with_a_waiting_job_is_caught() {
        let steps = vec![
            (Some(req(0, 1, 1, 0, 0)), vec![dec(0, 1, Admitted, None)]),
            (
                Some(Event::Memory {
                    t_us: 1,
                    available_bytes: 1_000,
                }),
                vec![R::Memory {
                    t_us: 1,
                    available_bytes: 1_000,
                }],
            ),
        ];
        assert_eq!(run(params(), &steps), Some(Invariant::Jobs));
    }

    #[test]
    fn out_of_order_start_is_caught() {
        let mut p = params();
        p.max_queue = 5;
        p.rate_limit = 10;
        let steps = vec![
            admit_and_run(0, 1),
            (Some(req(0, 2, 1, 0, 0)), vec![dec(0, 2, Admitted, None)]),
            (Some(req(0, 3, 1, 0, 0)), vec![dec(0, 3, Admitted, None)]),
            (
                None,
                vec![
                    R::JobEnd {
                        t_us: 1,
                        id: 1,
                        crashed: false,
                    },
                    R::JobStart { t_us: 1, id: 3 },
                ],
            ),
        ];
        assert_eq!(run(p, &steps), Some(Invariant::Jobs));
    }

    #[test]
    fn gate_left_open_on_low_memory_is_caught() {
        let steps = vec![
            (
                Some(Event::Memory {
                    t_us: 0,
                    available_bytes: 50,
                }),
                vec![R::Memory {
                    t_us: 0,
                    available_bytes: 50,
                }],
            ),
            admit_and_run(1, 1),
        ];
        assert_eq!(run(params(), &steps), Some(Invariant::Gate));
    }

    #[test]
    fn missing_decision_is_caught() {
        let steps = vec![
            admit_and_run(0, 1),
            end(0, 1),
            (Some(req(3, 2, 1, 0, 0)), vec![]),
        ];
        assert_eq!(run(params(), &steps), Some(Invariant::Conservation));
    }

    fn crashed_job_with_files() -> Vec<(Option<Event>, Vec<Record>)> {
        vec![
            (
                Some(req(0, 1, 100, 2, 20)),
                vec![
                    dec(0, 1, Admitted, None),
                    R::JobStart { t_us: 0, id: 1 },
                    R::FilesWritten {
                        t_us: 0,
                        id: 1,
                        stage: 0,
                        files: 2,
                        bytes: 20,
                    },
                ],
            ),
            (
                None,
                vec![R::JobEnd {
                    t_us: 50,
                    id: 1,
                    crashed: true,
                }],
            ),
        ]
    }

    #[test]
    fn sweeping_a_young_file_is_caught() {
        let mut steps = crashed_job_with_files();
        steps.push((
            None,
            vec![
                R::FileRemoved {
                    t_us: 60,
                    id: 1,
                    file: 0,
                },
                R::Sweep {
                    t_us: 60,
                    trigger: Trigger::Schedule,
                    older_than_us: 100,
                    byte_goal: None,
                    files_removed: 1,
                    bytes_freed: 10,
                },
            ],
        ));
        assert_eq!(run(params(), &steps), Some(Invariant::Cleanup));
    }

    #[test]
    fn leaving_an_old_file_is_caught_and_removing_all_passes() {
        let mut steps = crashed_job_with_files();
        steps.push((
            None,
            vec![
                R::FileRemoved {
                    t_us: 200,
                    id: 1,
                    file: 0,
                },
                R::Sweep {
                    t_us: 200,
                    trigger: Trigger::Schedule,
                    older_than_us: 100,
                    byte_goal: None,
                    files_removed: 1,
                    bytes_freed: 10,
                },
            ],
        ));
        assert_eq!(run(params(), &steps), Some(Invariant::Cleanup));
        let mut steps = crashed_job_with_files();
        steps.push((
            None,
            vec![
                R::FileRemoved {
                    t_us: 200,
                    id: 1,
                    file: 0,
                },
                R::FileRemoved {
                    t_us: 200,
                    id: 1,
                    file: 1,
                },
                R::Sweep {
                    t_us: 200,
                    trigger: Trigger::Schedule,
                    older_than_us: 100,
                    byte_goal: None,
                    files_removed: 2,
                    bytes_freed: 20,
                },
            ],
        ));
        assert_eq!(run(params(), &steps), None);
    }

    #[test]
    fn pressure_sweep_that_stops_short_is_caught() {
        let mut p = params();
        p.pressure_bytes = 5;
        let mut steps = crashed_job_with_files();
        steps.push((
            None,
            vec![
                R::FileRemoved {
                    t_us: 200,
                    id: 1,
                    file: 0,
                },
                R::Sweep {
                    t_us: 200,
                    trigger: Trigger::Pressure,
                    older_than_us: 100,
                    byte_goal: Some(15),
                    files_removed: 1,
                    bytes_freed: 10,
                },
            ],
        ));
        assert_eq!(
            run(p, &steps),
            Some(Invariant::Cleanup),
            "10 B left > 5 B threshold, an old file remains"
        );
    }

    fn any_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let t = 0u64..50;
        let id = 0u64..6;
        prop_oneof![
            (
                t.clone(),
                id.clone(),
                0u8..3,
                any::<bool>(),
                proptest::option::of(0u64..20)
            )
                .prop_map(|(t_us, id, o, r, retry_after_us)| {
                    let outcome = [Admitted, RateLimited, Overloaded][o as usize];
                    R::Decision {
                        t_us,
                        id,
                        outcome,
                        reason: r.then_some(OverloadReason::QueueFull),
                        retry_after_us,
                    }
                }),
            (t.clone(), id.clone()).prop_map(|(t_us, id)| R::JobStart { t_us, id }),
            (t.clone(), id.clone(), any::<bool>()).prop_map(|(t_us, id, crashed)| R::JobEnd {
                t_us,
                id,
                crashed
            }),
            (t.clone(), any::<bool>()).prop_map(|(t_us, open)| R::Gate {
                t_us,
                open,
                reason: (!open).then_some(GateReason::LowDisk)
            }),
            (t.clone(), id.clone(), 0u32..3, 0u32..4, 0u64..100).prop_map(
                |(t_us, id, stage, files, bytes)| R::FilesWritten {
                    t_us,
                    id,
                    stage,
                    files,
                    bytes
                }
            ),
            (t.clone(), id.clone(), 0u32..4).prop_map(|(t_us, id, file)| R::FileRemoved {
                t_us,
                id,
                file
            }),
            (t.clone(), any::<bool>(), 0u64..50, 0u64..5, 0u64..100).prop_map(
                |(t_us, p, older_than_us, files_removed, bytes_freed)| R::Sweep {
                    t_us,
                    trigger: if p {
                        Trigger::Pressure
                    } else {
                        Trigger::Schedule
                    },
                    older_than_us,
                    byte_goal: p.then_some(10),
                    files_removed,
                    bytes_freed,
                }
            ),
            (t.clone(), 0u64..300).prop_map(|(t_us, available_bytes)| R::Memory {
                t_us,
                available_bytes
            }),
            (t, 0u64..20_000).prop_map(|(t_us, used_bytes)| R::Disk { t_us, used_bytes }),
        ]
    }

    proptest::proptest! {
        /// `check` reads logs from anywhere: arbitrary records never panic the checker.
        #[test]
        fn arbitrary_logs_never_panic(recs in proptest::collection::vec(any_record(), 0..60), inputs in proptest::collection::vec(0u64..50, 0..20)) {
            let mut c = Checker::new(params());
            for (i, r) in recs.iter().enumerate() {
                if let Some(&t) = inputs.get(i) {
                    c.expect_input(&req(t, i as u64, 3, 2, 10));
                }
                c.on_record(r);
            }
            let summary = c.finish();
            proptest::prop_assert_eq!(summary.records, recs.len() as u64);
        }
    }
}
