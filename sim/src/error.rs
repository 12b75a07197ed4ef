//! [`SimError`]: why a run could not complete.

use backstop_sim_check::trace::TraceError;

use crate::disk::DiskError;
use crate::service::ServiceError;

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The trace is malformed.
    #[error("{0}")]
    Trace(#[from] TraceError),
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] backstop_core::ConfigError),
    /// The scratch directory failed.
    #[error("{0}")]
    Disk(#[from] DiskError),
    /// Writing the decision log failed.
    #[error("writing the decision log: {0}")]
    Log(std::io::Error),
    /// A replica could not answer.
    #[error("{0}")]
    Service(#[from] ServiceError),
    /// Replicas that cannot share one limit, or a store that cannot be used.
    #[error("{0}")]
    Replicas(String),
}
