//! `sweep(...)`: one run of `backstop_sweep::Sweep`, the GIL released while it walks.

use std::time::{Duration, UNIX_EPOCH};

use backstop_sweep::{AgeBy, Sweep};
use pyo3::prelude::*;

use crate::boundary::{CONFIG_ERROR, SWEEP_ERROR, guarded};

/// A duration given in seconds from Python, checked: finite and not negative.
pub(crate) fn seconds(py: Python<'_>, field: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        CONFIG_ERROR.msg(
            py,
            format!("invalid `{field}`: {secs} s is not a finite, non-negative number of seconds"),
        )
    })
}

fn age_by(py: Python<'_>, name: &str) -> PyResult<AgeBy> {
    match name {
        "mtime-ctime" => Ok(AgeBy::MtimeOrCtime),
        "mtime" => Ok(AgeBy::Mtime),
        "newest" => Ok(AgeBy::Newest),
        other => Err(CONFIG_ERROR.msg(
            py,
            format!(
                "invalid `age_by` {other:?}: expected \"mtime-ctime\", \"mtime\" or \"newest\""
            ),
        )),
    }
}

/// Sweeps `root` once and returns the report as JSON (the Python side makes it a dict;
/// the schema is `backstop-sweep --json`'s).
///
/// The walk runs with the GIL released: other Python threads (a Celery worker's
/// heartbeat, an API's requests) go on while it deletes.
#[pyfunction]
#[pyo3(signature = (root, *, older_than_s, now_s=None, age_by_name=None, dry_run=false,
    exclude=Vec::new(), keep_empty_dirs=false, threads=0, byte_goal=None, collect_removed=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sweep(
    py: Python<'_>,
    root: std::path::PathBuf,
    older_than_s: f64,
    now_s: Option<f64>,
    age_by_name: Option<&str>,
    dry_run: bool,
    exclude: Vec<String>,
    keep_empty_dirs: bool,
    threads: usize,
    byte_goal: Option<u64>,
    collect_removed: bool,
) -> PyResult<String> {
    guarded("sweep", || {
        let mut job = Sweep::new(root)
            .older_than(seconds(py, "older_than", older_than_s)?)
            .dry_run(dry_run)
            .remove_empty_dirs(!keep_empty_dirs)
            .threads(threads)
            .collect_removed(collect_removed);
        if let Some(now_s) = now_s {
            let since_epoch = seconds(py, "now", now_s)?;
            job = job.now(UNIX_EPOCH + since_epoch);
        }
        if let Some(name) = age_by_name {
            job = job.age_by(age_by(py, name)?);
        }
        for pattern in &exclude {
            job = job
                .exclude(pattern)
                .map_err(|err| CONFIG_ERROR.msg(py, err.to_string()))?;
        }
        if let Some(bytes) = byte_goal {
            job = job.byte_goal(bytes);
        }
        let report = py
            .detach(|| job.run())
            .map_err(|err| SWEEP_ERROR.msg(py, err.to_string()))?;
        serde_json::to_string(&report).map_err(|err| SWEEP_ERROR.msg(py, err.to_string()))
    })
}
