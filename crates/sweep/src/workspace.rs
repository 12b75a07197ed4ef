//! Per-job temp workspaces, cleaned stage by stage and removed on drop.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode};
use rustix::io::Errno;

use crate::fsops;
use crate::report::SweepReport;
use crate::root::{ChaseError, open_dir_safely};
use crate::sweep::purge_contents;

/// Longest job id or stage name accepted (a single path component on Linux is at most
/// 255 bytes).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a workspace operation failed. Every variant names the path or field and the
/// reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// A job id or stage name is not a safe single path component.
    #[error("invalid `{field}` {name:?}: {reason}")]
    InvalidName {
        /// `job_id` or `stage`.
        field: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The base directory cannot be opened.
    #[error("cannot open workspace base {}: {source}", path.display())]
    Base {
        /// The base as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The base exists but is not safe to hold workspaces: not a directory, owned by
    /// another user, writable by group or others, or reached through a path someone
    /// else could have planted.
    #[error("refusing workspace base {}: {reason}", path.display())]
    UnsafeBase {
        /// The base as given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A workspace for this job id exists already (another job, or a leftover).
    #[error("workspace {} already exists", path.display())]
    AlreadyExists {
        /// The workspace path.
        path: PathBuf,
    },
    /// A file system operation on the workspace failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create stage directory`.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Cleanup left entries behind; the report says which.
    #[error("cleanup of {} left {} entries behind", path.display(), report.errors.total())]
    Incomplete {
        /// The directory being cleaned.
        path: PathBuf,
        /// What the cleanup did, with its error samples.
        report: Box<SweepReport>,
    },
}

/// A private (mode 0700) directory for one job, `base/job_id`.
///
/// [`stage`](Self::stage) gives a subdirectory per processing stage and
/// [`finish_stage`](Self::finish_stage) removes it with everything in it, so a job's
/// disk use shrinks as it goes. Dropping the workspace — after success, an error or a
/// panic — removes it entirely unless [`keep`](Self::keep) was called. Removal is
/// fd-relative and never follows a symlink, like a [`Sweep`](crate::Sweep).
///
/// ```
/// use backstop_sweep::JobWorkspace;
///
/// let base = tempfile::tempdir()?;
/// let job = JobWorkspace::create(base.path(), "job-7")?;
/// let download = job.stage("download")?;
/// std::fs::write(download.join("source.mp4"), vec![0u8; 4096])?;
/// let report = job.finish_stage("download")?;
/// assert_eq!(report.files_removed, 1);
/// assert!(!download.exists());
///
/// assert!(JobWorkspace::create(base.path(), "../escape").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JobWorkspace {
    path: PathBuf,
    job_id: String,
    base_fd: OwnedFd,
    dir_fd: OwnedFd,
    ident: (u64, u64),
    keep: bool,
}

impl JobWorkspace {
    /// Creates `base/job_id` with mode 0700, and `base` itself with mode 0700 if it is
    /// missing (its parent must exist).
    ///
    /// `base` is resolved like a sweep root, without unsafe transitions (no symlink or
    /// directory that a user other than root and this process could have planted, e.g.
    /// `/tmp/makevideo → /home/victim`). An existing base must be a directory owned by
    /// this process's user and not writable by group or others: whoever can create or
    /// rename entries in it can redirect a job's files.
    ///
    /// # Errors
    /// [`WorkspaceError::InvalidName`] unless `job_id` is a single safe path component
    /// (not empty, not `.` or `..`, no `/`, no NUL, at most [`MAX_NAME_BYTES`] bytes);
    /// [`WorkspaceError::UnsafeBase`] for a base that fails the checks above;
    /// [`WorkspaceError::AlreadyExists`] if the directory exists; otherwise
    /// [`WorkspaceError::Base`] or [`WorkspaceError::Io`] with the reason.
    pub fn create(base: impl AsRef<Path>, job_id: &str) -> Result<JobWorkspace, WorkspaceError> {
        let name = component("job_id", job_id)?;
        let base = base.as_ref();
        let base_fd = open_base(base)?;
        let path = base.join(job_id);
        let io = |op, errno: Errno| WorkspaceError::Io {
            op,
            path: path.clone(),
            source: errno.into(),
        };
        match rustix::fs::mkdirat(&base_fd, &name, Mode::RWXU) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(WorkspaceError::AlreadyExists { path }),
            Err(errno) => return Err(io("create workspace", errno)),
        }
        let dir_fd =
            fsops::open_dir_at(base_fd.as_fd(), &name).map_err(|e| io("open workspace", e))?;
        // The umask can only clear bits, but be explicit: the workspace is private.
        rustix::fs::fchmod(&dir_fd, Mode::RWXU).map_err(|e| io("set mode 0700 on", e))?;
        let stat = fsops::fstat(dir_fd.as_fd()).map_err(|e| io("stat workspace", e))?;
        Ok(JobWorkspace {
            path,
            job_id: job_id.to_owned(),
            base_fd,
            dir_fd,
            ident: stat.ident(),
            keep: false,
        })
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The job id it was created for.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The directory for stage `name` (created with mode 0700 if missing).
    ///
    /// # Errors
    /// [`WorkspaceError::InvalidName`] for an unsafe name; [`WorkspaceError::Io`] if it
    /// cannot be created or exists as something other than a directory.
    pub fn stage(&self, name: &str) -> Result<PathBuf, WorkspaceError> {
        let cname = component("stage", name)?;
        let path = self.path.join(name);
        let io = |op, errno: Errno| WorkspaceError::Io {
            op,
            path: path.clone(),
            source: errno.into(),
        };
        match rustix::fs::mkdirat(&self.dir_fd, &cname, Mode::RWXU) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let stat = fsops::lstat_at(self.dir_fd.as_fd(), &cname)
                    .map_err(|e| io("stat stage", e))?;
                if stat.file_type() != FileType::Directory {
                    return Err(io("use as a stage directory", Errno::NOTDIR));
                }
            }
            Err(errno) => return Err(io("create stage directory", errno)),
        }
        Ok(path)
    }

    /// Removes stage `name` and everything in it. Finishing a stage that does not
    /// exist (never started, or finished already) removes nothing and succeeds.
    ///
    /// # Errors
    /// [`WorkspaceError::InvalidName`] for an unsafe name; [`WorkspaceError::Incomplete`]
    /// if some entries could not be removed; [`WorkspaceError::Io`] otherwise.
    pub fn finish_stage(&self, name: &str) -> Result<SweepReport, WorkspaceError> {
        let cname = component("stage", name)?;
        let path = self.path.join(name);
        let stage_fd = match fsops::open_dir_at(self.dir_fd.as_fd(), &cname) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(purge_contents_empty(&path)),
            Err(errno) => {
                return Err(WorkspaceError::Io {
                    op: "open stage directory",
                    path,
                    source: errno.into(),
                });
            }
        };
        let mut report = purge_contents(stage_fd.as_fd(), &path);
        drop(stage_fd);
        if report.errors.total() > 0 {
            return Err(WorkspaceError::Incomplete {
                path,
                report: Box::new(report),
            });
        }
        match fsops::rmdir_at(self.dir_fd.as_fd(), &cname) {
            Ok(()) => report.dirs_removed += 1,
            Err(errno) => {
                return Err(WorkspaceError::Io {
                    op: "remove stage directory",
                    path,
                    source: errno.into(),
                });
            }
        }
        Ok(report)
    }

    /// Keeps the workspace on disk when it is dropped (e.g. to inspect a failed job).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Takes a shared `flock` on the workspace directory, held until the workspace is
    /// dropped, so that sweeps (which do not enter a locked directory) leave this job's
    /// files alone however old they look. Call it right after [`create`](Self::create).
    ///
    /// The lock is taken *blocking*: a sweep entering the directory at that instant
    /// holds an exclusive probe lock on it for the few microseconds between its
    /// `flock(LOCK_EX | LOCK_NB)` and its unlock, and the job waits that long rather than
    /// failing (a non-blocking request failed with `EWOULDBLOCK` about once in a
    /// thousand calls against a looping sweep). A sweep that entered just before the
    /// lock may still walk the workspace, but everything in a new workspace is young
    /// (by ctime, whatever mtime an archive restored), so it removes nothing.
    ///
    /// # Errors
    /// [`WorkspaceError::Io`] if the lock cannot be taken (e.g. a filesystem without
    /// `flock`). `EINTR` is retried.
    pub fn lock_against_sweeps(&self) -> Result<(), WorkspaceError> {
        loop {
            match rustix::fs::flock(&self.dir_fd, FlockOperation::LockShared) {
                Err(Errno::INTR) => continue,
                result => break result,
            }
        }
        .map_err(|errno| WorkspaceError::Io {
            op: "lock",
            path: self.path.clone(),
            source: errno.into(),
        })
    }

    /// Removes the workspace now and says how it went (dropping does the same, but can
    /// only log a failure).
    ///
    /// # Errors
    /// [`WorkspaceError::Incomplete`] if entries were left; [`WorkspaceError::Io`] if the
    /// directory could not be removed.
    pub fn remove(mut self) -> Result<SweepReport, WorkspaceError> {
        self.keep = true; // this call does the removal; the drop that follows must not
        self.remove_now()
    }

    fn remove_now(&self) -> Result<SweepReport, WorkspaceError> {
        let mut report = purge_contents(self.dir_fd.as_fd(), &self.path);
        if report.errors.total() > 0 {
            return Err(WorkspaceError::Incomplete {
                path: self.path.clone(),
                report: Box::new(report),
            });
        }
        let io = |op, errno: Errno| WorkspaceError::Io {
            op,
            path: self.path.clone(),
            source: errno.into(),
        };
        let name = component("job_id", &self.job_id)?;
        // Remove the name only if it still is our directory, not something put there
        // after it was moved away.
        let stat =
            fsops::lstat_at(self.base_fd.as_fd(), &name).map_err(|e| io("stat workspace", e))?;
        if stat.ident() != self.ident {
            return Err(io("remove (replaced by another entry)", Errno::STALE));
        }
        rustix::fs::unlinkat(&self.base_fd, &name, AtFlags::REMOVEDIR)
            .map_err(|e| io("remove workspace", e))?;
        report.dirs_removed += 1;
        Ok(report)
    }
}

impl Drop for JobWorkspace {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(err) = self.remove_now() {
            tracing::warn!(job_id = %self.job_id, "workspace cleanup failed: {err}");
        }
    }
}

/// Opens (or creates, 0700) the workspace base and checks it (see
/// [`JobWorkspace::create`]).
fn open_base(base: &Path) -> Result<OwnedFd, WorkspaceError> {
    let unsafe_base = |reason: String| WorkspaceError::UnsafeBase {
        path: base.to_path_buf(),
        reason,
    };
    let io = |errno: Errno| WorkspaceError::Base {
        path: base.to_path_buf(),
        source: errno.into(),
    };
    let (fd, meta) = match open_dir_safely(base) {
        Ok(opened) => opened,
        Err(ChaseError::Unsafe(reason)) => return Err(unsafe_base(reason)),
        Err(ChaseError::Io(Errno::NOTDIR)) => return Err(unsafe_base("not a directory".into())),
        Err(ChaseError::Io(Errno::NOENT)) => {
            // Create it, private, in a parent that is itself resolved safely.
            let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
                return Err(io(Errno::NOENT));
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let (parent_fd, _) = open_dir_safely(parent).map_err(|err| match err {
                ChaseError::Unsafe(reason) => unsafe_base(reason),
                ChaseError::Io(errno) => io(errno),
            })?;
            let cname = CString::new(name.as_bytes()).map_err(|_| io(Errno::INVAL))?;
            match rustix::fs::mkdirat(&parent_fd, &cname, Mode::RWXU) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(io(errno)),
            }
            let fd = fsops::open_dir_at(parent_fd.as_fd(), &cname).map_err(io)?;
            let meta = fsops::fstat(fd.as_fd()).map_err(io)?;
            (fd, meta)
        }
        Err(ChaseError::Io(errno)) => return Err(io(errno)),
    };
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid != euid {
        return Err(unsafe_base(format!(
            "owned by uid {}, not by this process (uid {euid})",
            meta.uid
        )));
    }
    if meta.mode & 0o022 != 0 {
        return Err(unsafe_base(format!(
            "mode {:o} lets group or others create entries in it (want 0700)",
            meta.mode & 0o7777
        )));
    }
    Ok(fd)
}

fn purge_contents_empty(path: &Path) -> SweepReport {
    crate::report::Tally::default().into_report(
        path.to_path_buf(),
        false,
        None,
        std::time::Duration::ZERO,
    )
}

/// Checks that `name` is one safe path component and converts it for the kernel.
fn component(field: &'static str, name: &str) -> Result<CString, WorkspaceError> {
    let invalid = |reason| WorkspaceError::InvalidName {
        field,
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("must not be `.` or `..`"));
    }
    if name.contains('/') {
        return Err(invalid("must be a single path component (no `/`)"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid("must be at most 255 bytes"));
    }
    CString::new(name).map_err(|_| invalid("must not contain NUL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_rejected_with_the_field_and_reason() {
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0byte", &"x".repeat(256)] {
            match component("job_id", bad) {
                Err(WorkspaceError::InvalidName { field, name, .. }) => {
                    assert_eq!(field, "job_id");
                    assert_eq!(name, bad);
                }
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        for good in ["job-1", "..hidden", "a.b", "x".repeat(255).as_str()] {
            assert!(component("stage", good).is_ok(), "{good:?} rejected");
        }
    }
}
