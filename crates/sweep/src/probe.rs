//! The lock probe on a file about to be removed, and the locks the sweep's threads hold.
//!
//! A probe opens the file, takes a non-blocking exclusive `flock` and keeps it until
//! after the `unlinkat` (the crate docs' *Locks* section says what that guarantees).
//! `flock`s belong to open file descriptions, so two threads of one sweep that reach two
//! names of one inode (hard links in two directories, walked in parallel) would each see
//! the other's lock and skip the file as locked by someone else: a link would stay, its
//! blocks would not be freed, and two runs over the same tree would disagree depending
//! on timing. Here the first thread's lock is shared with the second instead: while a
//! thread of the sweep holds the inode's exclusive lock, no one outside the sweep holds
//! one, so the others may use it, and it is released when the last of them has unlinked
//! its name.
//!
//! Every step that registers, shares or releases a lock of a file seen with several
//! links happens under one mutex, and so does the second look at a file of one link
//! whose `flock` was refused (another thread may have just unlinked the file's other
//! name, and still hold its lock). A probe that finds no entry under the mutex therefore
//! knows that no thread of the sweep holds a registered lock on the inode, and a refused
//! `flock` is someone else's. The common case, a file of one link that nobody holds,
//! takes no mutex.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::fs::FlockOperation;
use rustix::io::Errno;

use crate::fsops::{self, Meta, NotExamined};

/// What the lock probe found on a regular file about to be removed.
#[derive(Debug)]
pub(crate) enum FileLock<'a> {
    /// Another open file description holds an `flock` on it: leave it alone.
    HeldElsewhere,
    /// The name now refers to another inode than the one examined (it was replaced
    /// between the `lstat` and the probe's `open`): leave it alone, it was never judged.
    Replaced,
    /// The sweep now holds an exclusive `flock` on it, released when this fd closes.
    /// Removing the file before closing the fd means no one else held a lock at the
    /// moment of the unlink.
    Ours(#[expect(dead_code, reason = "held for its drop: closing it releases the lock")] OwnedFd),
    /// As [`FileLock::Ours`], for a file of several links whose lock the sweep's threads
    /// share: released when the last share is dropped.
    Shared(
        #[expect(
            dead_code,
            reason = "held for its drop: the last share releases the lock"
        )]
        SharedLock<'a>,
    ),
    /// It could not be opened (no read permission, vanished, swapped for a symlink) or
    /// its filesystem has no `flock`: it cannot be checked, and counts as unlocked.
    Unchecked,
}

/// The probe locks the sweep holds on inodes seen with several links, by (device, inode).
#[derive(Debug, Default)]
pub(crate) struct ProbeLocks {
    held: Mutex<HashMap<(u64, u64), Arc<OwnedFd>>>,
}

/// One thread's share of a probe lock; the lock goes when the last share is dropped.
#[derive(Debug)]
pub(crate) struct SharedLock<'a> {
    owner: &'a ProbeLocks,
    ident: (u64, u64),
    fd: Option<Arc<OwnedFd>>,
}

impl ProbeLocks {
    /// Takes a non-blocking exclusive `flock` on the regular file `name` of `dir`, which
    /// the caller examined as `meta`, or shares the one another thread of this sweep
    /// holds on the same inode. The caller keeps the answer alive across the `unlinkat`.
    pub fn lock_file_at<'a>(
        &'a self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
    ) -> FileLock<'a> {
        let ident = meta.ident();
        let fd = match fsops::open_examined(dir, name, ident) {
            Ok(fd) => fd,
            Err(NotExamined::Replaced) => return FileLock::Replaced,
            Err(NotExamined::Unopened) => return FileLock::Unchecked,
        };
        let several_links = meta.nlink > 1;
        if !several_links {
            match try_lock(&fd) {
                // Refused: perhaps by a thread of ours that just unlinked another name of
                // this inode (so the link count we read was already down); look again
                // under the mutex.
                Err(Errno::WOULDBLOCK) => {}
                Ok(()) => return FileLock::Ours(fd),
                Err(_) => return FileLock::Unchecked,
            }
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ours) = held.get(&ident) {
            // `fd` holds no lock, so closing it releases nothing.
            return FileLock::Shared(self.share(ident, Arc::clone(ours)));
        }
        match try_lock(&fd) {
            Ok(()) if several_links => {
                let fd = Arc::new(fd);
                held.insert(ident, Arc::clone(&fd));
                FileLock::Shared(self.share(ident, fd))
            }
            Ok(()) => FileLock::Ours(fd),
            Err(Errno::WOULDBLOCK) => FileLock::HeldElsewhere,
            Err(_) => FileLock::Unchecked,
        }
    }

    fn share(&self, ident: (u64, u64), fd: Arc<OwnedFd>) -> SharedLock<'_> {
        SharedLock {
            owner: self,
            ident,
            fd: Some(fd),
        }
    }
}

fn try_lock(fd: &OwnedFd) -> Result<(), Errno> {
    rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive)
}

impl Drop for SharedLock<'_> {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(self.fd.take());
        // Shares are made under the mutex, so this count is exact: only the table's own
        // reference is left when this was the last share. Closing it under the mutex
        // releases the lock before any other probe can look.
        if held
            .get(&self.ident)
            .is_some_and(|fd| Arc::strong_count(fd) == 1)
        {
            held.remove(&self.ident);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use rustix::fs::{Mode, OFlags};

    use super::*;
    use crate::fsops::{is_locked, lstat_at};

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn the_probe_sees_a_lock_held_by_another_open_file_description_and_holds_its_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let dir_fd = open_dir(dir.path());
        let other = std::fs::File::open(dir.path().join("f")).unwrap();
        let f = lstat_at(dir_fd.as_fd(), c"f").unwrap();
        let probes = ProbeLocks::default();

        let ours = probes.lock_file_at(dir_fd.as_fd(), c"f", &f);
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
            probes.lock_file_at(dir_fd.as_fd(), c"f", &f),
            FileLock::HeldElsewhere
        ));
        assert!(
            !is_locked(other.as_fd()),
            "a lock does not conflict with its own holder"
        );
        drop(other);
        assert!(matches!(
            probes.lock_file_at(dir_fd.as_fd(), c"f", &f),
            FileLock::Ours(_)
        ));
        assert!(
            matches!(
                probes.lock_file_at(dir_fd.as_fd(), c"missing", &f),
                FileLock::Unchecked
            ),
            "unopenable means unchecked"
        );
    }

    /// A file replaced between the sweep's `lstat` and its probe's `open` is not the one
    /// that was judged: the probe must say so instead of locking (and the walk then
    /// unlinking) the newcomer.
    #[test]
    fn the_probe_refuses_a_file_swapped_in_after_the_lstat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"judged old").unwrap();
        std::fs::write(dir.path().join("new"), b"never judged").unwrap();
        let dir_fd = open_dir(dir.path());
        let probes = ProbeLocks::default();
        let judged = lstat_at(dir_fd.as_fd(), c"f").unwrap();
        // The swap, exactly between the walk's lstat and the probe's open.
        std::fs::rename(dir.path().join("new"), dir.path().join("f")).unwrap();
        let probe = probes.lock_file_at(dir_fd.as_fd(), c"f", &judged);
        assert!(matches!(probe, FileLock::Replaced), "{probe:?}");
        let now = lstat_at(dir_fd.as_fd(), c"f").unwrap();
        assert!(matches!(
            probes.lock_file_at(dir_fd.as_fd(), c"f", &now),
            FileLock::Ours(_)
        ));
    }

    /// Two names of one inode, probed by the same sweep (as two threads do when the
    /// names sit in two directories): the second probe shares the first's lock instead
    /// of taking it for someone else's, the lock lasts until both shares are gone, and a
    /// lock held outside the sweep is still refused.
    #[test]
    fn two_links_of_one_inode_share_the_sweeps_lock_and_others_are_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let dir_fd = open_dir(dir.path());
        let meta = lstat_at(dir_fd.as_fd(), c"a").unwrap();
        assert_eq!(meta.nlink, 2);
        let outsider = std::fs::File::open(dir.path().join("a")).unwrap();
        let refused_to_outsider =
            || rustix::fs::flock(&outsider, FlockOperation::NonBlockingLockShared);
        let probes = ProbeLocks::default();

        let first = probes.lock_file_at(dir_fd.as_fd(), c"a", &meta);
        let second = probes.lock_file_at(dir_fd.as_fd(), c"b", &meta);
        assert!(matches!(first, FileLock::Shared(_)), "{first:?}");
        assert!(matches!(second, FileLock::Shared(_)), "{second:?}");
        assert_eq!(refused_to_outsider(), Err(Errno::WOULDBLOCK));
        drop(first);
        assert_eq!(
            refused_to_outsider(),
            Err(Errno::WOULDBLOCK),
            "held until the last share goes"
        );
        // The first name is unlinked while its lock is held: the other name's probe
        // reads one link, and still shares the lock instead of refusing the file.
        let one_link = Meta { nlink: 1, ..meta };
        let third = probes.lock_file_at(dir_fd.as_fd(), c"b", &one_link);
        assert!(matches!(third, FileLock::Shared(_)), "{third:?}");
        drop(second);
        drop(third);
        assert!(probes.held.lock().unwrap().is_empty());
        rustix::fs::flock(&outsider, FlockOperation::NonBlockingLockShared).unwrap();
        for probe_meta in [&meta, &one_link] {
            let probe = probes.lock_file_at(dir_fd.as_fd(), c"b", probe_meta);
            assert!(matches!(probe, FileLock::HeldElsewhere), "{probe:?}");
        }
    }
}
