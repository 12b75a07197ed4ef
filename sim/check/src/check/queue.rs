//! Invariant 3, the queue: never more than `max_queue` jobs wait, and `queue_full` is
//! answered only when exactly that many do.

use super::findings::{Findings, Invariant};
use super::params::CheckParams;
use super::state::State;

/// A request was admitted into the queue at `t_us`: it had room.
pub(crate) fn admitted(found: &mut Findings, params: &CheckParams, state: &State, t_us: u64) {
    let (n, max) = (state.waiting.len(), params.max_queue);
    if n >= max as usize {
        found.fail(Invariant::Queue, t_us, {
            format!("admitted with {n} jobs already waiting, max_queue {max}")
        });
    }
}

/// A request got 503 `queue_full` at `t_us`: the queue held its bound.
pub(crate) fn full(found: &mut Findings, params: &CheckParams, state: &State, t_us: u64) {
    let (n, max) = (state.waiting.len(), params.max_queue);
    if n != max as usize {
        found.fail(Invariant::Queue, t_us, {
            format!("queue_full with {n} waiting, max_queue {max}")
        });
    }
}
