//! Invariant 4, jobs: a job starts only through an open gate, on a free slot, in the
//! order it was queued; it ends when due (or, crashed, within its run); no slot idles
//! while the gate is open and a job waits.

use super::findings::{Findings, Invariant};
use super::params::CheckParams;
use super::state::State;

/// Once the engine has reacted to a cause: no slot idles while a job waits and the gate
/// is open.
pub(crate) fn settled(found: &mut Findings, params: &CheckParams, state: &State, t_us: u64) {
    let (w, r) = (state.waiting.len(), state.running.len());
    if state.gate_open && w > 0 && r < params.job_slots as usize {
        found.fail(Invariant::Jobs, t_us, {
            format!("{w} job(s) wait and the gate is open, but only {r} of the slots run")
        });
    }
}

/// Job `id` starts at `t_us`.
pub(crate) fn started(
    found: &mut Findings,
    params: &CheckParams,
    state: &State,
    t_us: u64,
    id: u64,
) {
    if !state.gate_open {
        found.fail(Invariant::Jobs, t_us, {
            format!("job {id} started while the gate was closed")
        });
    }
    let (n, slots) = (state.running.len(), params.job_slots);
    if n >= slots as usize {
        found.fail(Invariant::Jobs, t_us, {
            format!("job {id} started with {n} running, job_slots {slots}")
        });
    }
    let Some(head) = state.waiting.front().map(|s| s.id) else {
        return;
    };
    if head != id && state.waiting.iter().any(|s| s.id == id) {
        found.fail(Invariant::Jobs, t_us, {
            format!("job {id} started before job {head}, queued earlier (not FIFO)")
        });
    }
}

/// Job `id` ends at `t_us`, crashed or not: when due, or within its run.
pub(crate) fn ended(found: &mut Findings, state: &State, t_us: u64, id: u64, crashed: bool) {
    let Some(job) = state.running_job(id) else {
        return;
    };
    let due = job.start_us + job.spec.job_us;
    if !crashed && t_us != due {
        found.fail(Invariant::Jobs, t_us, {
            format!("job {id} ended at {t_us}, due at {due}")
        });
    }
    if crashed && !(job.start_us..=due).contains(&t_us) {
        let start = job.start_us;
        found.fail(Invariant::Jobs, t_us, {
            format!("job {id} crashed at {t_us}, outside its run {start}..={due}")
        });
    }
}
