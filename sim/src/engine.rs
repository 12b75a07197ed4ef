//! The discrete-event engine: how the modelled service reacts to each event (a request,
//! a reading, a job's stage or end, a sweep) on virtual time, writing every decision
//! through the checkers. `replay` orders the events; the engine drives whatever
//! [`Service`] it is given (in process or on a store: the choice is made in `run`). See
//! `sim/README.md` for the precise semantics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use backstop_sim_check::check::{CheckParams, Checker};
use backstop_sim_check::layout::{file_bytes, stage_files, stage_start_us};
use backstop_sim_check::log::{Outcome, Record, Trigger};
use backstop_sim_check::trace::{Event, Request};

use crate::config::SimConfig;
use crate::disk::TempDisk;
use crate::error::SimError;
use crate::report::{RunOutput, Series, Stats};
use crate::rng::{SimRng, Stream};
use crate::service::{Admit, Executor, Held, Service, SimDoor};

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

/// The modelled service between events.
pub(crate) struct Engine<'a, D: SimDoor, X> {
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

impl<'a, D: SimDoor, X: Executor> Engine<'a, D, X> {
    pub(crate) fn new(
        config: &SimConfig,
        service: Service<D, X>,
        log: Option<&'a mut dyn Write>,
        scratch_parent: Option<PathBuf>,
    ) -> Result<Self, SimError> {
        Ok(Engine {
            service,
            disk: TempDisk::new(scratch_parent.as_deref())?,
            checker: Checker::new(CheckParams::from(config)),
            log,
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
        })
    }

    /// When the next job end or stage is due.
    pub(crate) fn next_internal_us(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// The next job end or stage; its instant.
    pub(crate) fn internal_event(&mut self) -> Result<u64, SimError> {
        let Reverse((t, kind, _, slot)) = self.heap.pop().expect("peeked");
        if kind == KIND_END {
            self.end_job(t, slot)?;
        } else {
            self.stage(t, slot)?;
        }
        Ok(t)
    }

    /// The log flushed, the checkers' verdict and the report.
    pub(crate) fn finish(
        mut self,
        source_label: &str,
        end_us: u64,
        wall_start: Instant,
        events: u64,
    ) -> Result<RunOutput, SimError> {
        if let Some(log) = self.log.as_mut() {
            log.flush().map_err(SimError::Log)?;
        }
        let check = self.checker.finish();
        let report = self.stats.report(
            &self.cfg,
            source_label,
            end_us,
            self.queue.len() as u64,
            self.slots.iter().flatten().count() as u64,
            &check,
            wall_start.elapsed(),
            events,
        );
        Ok(RunOutput {
            report,
            series: self.series,
            check,
        })
    }
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

    pub(crate) fn update_gate(&mut self, t_us: u64) -> Result<(), SimError> {
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

    pub(crate) fn sweep(&mut self, t_us: u64, trigger: Trigger) -> Result<(), SimError> {
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
    pub(crate) fn pressure_check(&mut self, t_us: u64) -> Result<(), SimError> {
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
    pub(crate) fn trace_event(&mut self, ev: Event, key: Option<&str>) -> Result<(), SimError> {
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
