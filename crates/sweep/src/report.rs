//! What a sweep did: counts, skips by reason, errors by kind, and (optionally) every
//! removed entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FileType;

use crate::fsops::{self, Meta};

use serde::{Deserialize, Serialize};

/// At most this many error paths are kept in [`SweepReport::error_samples`]; the counts
/// in [`SweepReport::errors`] are always complete.
pub const MAX_ERROR_SAMPLES: usize = 32;

/// The outcome of one [`Sweep::run`](crate::Sweep::run).
///
/// For a given tree, `now` and configuration every field except `elapsed_us` is
/// deterministic: counts are merged from per-directory tallies (no shared counters), the
/// error samples are the [`MAX_ERROR_SAMPLES`] smallest paths, and [`removed`](Self::removed)
/// is sorted by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The root that was swept, as given to [`Sweep::new`](crate::Sweep::new).
    #[serde(with = "lossy_path")]
    pub root: PathBuf,
    /// True when nothing was deleted and the counts say what *would* have been.
    pub dry_run: bool,
    /// Regular files removed (in a workspace purge, also FIFOs, sockets and devices).
    pub files_removed: u64,
    /// Symbolic links removed (as links: their targets are never touched).
    pub symlinks_removed: u64,
    /// Directories removed because the sweep left them empty.
    pub dirs_removed: u64,
    /// Disk space returned: `st_blocks × 512` of each removed file whose every link the
    /// sweep removed. A file with one link counts when it goes; a file with several
    /// (hard links) counts once, if the sweep removed all the links it had when the
    /// sweep first saw it, and not at all if some link stays (inside or outside the
    /// root). A dry run counts exactly as the real run does.
    pub bytes_freed: u64,
    /// Sum of `st_size` of the removed files, whatever their link count.
    pub apparent_bytes: u64,
    /// Directory entries looked at (the root itself not included).
    pub entries_scanned: u64,
    /// Entries left in place, by reason.
    pub skipped: SkipCounts,
    /// Entries that could not be handled, by kind. A sweep never stops for these.
    pub errors: ErrorCounts,
    /// Up to [`MAX_ERROR_SAMPLES`] errors with their path, smallest paths first.
    pub error_samples: Vec<ErrorSample>,
    /// The pressure-mode goal, when one was set with [`Sweep::byte_goal`](crate::Sweep::byte_goal).
    pub byte_goal: Option<u64>,
    /// Wall-clock duration of the run in microseconds (the only nondeterministic field).
    pub elapsed_us: u64,
    /// Every removed entry, sorted by path; filled only when
    /// [`Sweep::collect_removed`](crate::Sweep::collect_removed) is set.
    pub removed: Vec<RemovedEntry>,
}

impl SweepReport {
    /// True when the run met its byte goal, or had none.
    pub fn goal_met(&self) -> bool {
        self.byte_goal.is_none_or(|goal| self.bytes_freed >= goal)
    }

    /// True when some entry failed for a reason other than vanishing mid-walk.
    ///
    /// A file that another process deleted first is not a failure of the sweep: it is
    /// counted in [`ErrorCounts::vanished`] and nothing more.
    pub fn has_failures(&self) -> bool {
        self.errors.total() > self.errors.vanished
    }

    /// Wall-clock duration of the run.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.elapsed_us)
    }

    /// The original service's log line, e.g. `Cleaned 12 files, freed 3.4 MB`.
    pub fn summary_line(&self) -> String {
        let verb = if self.dry_run {
            "Would clean"
        } else {
            "Cleaned"
        };
        format!(
            "{verb} {} files, freed {:.1} MB",
            self.files_removed + self.symlinks_removed,
            self.bytes_freed as f64 / 1_000_000.0
        )
    }
}

/// Entries left in place, by reason. Each entry is counted once, under the first reason
/// that applies in the order the fields are listed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipCounts {
    /// Matched an `exclude` glob (a matching directory is not entered at all).
    pub excluded: u64,
    /// Lives on another filesystem than the root (a mount point is not entered).
    pub other_filesystem: u64,
    /// A directory that turned into a symlink between listing and opening: the link was
    /// refused, never followed.
    pub symlink_target: u64,
    /// A FIFO, socket or device node.
    pub special_file: u64,
    /// Not older than the cutoff (a modification time in the future counts as new).
    pub too_young: u64,
    /// Held under an `flock` by another process.
    pub locked: u64,
    /// Replaced by another file between the sweep's `lstat` and its lock probe's
    /// `open`: the newcomer was never judged, so it stays.
    #[serde(default)]
    pub replaced: u64,
    /// Pressure mode: eligible, but the byte goal was met before its turn came.
    pub goal_reached: u64,
}

impl SkipCounts {
    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.excluded
            + self.other_filesystem
            + self.symlink_target
            + self.special_file
            + self.too_young
            + self.locked
            + self.replaced
            + self.goal_reached
    }

    pub(crate) fn add(&mut self, reason: SkipReason) {
        match reason {
            SkipReason::Excluded => self.excluded += 1,
            SkipReason::OtherFilesystem => self.other_filesystem += 1,
            SkipReason::SymlinkTarget => self.symlink_target += 1,
            SkipReason::SpecialFile => self.special_file += 1,
            SkipReason::TooYoung => self.too_young += 1,
            SkipReason::Locked => self.locked += 1,
            SkipReason::Replaced => self.replaced += 1,
        }
    }

    fn merge(&mut self, other: &SkipCounts) {
        self.excluded += other.excluded;
        self.other_filesystem += other.other_filesystem;
        self.symlink_target += other.symlink_target;
        self.special_file += other.special_file;
        self.too_young += other.too_young;
        self.locked += other.locked;
        self.replaced += other.replaced;
        self.goal_reached += other.goal_reached;
    }
}

/// Why an entry was left in place (see [`SkipCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipReason {
    Excluded,
    OtherFilesystem,
    SymlinkTarget,
    SpecialFile,
    TooYoung,
    Locked,
    Replaced,
}

/// Per-entry failures, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// `EACCES`/`EPERM`: a directory that cannot be read or an entry that cannot be removed.
    pub permission_denied: u64,
    /// `ENOENT`: removed by someone else between listing and handling.
    pub vanished: u64,
    /// `EBUSY`: a mount point or an entry in use.
    pub busy: u64,
    /// A directory was replaced or moved while the sweep was inside it; its subtree was
    /// abandoned.
    pub moved: u64,
    /// Anything else (`EIO`, `EROFS`, …); the sample says which.
    pub other: u64,
}

impl ErrorCounts {
    /// The sum over all kinds.
    pub fn total(&self) -> u64 {
        self.permission_denied + self.vanished + self.busy + self.moved + self.other
    }

    fn add(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::PermissionDenied => self.permission_denied += 1,
            ErrorKind::Vanished => self.vanished += 1,
            ErrorKind::Busy => self.busy += 1,
            ErrorKind::Moved => self.moved += 1,
            ErrorKind::Other => self.other += 1,
        }
    }

    fn merge(&mut self, other: &ErrorCounts) {
        self.permission_denied += other.permission_denied;
        self.vanished += other.vanished;
        self.busy += other.busy;
        self.moved += other.moved;
        self.other += other.other;
    }
}

/// The kind of a per-entry failure (see [`ErrorCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// `EACCES`/`EPERM`.
    PermissionDenied,
    /// `ENOENT`.
    Vanished,
    /// `EBUSY`.
    Busy,
    /// A directory changed identity under the sweep.
    Moved,
    /// Any other errno.
    Other,
}

impl ErrorKind {
    pub(crate) fn of(errno: rustix::io::Errno) -> ErrorKind {
        use rustix::io::Errno;
        match errno {
            Errno::ACCESS | Errno::PERM => ErrorKind::PermissionDenied,
            Errno::NOENT => ErrorKind::Vanished,
            Errno::BUSY => ErrorKind::Busy,
            _ => ErrorKind::Other,
        }
    }
}

/// One failed entry: where, what kind, and the operation and reason in words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ErrorSample {
    /// Full path of the entry (for messages only: the sweep itself never uses paths).
    #[serde(with = "lossy_path")]
    pub path: PathBuf,
    /// The kind it was counted under.
    pub kind: ErrorKind,
    /// E.g. `cannot open directory: Permission denied (os error 13)`.
    pub message: String,
}

/// What a removed entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A symbolic link (removed as a link).
    Symlink,
    /// A directory the sweep had emptied.
    Dir,
    /// A FIFO, socket or device node (only a workspace purge removes these).
    Special,
}

/// One entry a sweep removed (or, in a dry run, would remove).
///
/// Given to the [`Sweep::on_removed`](crate::Sweep::on_removed) observer as it happens
/// and listed in [`SweepReport::removed`] when
/// [`Sweep::collect_removed`](crate::Sweep::collect_removed) is set, so that a checker can
/// prove that nothing younger than the cutoff was ever deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedEntry {
    /// Full path at the time of removal.
    #[serde(with = "lossy_path")]
    pub path: PathBuf,
    /// What it was.
    pub kind: EntryKind,
    /// The time its age was judged by (see [`AgeBy`](crate::AgeBy)), as read just before
    /// removal. For a directory, the time read when it was entered, before the sweep
    /// emptied it.
    pub age_time: SystemTime,
    /// `st_blocks × 512` if it was a file with one link, else 0 (a file with several
    /// links counts in [`SweepReport::bytes_freed`] only, once, when all go). In the
    /// report this is the same in a dry run and a real run; the
    /// [`on_removed`](crate::Sweep::on_removed) observer, called as it happens, sees the
    /// link count of that moment, so a real run shows the last of several links with
    /// its blocks there.
    pub bytes_freed: u64,
    /// `st_size` for a file, else 0.
    pub apparent_bytes: u64,
}

/// The tally one directory task builds and hands up to its parent: no shared counters,
/// so merging is deterministic and lock-free.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub files_removed: u64,
    pub symlinks_removed: u64,
    pub dirs_removed: u64,
    /// Bytes of removed files seen with a single link.
    pub single_link_bytes: u64,
    pub apparent_bytes: u64,
    pub entries_scanned: u64,
    pub skipped: SkipCounts,
    pub errors: ErrorCounts,
    pub error_samples: Vec<ErrorSample>,
    /// Removed files seen with more than one link: settled at the end (see
    /// [`Tally::bytes_freed`]).
    pub hard_links: Vec<LinkSeen>,
    /// Removed entries with their inode, when collected.
    pub removed: Vec<(RemovedEntry, (u64, u64))>,
    /// A dry run's lock checks made before its lock table was read: the inodes taken
    /// for unlocked, to be checked against the table once it is there.
    pub lock_assumed: Vec<(u64, u64)>,
}

/// One removal of a name of a file that had several links when the sweep looked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkSeen {
    pub ident: (u64, u64),
    pub nlink: u64,
    pub bytes: u64,
}

/// What a pressure-mode candidate is expected to free when planning the batches: its
/// blocks if it has one link, else nothing.
pub(crate) fn planned_bytes(meta: &Meta) -> u64 {
    if meta.nlink == 1 {
        fsops::file_blocks_bytes(meta)
    } else {
        0
    }
}

/// Per inode with several links: how many of its names were removed, the most links it
/// was seen with, and its bytes.
fn link_groups(seen: &[LinkSeen]) -> HashMap<(u64, u64), (u64, u64, u64)> {
    let mut groups: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    for link in seen {
        let group = groups.entry(link.ident).or_insert((0, 0, 0));
        group.0 += 1;
        group.1 = group.1.max(link.nlink);
        group.2 = group.2.max(link.bytes);
    }
    groups
}

impl Tally {
    /// Counts one removal and returns the bytes it frees by itself (see
    /// [`RemovedEntry::bytes_freed`]).
    ///
    /// Hard links: a real run sees the link count drop as it unlinks (2, then 1),
    /// a dry run sees the original count every time (2, 2). So a file seen with one
    /// link counts at once, and a file seen with more is recorded and settled at the
    /// end: its blocks count if the names removed reach the most links it was seen
    /// with. The first sight of an inode precedes the sweep's first unlink of it, so
    /// that maximum is the count it started with, in both modes; and a real run that
    /// saw the last name with one link counted it then, while the names removed before
    /// it fall one short of the maximum. Both modes count the blocks exactly once, or
    /// not at all when a link stays.
    pub fn count_removal(&mut self, kind: EntryKind, meta: &Meta) -> u64 {
        match kind {
            EntryKind::File | EntryKind::Special => self.files_removed += 1,
            EntryKind::Symlink => self.symlinks_removed += 1,
            EntryKind::Dir => self.dirs_removed += 1,
        }
        self.apparent_bytes += fsops::apparent_bytes(meta);
        if meta.file_type() != FileType::RegularFile {
            return 0;
        }
        let bytes = fsops::file_blocks_bytes(meta);
        if meta.nlink <= 1 {
            self.single_link_bytes += bytes;
            bytes
        } else {
            self.hard_links.push(LinkSeen {
                ident: meta.ident(),
                nlink: meta.nlink,
                bytes,
            });
            0
        }
    }

    /// Bytes freed so far (see [`Tally::count_removal`]).
    pub fn bytes_freed(&self) -> u64 {
        if self.hard_links.is_empty() {
            return self.single_link_bytes;
        }
        let settled: u64 = link_groups(&self.hard_links)
            .values()
            .filter(|(removed, most_links, _)| removed >= most_links)
            .map(|(_, _, bytes)| bytes)
            .sum();
        self.single_link_bytes + settled
    }

    pub fn error(&mut self, path: &Path, kind: ErrorKind, message: String) {
        self.errors.add(kind);
        self.error_samples.push(ErrorSample {
            path: path.to_path_buf(),
            kind,
            message,
        });
        if self.error_samples.len() > 2 * MAX_ERROR_SAMPLES {
            self.trim_samples();
        }
    }

    pub fn errno(&mut self, path: &Path, what: &str, errno: rustix::io::Errno) {
        let kind = ErrorKind::of(errno);
        let reason = std::io::Error::from(errno);
        self.error(path, kind, format!("{what}: {reason}"));
    }

    fn trim_samples(&mut self) {
        self.error_samples.sort();
        self.error_samples.truncate(MAX_ERROR_SAMPLES);
    }

    pub fn merge(&mut self, mut other: Tally) {
        self.files_removed += other.files_removed;
        self.symlinks_removed += other.symlinks_removed;
        self.dirs_removed += other.dirs_removed;
        self.single_link_bytes += other.single_link_bytes;
        self.hard_links.append(&mut other.hard_links);
        self.apparent_bytes += other.apparent_bytes;
        self.entries_scanned += other.entries_scanned;
        self.skipped.merge(&other.skipped);
        self.errors.merge(&other.errors);
        self.error_samples.append(&mut other.error_samples);
        if self.error_samples.len() > 2 * MAX_ERROR_SAMPLES {
            self.trim_samples();
        }
        self.removed.append(&mut other.removed);
        self.lock_assumed.append(&mut other.lock_assumed);
    }

    pub fn into_report(
        mut self,
        root: PathBuf,
        dry_run: bool,
        byte_goal: Option<u64>,
        elapsed: Duration,
    ) -> SweepReport {
        self.trim_samples();
        let bytes_freed = self.bytes_freed();
        let groups = link_groups(&self.hard_links);
        let mut removed: Vec<RemovedEntry> = self
            .removed
            .into_iter()
            .map(|(mut entry, ident)| {
                // Seen with one link in a real run, but the last of several: the
                // report shows it as a dry run does.
                if entry.kind == EntryKind::File && groups.contains_key(&ident) {
                    entry.bytes_freed = 0;
                }
                entry
            })
            .collect();
        removed.sort_by(|a, b| a.path.cmp(&b.path));
        SweepReport {
            root,
            dry_run,
            files_removed: self.files_removed,
            symlinks_removed: self.symlinks_removed,
            dirs_removed: self.dirs_removed,
            bytes_freed,
            apparent_bytes: self.apparent_bytes,
            entries_scanned: self.entries_scanned,
            skipped: self.skipped,
            errors: self.errors,
            error_samples: self.error_samples,
            byte_goal,
            elapsed_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            removed,
        }
    }
}

/// Paths are written as UTF-8 (lossily, so a report never fails to serialize) and read
/// back as given.
mod lossy_path {
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&path.to_string_lossy())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PathBuf, D::Error> {
        String::deserialize(deserializer).map(PathBuf::from)
    }
}
