//! Parallel, symlink-race-safe cleanup of old temp files, and per-job temp workspaces.
//!
//! The service this replaces cleaned `/tmp/makevideo` every 6 hours, deleting files older
//! than 24 hours, and cleaned each job's files stage by stage. This crate does both:
//!
//! - [`Sweep`]: one sweep of a tree (builder, [`Sweep::run`] → [`SweepReport`]), with a
//!   dry run, excludes, an injectable `now`, and a pressure mode
//!   ([`Sweep::byte_goal`]) that deletes the oldest files first until enough space is
//!   free;
//! - [`SweepSchedule`]: a background thread that sweeps on an interval and when the disk
//!   is fuller than a threshold, and counts what its sweeps did in [`SweepMetrics`]
//!   (for a prometheus-client registry);
//! - [`JobWorkspace`]: a private directory per job, cleaned per stage and removed on drop;
//! - the `backstop-sweep` command-line tool, which can keep the same counters in a
//!   node_exporter textfile ([`SweepTotals::write_textfile`]).
//!
//! # Safety against path races
//!
//! tmpreaper (CVE-2019-3461), Rust's `remove_dir_all` (CVE-2022-21658) and
//! systemd-tmpfiles (CVE-2018-6954) were all tricked into deleting outside their tree by
//! swapping a directory for a symlink between a check and a use of its *path*. Here no
//! path is ever used after the root is opened:
//!
//! - every directory is opened relative to its parent's fd with
//!   `O_NOFOLLOW | O_DIRECTORY`; every entry is `lstat`ed (`fstatat(AT_SYMLINK_NOFOLLOW)`)
//!   and removed (`unlinkat`) relative to the fd of the directory that lists it. A
//!   directory replaced by a symlink fails to open and is counted under
//!   [`SkipCounts::symlink_target`]; an old symlink is removed as a link;
//! - the root path is resolved component by component without unsafe transitions (a
//!   symlink or directory planted by a user other than root and the caller, as
//!   `systemd-tmpfiles` refuses since CVE-2018-6954), and `/` or a pseudo-filesystem
//!   (proc, sysfs, devtmpfs, cgroup, …) is refused unless explicitly allowed
//!   ([`Sweep::preserve_root`], [`Sweep::allow_pseudo_fs`]);
//! - the sweep stays on the root's *mount*, judged by mount ID (`statx` `STATX_MNT_ID`,
//!   or `/proc/self/fdinfo` on kernels before 5.8), never by `st_dev` alone: a mount
//!   point, including a bind mount of the same filesystem, is not entered, and an
//!   overlay whose files report their layers' devices is swept as one mount. The root
//!   itself is never removed;
//! - FIFOs, sockets and devices are skipped; an entry some other process holds under an
//!   `flock` is skipped (non-blocking probe); modification times in the future count as
//!   new;
//! - per-entry errors are counted in [`SweepReport::errors`] and never stop the run;
//! - open file descriptors stay bounded however deep the tree (next section).
//!
//! # File descriptors
//!
//! A directory's fd stays open while its children are handled, since they are opened
//! and removed relative to it; a plain recursive walk therefore holds one fd per level
//! and fails with `EMFILE` on a deep enough tree. Here, down to 32 levels and while the
//! parallel tasks hold fewer fds than a budget (half the soft `RLIMIT_NOFILE`, less a
//! reserve per thread, at most 1024), each directory is a rayon task. Below that, a
//! subtree is walked by one thread with an explicit stack that keeps only the 16 deepest
//! directory fds open; on the way back up, a parent whose fd was closed is reopened
//! through `..` from its child and accepted only if its device and inode are those
//! recorded on the way down. If not, the directory was moved during the sweep: the error
//! is counted under [`ErrorCounts::moved`] and that part of the subtree is abandoned,
//! never guessed at. A tree 10 000 levels deep is swept under `RLIMIT_NOFILE` = 64.
//!
//! # Locks
//!
//! An old file that another process holds under `flock` is not removed, and a directory
//! another process holds under `flock` is not entered. Each file that is about to be
//! removed (old, regular, not excluded; young files are never probed) is opened
//! `O_NOFOLLOW | O_NONBLOCK` relative to its directory and locked with a non-blocking
//! exclusive `flock`; the fd is first `fstat`ed and must be the inode the walk examined
//! (a file swapped in between is left alone, [`SkipCounts::replaced`]); if the lock
//! fails with `EWOULDBLOCK` the file is skipped, otherwise the sweep *keeps* its lock
//! until after the `unlinkat` and only then closes the fd.
//!
//! What this guarantees, precisely: when a file is unlinked, no other open file
//! description held an `flock` on the inode the name referred to when the sweep opened
//! it. So a process that locks a file and then checks that it is still linked
//! (`fstat` shows `st_nlink > 0`, or the path still names the same inode) never has it
//! removed under its lock. What it does not cover: a file renamed over that name
//! between the sweep's `lstat` and its `unlinkat` (names are checked, not inodes, as by
//! `find` and `systemd-tmpfiles`); a file the sweep cannot open (no read permission) or
//! whose filesystem has no `flock`, which counts as unlocked; and a directory, which is
//! checked (lock, then unlock) once when entered, so a lock taken on it later does not
//! stop the walk inside it. The locks are advisory; so is the check. While the probe
//! holds its lock (microseconds, up to the close after the unlink), another process's
//! non-blocking `flock` on that file fails with `EWOULDBLOCK` and a blocking one waits.
//!
//! Two names of one inode (hard links) reached by two threads of one sweep share the
//! sweep's lock instead of each taking the other's for someone else's: the lock is held
//! until both are unlinked, so the guarantee above holds for each name, and a file is
//! skipped as locked only when a lock outside the sweep holds it.
//!
//! The probe costs an `open`, an `fstat`, an `flock` and a `close` per removed file.
//! [`Sweep::skip_locked`]`(false)` turns it off. A real run never trusts `/proc/locks`
//! instead: a snapshot is stale by the time a file is removed, and in a PID namespace
//! (any container) the kernel lists only locks whose owner is visible there, so a lock
//! held by a process outside the container, or by a child whose parent took it and
//! exited, is missing. A dry run, which removes nothing and only predicts the probe,
//! reads `/proc/locks` once instead of probing each file, but only where it lists every
//! lock: initial PID namespace, kernel 5.0 or newer, tmpfs, ext2/3/4 or XFS; elsewhere
//! it probes like a real run. The read waits for an RCU grace period, so it runs on a
//! thread of its own while the walk starts; checks made before it is in are taken for
//! "unlocked", and if the table then lists one of them (or cannot be read) the dry run
//! walks again with it (or probing). [`JobWorkspace::lock_against_sweeps`] uses the directory
//! check to protect a running job.
//!
//! # Parallelism
//!
//! One rayon task per directory (unlinks within one directory serialize on its lock in
//! the kernel, so directories are the unit of parallelism), work stealing,
//! [`default_threads`] threads on a disk (twice the cores, at least 8: on a disk mounted
//! `discard` each unlink waits for the device, and more threads overlap the waits),
//! [`default_threads_in_memory`] when removing files from tmpfs (the cores: nothing to
//! wait for; a dry run there uses [`default_threads`], as nothing contends). Each task
//! builds its own tally and hands it to its parent, so the report is deterministic and
//! no counter is shared.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use backstop_sweep::{JobWorkspace, Sweep};
//!
//! let base = tempfile::tempdir()?;
//! let job = JobWorkspace::create(base.path(), "job-42")?;
//! let frames = job.stage("download")?;
//! std::fs::write(frames.join("clip.mp4"), b"...")?;
//!
//! // Virtual time: pretend a week has passed. Nothing is older than the cutoff in
//! // real time, but ages are judged against `now`.
//! let in_a_week = SystemTime::now() + Duration::from_secs(7 * 24 * 3600);
//! let report = Sweep::new(base.path()).now(in_a_week).dry_run(true).run()?;
//! assert_eq!(report.files_removed, 1);
//! assert!(frames.join("clip.mp4").exists());
//!
//! drop(job); // removes the workspace and everything in it
//! assert!(!base.path().join("job-42").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod age;
mod error;
mod fsops;
mod locks;
mod metrics;
#[cfg(feature = "prometheus")]
mod metrics_export;
mod pressure;
mod probe;
mod report;
mod root;
mod schedule;
mod sweep;
mod textfile;
mod walk;
mod workspace;

pub use age::AgeBy;
pub use error::SweepError;
pub use metrics::{DURATION_BUCKETS_SECONDS, RunOutcome, SweepMetrics, SweepTotals};
pub use report::{
    EntryKind, ErrorCounts, ErrorKind, ErrorSample, MAX_ERROR_SAMPLES, RemovedEntry, SkipCounts,
    SweepReport,
};
pub use schedule::{
    DEFAULT_CHECK_EVERY, DEFAULT_EVERY, DEFAULT_MAX_PRESSURE_BACKOFF, DEFAULT_PRESSURE_OLDER_THAN,
    DEFAULT_PRESSURE_THRESHOLD, ScheduleError, ScheduleHandle, SweepSchedule, Trigger,
};
pub use sweep::{
    DEFAULT_OLDER_THAN, MIN_DEFAULT_THREADS, Sweep, default_threads, default_threads_in_memory,
};
pub use textfile::TextfileError;
pub use walk::Observer;
pub use workspace::{JobWorkspace, MAX_NAME_BYTES, WorkspaceError};
