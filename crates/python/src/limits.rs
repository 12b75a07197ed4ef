//! `Limits`: backstop-core's configuration, read from the same TOML as the reference
//! service's `[limits]`. Keyword arguments reach it as TOML too (the Python side writes
//! them), so both spellings are checked by one parser and every error names its key.

use backstop_core::Limits as CoreLimits;
use pyo3::prelude::*;

use crate::boundary::{CONFIG_ERROR, guarded};

/// The native half of `backstop_admission.Limits`.
#[pyclass(module = "backstop_admission._native", name = "Limits", frozen)]
pub(crate) struct NativeLimits {
    pub(crate) limits: CoreLimits,
}

fn config_error(py: Python<'_>, err: &backstop_core::ConfigError) -> PyErr {
    CONFIG_ERROR.msg(py, err.to_string())
}

#[pymethods]
impl NativeLimits {
    /// The original's defaults, changed by keyword arguments named `<section>_<key>`
    /// after the TOML (`rate_limit=30`, `rate_window="60s"`, `queue_max=100`,
    /// `jobs_max=5`, `resources_enabled=False`, `shadow=True`); the Python side writes
    /// them as TOML, so they are checked exactly as a file is.
    #[new]
    #[pyo3(signature = (**settings))]
    fn new(
        py: Python<'_>,
        settings: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<NativeLimits> {
        guarded("Limits", || {
            let text = match settings {
                Some(settings) if !settings.is_empty() => py
                    .import("backstop_admission._toml")?
                    .getattr("limits_toml")?
                    .call1((settings,))?
                    .extract::<String>()?,
                _ => String::new(),
            };
            let limits = CoreLimits::from_toml_str(&text).map_err(|e| config_error(py, &e))?;
            Ok(NativeLimits { limits })
        })
    }

    /// Limits from a TOML file (the content of the reference service's `[limits]`).
    #[staticmethod]
    fn from_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<NativeLimits> {
        guarded("Limits.from_file", || {
            let text = std::fs::read_to_string(&path).map_err(|err| {
                CONFIG_ERROR.msg(py, format!("cannot read {}: {err}", path.display()))
            })?;
            let limits = CoreLimits::from_toml_str(&text)
                .map_err(|e| CONFIG_ERROR.msg(py, format!("{}: {e}", path.display())))?;
            Ok(NativeLimits { limits })
        })
    }

    /// Limits from a TOML document (the original's defaults for everything it omits).
    #[staticmethod]
    fn from_toml(py: Python<'_>, text: &str) -> PyResult<NativeLimits> {
        guarded("Limits.from_toml", || {
            let limits = CoreLimits::from_toml_str(text).map_err(|e| config_error(py, &e))?;
            Ok(NativeLimits { limits })
        })
    }

    /// The limits as JSON, written the way the TOML is (durations and sizes as text).
    fn to_json(&self, py: Python<'_>) -> PyResult<String> {
        guarded("Limits.to_json", || {
            serde_json::to_string(&self.limits).map_err(|e| CONFIG_ERROR.msg(py, e.to_string()))
        })
    }

    /// The shared rate limit: `(limit, window in seconds)`.
    fn rate(&self) -> (u32, f64) {
        (
            self.limits.rate.limit,
            self.limits.rate.window.as_secs_f64(),
        )
    }
}

impl NativeLimits {
    /// A copy of the limits, for a door to own.
    pub(crate) fn limits(&self) -> CoreLimits {
        self.limits.clone()
    }
}
