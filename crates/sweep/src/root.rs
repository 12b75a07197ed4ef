//! Opening a root (or a workspace base) by path without unsafe transitions, and the
//! guard against sweeping `/` or a pseudo-filesystem.
//!
//! A path is resolved one component at a time, each opened `O_PATH | O_NOFOLLOW`
//! relative to the directory before it and `fstat`ed *after* opening (so the check is on
//! the inode actually held, not on a name that may be swapped). Symlinks are followed by
//! hand (at most [`MAX_SYMLINK_HOPS`]). A step from a directory to an entry is refused,
//! as `systemd-tmpfiles` refuses it since CVE-2018-6954, when
//!
//! - the directory belongs to a user other than root and the entry to someone else
//!   (that user controls what the path means: following on would hand a sweep running
//!   as root over to whatever they point it at), or
//! - the directory is world-writable (like `/tmp`) and the entry belongs to a user other
//!   than root and the caller: anyone could have planted it, e.g. `/tmp/makevideo →
//!   /home/victim` before the service started.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fsops::{self, Meta};

/// Most symlinks followed while resolving one path (the kernel's own limit).
pub(crate) const MAX_SYMLINK_HOPS: usize = 40;

/// Why a path could not be resolved safely.
#[derive(Debug)]
pub(crate) enum ChaseError {
    /// A system call failed (`ENOENT`, `ENOTDIR`, `ELOOP`, `EACCES`, …).
    Io(Errno),
    /// A step the module docs refuse.
    Unsafe(String),
}

/// Resolves `path` to an open directory (`O_RDONLY | O_DIRECTORY`) and its metadata,
/// refusing unsafe transitions (see the module docs).
pub(crate) fn open_dir_safely(path: &Path) -> Result<(OwnedFd, Meta), ChaseError> {
    if path.as_os_str().is_empty() {
        // Not "the working directory": an empty argument is a mistake, as for `open`.
        return Err(ChaseError::Io(Errno::NOENT));
    }
    let mut chase = Chase::start(path)?;
    while let Some(name) = chase.todo.pop_front() {
        chase.step(&name)?;
    }
    chase.open_dir()
}

/// Where a resolution stands: the components still to walk, the directory reached (an
/// `O_PATH` fd and its metadata, read after opening) and its path, for messages.
struct Chase {
    todo: VecDeque<OsString>,
    current: OwnedFd,
    current_meta: Meta,
    resolved: PathBuf,
    hops: usize,
    euid: u32,
}

impl Chase {
    /// At `/` for an absolute path, else at the working directory, with every component
    /// of `path` to walk.
    fn start(path: &Path) -> Result<Chase, ChaseError> {
        let (current, resolved) = if path.is_absolute() {
            (open_root()?, PathBuf::from("/"))
        } else {
            (open_path(rustix::fs::CWD, OsStr::new("."))?, PathBuf::new())
        };
        let mut todo = VecDeque::new();
        push_components(&mut todo, path, false);
        let current_meta = fsops::fstat(current.as_fd()).map_err(ChaseError::Io)?;
        Ok(Chase {
            todo,
            current,
            current_meta,
            resolved,
            hops: 0,
            euid: rustix::process::geteuid().as_raw(),
        })
    }

    /// One component: into a directory, or through a symlink (its target's components
    /// queued first); anything else is `ENOTDIR`.
    fn step(&mut self, name: &OsStr) -> Result<(), ChaseError> {
        let child = open_path(self.current.as_fd(), name)?;
        let child_meta = fsops::fstat(child.as_fd()).map_err(ChaseError::Io)?;
        let child_path = if name == ".." {
            self.resolved
                .parent()
                .map_or_else(|| self.resolved.join(".."), Path::to_path_buf)
        } else {
            self.resolved.join(name)
        };
        if let Some(reason) = unsafe_transition(&self.current_meta, &child_meta, self.euid) {
            return Err(ChaseError::Unsafe(format!(
                "{}: {reason}",
                child_path.display()
            )));
        }
        match child_meta.file_type() {
            FileType::Directory => {
                self.current = child;
                self.current_meta = child_meta;
                self.resolved = child_path;
                Ok(())
            }
            FileType::Symlink => self.follow(&child, &child_path),
            _ => Err(ChaseError::Io(Errno::NOTDIR)),
        }
    }

    /// Follows the symlink `link` (at most [`MAX_SYMLINK_HOPS`] in all): its target's
    /// components go first in line, and an absolute target restarts at `/`.
    fn follow(&mut self, link: &OwnedFd, link_path: &Path) -> Result<(), ChaseError> {
        self.hops += 1;
        if self.hops > MAX_SYMLINK_HOPS {
            return Err(ChaseError::Io(Errno::LOOP));
        }
        let target =
            rustix::fs::readlinkat(link.as_fd(), c"", Vec::new()).map_err(ChaseError::Io)?;
        let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
        push_components(&mut self.todo, &target, true);
        if target.is_absolute() {
            let root = open_root()?;
            let root_meta = fsops::fstat(root.as_fd()).map_err(ChaseError::Io)?;
            // The link's directory decides where the walk goes next.
            if let Some(reason) = unsafe_transition(&self.current_meta, &root_meta, self.euid) {
                return Err(ChaseError::Unsafe(format!(
                    "{} (a symlink to {}): {reason}",
                    link_path.display(),
                    target.display()
                )));
            }
            self.current = root;
            self.current_meta = root_meta;
            self.resolved = PathBuf::from("/");
        }
        Ok(())
    }

    /// The directory reached, opened for reading, if it is still the one resolved.
    fn open_dir(self) -> Result<(OwnedFd, Meta), ChaseError> {
        let dir = rustix::fs::openat(
            self.current.as_fd(),
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(ChaseError::Io)?;
        let meta = fsops::fstat(dir.as_fd()).map_err(ChaseError::Io)?;
        if meta.ident() != self.current_meta.ident() {
            return Err(ChaseError::Io(Errno::STALE));
        }
        Ok((dir, meta))
    }
}

/// `name` in `dir`, opened `O_PATH | O_NOFOLLOW`: a handle to the inode itself, a
/// symlink included, without reading or following it.
fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, ChaseError> {
    let name = CString::new(name.as_bytes()).map_err(|_| ChaseError::Io(Errno::INVAL))?;
    rustix::fs::openat(
        dir,
        name.as_c_str(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ChaseError::Io)
}

fn open_root() -> Result<OwnedFd, ChaseError> {
    rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(ChaseError::Io)
}

/// Queues the components of `path` (`.` dropped); `front` puts them before what is
/// queued already (a symlink's target replaces the link).
fn push_components(todo: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for part in parts.into_iter().rev() {
            todo.push_front(part);
        }
    } else {
        todo.extend(parts);
    }
}

/// Why the step from directory `from` to entry `to` is unsafe, if it is.
fn unsafe_transition(from: &Meta, to: &Meta, euid: u32) -> Option<String> {
    if from.uid != 0 && from.uid != to.uid {
        return Some(format!(
            "owned by uid {} inside a directory owned by uid {}, a user other than root",
            to.uid, from.uid
        ));
    }
    let world_writable = from.mode & 0o002 != 0;
    if world_writable && to.uid != 0 && to.uid != euid {
        return Some(format!(
            "owned by uid {}, neither root nor this process (uid {euid}), inside a \
             world-writable directory: anyone could have planted it",
            to.uid
        ));
    }
    None
}

/// `f_type`s of filesystems that are not storage: sweeping them would remove kernel
/// objects or nothing at all.
const PSEUDO_FS: [(u64, &str); 20] = [
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7363_6673, "securityfs"),
    (0x7472_6163, "tracefs"),
    (0x6165_676c, "pstore"),
    (0xcafe_4a11, "bpf"),
    (0x6265_6570, "configfs"),
    (0x1cd1, "devpts"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x1980_0202, "mqueue"),
    (0x6e73_6673, "nsfs"),
    (0x6573_5543, "fusectl"),
    (0x0187, "autofs"),
    (0x5a3c_69f0, "apparmorfs"),
];
/// tmpfs and ramfs: devtmpfs reports one of these, so the mount table tells it apart.
const TMPFS_OR_RAMFS: [u64; 2] = [0x0102_1994, 0x8584_58f6];

/// The pseudo-filesystem `dir` is on, if it is one.
pub(crate) fn pseudo_fs(dir: BorrowedFd<'_>, meta: &Meta) -> Option<&'static str> {
    // `f_type`'s type differs between targets (signed on some); magics are positive.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let magic = rustix::fs::fstatfs(dir).ok()?.f_type as u64;
    if let Some((_, name)) = PSEUDO_FS.iter().find(|(m, _)| *m == magic) {
        return Some(name);
    }
    if TMPFS_OR_RAMFS.contains(&magic) {
        let mnt_id = meta.mnt_id.or_else(|| fsops::fdinfo_mnt_id(dir).ok())?;
        let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        if mount_fs_type(&table, mnt_id) == Some("devtmpfs") {
            return Some("devtmpfs");
        }
    }
    None
}

/// Whether `dir` is on tmpfs or ramfs, where removing a file is CPU work only (no device
/// to wait for); `false` when it cannot be told.
pub(crate) fn is_memory_backed(dir: BorrowedFd<'_>) -> bool {
    // As in `pseudo_fs`.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    let magic = rustix::fs::fstatfs(dir).map(|s| s.f_type as u64);
    magic.is_ok_and(|m| TMPFS_OR_RAMFS.contains(&m))
}

/// The filesystem type of mount `mnt_id` in a `/proc/self/mountinfo` text
/// (`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`).
fn mount_fs_type(table: &str, mnt_id: u64) -> Option<&str> {
    table.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()?.parse::<u64>().ok()? != mnt_id {
            return None;
        }
        let mut after_dash = fields.skip_while(|f| *f != "-");
        after_dash.next()?;
        after_dash.next()
    })
}

/// True when `meta` is the process's `/`.
pub(crate) fn is_slash(meta: &Meta) -> bool {
    rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .ok()
        .and_then(|fd| fsops::fstat(fd.as_fd()).ok())
        .is_some_and(|slash| slash.ident() == meta.ident() && slash.mnt_id == meta.mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_path_is_not_the_working_directory() {
        assert!(matches!(
            open_dir_safely(Path::new("")),
            Err(ChaseError::Io(Errno::NOENT))
        ));
        let (_, here) = open_dir_safely(Path::new(".")).unwrap();
        let cwd = fsops::lstat_at(rustix::fs::CWD, c".").unwrap();
        assert_eq!(here.ident(), cwd.ident());
    }

    #[test]
    fn mountinfo_lines_give_the_filesystem_type() {
        let table = "22 1 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=1k\n\
                     23 22 0:21 / /dev/shm rw shared:3 - tmpfs tmpfs rw\n\
                     24 1 8:1 / / rw - ext4 /dev/vda rw\n";
        assert_eq!(mount_fs_type(table, 22), Some("devtmpfs"));
        assert_eq!(mount_fs_type(table, 23), Some("tmpfs"));
        assert_eq!(mount_fs_type(table, 2), None);
    }

    fn meta(uid: u32, mode: u32) -> Meta {
        Meta {
            dev: 1,
            ino: 2,
            mode,
            nlink: 1,
            uid,
            size: 0,
            blocks: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            mnt_id: None,
        }
    }

    #[test]
    fn transitions_follow_the_tmpfiles_rules() {
        let sticky_tmp = meta(0, 0o41777);
        assert!(unsafe_transition(&sticky_tmp, &meta(0, 0o40755), 1000).is_none());
        assert!(unsafe_transition(&sticky_tmp, &meta(1000, 0o40700), 1000).is_none());
        assert!(unsafe_transition(&sticky_tmp, &meta(65534, 0o120777), 1000).is_some());
        let users_dir = meta(1000, 0o40755);
        assert!(unsafe_transition(&users_dir, &meta(1000, 0o40755), 0).is_none());
        assert!(unsafe_transition(&users_dir, &meta(0, 0o40755), 0).is_some());
        assert!(unsafe_transition(&meta(0, 0o40755), &meta(1000, 0o40755), 0).is_none());
    }
}
