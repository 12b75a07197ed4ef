//! Which inodes other processes hold under an `flock`, read from `/proc/locks`.
//!
//! Probing each old file (`open` + `flock` + `close`) triples the syscalls per file.
//! Instead each directory, when it first meets an old file, reads one snapshot of the
//! kernel's lock table and checks inodes against it. The race is the probe's own (a lock
//! taken just after the check is missed either way), with a window of one directory's
//! handling instead of one file's. Where `/proc/locks` cannot be read, the per-file
//! probe ([`fsops::file_is_locked`](crate::fsops::file_is_locked)) is used instead.
//!
//! Only inode numbers are compared, not devices: stacked filesystems (overlayfs) may
//! report another device in `/proc/locks` than `stat` does, and a false match only
//! means an old file is kept one sweep longer.

use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::Stat;

use crate::fsops;

/// Most lines of `/proc/locks` read: a bound on the snapshot's memory. With more locks
/// than that, the per-file probe is used.
const MAX_LOCK_LINES: usize = 100_000;

/// The lock table as one directory sees it, read on first use.
#[derive(Default)]
pub(crate) struct Flocks {
    /// `None` until read; `Some(None)` when it cannot be read.
    snapshot: Option<Option<HashSet<u64>>>,
}

impl Flocks {
    /// True when another open file description holds an `flock` on the regular file
    /// `name` (with `stat`) in `dir`.
    pub fn is_locked(&mut self, dir: BorrowedFd<'_>, name: &CStr, stat: &Stat) -> bool {
        match self.snapshot.get_or_insert_with(read_flocks) {
            Some(held) => held.contains(&fsops::ino(stat)),
            None => fsops::file_is_locked(dir, name),
        }
    }
}

/// Inode numbers with an `FLOCK` entry in `/proc/locks`.
fn read_flocks() -> Option<HashSet<u64>> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    parse(&text)
}

/// Parses lines like `1: FLOCK  ADVISORY  READ 1959 fe:00:10010708 0 EOF` (device
/// major and minor in hex, inode in decimal). Blocked waiters (`->` lines) hold nothing.
fn parse(text: &str) -> Option<HashSet<u64>> {
    let mut held = HashSet::new();
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
        if let Some(Ok(ino)) = id.rsplit(':').next().map(str::parse::<u64>) {
            held.insert(ino);
        }
    }
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flock_lines_and_ignores_posix_locks_and_waiters() {
        let text = "1: FLOCK  ADVISORY  READ 1959 fe:00:10010708 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:01:42 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 12 08:11:99 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 13 08:11:5 0 EOF\n";
        let held = parse(text).unwrap();
        assert!(held.contains(&10_010_708));
        assert!(held.contains(&99));
        assert_eq!(held.len(), 2);
    }
}
