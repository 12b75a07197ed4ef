//! The kernel's `flock` table, read once, for dry runs only.
//!
//! A real run probes every file it is about to remove and holds the probe's lock across
//! the unlink ([`ProbeLocks::lock_file_at`](crate::probe::ProbeLocks::lock_file_at)); no
//! snapshot can give that guarantee, since a lock taken after the snapshot is missed. A dry run removes
//! nothing, so its lock check only has to *predict* the probe, and one read of
//! `/proc/locks` saves it an `open` + `fstat` + `flock` + `close` per old file and the
//! two `flock`s of each directory's check; when nothing on the swept filesystem is locked
//! (the common case), not even a lookup per entry is left. The table is read on a
//! thread of its own while the walk starts (`Sweep`'s `walk_while_reading_locks`). The
//! prediction is
//! exact only where the table lists every `flock` on the swept filesystem, so it is used
//! only when all of these hold, and otherwise the dry run probes like a real run:
//!
//! - `/proc` is procfs and belongs to the initial PID namespace (`/proc/self/ns/pid` is
//!   `pid:[4026531836]`, the fixed inode of that namespace, and a task of that namespace
//!   is visible only in a procfs of it). In any other PID namespace the kernel hides the
//!   locks whose owner is not visible there: locks taken outside the container, and
//!   locks whose taker exited while a child kept the file open;
//! - the kernel is 5.0 or newer: older ones also hide, even in the initial namespace,
//!   locks whose taker has exited (fixed in 2018 by "fs/lock: skip lock owner pid
//!   translation in case we are in init_pid_ns");
//! - the swept filesystem is tmpfs, ext2/3/4 or XFS: local, so no lock lives only on
//!   another host (NFS), and `stat`'s `st_dev` is the device `/proc/locks` names (not so
//!   on btrfs subvolumes or overlayfs).

use std::os::fd::BorrowedFd;

/// Most lines of `/proc/locks` read: a bound on the snapshot's memory. With more, the
/// dry run probes instead.
const MAX_LOCK_LINES: usize = 100_000;

/// `/proc/self/ns/pid` of the initial PID namespace (`PROC_PID_INIT_INO` in the kernel).
const INIT_PID_NS: &str = "pid:[4026531836]";
/// `f_type` of procfs.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
/// `f_type`s of the filesystems whose `flock`s `/proc/locks` lists under `st_dev`:
/// tmpfs, ext2/3/4, XFS.
const TRUSTED_FS_MAGIC: [u64; 3] = [0x0102_1994, 0xef53, 0x5846_5342];
/// Oldest kernel (major, minor) whose initial-namespace `/proc/locks` shows locks of
/// exited takers.
const MIN_KERNEL: (u32, u32) = (5, 0);

/// Every `flock` on the swept filesystem: its device and the inodes locked there.
#[derive(Debug, Default)]
pub(crate) struct LockTable {
    /// The swept filesystem's device, `(major, minor)`.
    dev: (u32, u32),
    /// Sorted, without repeats: looked up once per entry, so a binary search rather
    /// than a hash of every inode number.
    held: Vec<u64>,
}

impl LockTable {
    /// The table, if it can be trusted to list every `flock` on the filesystem of
    /// `root` (see the module docs); `None` means "probe instead".
    #[cfg(test)]
    pub fn read_if_complete(root: BorrowedFd<'_>) -> Option<LockTable> {
        LockTable::read(LockTable::trusted_device(root)?)
    }

    /// The device `(major, minor)` of `root`'s filesystem if `/proc/locks` lists every
    /// `flock` on it (see the module docs); `None` means "probe instead". Cheap: the
    /// table itself is read by [`LockTable::read`].
    pub fn trusted_device(root: BorrowedFd<'_>) -> Option<(u32, u32)> {
        let fs_type = fs_magic(rustix::fs::fstatfs(root).ok()?);
        if !TRUSTED_FS_MAGIC.contains(&fs_type) {
            return None;
        }
        let proc_fs = rustix::fs::statfs("/proc").ok()?;
        if fs_magic(proc_fs) != PROC_SUPER_MAGIC {
            return None;
        }
        let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
        if ns.as_os_str() != INIT_PID_NS {
            return None;
        }
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        if kernel_version(&release)? < MIN_KERNEL {
            return None;
        }
        let dev = crate::fsops::fstat(root).ok()?.dev;
        Some((rustix::fs::major(dev), rustix::fs::minor(dev)))
    }

    /// The `flock`s `/proc/locks` lists on device `dev`, or `None` if it cannot be read
    /// or is too long. Takes an RCU grace period (the kernel's file-lock rwsem is taken
    /// for writing), about 13 ms on an otherwise idle table.
    pub fn read(dev: (u32, u32)) -> Option<LockTable> {
        parse(&std::fs::read_to_string("/proc/locks").ok()?, dev)
    }

    /// True when the table lists an `flock` on the inode `ident` (device, inode).
    pub fn is_locked(&self, (dev, ino): (u64, u64)) -> bool {
        !self.held.is_empty()
            && (rustix::fs::major(dev), rustix::fs::minor(dev)) == self.dev
            && self.held.binary_search(&ino).is_ok()
    }
}

// `f_type`'s type differs between targets (signed on some); magics are small positive.
#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn fs_magic(stat: rustix::fs::StatFs) -> u64 {
    stat.f_type as u64
}

/// `(major, minor)` of a release string like `6.18.44-fc-v669`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Parses lines like `1: FLOCK  ADVISORY  WRITE 1959 fe:00:10010708 0 EOF` (device
/// major and minor in hex, inode in decimal), keeping the locks on device `dev`. Blocked
/// waiters (`->` lines) hold nothing; POSIX and OFD locks do not conflict with `flock`.
/// `None` if the table is too long.
fn parse(text: &str, dev: (u32, u32)) -> Option<LockTable> {
    let mut held = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if n >= MAX_LOCK_LINES {
            return None;
        }
        let mut fields = line.split_whitespace().skip(1);
        if fields.next() != Some("FLOCK") {
            continue;
        }
        let Some(id) = fields.find(|f| f.matches(':').count() == 2) else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(major), Some(minor), Some(ino)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let (Ok(major), Ok(minor), Ok(ino)) = (
            u32::from_str_radix(major, 16),
            u32::from_str_radix(minor, 16),
            ino.parse::<u64>(),
        ) {
            if (major, minor) == dev {
                held.push(ino);
            }
        }
    }
    held.sort_unstable();
    held.dedup();
    Some(LockTable { dev, held })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use rustix::fs::{FlockOperation, Mode, OFlags};

    use super::*;

    #[test]
    fn parses_flock_lines_and_ignores_posix_locks_and_waiters() {
        let text = "1: FLOCK  ADVISORY  READ 1959 fe:00:10010708 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:01:42 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 12 08:11:99 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 13 08:11:5 0 EOF\n\
                    4: OFDLCK ADVISORY  READ -1 00:2d:7 0 EOF\n";
        let on = |dev: (u32, u32)| parse(text, dev).unwrap().held;
        assert_eq!(on((0xfe, 0)), [10_010_708]);
        assert_eq!(on((0x08, 0x11)), [99], "not the waiter's 5");
        assert!(on((0x08, 0x01)).is_empty(), "a POSIX lock is not an flock");
        assert!(on((0x00, 0x2d)).is_empty(), "nor an OFD lock");
        let out_of_order = "1: FLOCK ADVISORY READ 1 fe:00:9 0 EOF\n\
                            2: FLOCK ADVISORY READ 2 fe:00:3 0 EOF\n\
                            3: FLOCK ADVISORY READ 3 fe:00:9 0 EOF\n";
        let table = parse(out_of_order, (0xfe, 0)).unwrap();
        let dev = rustix::fs::makedev(0xfe, 0);
        assert!(table.is_locked((dev, 3)) && table.is_locked((dev, 9)));
        assert!(!table.is_locked((dev, 4)));
        assert!(
            !table.is_locked((rustix::fs::makedev(0xfe, 1), 3)),
            "another device"
        );
        let too_long = "1: FLOCK ADVISORY READ 1 00:01:1 0 EOF\n".repeat(MAX_LOCK_LINES + 1);
        assert!(parse(&too_long, (0, 1)).is_none());
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(kernel_version("4.19-rc1"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("4.19.0").unwrap() < MIN_KERNEL);
    }

    /// Where the table is trusted, it must list a lock this test takes; where it is not
    /// (a container, an old kernel, another filesystem), it must say so.
    #[test]
    fn a_trusted_table_lists_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        std::fs::write(&path, b"x").unwrap();
        let dir_fd = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let held = std::fs::File::open(&path).unwrap();
        rustix::fs::flock(&held, FlockOperation::LockShared).unwrap();
        let stat = crate::fsops::fstat(held.as_fd()).unwrap();
        let in_init_ns =
            std::fs::read_link("/proc/self/ns/pid").is_ok_and(|ns| ns.as_os_str() == INIT_PID_NS);
        match LockTable::read_if_complete(dir_fd.as_fd()) {
            Some(table) => {
                assert!(in_init_ns);
                assert!(table.is_locked(stat.ident()));
                drop(held);
                let table = LockTable::read_if_complete(dir_fd.as_fd()).unwrap();
                assert!(!table.is_locked(stat.ident()));
            }
            None => {
                let fs_type = fs_magic(rustix::fs::fstatfs(dir_fd.as_fd()).unwrap());
                let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .and_then(|r| kernel_version(&r));
                assert!(
                    !in_init_ns
                        || !TRUSTED_FS_MAGIC.contains(&fs_type)
                        || release.is_none_or(|v| v < MIN_KERNEL),
                    "untrusted for no stated reason"
                );
            }
        }
    }
}
