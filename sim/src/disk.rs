//! Real temp files for the simulated jobs, with mtimes from virtual time, and the real
//! backstop-sweep code that cleans them: each running job writes into a
//! [`JobWorkspace`], and sweeps are [`Sweep`]s with `now` injected from virtual time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backstop_sweep::{EntryKind, JobWorkspace, Sweep};
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
    /// Files the sweeper itself reports removing (for throughput).
    pub files_removed_real: u64,
    /// Wall-clock time the sweep took, as the sweeper measured it.
    pub elapsed: Duration,
}

/// Failure of the temp disk (a real I/O error: the run stops).
#[derive(Debug, thiserror::Error)]
#[error("temp files under {path}: {reason}")]
pub struct DiskError {
    path: String,
    reason: String,
}

fn disk_err(path: &Path, reason: impl std::fmt::Display) -> DiskError {
    DiskError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The scratch directory of one run, the workspaces of running jobs and every temp file
/// present in it.
#[derive(Debug)]
pub struct TempDisk {
    dir: tempfile::TempDir,
    files: BTreeMap<(u64, u32), TrackedFile>,
    temp_bytes: u64,
    workspaces: BTreeMap<u64, JobWorkspace>,
    /// Bytes the filesystem allocates for one of our files (one written page).
    block_bytes: u64,
    pool: Arc<rayon::ThreadPool>,
}

/// The workspace name of job `id`: zero-padded so that path order is id order, which is
/// how the sweeper breaks ties between files of the same age.
fn job_dir_name(id: u64) -> String {
    format!("job-{id:020}")
}

fn stage_dir_name(stage: u32) -> String {
    format!("s{stage:02}")
}

fn file_name(index: u32) -> String {
    format!("f{index:05}")
}

/// (job id, file index) back from a path the sweeper removed.
fn parse_path(path: &Path) -> Option<(u64, u32)> {
    let file = path
        .file_name()?
        .to_str()?
        .strip_prefix('f')?
        .parse()
        .ok()?;
    let job = path
        .parent()?
        .parent()?
        .file_name()?
        .to_str()?
        .strip_prefix("job-")?
        .parse()
        .ok()?;
    Some((job, file))
}

/// Writes one temp file: one real byte (so it frees exactly one page when removed, which
/// is what the sweeper counts), sparse up to its declared size, mtime at virtual `t_us`.
fn write_file(path: &Path, bytes: u64, mtime: FileTime) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(&[0])?;
    f.set_len(bytes.max(1))?;
    drop(f);
    filetime::set_file_times(path, mtime, mtime)
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
        // Measure what one of our files occupies, so byte goals can be set in real bytes.
        let probe = dir.path().join("probe");
        write_file(&probe, 1 << 20, FileTime::from_system_time(system_time(0)))
            .map_err(|e| disk_err(&probe, e))?;
        let block_bytes = fs::metadata(&probe)
            .map_err(|e| disk_err(&probe, e))?
            .blocks()
            * 512;
        fs::remove_file(&probe).map_err(|e| disk_err(&probe, e))?;
        if block_bytes == 0 {
            return Err(disk_err(
                dir.path(),
                "the filesystem allocates no blocks for small files; choose another with --scratch",
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("backstop-sim-sweep-{i}"))
            .build()
            .map_err(|e| disk_err(dir.path(), e))?;
        Ok(TempDisk {
            dir,
            files: BTreeMap::new(),
            temp_bytes: 0,
            workspaces: BTreeMap::new(),
            block_bytes,
            pool: Arc::new(pool),
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

    /// Stage `stage` of job `id` writes files `indices` (`bytes_of(i)` declared bytes
    /// each) with mtime `t_us`, into the job's workspace (created on its first write).
    pub fn write_files(
        &mut self,
        id: u64,
        stage: u32,
        indices: std::ops::Range<u32>,
        bytes_of: impl Fn(u32) -> u64,
        t_us: u64,
    ) -> Result<(), DiskError> {
        if indices.is_empty() {
            return Ok(());
        }
        let root = self.dir.path();
        let ws = match self.workspaces.entry(id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(
                JobWorkspace::create(root, &job_dir_name(id)).map_err(|e| disk_err(root, e))?,
            ),
        };
        let dir = ws
            .stage(&stage_dir_name(stage))
            .map_err(|e| disk_err(ws.path(), e))?;
        let mtime = FileTime::from_system_time(system_time(t_us));
        for i in indices {
            let path = dir.join(file_name(i));
            let bytes = bytes_of(i);
            write_file(&path, bytes, mtime).map_err(|e| disk_err(&path, e))?;
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

    fn forget_job(&mut self, id: u64) {
        let gone: Vec<(u64, u32)> = self
            .files
            .range((id, 0)..=(id, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(f) = self.files.remove(&k) {
                self.temp_bytes -= f.bytes;
            }
        }
    }

    /// A job ended normally: its workspace is removed with whatever the sweeps left.
    pub fn remove_job(&mut self, id: u64) -> Result<(), DiskError> {
        if let Some(ws) = self.workspaces.remove(&id) {
            let path = ws.path().to_path_buf();
            ws.remove().map_err(|e| disk_err(&path, e))?;
        }
        self.forget_job(id);
        Ok(())
    }

    /// A job crashed: its workspace stays on disk, files and all, for the sweeps.
    pub fn abandon_job(&mut self, id: u64) {
        if let Some(mut ws) = self.workspaces.remove(&id) {
            ws.keep();
        }
    }

    /// Runs the real sweeper at virtual `t_us` on files older than `older_than_us`; with
    /// `byte_goal` (declared bytes), in pressure mode.
    ///
    /// The sweeper counts freed bytes as allocated blocks, and each of our files holds one
    /// page whatever its declared size, so the declared goal is translated into pages: the
    /// number of the oldest eligible files (ties by path, the sweeper's order) whose
    /// declared bytes cover it. The sweeper itself then chooses and deletes the files.
    pub fn sweep(
        &mut self,
        t_us: u64,
        older_than_us: u64,
        byte_goal: Option<u64>,
    ) -> Result<SweepOutcome, DiskError> {
        if self.files.is_empty() {
            // Nothing was written or everything is gone: the sweep has nothing to find,
            // and a run with sparse traffic need not walk an empty tree every interval.
            return Ok(SweepOutcome {
                removed: Vec::new(),
                files_removed_real: 0,
                elapsed: Duration::ZERO,
            });
        }
        let root = self.dir.path().to_path_buf();
        let mut sweep = Sweep::new(&root)
            .now(system_time(t_us))
            .older_than(Duration::from_micros(older_than_us))
            .remove_empty_dirs(false)
            .collect_removed(true)
            .thread_pool(Arc::clone(&self.pool));
        if let Some(goal) = byte_goal {
            let mut eligible: Vec<(u64, u64, u32, u64)> = self
                .files
                .iter()
                .filter(|(_, f)| t_us.saturating_sub(f.mtime_us) > older_than_us)
                .map(|(&(id, i), f)| (f.mtime_us, id, i, f.bytes))
                .collect();
            eligible.sort_unstable();
            let mut covered = 0u64;
            let mut pages = 0u64;
            for &(.., bytes) in &eligible {
                if covered >= goal {
                    break;
                }
                covered += bytes;
                pages += 1;
            }
            sweep = sweep.byte_goal(pages * self.block_bytes);
        }
        let report = sweep.run().map_err(|e| disk_err(&root, e))?;
        if report.has_failures() {
            return Err(disk_err(
                &root,
                format!(
                    "the sweep failed on some entries: {:?}",
                    report.error_samples.first().map(|s| &s.message)
                ),
            ));
        }
        let mut removed = Vec::with_capacity(report.removed.len());
        for entry in report.removed.iter().filter(|e| e.kind == EntryKind::File) {
            let key = parse_path(&entry.path).ok_or_else(|| {
                disk_err(
                    &entry.path,
                    "the sweep removed a file the simulator did not write",
                )
            })?;
            let f = self.files.remove(&key).ok_or_else(|| {
                disk_err(
                    &entry.path,
                    "the sweep removed a file not present in the model",
                )
            })?;
            self.temp_bytes -= f.bytes;
            removed.push((key.0, key.1, f));
        }
        removed.sort_unstable_by_key(|&(id, i, _)| (id, i));
        Ok(SweepOutcome {
            removed,
            files_removed_real: report.files_removed,
            elapsed: report.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_back() {
        let p = Path::new("/x/job-00000000000000000042/s01/f00007");
        assert_eq!(parse_path(p), Some((42, 7)));
        assert_eq!(parse_path(Path::new("/x/other/s01/f00007")), None);
    }

    #[test]
    fn scheduled_sweep_removes_only_old_files_of_crashed_jobs() {
        let scratch = tempfile::tempdir().unwrap();
        let mut disk = TempDisk::new(Some(scratch.path())).unwrap();
        disk.write_files(1, 0, 0..3, |_| 100, 0).unwrap();
        disk.abandon_job(1);
        disk.write_files(2, 0, 0..2, |_| 50, 50_000_000).unwrap();
        assert_eq!(disk.temp_bytes(), 400);
        // At 100 s, 60 s old cutoff: job 1's files (100 s old) go, job 2's (50 s) stay.
        let out = disk.sweep(100_000_000, 60_000_000, None).unwrap();
        assert_eq!(
            out.removed.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            vec![(1, 0), (1, 1), (1, 2)]
        );
        assert_eq!(disk.temp_bytes(), 100);
        disk.remove_job(2).unwrap();
        assert_eq!(disk.file_count(), 0);
    }

    #[test]
    fn pressure_sweep_stops_at_the_declared_goal_oldest_first() {
        let scratch = tempfile::tempdir().unwrap();
        let mut disk = TempDisk::new(Some(scratch.path())).unwrap();
        disk.write_files(1, 0, 0..2, |_| 1000, 0).unwrap();
        disk.write_files(2, 0, 0..2, |_| 1000, 10).unwrap();
        disk.abandon_job(1);
        disk.abandon_job(2);
        // 1500 declared bytes need two files: job 1's, the oldest.
        let out = disk.sweep(1_000_000, 0, Some(1500)).unwrap();
        assert_eq!(
            out.removed.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
            vec![(1, 0), (1, 1)]
        );
        assert_eq!(disk.temp_bytes(), 2000);
    }
}
