//! `Admission.snapshot()` and `RedisAdmission.snapshot()`: the counters as a dict of
//! plain numbers, under the names of backstop-core's `MetricsSnapshot` (both doors count
//! into core's `Metrics`; the Prometheus collector reads its own text instead, so its
//! families are the Rust ones by construction).

use backstop_core::MetricsSnapshot;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn by_reason<'py>(py: Python<'py>, list: &[(&'static str, u64)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (reason, count) in list {
        dict.set_item(*reason, *count)?;
    }
    Ok(dict)
}

/// A door's metrics snapshot as a dict.
pub(crate) fn snapshot_dict<'py>(
    py: Python<'py>,
    s: &MetricsSnapshot,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("admitted_total", s.admitted_total)?;
    dict.set_item("exempt_total", s.exempt_total)?;
    dict.set_item("rate_limited_total", s.rate_limited_total)?;
    dict.set_item(
        "rate_limited_by_scope_total",
        by_reason(py, &s.rate_limited_by_scope_total)?,
    )?;
    dict.set_item("overloaded_total", by_reason(py, &s.overloaded_total)?)?;
    dict.set_item(
        "shadow_refusals_total",
        by_reason(py, &s.shadow_refusals_total)?,
    )?;
    dict.set_item("job_waits_total", by_reason(py, &s.job_waits_total)?)?;
    dict.set_item("jobs_started_total", s.jobs_started_total)?;
    dict.set_item("jobs_finished_total", s.jobs_finished_total)?;
    dict.set_item("queue_depth", s.queue_depth)?;
    dict.set_item("queue_max", s.queue_max)?;
    dict.set_item("jobs_active", s.jobs_active)?;
    dict.set_item("jobs_max", s.jobs_max)?;
    dict.set_item("gate_state", s.gate_state.as_str())?;
    dict.set_item("resource_readings_total", s.resource_readings_total)?;
    dict.set_item("probe_failures_total", s.probe_failures_total)?;
    Ok(dict)
}

/// A `RedisAdmission`'s counters in OpenMetrics text: core's families, as the in-process
/// door's (both count into core's `Metrics`), then its store's own `backstop_store_*`
/// families from backstop-redis's registry.
pub(crate) fn render_redis(door: &backstop_redis::RedisAdmission) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    door.metrics().register(&mut registry);
    door.store().register_metrics(&mut registry);
    let mut out = String::new();
    // Writing to a String cannot fail; the encoder ends the text with `# EOF`.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
