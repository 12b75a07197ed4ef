//! `Admission.snapshot()`: the counters as a dict of plain numbers, under the names of
//! backstop-core's `MetricsSnapshot` (the Prometheus collector reads the registry's own
//! text instead, so its families are the Rust ones by construction).

use backstop_core::Admission;
use backstop_core::clock::Clock;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn by_reason<'py>(py: Python<'py>, list: &[(&'static str, u64)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (reason, count) in list {
        dict.set_item(*reason, *count)?;
    }
    Ok(dict)
}

/// The snapshot of `door`'s metrics as a dict.
pub(crate) fn snapshot_dict<'py, C: Clock>(
    py: Python<'py>,
    door: &Admission<C>,
) -> PyResult<Bound<'py, PyDict>> {
    let s = door.metrics().snapshot();
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

/// A `RedisAdmission`'s counts (and its store's) into `dict`, under core's names.
pub(crate) fn redis_counts(
    py: Python<'_>,
    dict: &Bound<'_, PyDict>,
    door: &backstop_redis::RedisAdmission,
) -> PyResult<()> {
    let c = door.counts();
    dict.set_item("admitted_total", c.admitted_total)?;
    dict.set_item("exempt_total", c.exempt_total)?;
    dict.set_item("rate_limited_total", c.rate_limited_total)?;
    dict.set_item(
        "rate_limited_by_scope_total",
        by_reason(py, &c.rate_limited_by_scope_total)?,
    )?;
    dict.set_item("overloaded_total", by_reason(py, &c.overloaded_total)?)?;
    dict.set_item("job_waits_total", by_reason(py, &c.job_waits_total)?)?;
    Ok(())
}

/// One counter family in OpenMetrics text, with its samples.
fn counter(out: &mut String, name: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter");
    for (value_label, value) in samples {
        if label.is_empty() {
            let _ = writeln!(out, "{name}_total {value}");
        } else {
            let _ = writeln!(out, "{name}_total{{{label}=\"{value_label}\"}} {value}");
        }
    }
}

/// A `RedisAdmission`'s counters in OpenMetrics text, under the families core's registry
/// uses for the same decisions (a shared door has no local queue or slot gauges), then
/// its store's own `backstop_store_*` families from backstop-redis's registry.
pub(crate) fn render_redis(door: &backstop_redis::RedisAdmission) -> String {
    let c = door.counts();
    let mut out = String::new();
    counter(
        &mut out,
        "backstop_admitted",
        "Requests admitted",
        "",
        &[("", c.admitted_total)],
    );
    counter(
        &mut out,
        "backstop_exempt",
        "Exempt requests",
        "",
        &[("", c.exempt_total)],
    );
    counter(
        &mut out,
        "backstop_rate_limited",
        "Requests refused with 429",
        "",
        &[("", c.rate_limited_total)],
    );
    counter(
        &mut out,
        "backstop_overloaded",
        "Requests refused with 503, by reason",
        "reason",
        &c.overloaded_total,
    );
    counter(
        &mut out,
        "backstop_job_waits",
        "Job starts that had to wait, by reason",
        "reason",
        &c.job_waits_total,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    door.store().register_metrics(&mut registry);
    // Writing to a String cannot fail; the encoder ends the text with `# EOF`.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
