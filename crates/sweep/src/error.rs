//! Errors that stop a sweep before it starts.

use std::path::PathBuf;

/// Why a [`Sweep`](crate::Sweep) could not run (or could not be configured).
///
/// Problems with individual entries are never errors: they are counted in
/// [`SweepReport::errors`](crate::SweepReport::errors) and the sweep goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The root could not be opened.
    #[error("cannot open sweep root {}: {source}", path.display())]
    RootOpen {
        /// The root as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root exists but is not a directory.
    #[error("sweep root {} is not a directory", path.display())]
    RootNotDirectory {
        /// The root as given.
        path: PathBuf,
    },
    /// An `exclude` pattern is not a valid glob.
    #[error("invalid `exclude` glob {pattern:?}: {reason}")]
    InvalidExclude {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker thread pool could not be started.
    #[error("cannot start {threads} sweep threads: {reason}")]
    ThreadPool {
        /// Threads asked for (0 means one per core).
        threads: usize,
        /// Why.
        reason: String,
    },
}
