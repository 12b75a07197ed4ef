//! The log's own consistency: time never goes back, a gate record changes the state and
//! carries a reason exactly when it closes, a 503 has a reason, a stage writes what the
//! layout says, a sweep's totals add up its removals.

use super::findings::{Findings, Invariant};
use super::state::{Removed, Running, State};
use crate::layout::{file_bytes, stage_files};
use crate::log::GateReason;

/// A record at `t_us` after one at `last_us`.
pub(crate) fn in_order(found: &mut Findings, last_us: u64, t_us: u64) {
    if t_us < last_us {
        found.fail(
            Invariant::Log,
            t_us,
            format!("time goes back from {last_us}"),
        );
    }
}

/// A gate record: a change, with a reason exactly when it closes.
pub(crate) fn gate(
    found: &mut Findings,
    state: &State,
    t_us: u64,
    open: bool,
    reason: Option<GateReason>,
) {
    if open == state.gate_open {
        found.fail(Invariant::Log, t_us, {
            format!("gate record open={open} does not change the state")
        });
    }
    if open == reason.is_some() {
        found.fail(Invariant::Log, t_us, {
            "a gate closes with a reason and opens without one".into()
        });
    }
}

/// A 503 without a reason.
pub(crate) fn overloaded_without_reason(found: &mut Findings, t_us: u64) {
    found.fail(Invariant::Log, t_us, "503 without a reason".into());
}

/// Stage `stage` of `job` wrote `files` files of `bytes` bytes: what its layout says.
pub(crate) fn stage_written(
    found: &mut Findings,
    job: &Running,
    stages: u32,
    (t_us, stage, files, bytes): (u64, u32, u32, u64),
) {
    let spec = job.spec;
    let range = stage_files(spec.files, stages, stage);
    let expected_files = range.len();
    let expected_bytes: u64 = range.map(|i| file_bytes(spec.files, spec.bytes, i)).sum();
    if expected_files as u32 != files || expected_bytes != bytes {
        let id = spec.id;
        found.fail(Invariant::Log, t_us, {
            format!("job {id} stage {stage} wrote {files} files / {bytes} B, its layout says {expected_files} / {expected_bytes}")
        });
    }
}

/// A sweep's totals are the sum of its removals.
pub(crate) fn sweep_totals(
    found: &mut Findings,
    removed: &[Removed],
    t_us: u64,
    files_removed: u64,
    bytes_freed: u64,
) {
    let sum: u64 = removed.iter().map(|(_, _, f)| f.bytes).sum();
    let n = removed.len();
    if n as u64 != files_removed || sum != bytes_freed {
        found.fail(Invariant::Log, t_us, {
            format!("sweep says {files_removed} files / {bytes_freed} B, its file_removed lines say {n} / {sum}")
        });
    }
}
