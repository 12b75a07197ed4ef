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
    /// Resolving the root path took a step that someone other than root or this
    /// process could have planted (see [`Sweep::run`](crate::Sweep::run)).
    #[error("refusing sweep root {}: unsafe path at {reason}", path.display())]
    UnsafeRoot {
        /// The root as given.
        path: PathBuf,
        /// Which component, and why.
        reason: String,
    },
    /// The root is `/`, and [`Sweep::preserve_root`](crate::Sweep::preserve_root) was not
    /// turned off (`--no-preserve-root`).
    #[error("refusing to sweep {} (it is /); pass --no-preserve-root if you mean it", path.display())]
    RootIsSlash {
        /// The root as given.
        path: PathBuf,
    },
    /// The root is on a pseudo-filesystem (proc, sysfs, devtmpfs, cgroup, …) and
    /// [`Sweep::allow_pseudo_fs`](crate::Sweep::allow_pseudo_fs) was not set
    /// (`--allow-pseudo-fs`).
    #[error("refusing to sweep {}: it is on {fs_type}, a pseudo-filesystem; pass --allow-pseudo-fs if you mean it", path.display())]
    PseudoFilesystem {
        /// The root as given.
        path: PathBuf,
        /// The filesystem type, e.g. `sysfs`.
        fs_type: &'static str,
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
        /// Threads asked for (0 means [`default_threads`](crate::default_threads)).
        threads: usize,
        /// Why.
        reason: String,
    },
}
