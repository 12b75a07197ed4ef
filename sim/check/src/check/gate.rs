//! Invariant 4 (the resource gate): the gate agrees with the readings. It must be closed
//! while a value is below its threshold, and it may be closed only while some value is
//! at most its threshold plus its margin (each resource keeps its own hysteresis).

use super::findings::{Findings, Invariant};
use super::params::CheckParams;
use super::state::State;
use crate::log::GateReason;

/// Once the engine has reacted to a cause: the gate is as the readings say.
pub(crate) fn settled(found: &mut Findings, params: &CheckParams, state: &State, t_us: u64) {
    let mut must_close = None;
    let mut may_open = true;
    if let Some(m) = state.memory_bytes {
        if m < params.min_memory_bytes {
            must_close = Some(GateReason::LowMemory);
        }
        if m <= params
            .min_memory_bytes
            .saturating_add(params.memory_margin_bytes)
        {
            may_open = false;
        }
    }
    let free = state.free_disk_bytes(params.capacity_bytes);
    if free < params.min_disk_bytes {
        must_close = must_close.or(Some(GateReason::LowDisk));
    }
    if free
        <= params
            .min_disk_bytes
            .saturating_add(params.disk_margin_bytes)
    {
        may_open = false;
    }
    if let Some(reason) = must_close.filter(|_| state.gate_open) {
        found.fail(Invariant::Gate, t_us, {
            format!(
                "the gate is open although {} is below its threshold",
                reason.as_str()
            )
        });
    }
    if may_open && !state.gate_open {
        found.fail(Invariant::Gate, t_us, {
            "the gate is closed although every reading is above threshold + margin".into()
        });
    }
}
