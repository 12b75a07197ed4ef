//! Real temp files for the simulated jobs, with mtimes from virtual time, and the sweeps
//! that clean them.
//!
//! Interim seam: until backstop-sweep's `Sweep` and `JobWorkspace` land, the workspace and
//! sweep here follow their documented behaviour (mtime age, oldest first under a byte
//! goal); the engine talks only to [`TempDisk`], so swapping them in touches this file
//! alone.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use filetime::FileTime;

/// Virtual time 0 as a file time: 2020-09-13T12:26:40Z. Fixed, so mtimes and sweep
/// decisions never depend on the wall clock.
pub const VIRTUAL_EPOCH_S: u64 = 1_600_000_000;

/// The wall-clock instant of virtual time `t_us`.
pub fn system_time(t_us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(VIRTUAL_EPOCH_S) + Duration::from_micros(t_us)
}

/// Where scratch directories go by default: `$BACKSTOP_SIM_SCRATCH`, else `/dev/shm` where
/// it exists (the files are sparse, so a RAM disk costs nothing and spares a slow disk
/// thousands of creates and unlinks), else the system temp dir.
pub fn default_scratch_parent() -> PathBuf {
    if let Some(p) = std::env::var_os("BACKSTOP_SIM_SCRATCH") {
        return PathBuf::from(p);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// A tracked temp file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedFile {
    /// Virtual mtime, µs.
    pub mtime_us: u64,
    /// Declared bytes (the disk model's count; the file on disk is sparse).
    pub bytes: u64,
}

/// What one sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOutcome {
    /// The files it removed, (job id, file index), ascending.
    pub removed: Vec<(u64, u32, TrackedFile)>,
    /// Files the sweeper itself reports removing (all entries, for throughput).
    pub files_removed_real: u64,
    /// Wall-clock time the sweep took.
    pub elapsed: Duration,
}

/// Failure of the temp disk (a real I/O error: the run stops).
#[derive(Debug, thiserror::Error)]
#[error("temp files under {path}: {source}")]
pub struct DiskError {
    path: String,
    source: io::Error,
}

fn disk_err(path: &Path, source: io::Error) -> DiskError {
    DiskError {
        path: path.display().to_string(),
        source,
    }
}

/// The scratch directory of one run, and every temp file present in it.
#[derive(Debug)]
pub struct TempDisk {
    dir: tempfile::TempDir,
    files: BTreeMap<(u64, u32), TrackedFile>,
    temp_bytes: u64,
    path_buf: PathBuf,
}

impl TempDisk {
    /// A fresh scratch directory under `parent`, or under [`default_scratch_parent`].
    pub fn new(parent: Option<&Path>) -> Result<Self, DiskError> {
        let parent = parent.map_or_else(default_scratch_parent, Path::to_path_buf);
        fs::create_dir_all(&parent).map_err(|e| disk_err(&parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix("backstop-sim-")
            .tempdir_in(&parent)
            .map_err(|e| disk_err(&parent, e))?;
        Ok(TempDisk {
            path_buf: dir.path().to_path_buf(),
            dir,
            files: BTreeMap::new(),
            temp_bytes: 0,
        })
    }

    /// The scratch root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Declared bytes of temp files present.
    pub fn temp_bytes(&self) -> u64 {
        self.temp_bytes
    }

    /// Temp files present.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    fn job_dir(&mut self, id: u64) -> &Path {
        self.path_buf.clear();
        self.path_buf.push(self.dir.path());
        self.path_buf.push(format!("job-{id}"));
        &self.path_buf
    }

    /// Writes files `indices` of job `id` (sparse, `bytes_of(i)` long) with mtime
    /// `t_us`.
    pub fn write_files(
        &mut self,
        id: u64,
        indices: std::ops::Range<u32>,
        bytes_of: impl Fn(u32) -> u64,
        t_us: u64,
    ) -> Result<(), DiskError> {
        if indices.is_empty() {
            return Ok(());
        }
        let mtime = FileTime::from_system_time(system_time(t_us));
        let dir = self.job_dir(id).to_path_buf();
        // A sweep may have removed the job's directory while it was empty or old.
        fs::create_dir_all(&dir).map_err(|e| disk_err(&dir, e))?;
        for i in indices {
            let path = dir.join(format!("f{i}"));
            let bytes = bytes_of(i);
            let f = fs::File::create(&path).map_err(|e| disk_err(&path, e))?;
            f.set_len(bytes).map_err(|e| disk_err(&path, e))?;
            drop(f);
            filetime::set_file_times(&path, mtime, mtime).map_err(|e| disk_err(&path, e))?;
            if let Some(old) = self.files.insert(
                (id, i),
                TrackedFile {
                    mtime_us: t_us,
                    bytes,
                },
            ) {
                self.temp_bytes -= old.bytes;
            }
            self.temp_bytes += bytes;
        }
        Ok(())
    }

    /// A job ended normally: its workspace is removed with whatever the sweeps left.
    pub fn remove_job(&mut self, id: u64) -> Result<(), DiskError> {
        let gone: Vec<(u64, u32)> = self
            .files
            .range((id, 0)..=(id, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for k in gone {
            if let Some(f) = self.files.remove(&k) {
                self.temp_bytes -= f.bytes;
            }
        }
        let dir = self.job_dir(id).to_path_buf();
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(disk_err(&dir, e)),
        }
    }

    /// Runs a sweep at virtual `t_us` removing files older than `older_than_us`, oldest
    /// first until `byte_goal` declared bytes are freed when given. Then finds out which
    /// tracked files are gone and forgets them.
    pub fn sweep(
        &mut self,
        t_us: u64,
        older_than_us: u64,
        byte_goal: Option<u64>,
    ) -> Result<SweepOutcome, DiskError> {
        let started = Instant::now();
        let files_removed_real = self.run_sweeper(t_us, older_than_us, byte_goal)?;
        let elapsed = started.elapsed();
        let mut removed = Vec::new();
        let keys: Vec<(u64, u32)> = self.files.keys().copied().collect();
        let root = self.dir.path().to_path_buf();
        for (id, i) in keys {
            let path = root.join(format!("job-{id}")).join(format!("f{i}"));
            if fs::symlink_metadata(&path).is_err() {
                let f = self.files.remove(&(id, i)).expect("key just listed");
                self.temp_bytes -= f.bytes;
                removed.push((id, i, f));
            }
        }
        Ok(SweepOutcome {
            removed,
            files_removed_real,
            elapsed,
        })
    }

    /// The sweeper proper (stand-in for `backstop_sweep::Sweep`): files whose mtime is
    /// more than `older_than_us` before `t_us`; with a byte goal, oldest first (ties by
    /// path) until the goal is met. Returns the number removed.
    fn run_sweeper(
        &mut self,
        t_us: u64,
        older_than_us: u64,
        byte_goal: Option<u64>,
    ) -> Result<u64, DiskError> {
        let cutoff = system_time(t_us.saturating_sub(older_than_us));
        let root = self.dir.path().to_path_buf();
        let mut eligible = Vec::new();
        for dir in fs::read_dir(&root).map_err(|e| disk_err(&root, e))? {
            let dir = dir.map_err(|e| disk_err(&root, e))?;
            if !dir
                .file_type()
                .map_err(|e| disk_err(&dir.path(), e))?
                .is_dir()
            {
                continue;
            }
            let dir_path = dir.path();
            for f in fs::read_dir(&dir_path).map_err(|e| disk_err(&dir_path, e))? {
                let f = f.map_err(|e| disk_err(&dir_path, e))?;
                let meta = f.metadata().map_err(|e| disk_err(&f.path(), e))?;
                let mtime = meta.modified().map_err(|e| disk_err(&f.path(), e))?;
                if meta.is_file() && mtime < cutoff {
                    eligible.push((mtime, f.path(), meta.len()));
                }
            }
        }
        eligible.sort();
        let mut freed = 0u64;
        let mut n = 0;
        for (_, path, len) in eligible {
            if byte_goal.is_some_and(|g| freed >= g) {
                break;
            }
            fs::remove_file(&path).map_err(|e| disk_err(&path, e))?;
            freed += len;
            n += 1;
        }
        Ok(n)
    }
}
