//! The walker: one rayon task per directory near the top, a sequential walk with a
//! bounded window of open fds below.
//!
//! # File descriptors
//!
//! A directory's fd must stay open while its children are handled (they are opened and
//! removed relative to it), so a naive recursive walk holds one fd per level and dies
//! with `EMFILE` on a deep enough tree. Here:
//!
//! - down to [`MAX_PARALLEL_DEPTH`] levels, and while fewer than the run's fd budget
//!   (derived from `RLIMIT_NOFILE`) are open, each directory is a rayon task that keeps
//!   its fd while its subdirectories are walked in parallel;
//! - below that, or over budget, a subtree is walked by one thread with an explicit
//!   stack ([`walk_deep`]) that keeps only the deepest [`DEEP_WINDOW_FDS`] fds open. On
//!   the way back up, a parent whose fd was closed is reopened through `..` from its
//!   child and accepted only if its device and inode match what was recorded on the way
//!   down; otherwise the directory was moved under us, the error is counted as
//!   [`moved`](crate::ErrorCounts::moved) and that part of the subtree is abandoned.
//!
//! So a run holds at most about `fd_budget + threads × (DEEP_WINDOW_FDS + 2)` fds (the
//! lock probe's one file fd per thread fits in the `+ 2` of a deep walk, and in the half
//! of `RLIMIT_NOFILE` the budget leaves free), and a tree 10 000 levels deep is swept
//! with a few dozen.

use std::ffi::{CStr, CString, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use globset::GlobSet;
use rayon::prelude::*;
use rustix::fs::{FileType, RawDir};
use rustix::io::Errno;

use crate::age::{Cutoff, ns_to_system_time};
use crate::fsops::{self, Meta, MountCheck};
use crate::locks::LockTable;
use crate::probe::FileLock;
use crate::probe::ProbeLocks;
use crate::report::{EntryKind, ErrorKind, RemovedEntry, SkipReason, Tally};

/// Directories at most this deep are walked as parallel tasks.
pub(crate) const MAX_PARALLEL_DEPTH: usize = 32;
/// Open fds a sequential deep walk keeps, besides the one it was handed.
pub(crate) const DEEP_WINDOW_FDS: usize = 16;
/// Size of the `getdents64` buffer on each task's stack.
const DIRENT_BUF_BYTES: usize = 16 * 1024;

const _: () = assert!(DEEP_WINDOW_FDS >= 1, "the deepest frame must keep its fd");
const _: () = assert!(MAX_PARALLEL_DEPTH >= 1);

/// Called for every removed entry (or, in a dry run, every entry that would be removed),
/// from the worker threads, in no particular order.
pub type Observer = Arc<dyn Fn(&RemovedEntry) + Send + Sync>;

/// What the walk does with an old, eligible file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Remove it (or count it, in a dry run).
    Delete,
    /// Pressure mode, first pass: remember it as a candidate, remove nothing.
    Collect,
}

/// A file pressure mode may delete, remembered during the first pass.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub dir: Arc<DirRecord>,
    pub name: CString,
    pub ino: u64,
    pub time_ns: i128,
    pub bytes_freed: u64,
}

/// A directory holding candidates: where it is and what it was.
#[derive(Debug)]
pub(crate) struct DirRecord {
    pub rel: PathBuf,
    pub ident: (u64, u64),
}

/// Everything a walk needs, shared by reference across the tasks.
pub(crate) struct Ctx<'a> {
    pub root: &'a Path,
    /// How to tell that an entry is on the root's mount.
    pub mount: MountCheck,
    pub cutoff: Cutoff,
    pub excludes: Option<&'a GlobSet>,
    pub dry_run: bool,
    pub remove_empty_dirs: bool,
    pub check_locks: bool,
    /// Dry runs only: a trusted `/proc/locks` snapshot to consult instead of probing,
    /// or the place it will be once read (see `predicted_locked`).
    pub lock_table: Option<&'a OnceLock<LockTable>>,
    /// Workspace purge: FIFOs, sockets and devices are removed too.
    pub remove_special: bool,
    pub action: Action,
    pub observer: Option<&'a Observer>,
    pub collect_removed: bool,
    pub fd_budget: usize,
    /// Directory fds held by parallel tasks; compared with `fd_budget`.
    pub open_dirs: AtomicUsize,
    /// The lock probes' locks on files of several links, shared between the threads.
    pub probes: ProbeLocks,
}

/// A walk's result for one directory: the tally of its subtree and any candidates.
#[derive(Default)]
pub(crate) struct Walked {
    pub tally: Tally,
    pub candidates: Vec<Candidate>,
}

impl Walked {
    fn merge(&mut self, mut other: Walked) {
        self.tally.merge(other.tally);
        self.candidates.append(&mut other.candidates);
    }
}

impl Ctx<'_> {
    pub(crate) fn full_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    /// The lock check for the regular file `name` (with `stat`) of `dir`, about to be
    /// removed: [`FileLock::HeldElsewhere`] means skip it; keep anything else alive
    /// until after the unlink. Without the check, or when a dry run's trusted lock table
    /// says it is free, there is nothing to hold ([`FileLock::Unchecked`]).
    pub(crate) fn lock_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        tally: &mut Tally,
    ) -> FileLock<'_> {
        if !self.check_locks {
            return FileLock::Unchecked;
        }
        match self.lock_table {
            Some(table) if self.dry_run => {
                if predicted_locked(table, meta, tally) {
                    FileLock::HeldElsewhere
                } else {
                    FileLock::Unchecked
                }
            }
            _ => self.probes.lock_file_at(dir, name, meta),
        }
    }

    /// Whether the directory `dir` (with `meta`) is locked, so that the walk leaves it
    /// alone: probed with a lock taken and given back at once, or, in a dry run with a
    /// trusted lock table, read from the table (see [`Ctx::lock_file`]).
    fn dir_is_locked(&self, dir: BorrowedFd<'_>, meta: &Meta, tally: &mut Tally) -> bool {
        if !self.check_locks {
            return false;
        }
        match self.lock_table {
            Some(table) if self.dry_run => predicted_locked(table, meta, tally),
            _ => fsops::is_locked(dir),
        }
    }

    fn excluded(&self, rel_child: &Path) -> bool {
        self.excludes.is_some_and(|set| set.is_match(rel_child))
    }

    pub(crate) fn record_removal(
        &self,
        tally: &mut Tally,
        rel: &Path,
        kind: EntryKind,
        meta: &Meta,
    ) {
        let bytes_freed = tally.count_removal(kind, meta);
        if self.observer.is_none() && !self.collect_removed {
            return;
        }
        let entry = RemovedEntry {
            path: self.full_path(rel),
            kind,
            age_time: ns_to_system_time(self.cutoff.age_by.time_ns(meta)),
            bytes_freed,
            apparent_bytes: fsops::apparent_bytes(meta),
        };
        if let Some(observer) = self.observer {
            observer(&entry);
        }
        if self.collect_removed {
            tally.removed.push((entry, meta.ident()));
        }
    }
}

/// A dry run's prediction of the probe from the lock table; while the table is still
/// being read, "unlocked", with the inode recorded in `tally` to be checked later.
fn predicted_locked(table: &OnceLock<LockTable>, meta: &Meta, tally: &mut Tally) -> bool {
    match table.get() {
        Some(table) => table.is_locked(meta.ident()),
        None => {
            tally.lock_assumed.push(meta.ident());
            false
        }
    }
}

fn child_rel(rel: &Path, name: &CStr) -> PathBuf {
    rel.join(OsStr::from_bytes(name.to_bytes()))
}

/// What became of one non-directory entry.
enum Fate {
    Removed,
    Kept,
    /// It is a directory after all (`d_type` was unknown).
    Directory,
}

/// Lists `dir`, handles every non-directory entry in it, and returns its subdirectories
/// (to be walked by the caller) and the number of entries that stay.
fn scan(
    ctx: &Ctx<'_>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    ident: (u64, u64),
    out: &mut Walked,
) -> (Vec<CString>, u64) {
    let mut buf = [MaybeUninit::<u8>::uninit(); DIRENT_BUF_BYTES];
    let mut entries = RawDir::new(dir, &mut buf);
    let mut subdirs = Vec::new();
    let mut remaining = 0u64;
    let mut record: Option<Arc<DirRecord>> = None;
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(errno) => {
                out.tally
                    .errno(&ctx.full_path(rel), "cannot read directory", errno);
                // Whatever was not listed may remain: never remove this directory.
                remaining += 1;
                break;
            }
        };
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        out.tally.entries_scanned += 1;
        if ctx.excludes.is_some() && ctx.excluded(&child_rel(rel, name)) {
            out.tally.skipped.add(SkipReason::Excluded);
            remaining += 1;
            continue;
        }
        if entry.file_type() == FileType::Directory {
            subdirs.push(name.to_owned());
            continue;
        }
        match handle_entry(ctx, dir, rel, ident, name, &mut record, out) {
            Fate::Removed => {}
            Fate::Kept => remaining += 1,
            Fate::Directory => subdirs.push(name.to_owned()),
        }
    }
    (subdirs, remaining)
}

#[allow(clippy::too_many_arguments)] // the per-directory state a scan threads through
fn handle_entry(
    ctx: &Ctx<'_>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    ident: (u64, u64),
    name: &CStr,
    record: &mut Option<Arc<DirRecord>>,
    out: &mut Walked,
) -> Fate {
    let (meta, kind) = match judge_entry(ctx, dir, rel, name, out) {
        Ok(eligible) => eligible,
        Err(fate) => return fate,
    };
    if ctx.action == Action::Collect {
        // Pressure mode frees file data only; links and special files stay.
        if kind == EntryKind::File {
            let dir_record = record.get_or_insert_with(|| {
                Arc::new(DirRecord {
                    rel: rel.to_path_buf(),
                    ident,
                })
            });
            out.candidates.push(Candidate {
                dir: Arc::clone(dir_record),
                name: name.to_owned(),
                ino: meta.ino,
                time_ns: ctx.cutoff.age_by.time_ns(&meta),
                bytes_freed: crate::report::planned_bytes(&meta),
            });
        }
        return Fate::Kept;
    }
    remove_entry(ctx, dir, rel, name, &meta, kind, out)
}

/// An entry's metadata and kind if it may go: old enough, on the root's mount, of a kind
/// the sweep removes; else what became of it (a directory, or kept and counted).
fn judge_entry(
    ctx: &Ctx<'_>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    name: &CStr,
    out: &mut Walked,
) -> Result<(Meta, EntryKind), Fate> {
    let meta = match fsops::lstat_at(dir, name) {
        Ok(meta) => meta,
        Err(errno) => {
            out.tally
                .errno(&ctx.full_path(&child_rel(rel, name)), "cannot stat", errno);
            return Err(Fate::Kept);
        }
    };
    let file_type = meta.file_type();
    if file_type == FileType::Directory {
        return Err(Fate::Directory);
    }
    // A file bind-mounted into the tree belongs to another mount. Not `st_dev`: on an
    // overlay, files report their layer's device (see `MountCheck`).
    if !ctx.mount.same_mount_entry(&meta) {
        out.tally.skipped.add(SkipReason::OtherFilesystem);
        return Err(Fate::Kept);
    }
    let kind = match file_type {
        FileType::RegularFile => EntryKind::File,
        FileType::Symlink => EntryKind::Symlink,
        _ if ctx.remove_special => EntryKind::Special,
        _ => {
            out.tally.skipped.add(SkipReason::SpecialFile);
            return Err(Fate::Kept);
        }
    };
    if !ctx.cutoff.is_old(&meta) {
        out.tally.skipped.add(SkipReason::TooYoung);
        return Err(Fate::Kept);
    }
    Ok((meta, kind))
}

/// Removes an eligible entry (a dry run only counts it), unless another process holds
/// a lock on the file or it was replaced since it was judged.
fn remove_entry(
    ctx: &Ctx<'_>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    name: &CStr,
    meta: &Meta,
    kind: EntryKind,
    out: &mut Walked,
) -> Fate {
    // Checked last, so only files that would otherwise go pay for it.
    let lock = if kind == EntryKind::File {
        match ctx.lock_file(dir, name, meta, &mut out.tally) {
            FileLock::HeldElsewhere => {
                out.tally.skipped.add(SkipReason::Locked);
                return Fate::Kept;
            }
            FileLock::Replaced => {
                out.tally.skipped.add(SkipReason::Replaced);
                return Fate::Kept;
            }
            lock => Some(lock),
        }
    } else {
        None
    };
    if !ctx.dry_run {
        if let Err(errno) = fsops::unlink_at(dir, name) {
            out.tally.errno(
                &ctx.full_path(&child_rel(rel, name)),
                "cannot remove",
                errno,
            );
            return Fate::Kept;
        }
    }
    // Only now, with the name gone, may others lock the file (see `FileLock::Ours`).
    drop(lock);
    ctx.record_removal(
        &mut out.tally,
        &child_rel_if_needed(ctx, rel, name),
        kind,
        meta,
    );
    Fate::Removed
}

/// The child's relative path, built only when someone will look at it.
fn child_rel_if_needed(ctx: &Ctx<'_>, rel: &Path, name: &CStr) -> PathBuf {
    if ctx.observer.is_some() || ctx.collect_removed {
        child_rel(rel, name)
    } else {
        PathBuf::new()
    }
}

/// Opens a subdirectory for walking, or says why it is left alone.
fn enter_dir(
    ctx: &Ctx<'_>,
    parent: BorrowedFd<'_>,
    name: &CStr,
    rel: &Path,
    tally: &mut Tally,
) -> Option<(OwnedFd, Meta)> {
    let fd = match fsops::open_dir_at(parent, name) {
        Ok(fd) => fd,
        // It was a directory when listed; now it is a symlink (or something else). The
        // refusal is the point: a swapped-in link is never followed.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            tally.skipped.add(SkipReason::SymlinkTarget);
            return None;
        }
        Err(errno) => {
            tally.errno(&ctx.full_path(rel), "cannot open directory", errno);
            return None;
        }
    };
    let meta = match fsops::fstat(fd.as_fd()) {
        Ok(meta) => meta,
        Err(errno) => {
            tally.errno(&ctx.full_path(rel), "cannot stat directory", errno);
            return None;
        }
    };
    // A mount point (another filesystem, or a bind mount of this one) is not entered.
    match ctx.mount.same_mount_dir(fd.as_fd(), &meta) {
        Ok(true) => {}
        Ok(false) => {
            tally.skipped.add(SkipReason::OtherFilesystem);
            return None;
        }
        Err(errno) => {
            tally.errno(
                &ctx.full_path(rel),
                "cannot tell the directory's mount",
                errno,
            );
            return None;
        }
    }
    if ctx.dir_is_locked(fd.as_fd(), &meta, tally) {
        tally.skipped.add(SkipReason::Locked);
        return None;
    }
    Some((fd, meta))
}

/// After a subdirectory's walk: removes it if the walk left it empty and it was old when
/// entered. Returns whether it is gone.
fn leave_dir(
    ctx: &Ctx<'_>,
    parent: BorrowedFd<'_>,
    name: &CStr,
    meta: &Meta,
    empty: bool,
    rel: &Path,
    tally: &mut Tally,
) -> bool {
    if !empty || !ctx.remove_empty_dirs || ctx.action == Action::Collect {
        return false;
    }
    // `meta` was read before the walk emptied it, so its times are the directory's own.
    if !ctx.cutoff.is_old(meta) {
        tally.skipped.add(SkipReason::TooYoung);
        return false;
    }
    if !ctx.dry_run {
        match fsops::rmdir_at(parent, name) {
            Ok(()) => {}
            // Someone created an entry after the walk: it stays, and that is no error.
            Err(Errno::NOTEMPTY | Errno::EXIST) => return false,
            Err(errno) => {
                tally.errno(&ctx.full_path(rel), "cannot remove directory", errno);
                return false;
            }
        }
    }
    ctx.record_removal(tally, rel, EntryKind::Dir, meta);
    true
}

/// Walks the directory `dir` (already open) as a parallel task. Returns its subtree's
/// tally and whether the directory is now empty.
pub(crate) fn walk_par(
    ctx: &Ctx<'_>,
    dir: BorrowedFd<'_>,
    rel: &Path,
    ident: (u64, u64),
    depth: usize,
) -> (Walked, bool) {
    let mut out = Walked::default();
    let (subdirs, remaining) = scan(ctx, dir, rel, ident, &mut out);
    let (sub, kept) = subdirs
        .par_iter()
        .map(|name| visit_par(ctx, dir, rel, name, depth + 1))
        .reduce(
            || (Walked::default(), 0u64),
            |(mut a, kept_a), (b, kept_b)| {
                a.merge(b);
                (a, kept_a + kept_b)
            },
        );
    out.merge(sub);
    (out, remaining + kept == 0)
}

/// Enters, walks and (if emptied) removes one subdirectory. Returns the tally and how
/// many entries of the parent stay (0 or 1).
fn visit_par(
    ctx: &Ctx<'_>,
    parent: BorrowedFd<'_>,
    parent_rel: &Path,
    name: &CStr,
    depth: usize,
) -> (Walked, u64) {
    let rel = child_rel(parent_rel, name);
    let mut out = Walked::default();
    let Some((fd, meta)) = enter_dir(ctx, parent, name, &rel, &mut out.tally) else {
        return (out, 1);
    };
    // Relaxed: the budget is a soft bound; a few tasks racing past it only use a few
    // more fds, and no other memory is published through this counter.
    let open = ctx.open_dirs.fetch_add(1, Ordering::Relaxed) + 1;
    let ident = meta.ident();
    let (sub, empty) = if depth >= MAX_PARALLEL_DEPTH || open > ctx.fd_budget {
        walk_deep(ctx, fd.as_fd(), &rel, ident)
    } else {
        walk_par(ctx, fd.as_fd(), &rel, ident, depth)
    };
    out.merge(sub);
    let removed = leave_dir(ctx, parent, name, &meta, empty, &rel, &mut out.tally);
    drop(fd);
    // Relaxed: see the increment above.
    ctx.open_dirs.fetch_sub(1, Ordering::Relaxed);
    (out, u64::from(!removed))
}

/// One level of a sequential deep walk.
struct Frame {
    /// Name in the parent (empty for the top frame).
    name: CString,
    /// As read on entry: identity for the `..` check, times for the age check.
    meta: Meta,
    /// `None` when closed to stay within the window (and for the top frame, whose fd is
    /// borrowed from the caller).
    fd: Option<OwnedFd>,
    subdirs: std::vec::IntoIter<CString>,
    remaining: u64,
}

/// Walks the subtree under `top` on this thread with at most [`DEEP_WINDOW_FDS`] extra
/// fds open (see the module docs). Returns the tally and whether `top` is now empty.
pub(crate) fn walk_deep(
    ctx: &Ctx<'_>,
    top: BorrowedFd<'_>,
    top_rel: &Path,
    top_ident: (u64, u64),
) -> (Walked, bool) {
    let mut out = Walked::default();
    let (subdirs, remaining) = scan(ctx, top, top_rel, top_ident, &mut out);
    let Ok(top_meta) = fsops::fstat(top) else {
        // Cannot happen for an fd we just listed; if it does, keep everything above.
        return (out, false);
    };
    let mut walk = DeepWalk {
        ctx,
        top,
        top_rel,
        out,
        rel: top_rel.to_path_buf(),
        frames: vec![Frame {
            name: CString::default(),
            meta: top_meta,
            fd: None,
            subdirs: subdirs.into_iter(),
            remaining,
        }],
        lowest_open: 1,
        open: 0,
    };
    loop {
        let at = walk.frames.len() - 1;
        if let Some(name) = walk.frames[at].subdirs.next() {
            walk.descend(at, name);
        } else if at == 0 {
            // Every child of the top is done.
            let empty = walk.frames[0].remaining == 0;
            return (walk.out, empty);
        } else if !walk.ascend(at) {
            return (walk.out, false);
        }
    }
}

/// The state of one sequential deep walk: the stack of frames from `top` down to the
/// directory being walked, and which of them hold their fds.
struct DeepWalk<'a, 'c> {
    ctx: &'a Ctx<'c>,
    top: BorrowedFd<'a>,
    top_rel: &'a Path,
    out: Walked,
    /// The deepest frame's path, relative to the root.
    rel: PathBuf,
    frames: Vec<Frame>,
    /// Frames `lowest_open..` (all but the top) hold their fds; `open` counts them.
    lowest_open: usize,
    open: usize,
}

impl DeepWalk<'_, '_> {
    /// Enters `name`, the next subdirectory of frame `at`, and scans it; when the window
    /// is full, the highest frame holding an fd closes it.
    fn descend(&mut self, at: usize, name: CString) {
        self.rel.push(OsStr::from_bytes(name.to_bytes()));
        let Some(parent) = frame_fd(&self.frames, at, self.top) else {
            self.out.tally.error(
                &self.ctx.full_path(&self.rel),
                ErrorKind::Other,
                "lost the parent directory fd".into(),
            );
            self.frames[at].remaining += 1;
            self.rel.pop();
            return;
        };
        let Some((fd, meta)) = enter_dir(self.ctx, parent, &name, &self.rel, &mut self.out.tally)
        else {
            self.frames[at].remaining += 1;
            self.rel.pop();
            return;
        };
        let (subdirs, remaining) =
            scan(self.ctx, fd.as_fd(), &self.rel, meta.ident(), &mut self.out);
        self.frames.push(Frame {
            name,
            meta,
            fd: Some(fd),
            subdirs: subdirs.into_iter(),
            remaining,
        });
        self.open += 1;
        if self.open > DEEP_WINDOW_FDS {
            self.frames[self.lowest_open].fd = None;
            self.lowest_open += 1;
            self.open -= 1;
        }
    }

    /// Leaves frame `at` (every child done): reopens its parent if the window had closed
    /// it, then removes the directory if it is empty. False if there was no frame.
    fn ascend(&mut self, at: usize) -> bool {
        let Some(mut done) = self.frames.pop() else {
            return false;
        };
        let done_fd = done.fd.take();
        self.open = self.open.saturating_sub(1);
        let p = at - 1;
        if p >= 1 && self.frames[p].fd.is_none() && !self.reopen(p, done_fd.as_ref()) {
            return true;
        }
        self.lowest_open = self.lowest_open.min(self.frames.len()).max(1);
        if p >= 1 {
            self.lowest_open = self.lowest_open.min(p);
        }
        let removed = match frame_fd(&self.frames, p, self.top) {
            Some(parent) => leave_dir(
                self.ctx,
                parent,
                &done.name,
                &done.meta,
                done.remaining == 0,
                &self.rel,
                &mut self.out.tally,
            ),
            None => false,
        };
        if !removed {
            self.frames[p].remaining += 1;
        }
        drop(done_fd);
        self.rel.pop();
        true
    }

    /// Reopens frame `p`'s directory through `..` of the child just left, accepted only
    /// with the identity recorded on the way down. If that fails the directory was moved:
    /// the frames between the top and here cannot be reached safely any more and are
    /// abandoned (the top keeps its child, so nothing above is removed); false then.
    fn reopen(&mut self, p: usize, child: Option<&OwnedFd>) -> bool {
        let reopened = child
            .ok_or(Errno::BADF)
            .and_then(|fd| fsops::reopen_parent(fd.as_fd(), self.frames[p].meta.ident()));
        match reopened {
            Ok(fd) => {
                self.frames[p].fd = Some(fd);
                self.open += 1;
                true
            }
            Err(errno) => {
                self.rel.pop();
                self.out.tally.error(
                    &self.ctx.full_path(&self.rel),
                    ErrorKind::Moved,
                    format!(
                        "directory moved during the sweep, subtree abandoned: {}",
                        std::io::Error::from(errno)
                    ),
                );
                self.frames.truncate(1);
                self.frames[0].remaining += 1;
                self.rel = self.top_rel.to_path_buf();
                self.lowest_open = 1;
                self.open = 0;
                false
            }
        }
    }
}

fn frame_fd<'a>(frames: &'a [Frame], at: usize, top: BorrowedFd<'a>) -> Option<BorrowedFd<'a>> {
    if at == 0 {
        Some(top)
    } else {
        frames[at].fd.as_ref().map(|fd| fd.as_fd())
    }
}
