//! `JobWorkspace`: one job's private directory, stage directories removed as the job
//! goes, the whole of it removed at the end (the Python class makes it a context
//! manager).

use backstop_sweep::{JobWorkspace as Workspace, SweepReport, WorkspaceError};
use pyo3::prelude::*;

use crate::boundary::{WORKSPACE_ERROR, guarded};

/// The native half of `backstop_admission.JobWorkspace`.
#[pyclass(module = "backstop_admission._native", name = "JobWorkspace")]
pub(crate) struct NativeWorkspace {
    /// `None` once removed.
    inner: Option<Workspace>,
    path: String,
    job_id: String,
    kept: bool,
}

fn workspace_error(py: Python<'_>, err: &WorkspaceError) -> PyErr {
    WORKSPACE_ERROR.msg(py, err.to_string())
}

fn report_json(py: Python<'_>, report: &SweepReport) -> PyResult<String> {
    serde_json::to_string(report).map_err(|err| WORKSPACE_ERROR.msg(py, err.to_string()))
}

impl NativeWorkspace {
    fn open(&self, py: Python<'_>) -> PyResult<&Workspace> {
        self.inner.as_ref().ok_or_else(|| {
            WORKSPACE_ERROR.msg(py, format!("workspace {} was already removed", self.path))
        })
    }
}

#[pymethods]
impl NativeWorkspace {
    /// Creates `base/job_id` (mode 0700), and `base` (0700) if missing.
    #[new]
    fn new(py: Python<'_>, base: std::path::PathBuf, job_id: &str) -> PyResult<NativeWorkspace> {
        guarded("JobWorkspace", || {
            let inner = Workspace::create(&base, job_id).map_err(|e| workspace_error(py, &e))?;
            Ok(NativeWorkspace {
                path: inner.path().to_string_lossy().into_owned(),
                job_id: job_id.to_owned(),
                inner: Some(inner),
                kept: false,
            })
        })
    }

    /// The workspace directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// The job id.
    #[getter]
    fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Whether the workspace was removed.
    #[getter]
    fn removed(&self) -> bool {
        self.inner.is_none()
    }

    /// The directory of stage `name`, created 0700 if missing.
    fn stage(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        guarded("JobWorkspace.stage", || {
            let path = self
                .open(py)?
                .stage(name)
                .map_err(|e| workspace_error(py, &e))?;
            Ok(path.to_string_lossy().into_owned())
        })
    }

    /// Removes stage `name` with everything in it; the report as JSON.
    fn finish_stage(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        guarded("JobWorkspace.finish_stage", || {
            let workspace = self.open(py)?;
            let report = py
                .detach(|| workspace.finish_stage(name))
                .map_err(|e| workspace_error(py, &e))?;
            report_json(py, &report)
        })
    }

    /// Keeps the directory on disk when the workspace is closed.
    fn keep(&mut self, py: Python<'_>) -> PyResult<()> {
        guarded("JobWorkspace.keep", || {
            self.inner
                .as_mut()
                .ok_or_else(|| {
                    WORKSPACE_ERROR.msg(py, format!("workspace {} was already removed", self.path))
                })?
                .keep();
            self.kept = true;
            Ok(())
        })
    }

    /// A shared `flock` on the directory, so sweeps leave the job's files alone; blocks
    /// (GIL released) for the microseconds a sweep may hold its probe lock.
    fn lock_against_sweeps(&self, py: Python<'_>) -> PyResult<()> {
        guarded("JobWorkspace.lock_against_sweeps", || {
            let workspace = self.open(py)?;
            py.detach(|| workspace.lock_against_sweeps())
                .map_err(|e| workspace_error(py, &e))
        })
    }

    /// Removes the workspace now (unless kept); the report as JSON, or `None` when the
    /// workspace was kept or already removed.
    fn close(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        guarded("JobWorkspace.close", || {
            let Some(workspace) = self.inner.take() else {
                return Ok(None);
            };
            if self.kept {
                drop(workspace); // kept: dropping leaves the directory
                return Ok(None);
            }
            let report = py
                .detach(|| workspace.remove())
                .map_err(|e| workspace_error(py, &e))?;
            report_json(py, &report).map(Some)
        })
    }
}
