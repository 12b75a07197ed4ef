//! What the checkers found: which invariant, where, why; every violation counted and the
//! first kept whole.

use std::fmt;

use serde::Serialize;

use crate::log::Record;

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

/// The violations so far, and the record being judged (to name it in the first).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    records: u64,
    violations: u64,
    first: Option<Violation>,
    current: Option<Record>,
}

impl Findings {
    /// Judging `rec` from now on.
    pub(crate) fn begin(&mut self, rec: &Record) {
        self.records += 1;
        self.current = Some(*rec);
    }

    /// Judging what is left at the end of the log.
    pub(crate) fn end_of_log(&mut self) {
        self.current = None;
    }

    /// Called only on a violation, so building `message` costs nothing on clean runs.
    pub(crate) fn fail(&mut self, invariant: Invariant, t_us: u64, message: String) {
        self.violations += 1;
        if self.first.is_some() {
            return;
        }
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

    /// The first violation so far.
    pub(crate) fn first(&self) -> Option<&Violation> {
        self.first.as_ref()
    }

    /// The summary, with what was left queued and running.
    pub(crate) fn summary(&self, still_queued: u64, still_running: u64) -> CheckSummary {
        CheckSummary {
            records: self.records,
            violations: self.violations,
            first: self.first.clone(),
            still_queued,
            still_running,
        }
    }
}
