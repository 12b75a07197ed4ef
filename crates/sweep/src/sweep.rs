//! The [`Sweep`] builder and its run.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::ThreadPool;
use rustix::io::Errno;

use crate::age::{AgeBy, Cutoff};
use crate::error::SweepError;
use crate::fsops::{Meta, MountCheck};
use crate::locks::LockTable;
use crate::probe::ProbeLocks;
use crate::report::{RemovedEntry, SweepReport};
use crate::root::{self, ChaseError};
use crate::walk::{self, Action, Ctx, DEEP_WINDOW_FDS, Observer, Walked};
use crate::{fsops, pressure};

/// The default age limit: files untouched for 24 hours go, as in the original service.
pub const DEFAULT_OLDER_THAN: Duration = Duration::from_secs(24 * 60 * 60);

/// Most directory fds the parallel part of a walk may hold, whatever `RLIMIT_NOFILE` says.
const MAX_FD_BUDGET: usize = 1024;
/// Fewest, so that a tiny limit still leaves some parallelism.
const MIN_FD_BUDGET: usize = 4;
/// Fewest threads the default picks, whatever the core count (see [`default_threads`]).
pub const MIN_DEFAULT_THREADS: usize = 8;
/// Most threads the default picks.
const MAX_DEFAULT_THREADS: usize = 64;

/// A configured sweep of one directory tree.
///
/// Removes, below `root`, regular files and symlinks older than
/// [`older_than`](Self::older_than) and then the directories that leaves empty (if they
/// are old too). Never removes the root, never follows a symlink, never leaves the root's
/// filesystem, never touches FIFOs, sockets or devices, and skips anything another
/// process holds under an `flock`. Every removal is relative to an open directory fd, so
/// swapping a directory for a symlink mid-sweep cannot redirect it (see the crate docs).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use backstop_sweep::{AgeBy, Sweep};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("old.mp4"), b"frames")?;
/// std::fs::write(dir.path().join("new.mp4"), b"frames")?;
/// let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
/// filetime::set_file_mtime(dir.path().join("old.mp4"), two_days_ago.into())?;
///
/// // `set_file_mtime` makes the ctime "now": judge by mtime alone (the default takes
/// // the newer of the two, so an extracted archive's old mtimes do not count).
/// let report = Sweep::new(dir.path())
///     .older_than(Duration::from_secs(24 * 3600))
///     .age_by(AgeBy::Mtime)
///     .run()?;
/// assert_eq!(report.files_removed, 1);
/// assert_eq!(report.skipped.too_young, 1);
/// assert!(!dir.path().join("old.mp4").exists());
/// assert!(dir.path().join("new.mp4").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Sweep {
    root: PathBuf,
    older_than: Duration,
    now: Option<SystemTime>,
    age_by: Option<AgeBy>,
    excludes: Vec<Glob>,
    remove_empty_dirs: bool,
    dry_run: bool,
    threads: usize,
    pool: Option<Arc<ThreadPool>>,
    byte_goal: Option<u64>,
    skip_locked: bool,
    preserve_root: bool,
    allow_pseudo_fs: bool,
    observer: Option<Observer>,
    collect_removed: bool,
}

impl fmt::Debug for Sweep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweep")
            .field("root", &self.root)
            .field("older_than", &self.older_than)
            .field("now", &self.now)
            .field("age_by", &self.age_by)
            .field(
                "excludes",
                &self.excludes.iter().map(Glob::glob).collect::<Vec<_>>(),
            )
            .field("remove_empty_dirs", &self.remove_empty_dirs)
            .field("dry_run", &self.dry_run)
            .field("threads", &self.threads)
            .field("byte_goal", &self.byte_goal)
            .field("skip_locked", &self.skip_locked)
            .field("preserve_root", &self.preserve_root)
            .field("allow_pseudo_fs", &self.allow_pseudo_fs)
            .field("observer", &self.observer.is_some())
            .field("collect_removed", &self.collect_removed)
            .finish_non_exhaustive()
    }
}

impl Sweep {
    /// A sweep of `root` with the defaults: older than 24 h by the newest of mtime and
    /// ctime, `now` read when it runs, no excludes, empty directories removed,
    /// [`default_threads`] threads, locked entries skipped, `/` and pseudo-filesystems
    /// refused.
    pub fn new(root: impl Into<PathBuf>) -> Sweep {
        Sweep {
            root: root.into(),
            older_than: DEFAULT_OLDER_THAN,
            now: None,
            age_by: None,
            excludes: Vec::new(),
            remove_empty_dirs: true,
            dry_run: false,
            threads: 0,
            pool: None,
            byte_goal: None,
            skip_locked: true,
            preserve_root: true,
            allow_pseudo_fs: false,
            observer: None,
            collect_removed: false,
        }
    }

    /// The root to sweep.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes entries strictly older than this (default 24 h).
    pub fn older_than(mut self, age: Duration) -> Sweep {
        self.older_than = age;
        self
    }

    /// Judges ages against this time instead of the system clock at the start of
    /// [`run`](Self::run). With it, which entries are old depends only on the tree: the
    /// simulator sets it from virtual time.
    ///
    /// A change time cannot be set (the kernel stamps it with the real clock), so on a
    /// virtual clock it means nothing: with `now` given and no
    /// [`age_by`](Self::age_by), ages are judged by [`AgeBy::Mtime`].
    pub fn now(mut self, now: SystemTime) -> Sweep {
        self.now = Some(now);
        self
    }

    /// Which timestamp an age is measured from (default [`AgeBy::MtimeOrCtime`], or
    /// [`AgeBy::Mtime`] when [`now`](Self::now) is injected).
    pub fn age_by(mut self, age_by: AgeBy) -> Sweep {
        self.age_by = Some(age_by);
        self
    }

    /// The timestamp ages are measured from, defaults applied.
    pub fn effective_age_by(&self) -> AgeBy {
        self.age_by.unwrap_or(if self.now.is_some() {
            AgeBy::Mtime
        } else {
            AgeBy::MtimeOrCtime
        })
    }

    /// Leaves alone every entry whose path relative to the root matches `pattern`
    /// (globset syntax; `*` also matches `/`, so `*.lock` matches at any depth). A
    /// matching directory is not entered.
    ///
    /// # Errors
    /// [`SweepError::InvalidExclude`] if the pattern is not a valid glob.
    pub fn exclude(mut self, pattern: &str) -> Result<Sweep, SweepError> {
        let glob = Glob::new(pattern).map_err(|err| SweepError::InvalidExclude {
            pattern: pattern.to_owned(),
            reason: err.kind().to_string(),
        })?;
        self.excludes.push(glob);
        Ok(self)
    }

    /// Whether directories the sweep leaves empty are removed (default true). A
    /// directory goes only if it was itself older than the cutoff before the sweep
    /// emptied it.
    pub fn remove_empty_dirs(mut self, remove: bool) -> Sweep {
        self.remove_empty_dirs = remove;
        self
    }

    /// Decides exactly as a real run would, and removes nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Sweep {
        self.dry_run = dry_run;
        self
    }

    /// Worker threads; 0 (the default) means [`default_threads`], or
    /// [`default_threads_in_memory`] when removing files from tmpfs or ramfs. Ignored when
    /// a pool is given with [`thread_pool`](Self::thread_pool).
    pub fn threads(mut self, threads: usize) -> Sweep {
        self.threads = threads;
        self
    }

    /// Runs on this rayon pool instead of starting one per run.
    pub fn thread_pool(mut self, pool: Arc<ThreadPool>) -> Sweep {
        self.pool = Some(pool);
        self
    }

    /// Pressure mode: removes the oldest eligible files first, until at least
    /// `bytes` are freed (counted as in [`SweepReport::bytes_freed`]), and stops there.
    /// Only regular files are removed in this mode; symlinks and directories stay.
    pub fn byte_goal(mut self, bytes: u64) -> Sweep {
        self.byte_goal = Some(bytes);
        self
    }

    /// Whether entries held under an `flock` by another process are skipped (default
    /// true; see the crate docs' *Locks* section for exactly what is guaranteed).
    /// Turning it off saves an `open`, an `flock` and a `close` per file removed.
    pub fn skip_locked(mut self, skip: bool) -> Sweep {
        self.skip_locked = skip;
        self
    }

    /// Whether a root that is `/` is refused (default true, as `rm --preserve-root`).
    pub fn preserve_root(mut self, preserve: bool) -> Sweep {
        self.preserve_root = preserve;
        self
    }

    /// Whether a root on a pseudo-filesystem (proc, sysfs, devtmpfs, cgroup, cgroup2,
    /// debugfs, securityfs, tracefs, …) is accepted (default false: those hold kernel
    /// objects, not temp files).
    pub fn allow_pseudo_fs(mut self, allow: bool) -> Sweep {
        self.allow_pseudo_fs = allow;
        self
    }

    /// Calls `observer` for each entry as it is removed (in a dry run: would be
    /// removed), from the worker threads and in no particular order. The simulator uses
    /// it to check that nothing younger than the cutoff is ever deleted.
    pub fn on_removed(mut self, observer: impl Fn(&RemovedEntry) + Send + Sync + 'static) -> Sweep {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Lists every removed entry in [`SweepReport::removed`], sorted by path.
    pub fn collect_removed(mut self, collect: bool) -> Sweep {
        self.collect_removed = collect;
        self
    }

    /// Runs the sweep.
    ///
    /// The root path is resolved one component at a time without unsafe transitions
    /// (a symlink or directory that a user other than root and this process could have
    /// planted, as in `systemd-tmpfiles`; see [`SweepError::UnsafeRoot`]), and must not
    /// be `/` nor on a pseudo-filesystem unless allowed. Below the root, the sweep stays
    /// on the root's *mount*: a mount point (another filesystem, or a bind mount of the
    /// same one) is not entered, while an overlay's files, whose `st_dev` is their
    /// layer's, are swept.
    ///
    /// # Errors
    /// Only when the sweep cannot start: the root cannot be opened safely, is not a
    /// directory, is refused by the guards, or the thread pool cannot be started. Every
    /// per-entry problem is counted in the report instead.
    pub fn run(&self) -> Result<SweepReport, SweepError> {
        // One span per sweep, closed with its counts, so a log of a sweep's own events
        // (and a subscriber timing spans) says which sweep they belong to.
        let span = tracing::info_span!(
            "sweep",
            root = %self.root.display(),
            dry_run = self.dry_run,
            files_removed = tracing::field::Empty,
            dirs_removed = tracing::field::Empty,
            bytes_freed = tracing::field::Empty,
            errors = tracing::field::Empty,
        );
        let _entered = span.enter();
        let result = self.run_in_span();
        match &result {
            Ok(report) => {
                span.record("files_removed", report.files_removed);
                span.record("dirs_removed", report.dirs_removed);
                span.record("bytes_freed", report.bytes_freed);
                span.record("errors", report.errors.total());
            }
            Err(err) => tracing::warn!("sweep could not start: {err}"),
        }
        result
    }

    fn run_in_span(&self) -> Result<SweepReport, SweepError> {
        let started = Instant::now();
        let now = self.now.unwrap_or_else(SystemTime::now);
        let (root_fd, root_meta, mount) = self.open_root()?;
        let excludes = self.glob_set()?;
        let pool = self.pool(root_fd.as_fd())?;
        let ctx = Ctx {
            root: &self.root,
            mount,
            cutoff: Cutoff::new(now, self.older_than, self.effective_age_by()),
            excludes: excludes.as_ref(),
            dry_run: self.dry_run,
            remove_empty_dirs: self.remove_empty_dirs,
            check_locks: self.skip_locked,
            lock_table: None,
            remove_special: false,
            action: if self.byte_goal.is_some() {
                Action::Collect
            } else {
                Action::Delete
            },
            observer: self.observer.as_ref(),
            collect_removed: self.collect_removed,
            fd_budget: fd_budget(pool.current_num_threads()),
            open_dirs: AtomicUsize::new(0),
            probes: ProbeLocks::default(),
        };
        let walk =
            |ctx: &Ctx<'_>| pool.install(|| self.walk(ctx, root_fd.as_fd(), root_meta.ident()));
        let lock_table = OnceLock::new();
        let walked = if self.dry_run && self.skip_locked {
            self.walk_predicting_locks(ctx, &lock_table, root_fd.as_fd(), walk)
        } else {
            walk(&ctx)
        };
        let report = walked.tally.into_report(
            self.root.clone(),
            self.dry_run,
            self.byte_goal,
            started.elapsed(),
        );
        Ok(report)
    }

    /// Opens the root as [`run`](Self::run) says, refusing what the guards refuse, with
    /// the check that tells its mount.
    fn open_root(&self) -> Result<(OwnedFd, Meta, MountCheck), SweepError> {
        let (root_fd, root_meta) = root::open_dir_safely(&self.root).map_err(|err| match err {
            ChaseError::Io(Errno::NOTDIR) => SweepError::RootNotDirectory {
                path: self.root.clone(),
            },
            ChaseError::Io(errno) => SweepError::RootOpen {
                path: self.root.clone(),
                source: errno.into(),
            },
            ChaseError::Unsafe(reason) => SweepError::UnsafeRoot {
                path: self.root.clone(),
                reason,
            },
        })?;
        if self.preserve_root && root::is_slash(&root_meta) {
            return Err(SweepError::RootIsSlash {
                path: self.root.clone(),
            });
        }
        if !self.allow_pseudo_fs {
            if let Some(fs_type) = root::pseudo_fs(root_fd.as_fd(), &root_meta) {
                return Err(SweepError::PseudoFilesystem {
                    path: self.root.clone(),
                    fs_type,
                });
            }
        }
        let mount = MountCheck::for_root(root_fd.as_fd(), &root_meta).map_err(|errno| {
            SweepError::RootOpen {
                path: self.root.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!(
                        "cannot tell its mount (no statx STATX_MNT_ID, no /proc/self/fdinfo): {}",
                        std::io::Error::from(errno)
                    ),
                ),
            }
        })?;
        Ok((root_fd, root_meta, mount))
    }

    /// The given pool, or a new one of the configured (or default) size for `root`.
    fn pool(&self, root: BorrowedFd<'_>) -> Result<Arc<ThreadPool>, SweepError> {
        if let Some(pool) = &self.pool {
            return Ok(Arc::clone(pool));
        }
        let threads = match self.threads {
            0 if !self.dry_run && root::is_memory_backed(root) => default_threads_in_memory(),
            0 => default_threads(),
            n => n,
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("backstop-sweep-{i}"))
            .build()
            .map(Arc::new)
            .map_err(|err| SweepError::ThreadPool {
                threads: self.threads,
                reason: err.to_string(),
            })
    }

    /// A dry run's walk with its lock checks predicted from a trusted lock table (see
    /// [`walk_while_reading_locks`]), or probed where the table is not trusted.
    fn walk_predicting_locks<'a>(
        &self,
        mut ctx: Ctx<'a>,
        lock_table: &'a OnceLock<LockTable>,
        root: BorrowedFd<'_>,
        walk: impl Fn(&Ctx<'_>) -> Walked,
    ) -> Walked {
        let Some(dev) = LockTable::trusted_device(root) else {
            return walk(&ctx);
        };
        ctx.lock_table = Some(lock_table);
        if self.observer.is_some() {
            // An observer must not be told a guess: read the table first.
            match LockTable::read(dev) {
                Some(table) => {
                    let _ = lock_table.set(table);
                }
                None => ctx.lock_table = None,
            }
            return walk(&ctx);
        }
        let (walked, table) = walk_while_reading_locks(dev, lock_table, || walk(&ctx));
        let guessed_wrong = walked
            .tally
            .lock_assumed
            .iter()
            .any(|&ident| table.is_none_or(|table| table.is_locked(ident)));
        if !guessed_wrong {
            return walked;
        }
        // Decide again, as the table (or, without one, the probe) says, listing the root
        // from its start.
        ctx.lock_table = table.map(|_| lock_table);
        match rustix::fs::seek(root, rustix::fs::SeekFrom::Start(0)) {
            Ok(_) => walk(&ctx),
            Err(errno) => {
                let mut walked = walked;
                walked
                    .tally
                    .errno(&self.root, "cannot list the root again", errno);
                walked
            }
        }
    }

    /// The walk, then pressure mode's second pass when a byte goal is set.
    fn walk(&self, ctx: &Ctx<'_>, root: BorrowedFd<'_>, root_ident: (u64, u64)) -> Walked {
        let (mut walked, _empty) = walk::walk_par(ctx, root, Path::new(""), root_ident, 0);
        if let Some(goal) = self.byte_goal {
            let candidates = std::mem::take(&mut walked.candidates);
            pressure::delete_oldest(ctx, root, candidates, goal, &mut walked.tally);
        }
        walked
    }

    fn glob_set(&self) -> Result<Option<GlobSet>, SweepError> {
        if self.excludes.is_empty() {
            return Ok(None);
        }
        let mut builder = GlobSetBuilder::new();
        for glob in &self.excludes {
            builder.add(glob.clone());
        }
        builder
            .build()
            .map(Some)
            .map_err(|err| SweepError::InvalidExclude {
                pattern: self
                    .excludes
                    .iter()
                    .map(Glob::glob)
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: err.kind().to_string(),
            })
    }
}

/// Runs a dry run's `walk` while another thread reads the lock table of device `dev`
/// into `table`, and returns the walk's result with the table (`None` if it could not be
/// read).
///
/// Reading `/proc/locks` waits for an RCU grace period (about 13 ms here, as long as a
/// tenth of a warm 200 000-file scan); the walk need not wait with it. Until the table is
/// there the walk takes every lock check for "unlocked" and records the inode in
/// `Tally::lock_assumed`; the caller checks those against the table and walks again in
/// the rare case that one was locked.
fn walk_while_reading_locks(
    dev: (u32, u32),
    table: &OnceLock<LockTable>,
    walk: impl FnOnce() -> Walked,
) -> (Walked, Option<&LockTable>) {
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("backstop-sweep-locks".into())
            .spawn_scoped(scope, || {
                if let Some(read) = LockTable::read(dev) {
                    let _ = table.set(read);
                }
            });
        if reader.is_err() {
            // No thread to spare: read it first, as a walk with an observer does.
            if let Some(read) = LockTable::read(dev) {
                let _ = table.set(read);
            }
        }
        let walked = walk();
        if let Ok(reader) = reader {
            // A panic while reading leaves no table, which means "probe instead".
            let _ = reader.join();
        }
        (walked, table.get())
    })
}

/// The thread count a sweep that removes files from a tmpfs or ramfs root uses unless
/// told otherwise: the cores (within [`default_threads`]). Nothing there waits on a
/// device, so threads past the cores only contend: on the 2-core VM, deleting the
/// 200 000-file tree on tmpfs took 0.60 s with 2 threads and 0.91 s with 8
/// (`benches/results/sweep.md`).
///
/// A dry run there uses [`default_threads`]: it removes nothing, so nothing contends, and
/// threads past the cores keep both cores busy when one thread is preempted (on the
/// loaded 2-core VM, the 200 000-file dry run took 0.18 s with 8 threads against
/// 0.23–0.25 s with 2).
pub fn default_threads_in_memory() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.min(default_threads()).max(1)
}

/// The thread count a sweep of a disk-backed root uses unless told otherwise: twice the cores, at least
/// [`MIN_DEFAULT_THREADS`] and at most 64, and no more than the fd limit leaves room for.
///
/// Why more threads than cores: removing a file is CPU work on tmpfs, but on a disk
/// mounted `discard` (common on cloud VMs) each `unlinkat` that frees blocks waits for a
/// synchronous discard on the device. Threads waiting there use no CPU, so more of them
/// overlap the waits: on the 2-core build VM (ext4, `discard`), deleting 100 000 files
/// took 5.6 s with 2 threads, 3.4 s with 4 and 2.6 s with 8 (`benches/results/sweep.md`).
/// On tmpfs they only contend, hence [`default_threads_in_memory`]. Each thread may hold
/// `DEEP_WINDOW_FDS + 2` fds in a deep walk, so the count is also capped to fit in half
/// the soft `RLIMIT_NOFILE`.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let wanted = cores
        .saturating_mul(2)
        .clamp(MIN_DEFAULT_THREADS, MAX_DEFAULT_THREADS);
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |limit| {
            usize::try_from(limit).unwrap_or(usize::MAX)
        });
    let fit = (soft / 2) / (DEEP_WINDOW_FDS + 2);
    wanted.min(fit).max(1)
}

/// How many directory fds the parallel part may hold: half the soft `RLIMIT_NOFILE`,
/// less what the sequential deep walks on every thread may need.
fn fd_budget(threads: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(MAX_FD_BUDGET as u64, |limit| limit / 2);
    let soft = usize::try_from(soft).unwrap_or(MAX_FD_BUDGET);
    soft.saturating_sub(threads.saturating_mul(DEEP_WINDOW_FDS + 2))
        .clamp(MIN_FD_BUDGET, MAX_FD_BUDGET)
}

/// Removes everything inside `dir` (not `dir` itself), whatever its age, on this thread:
/// a job workspace's cleanup. Still never follows a symlink nor leaves the filesystem.
pub(crate) fn purge_contents(dir: BorrowedFd<'_>, path: &Path) -> SweepReport {
    let started = Instant::now();
    let Ok(meta) = fsops::fstat(dir) else {
        return crate::report::Tally::default().into_report(
            path.to_path_buf(),
            false,
            None,
            started.elapsed(),
        );
    };
    let ctx = Ctx {
        root: path,
        mount: match MountCheck::for_root(dir, &meta) {
            Ok(mount) => mount,
            Err(errno) => {
                let mut tally = crate::report::Tally::default();
                tally.errno(path, "cannot tell the workspace's mount", errno);
                return tally.into_report(path.to_path_buf(), false, None, started.elapsed());
            }
        },
        cutoff: Cutoff::everything(),
        excludes: None,
        dry_run: false,
        remove_empty_dirs: true,
        check_locks: false,
        lock_table: None,
        remove_special: true,
        action: Action::Delete,
        observer: None,
        collect_removed: false,
        fd_budget: 0,
        open_dirs: AtomicUsize::new(0),
        probes: ProbeLocks::default(),
    };
    let (walked, _empty): (Walked, bool) = walk::walk_deep(&ctx, dir, Path::new(""), meta.ident());
    walked
        .tally
        .into_report(path.to_path_buf(), false, None, started.elapsed())
}
