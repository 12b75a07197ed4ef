//! Helpers shared by the integration tests: trees on real temp dirs with ages set
//! relative to a fixed virtual `now`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;

/// The virtual "now" every test judges ages against: far enough in the future that
/// anything created in real time without an explicit age is old.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

pub const DAY: Duration = Duration::from_secs(24 * 3600);
pub const HOUR: Duration = Duration::from_secs(3600);

/// Two days before [`now`].
pub fn old() -> SystemTime {
    now() - 2 * DAY
}

/// An hour before [`now`].
pub fn young() -> SystemTime {
    now() - HOUR
}

pub fn set_mtime(path: &Path, t: SystemTime) {
    let ft = FileTime::from_system_time(t);
    filetime::set_symlink_file_times(path, ft, ft).unwrap();
}

/// Writes `bytes` bytes at `path` (parents created) with mtime `t`.
pub fn file(path: &Path, bytes: usize, t: SystemTime) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, vec![b'x'; bytes]).unwrap();
    set_mtime(path, t);
}

/// Every path under `root` (not following symlinks), relative, sorted.
pub fn listing(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Drops `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` from this thread's effective set
/// while alive (threads it spawns inherit that), so that permission bits apply even when
/// the tests run as root.
pub struct NoDacOverride {
    saved: Option<rustix::thread::CapabilitySets>,
}

impl NoDacOverride {
    pub fn new() -> NoDacOverride {
        use rustix::thread::CapabilitySet;
        let Ok(saved) = rustix::thread::capabilities(None) else {
            return NoDacOverride { saved: None };
        };
        let mut reduced = saved;
        reduced.effective -= CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
        rustix::thread::set_capabilities(None, reduced).unwrap();
        NoDacOverride { saved: Some(saved) }
    }
}

impl Drop for NoDacOverride {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            rustix::thread::set_capabilities(None, saved).unwrap();
        }
    }
}
