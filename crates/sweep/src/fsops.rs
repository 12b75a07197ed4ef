//! The few system calls the sweep makes, each relative to an open directory fd.
//!
//! Paths never reach the kernel here (except the root, opened once by the caller): a
//! directory swapped for a symlink cannot redirect an `unlinkat` outside the tree,
//! because every name is resolved inside a directory we already hold open, and
//! directories are opened with `O_NOFOLLOW`.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Opens the subdirectory `name` of `parent`, refusing symlinks (`ELOOP`/`ENOTDIR`).
pub(crate) fn open_dir_at(parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
}

/// `lstat` of `name` inside `dir`.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
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

/// What the lock probe found on a regular file about to be removed.
#[derive(Debug)]
pub(crate) enum FileLock {
    /// Another open file description holds an `flock` on it: leave it alone.
    HeldElsewhere,
    /// The sweep now holds an exclusive `flock` on it, released when this fd closes.
    /// Removing the file before closing the fd means no one else held a lock at the
    /// moment of the unlink.
    Ours(#[expect(dead_code, reason = "held for its drop: closing it releases the lock")] OwnedFd),
    /// It could not be opened (no read permission, vanished, swapped for a symlink) or
    /// its filesystem has no `flock`: it cannot be checked, and counts as unlocked.
    Unchecked,
}

/// Takes a non-blocking exclusive `flock` on the regular file `name` of `dir`.
///
/// The file is opened `O_NONBLOCK` so that a FIFO swapped in after the `lstat` cannot
/// hang the sweep (nor can a write lease: the open fails instead of waiting for it to be
/// broken), and `O_NOFOLLOW` so that a swapped-in symlink is not followed. The caller
/// keeps [`FileLock::Ours`] alive across the `unlinkat`.
pub(crate) fn lock_file_at(dir: BorrowedFd<'_>, name: &CStr) -> FileLock {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(_) => return FileLock::Unchecked,
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => FileLock::Ours(fd),
        Err(Errno::WOULDBLOCK) => FileLock::HeldElsewhere,
        Err(_) => FileLock::Unchecked,
    }
}

/// Identity of an inode: device and inode number.
pub(crate) fn ident(stat: &Stat) -> (u64, u64) {
    (dev(stat), ino(stat))
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

/// `st_nlink` as a `u64`.
#[allow(clippy::useless_conversion)]
fn nlink(stat: &Stat) -> u64 {
    u64::from(stat.st_nlink)
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
    let stat = rustix::fs::fstat(parent.as_fd())?;
    if ident(&stat) == expected {
        Ok(parent)
    } else {
        Err(Errno::STALE)
    }
}

/// Bytes a removal gives back: the allocated blocks of a file with one link (with more
/// links the data stays reachable), nothing for anything else.
pub(crate) fn freed_bytes(stat: &Stat) -> u64 {
    let is_file =
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
    if is_file && nlink(stat) == 1 {
        u64::try_from(stat.st_blocks)
            .unwrap_or(0)
            .saturating_mul(512)
    } else {
        0
    }
}

/// `st_size` of a regular file, 0 for anything else.
pub(crate) fn apparent_bytes(stat: &Stat) -> u64 {
    let is_file =
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
    if is_file {
        u64::try_from(stat.st_size).unwrap_or(0)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_sees_a_lock_held_by_another_open_file_description_and_holds_its_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let dir_fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let other = std::fs::File::open(dir.path().join("f")).unwrap();

        let ours = lock_file_at(dir_fd.as_fd(), c"f");
        assert!(matches!(ours, FileLock::Ours(_)), "{ours:?}");
        // While the probe's fd is open, its lock keeps everyone else out: the window
        // between the check and the unlink is covered.
        assert_eq!(
            rustix::fs::flock(&other, FlockOperation::NonBlockingLockShared),
            Err(Errno::WOULDBLOCK)
        );
        drop(ours);
        rustix::fs::flock(&other, FlockOperation::LockShared).unwrap();
        assert!(matches!(
            lock_file_at(dir_fd.as_fd(), c"f"),
            FileLock::HeldElsewhere
        ));
        assert!(
            !is_locked(other.as_fd()),
            "a lock does not conflict with its own holder"
        );
        drop(other);
        assert!(matches!(
            lock_file_at(dir_fd.as_fd(), c"f"),
            FileLock::Ours(_)
        ));
        assert!(
            matches!(
                lock_file_at(dir_fd.as_fd(), c"missing"),
                FileLock::Unchecked
            ),
            "unopenable means unchecked"
        );
    }
}
