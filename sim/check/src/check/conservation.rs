//! Invariant 6, conservation: every trace event gets exactly one answering record (a
//! decision for a request, the reading itself for a reading), in trace order; a job
//! starts only if it was queued, ends and writes only while it runs.

use super::findings::{Findings, Invariant};
use super::state::State;
use crate::log::Record;
use crate::trace::{Event, Request};

/// The trace events still to be answered: the one the next answering record must match.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    pending: Option<Event>,
}

impl Inputs {
    /// The next answering record must match `event`; the one before it, unanswered, is a
    /// violation.
    pub(crate) fn expect(&mut self, found: &mut Findings, event: &Event) {
        if let Some(prev) = self.pending.replace(*event) {
            unanswered(found, &prev);
        }
    }

    /// The trace event `rec` answers (`None`: there was none, a violation).
    fn take(&mut self, found: &mut Findings, rec: &Record) -> Option<Event> {
        let input = self.pending.take();
        if input.is_none() {
            found.fail(Invariant::Conservation, rec.t_us(), {
                format!("{rec:?} answers no trace event (the trace has none left)")
            });
        }
        input
    }

    /// A decision record answers the request it names.
    pub(crate) fn decision(
        &mut self,
        found: &mut Findings,
        rec: &Record,
        t_us: u64,
        id: u64,
    ) -> Option<Request> {
        match self.take(found, rec)? {
            Event::Request(r) if r.id == id && r.t_us == t_us => Some(r),
            other => {
                found.fail(Invariant::Conservation, t_us, {
                    format!("decision for request {id} at {t_us}, but the trace's next event is {other:?}")
                });
                None
            }
        }
    }

    /// A memory or disk record answers the same reading.
    pub(crate) fn reading(&mut self, found: &mut Findings, rec: &Record) {
        let Some(input) = self.take(found, rec) else {
            return;
        };
        let (what, same) = match *rec {
            Record::Memory {
                t_us,
                available_bytes,
            } => {
                let same = Event::Memory {
                    t_us,
                    available_bytes,
                };
                ("memory", same)
            }
            Record::Disk { t_us, used_bytes } => ("disk", Event::Disk { t_us, used_bytes }),
            _ => return,
        };
        if input != same {
            found.fail(Invariant::Conservation, rec.t_us(), {
                format!("{what} record does not match the trace's next event {input:?}")
            });
        }
    }

    /// At the end of the log: an event still pending got no answer.
    pub(crate) fn finish(&mut self, found: &mut Findings) {
        if let Some(prev) = self.pending.take() {
            unanswered(found, &prev);
        }
    }
}

fn unanswered(found: &mut Findings, event: &Event) {
    found.fail(Invariant::Conservation, event.t_us(), {
        format!("trace event {event:?} got no record in the decision log")
    });
}

/// Job `id` starts at `t_us`: it must be queued.
pub(crate) fn started(found: &mut Findings, state: &State, t_us: u64, id: u64) {
    if !state.waiting.iter().any(|s| s.id == id) {
        found.fail(Invariant::Conservation, t_us, {
            format!("job {id} started but is not queued")
        });
    }
}

/// Job `id` ends, or writes files, at `t_us`: it must run. `false` when it does not.
pub(crate) fn runs(found: &mut Findings, state: &State, t_us: u64, id: u64, what: &str) -> bool {
    let runs = state.running_job(id).is_some();
    if !runs {
        found.fail(Invariant::Conservation, t_us, {
            format!("job {id} {what} but is not running")
        });
    }
    runs
}
