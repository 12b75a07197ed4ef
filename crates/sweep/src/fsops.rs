//! The few system calls the sweep makes, each relative to an open directory fd.
//!
//! Paths never reach the kernel here (except the root, opened once by the caller): a
//! directory swapped for a symlink cannot redirect an `unlinkat` outside the tree,
//! because every name is resolved inside a directory we already hold open, and
//! directories are opened with `O_NOFOLLOW`.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, Stat, Statx, StatxFlags};
use rustix::io::Errno;

/// What the sweep needs to know about an inode, read with one `statx`.
///
/// `mnt_id` is the mount the name was reached through (`STATX_MNT_ID`, Linux 5.8+), or
/// `None` where the kernel does not report it (see [`MountCheck`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub size: u64,
    pub blocks: u64,
    pub atime_ns: i128,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub mnt_id: Option<u64>,
}

impl Meta {
    fn from_statx(x: &Statx) -> Meta {
        let ts = |t: &rustix::fs::StatxTimestamp| {
            i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
        };
        Meta {
            dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
            ino: x.stx_ino,
            mode: u32::from(x.stx_mode),
            nlink: u64::from(x.stx_nlink),
            uid: x.stx_uid,
            size: x.stx_size,
            blocks: x.stx_blocks,
            atime_ns: ts(&x.stx_atime),
            mtime_ns: ts(&x.stx_mtime),
            ctime_ns: ts(&x.stx_ctime),
            mnt_id: StatxFlags::from_bits_retain(x.stx_mask)
                .contains(StatxFlags::MNT_ID)
                .then_some(x.stx_mnt_id),
        }
    }

    /// The file type.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode as _)
    }

    /// Identity of the inode: device and inode number.
    pub fn ident(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::MNT_ID);

/// `lstat` of `name` inside `dir`, with the mount it lives on.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Meta, Errno> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, STATX_MASK)
        .map(|x| Meta::from_statx(&x))
}

/// `fstat` of an open fd, with the mount it was opened through.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> Result<Meta, Errno> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, STATX_MASK).map(|x| Meta::from_statx(&x))
}

/// How the sweep tells that a directory belongs to the root's mount.
///
/// Not by `st_dev`: on an overlay whose layers sit on different filesystems, files
/// report their layer's device while directories report the overlay's, and a bind mount
/// of the root's own filesystem has the root's `st_dev`. The mount is what counts, as
/// for `systemd-tmpfiles`: `statx`'s `STATX_MNT_ID` (Linux 5.8+) on every entry, and on
/// older kernels the `mnt_id:` line of `/proc/self/fdinfo/FD` for every directory
/// opened (Linux 3.15+). Where neither is available the sweep refuses to start. Files
/// need no fallback: a file that is a mount point cannot be unlinked (`EBUSY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountCheck {
    /// Compare `statx`'s mount id with the root's.
    Statx(u64),
    /// Compare the `mnt_id` in `/proc/self/fdinfo` of each opened directory.
    FdInfo(u64),
}

impl MountCheck {
    /// The check for a root opened as `fd` with metadata `meta`.
    pub fn for_root(fd: BorrowedFd<'_>, meta: &Meta) -> Result<MountCheck, Errno> {
        match meta.mnt_id {
            Some(id) => Ok(MountCheck::Statx(id)),
            None => fdinfo_mnt_id(fd).map(MountCheck::FdInfo),
        }
    }

    /// Whether the directory `fd` (with `meta`) is on the root's mount.
    pub fn same_mount_dir(&self, fd: BorrowedFd<'_>, meta: &Meta) -> Result<bool, Errno> {
        match *self {
            MountCheck::Statx(root) => Ok(meta.mnt_id == Some(root)),
            MountCheck::FdInfo(root) => fdinfo_mnt_id(fd).map(|id| id == root),
        }
    }

    /// Whether a non-directory entry is on the root's mount (`true` when unknown: see
    /// the type's docs).
    pub fn same_mount_entry(&self, meta: &Meta) -> bool {
        match *self {
            MountCheck::Statx(root) => meta.mnt_id == Some(root),
            MountCheck::FdInfo(_) => true,
        }
    }
}

/// The `mnt_id:` of an open fd, from `/proc/self/fdinfo`.
pub(crate) fn fdinfo_mnt_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    use std::os::fd::AsRawFd;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).map_err(
        |err| {
            err.raw_os_error()
                .map_or(Errno::IO, Errno::from_raw_os_error)
        },
    )?;
    text.lines()
        .find_map(|line| line.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::NOSYS)
}

/// Opens the subdirectory `name` of `parent`, refusing symlinks (`ELOOP`/`ENOTDIR`).
pub(crate) fn open_dir_at(parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
}

/// Removes the non-directory entry `name` of `dir` (a symlink is removed as a link).
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty())
}

/// Removes the empty directory `name` of `dir`.
pub(crate) fn rmdir_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// True when another open file description holds an `flock` on `fd`.
///
/// Takes a non-blocking exclusive lock, which fails exactly when anyone else holds a
/// shared or exclusive one, and gives it back at once. Any other failure (e.g. a
/// filesystem without `flock`) counts as "not locked": the check is advisory, as the
/// locks are.
pub(crate) fn is_locked(fd: BorrowedFd<'_>) -> bool {
    match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // The fd may stay open (a directory being walked); don't hold others off.
            let _ = rustix::fs::flock(fd, FlockOperation::Unlock);
            false
        }
        Err(errno) => errno == Errno::WOULDBLOCK,
    }
}

/// Opens the regular file `name` of `dir` for the lock probe, and checks that it is the
/// inode the caller examined as `expected` (device, inode).
///
/// Opened `O_NONBLOCK` so that a FIFO swapped in after the `lstat` cannot hang the
/// sweep (nor can a write lease: the open fails instead of waiting for it to be broken),
/// and `O_NOFOLLOW` so that a swapped-in symlink is not followed. The opened fd is
/// `fstat`ed: if it is not the inode examined, the file was replaced in between.
pub(crate) fn open_examined(
    dir: BorrowedFd<'_>,
    name: &CStr,
    expected: (u64, u64),
) -> Result<OwnedFd, NotExamined> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|_| NotExamined::Unopened)?;
    match rustix::fs::fstat(&fd) {
        Ok(stat) if (dev(&stat), ino(&stat)) == expected => Ok(fd),
        Ok(_) => Err(NotExamined::Replaced),
        Err(_) => Err(NotExamined::Unopened),
    }
}

/// Why [`open_examined`] gave no fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotExamined {
    /// The name now refers to another inode than the one examined.
    Replaced,
    /// It could not be opened (no read permission, vanished, swapped for a symlink) or
    /// not `fstat`ed.
    Unopened,
}

// The `Stat` field types differ between targets; these conversions are identities on
// some of them only.

/// `st_dev` as a `u64`.
#[allow(clippy::useless_conversion)]
pub(crate) fn dev(stat: &Stat) -> u64 {
    u64::from(stat.st_dev)
}

/// `st_ino` as a `u64`.
#[allow(clippy::useless_conversion)]
pub(crate) fn ino(stat: &Stat) -> u64 {
    u64::from(stat.st_ino)
}

/// Reopens the parent of the directory `child` through `..` and checks that it is still
/// the directory identified by `expected` (it is not if the child was moved meanwhile).
pub(crate) fn reopen_parent(child: BorrowedFd<'_>, expected: (u64, u64)) -> Result<OwnedFd, Errno> {
    let parent = rustix::fs::openat(
        child,
        c"..",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if fstat(parent.as_fd())?.ident() == expected {
        Ok(parent)
    } else {
        Err(Errno::STALE)
    }
}

/// Allocated bytes of a regular file (`st_blocks × 512`), 0 for anything else. Whether
/// removing it frees them depends on its other links (see `report::Links`).
pub(crate) fn file_blocks_bytes(meta: &Meta) -> u64 {
    if meta.file_type() == FileType::RegularFile {
        meta.blocks.saturating_mul(512)
    } else {
        0
    }
}

/// `st_size` of a regular file, 0 for anything else.
pub(crate) fn apparent_bytes(meta: &Meta) -> u64 {
    if meta.file_type() == FileType::RegularFile {
        meta.size
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statx_reports_the_mount_id_like_fdinfo() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let meta = fstat(fd.as_fd()).unwrap();
        let from_fdinfo = fdinfo_mnt_id(fd.as_fd()).unwrap();
        if let Some(id) = meta.mnt_id {
            assert_eq!(id, from_fdinfo);
        }
        let check = MountCheck::for_root(fd.as_fd(), &meta).unwrap();
        assert!(check.same_mount_dir(fd.as_fd(), &meta).unwrap());
        assert!(
            MountCheck::FdInfo(from_fdinfo)
                .same_mount_dir(fd.as_fd(), &meta)
                .unwrap()
        );
        assert!(
            !MountCheck::FdInfo(from_fdinfo + 1)
                .same_mount_dir(fd.as_fd(), &meta)
                .unwrap()
        );
    }
}
