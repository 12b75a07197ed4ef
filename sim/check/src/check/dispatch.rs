//! The dispatcher: each record goes to the checkers of the invariants it can break, in
//! a fixed order, against the state before it; then the state takes the record.

use std::io::BufRead;

use super::cleanup;
use super::conservation::{self, Inputs};
use super::findings::{CheckSummary, Findings, Violation};
use super::gate;
use super::jobs;
use super::log_consistency;
use super::no_false_429;
use super::params::CheckParams;
use super::passes::Passes;
use super::queue;
use super::rate_safety;
use super::state::{JobSpec, State};
use crate::log::{LogError, LogReader, Outcome, OverloadReason, Record};
use crate::trace::{Event, EventSource, TraceError};

/// Streaming checker: feed it each trace input with [`expect_input`](Self::expect_input)
/// just before the record that answers it, and every record with
/// [`on_record`](Self::on_record).
#[derive(Debug)]
pub struct Checker {
    params: CheckParams,
    found: Findings,
    inputs: Inputs,
    passes: Passes,
    state: State,
    last_t_us: u64,
}

impl Checker {
    /// A checker for a run with these parameters.
    pub fn new(params: CheckParams) -> Self {
        Checker {
            passes: Passes::new(&params),
            state: State::new(params.job_slots),
            params,
            found: Findings::default(),
            inputs: Inputs::default(),
            last_t_us: 0,
        }
    }

    /// The first violation so far.
    pub fn first_violation(&self) -> Option<&Violation> {
        self.found.first()
    }

    /// The trace event the next input-answering record must match.
    pub fn expect_input(&mut self, event: &Event) {
        self.inputs.expect(&mut self.found, event);
    }

    /// Whether `rec` is a new cause, after whose predecessor the engine has settled: not
    /// a consequence of the record before it (a start, a gate change, a job's first
    /// stage, the second and later lines of one sweep).
    fn after_settling(&self, rec: &Record) -> bool {
        match *rec {
            Record::JobStart { .. } | Record::Gate { .. } => false,
            Record::FilesWritten { stage: 0, .. } => false,
            Record::FileRemoved { .. } | Record::Sweep { .. } => self.state.removed.is_empty(),
            _ => true,
        }
    }

    /// Checks one record.
    pub fn on_record(&mut self, rec: &Record) {
        self.found.begin(rec);
        let t = rec.t_us();
        log_consistency::in_order(&mut self.found, self.last_t_us, t);
        self.last_t_us = t;
        if self.after_settling(rec) {
            self.settled(t);
        }
        let (found, state, params) = (&mut self.found, &mut self.state, &self.params);
        match *rec {
            Record::Decision { .. } => self.on_decision(rec),
            Record::JobStart { t_us, id } => {
                jobs::started(found, params, state, t_us, id);
                conservation::started(found, state, t_us, id);
                state.start(id, t_us);
            }
            Record::JobEnd { t_us, id, crashed } => {
                if conservation::runs(found, state, t_us, id, "ended") {
                    jobs::ended(found, state, t_us, id, crashed);
                }
                state.end(id, crashed);
            }
            Record::Gate { t_us, open, reason } => {
                log_consistency::gate(found, state, t_us, open, reason);
                state.gate_open = open;
            }
            Record::Memory {
                available_bytes, ..
            } => {
                self.inputs.reading(found, rec);
                state.memory_bytes = Some(available_bytes);
            }
            Record::Disk { used_bytes, .. } => {
                self.inputs.reading(found, rec);
                state.background_bytes = used_bytes;
            }
            Record::FilesWritten {
                t_us,
                id,
                stage,
                files,
                bytes,
            } => {
                if !conservation::runs(found, state, t_us, id, "wrote files") {
                    return;
                }
                let job = state.running_job(id).expect("it runs");
                let stages = params.stages;
                log_consistency::stage_written(found, &job, stages, (t_us, stage, files, bytes));
                state.write_stage(&job, stages, stage, t_us);
            }
            Record::FileRemoved { t_us, id, file } => {
                cleanup::file_removed(found, state, t_us, id, file);
                state.remove_file(id, file);
            }
            Record::Sweep { .. } => self.on_sweep(rec),
        }
    }

    /// The invariants that hold wherever the engine has finished reacting to a cause.
    fn settled(&mut self, t_us: u64) {
        jobs::settled(&mut self.found, &self.params, &self.state, t_us);
        gate::settled(&mut self.found, &self.params, &self.state, t_us);
    }

    fn on_decision(&mut self, rec: &Record) {
        let Record::Decision {
            t_us,
            id,
            outcome,
            reason,
            retry_after_us,
        } = *rec
        else {
            return;
        };
        let found = &mut self.found;
        let request = self.inputs.decision(found, rec, t_us, id);
        let key = request.and_then(|r| r.key);
        match (outcome, reason) {
            (Outcome::Admitted, _) => {
                rate_safety::passed(found, &mut self.passes, t_us, key);
                queue::admitted(found, &self.params, &self.state, t_us);
                if let Some(r) = request {
                    self.state.waiting.push_back(JobSpec::of(&r));
                }
            }
            (Outcome::RateLimited, _) => {
                no_false_429::refused(found, &self.passes, t_us, key, retry_after_us);
            }
            // Past the rate stages, so it counts in their windows.
            (Outcome::Overloaded, Some(OverloadReason::QueueFull)) => {
                rate_safety::passed(found, &mut self.passes, t_us, key);
                queue::full(found, &self.params, &self.state, t_us);
            }
            // Refused by the per-client stage, which comes before the global window is
            // charged: neither window counts it.
            (Outcome::Overloaded, Some(OverloadReason::TooManyKeys)) => {}
            (Outcome::Overloaded, None) => log_consistency::overloaded_without_reason(found, t_us),
        }
    }

    fn on_sweep(&mut self, rec: &Record) {
        let Record::Sweep {
            t_us,
            trigger,
            older_than_us,
            files_removed,
            bytes_freed,
            ..
        } = *rec
        else {
            return;
        };
        let removed = std::mem::take(&mut self.state.removed);
        let found = &mut self.found;
        cleanup::nothing_young(found, &removed, t_us, trigger, older_than_us);
        log_consistency::sweep_totals(found, &removed, t_us, files_removed, bytes_freed);
        let sweep = (t_us, trigger, older_than_us);
        cleanup::nothing_old_left(found, &self.params, &self.state, &removed, sweep);
    }

    /// Ends the check: nothing may be left unanswered.
    pub fn finish(&mut self) -> CheckSummary {
        self.found.end_of_log();
        self.settled(self.last_t_us);
        self.inputs.finish(&mut self.found);
        let (queued, running) = (self.state.waiting.len(), self.state.running.len());
        self.found.summary(queued as u64, running as u64)
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
///
/// # Errors
///
/// The trace or the log is malformed.
pub fn check_log<S: EventSource, R: BufRead>(
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
