//! Pressure mode, second pass: delete the oldest candidates until the byte goal is met.
//!
//! The first pass ([`Action::Collect`](crate::walk::Action::Collect)) lists every
//! eligible file without removing anything. Here they are ordered oldest first (ties by
//! path, so the order is deterministic), and deleted in batches: each batch is the
//! shortest run of the next candidates whose recorded sizes cover what is still missing,
//! so nothing is deleted beyond the goal unless an earlier deletion failed. A batch is
//! deleted one rayon task per directory.
//!
//! Each directory is reopened from the root one component at a time with `O_NOFOLLOW`
//! and must still have the device and inode seen in the first pass; each file is
//! `lstat`ed again and must still be the same inode, still a regular file, still old and
//! not locked. The cost is one `openat` per path component per directory, which is
//! quadratic only on pathologically deep trees.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rayon::prelude::*;
use rustix::fs::FileType;
use rustix::io::Errno;

use crate::fsops;
use crate::probe::FileLock;
use crate::report::{EntryKind, ErrorKind, SkipReason, Tally};
use crate::walk::{Candidate, Ctx};

/// Deletes the oldest of `candidates` until `goal_bytes` are freed; the rest are counted
/// as [`goal_reached`](crate::SkipCounts::goal_reached).
pub(crate) fn delete_oldest(
    ctx: &Ctx<'_>,
    root: BorrowedFd<'_>,
    mut candidates: Vec<Candidate>,
    goal_bytes: u64,
    tally: &mut Tally,
) {
    candidates.sort_by(|a, b| {
        a.time_ns
            .cmp(&b.time_ns)
            .then_with(|| a.dir.rel.cmp(&b.dir.rel))
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut freed = tally.bytes_freed();
    let mut next = 0usize;
    while freed < goal_bytes && next < candidates.len() {
        let start = next;
        let mut planned = 0u64;
        while next < candidates.len() && freed.saturating_add(planned) < goal_bytes {
            planned = planned.saturating_add(candidates[next].bytes_freed);
            next += 1;
        }
        // Group the batch by directory, in path order for a deterministic merge.
        let mut by_dir: BTreeMap<&Path, Vec<&Candidate>> = BTreeMap::new();
        for candidate in &candidates[start..next] {
            by_dir
                .entry(&candidate.dir.rel)
                .or_default()
                .push(candidate);
        }
        let groups: Vec<Vec<&Candidate>> = by_dir.into_values().collect();
        let batch = groups
            .par_iter()
            .map(|group| delete_group(ctx, root, group))
            .reduce(Tally::default, |mut a, b| {
                a.merge(b);
                a
            });
        tally.merge(batch);
        // Settled over everything removed so far: a hard-linked file counts once its
        // last removed link is in, whichever batch that was.
        freed = tally.bytes_freed();
    }
    tally.skipped.goal_reached += (candidates.len() - next) as u64;
}

/// Deletes one directory's share of a batch.
fn delete_group(ctx: &Ctx<'_>, root: BorrowedFd<'_>, group: &[&Candidate]) -> Tally {
    let mut tally = Tally::default();
    let Some(first) = group.first() else {
        return tally;
    };
    let record = &first.dir;
    let opened = match reopen(root, &record.rel) {
        Ok(opened) => opened,
        Err(errno) => {
            let kind = if matches!(errno, Errno::LOOP | Errno::NOTDIR) {
                ErrorKind::Moved
            } else {
                ErrorKind::of(errno)
            };
            for candidate in group {
                let rel = record
                    .rel
                    .join(std::ffi::OsStr::from_bytes(candidate.name.to_bytes()));
                tally.error(
                    &ctx.full_path(&rel),
                    kind,
                    format!(
                        "cannot reopen its directory: {}",
                        std::io::Error::from(errno)
                    ),
                );
            }
            return tally;
        }
    };
    let dir = opened.as_ref().map_or(root, |fd| fd.as_fd());
    let same_dir = fsops::fstat(dir).is_ok_and(|meta| meta.ident() == record.ident);
    for candidate in group {
        let rel = record
            .rel
            .join(std::ffi::OsStr::from_bytes(candidate.name.to_bytes()));
        if !same_dir {
            tally.error(
                &ctx.full_path(&rel),
                ErrorKind::Moved,
                "its directory was replaced since the first pass".into(),
            );
            continue;
        }
        let meta = match fsops::lstat_at(dir, &candidate.name) {
            Ok(meta) => meta,
            Err(errno) => {
                tally.errno(&ctx.full_path(&rel), "cannot stat", errno);
                continue;
            }
        };
        let same_file = meta.file_type() == FileType::RegularFile && meta.ino == candidate.ino;
        // A replaced or rewritten file is a new file.
        if !same_file || !ctx.cutoff.is_old(&meta) {
            tally.skipped.add(SkipReason::TooYoung);
            continue;
        }
        let lock = match ctx.lock_file(dir, &candidate.name, &meta, &mut tally) {
            FileLock::HeldElsewhere => {
                tally.skipped.add(SkipReason::Locked);
                continue;
            }
            FileLock::Replaced => {
                tally.skipped.add(SkipReason::Replaced);
                continue;
            }
            lock => lock,
        };
        if !ctx.dry_run {
            if let Err(errno) = fsops::unlink_at(dir, &candidate.name) {
                tally.errno(&ctx.full_path(&rel), "cannot remove", errno);
                continue;
            }
        }
        // Released only after the unlink (see `FileLock::Ours`).
        drop(lock);
        ctx.record_removal(&mut tally, &rel, EntryKind::File, &meta);
    }
    tally
}

/// Opens the directory at `rel` under `root` one component at a time, never following a
/// symlink. `None` means the root itself.
fn reopen(root: BorrowedFd<'_>, rel: &Path) -> Result<Option<OwnedFd>, Errno> {
    let mut current: Option<OwnedFd> = None;
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(Errno::INVAL);
        };
        let name = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
        let parent = current.as_ref().map_or(root, |fd| fd.as_fd());
        current = Some(fsops::open_dir_at(parent, &name)?);
    }
    Ok(current)
}
