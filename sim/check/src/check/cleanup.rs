//! Invariant 5, cleanup: a sweep removes files older than its cutoff and only those; a
//! scheduled sweep leaves none older; a pressure sweep removes oldest first and stops
//! short only when the disk is back under its threshold or nothing old enough is left.

use super::findings::{Findings, Invariant};
use super::params::CheckParams;
use super::state::{Removed, State, TempFile};
use crate::log::Trigger;

/// A sweep removed file `file` of job `id` at `t_us`: it must have been present.
pub(crate) fn file_removed(found: &mut Findings, state: &State, t_us: u64, id: u64, file: u32) {
    if !state.files.contains_key(&(id, file)) {
        found.fail(Invariant::Cleanup, t_us, {
            format!("file {file} of job {id} removed but not present")
        });
    }
}

/// What a sweep removed: nothing younger than its cutoff.
pub(crate) fn nothing_young(
    found: &mut Findings,
    removed: &[Removed],
    t_us: u64,
    trigger: Trigger,
    older_than_us: u64,
) {
    // Ages, not cutoffs: `t − older_than` would clamp at 0 early in a run.
    let young = removed
        .iter()
        .find(|(_, _, f)| age(f, t_us) < older_than_us);
    if let Some(&(id, file, f)) = young {
        let (what, age) = (trigger.as_str(), age(&f, t_us));
        found.fail(Invariant::Cleanup, t_us, {
            format!("{what} sweep removed file {file} of job {id}, {age} µs old, younger than the cutoff {older_than_us} µs")
        });
    }
}

/// What a sweep left: no file older than a scheduled sweep's cutoff; after a pressure
/// sweep, none removable while the disk is still over its threshold, and none older
/// than a file it removed.
pub(crate) fn nothing_old_left(
    found: &mut Findings,
    params: &CheckParams,
    state: &State,
    removed: &[Removed],
    (t_us, trigger, older_than_us): (u64, Trigger, u64),
) {
    // Strictly older than the cutoff: a file exactly at it may go either way.
    let oldest_left = state
        .files
        .iter()
        .filter(|(_, f)| age(f, t_us) > older_than_us)
        .min_by_key(|(_, f)| f.mtime_us)
        .map(|(k, f)| (*k, *f));
    let Some(((id, file), f)) = oldest_left else {
        return;
    };
    if trigger == Trigger::Schedule {
        let age = age(&f, t_us);
        found.fail(Invariant::Cleanup, t_us, {
            format!("after the scheduled sweep, file {file} of job {id} ({age} µs old) remains, older than {older_than_us} µs")
        });
        return;
    }
    let (used, threshold) = (state.used_disk_bytes(), params.pressure_bytes);
    if used > threshold {
        found.fail(Invariant::Cleanup, t_us, {
            format!("after the pressure sweep the disk holds {used} B (threshold {threshold} B) and file {file} of job {id}, removable, remains")
        });
    }
    // Oldest first: nothing removed is younger than something eligible left.
    let newest_removed = removed.iter().map(|(_, _, f)| f.mtime_us).max();
    if let Some(nr) = newest_removed.filter(|&nr| f.mtime_us < nr) {
        let mtime = f.mtime_us;
        found.fail(Invariant::Cleanup, t_us, {
            format!("pressure sweep was not oldest-first: file {file} of job {id} (mtime {mtime}) remains, a file with mtime {nr} was removed")
        });
    }
}

fn age(file: &TempFile, t_us: u64) -> u64 {
    t_us.saturating_sub(file.mtime_us)
}
