use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sysinfo::{MemoryRefreshKind, System};

use super::{ProbeError, ResourceLimits, ResourceProbe, ResourceReading};

/// cgroup v1 reports "no limit" as a huge number near `i64::MAX` rounded to a page.
const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

/// The real probe: memory from sysinfo, bounded by the process's memory cgroup; free disk
/// space from `statvfs` on the watched path; Linux PSI memory pressure where present.
///
/// # Containers
///
/// Inside a container the host's available memory is the wrong number: the cgroup's
/// limit kills the process long before the host runs short. Available memory is
/// therefore the smaller of the host's and, for the process's cgroup and each ancestor
/// with a limit, `limit − working set`, where the working set is usage minus inactive
/// file cache (the kernel reclaims that cache before it OOM-kills; this is the number
/// Kubernetes evicts on). cgroup v1 and v2 are both read.
pub struct SysinfoProbe {
    system: System,
    disk_path: Option<PathBuf>,
    cgroup: Option<CgroupMemory>,
    pressure_path: Option<PathBuf>,
}

impl SysinfoProbe {
    /// A probe watching free space on the file system holding `disk_path`, and this
    /// process's memory cgroup if it has one.
    pub fn new(disk_path: impl Into<PathBuf>) -> Self {
        let cgroup = CgroupMemory::detect();
        let pressure_path = cgroup
            .as_ref()
            .and_then(CgroupMemory::pressure_path)
            .or_else(|| Some(PathBuf::from("/proc/pressure/memory")))
            .filter(|p| p.exists());
        SysinfoProbe {
            system: System::new(),
            disk_path: Some(disk_path.into()),
            cgroup,
            pressure_path,
        }
    }

    /// A probe watching `limits.disk_path`.
    pub fn from_limits(limits: &ResourceLimits) -> Self {
        Self::new(limits.disk_path.clone())
    }

    /// The memory cgroup found for this process, if any.
    pub fn cgroup(&self) -> Option<&CgroupMemory> {
        self.cgroup.as_ref()
    }

    /// Host memory available, as sysinfo reports it (bytes).
    fn host_available_bytes(&mut self) -> u64 {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.system.available_memory()
    }
}

impl fmt::Debug for SysinfoProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysinfoProbe")
            .field("disk_path", &self.disk_path)
            .field("cgroup", &self.cgroup)
            .field("pressure_path", &self.pressure_path)
            .finish()
    }
}

impl ResourceProbe for SysinfoProbe {
    fn read(&mut self) -> Result<ResourceReading, ProbeError> {
        let host = self.host_available_bytes();
        let cgroup = match &self.cgroup {
            Some(cgroup) => cgroup.available_bytes()?,
            None => None,
        };
        let available_memory_bytes = cgroup.map_or(host, |c| c.min(host));
        let free_disk_bytes = match &self.disk_path {
            Some(path) => Some(free_disk_bytes(path)?),
            None => None,
        };
        // Pressure is optional: an unreadable file means "not reported", not a failure.
        let memory_pressure_pct = self
            .pressure_path
            .as_deref()
            .and_then(|p| fs::read_to_string(p).ok())
            .and_then(|text| parse_psi_some_avg10(&text));
        Ok(ResourceReading {
            available_memory_bytes,
            free_disk_bytes,
            memory_pressure_pct,
        })
    }
}

#[cfg(unix)]
fn free_disk_bytes(path: &Path) -> Result<u64, ProbeError> {
    let stat = rustix::fs::statvfs(path)
        .map_err(|e| ProbeError::new(path.display().to_string(), io::Error::from(e)))?;
    // f_bavail: blocks free to unprivileged users, which is what a job can write.
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(not(unix))]
fn free_disk_bytes(path: &Path) -> Result<u64, ProbeError> {
    Err(ProbeError::new(
        path.display().to_string(),
        io::Error::new(io::ErrorKind::Unsupported, "statvfs is unix-only"),
    ))
}

/// The `some avg10` value of a PSI file (`some avg10=1.23 avg60=… total=…`).
fn parse_psi_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?;
    value.parse().ok().filter(|v: &f64| v.is_finite())
}

/// Which memory cgroup this process is charged to, and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMemory {
    /// cgroup v1: the memory controller's directory for this process.
    V1 {
        /// e.g. `/sys/fs/cgroup/memory/<path>`.
        dir: PathBuf,
    },
    /// cgroup v2 (unified): this process's directory and its ancestors, leaf first.
    V2 {
        /// e.g. `/sys/fs/cgroup/<path>`, then each parent up to the mount.
        dirs: Vec<PathBuf>,
    },
}

impl CgroupMemory {
    /// The memory cgroup of this process, from `/proc/self/cgroup` and `/sys/fs/cgroup`.
    pub fn detect() -> Option<Self> {
        let table = fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::detect_in(&table, Path::new("/sys/fs/cgroup"))
    }

    /// The memory cgroup named by `proc_self_cgroup` (the text of `/proc/self/cgroup`)
    /// under the cgroup mount `root`; `None` when there is none to read.
    ///
    /// Inside a container the path in `/proc/self/cgroup` is often the host's and not
    /// mounted; the container's own view is then the mount's root.
    pub fn detect_in(proc_self_cgroup: &str, root: &Path) -> Option<Self> {
        let mut v2_path = None;
        for line in proc_self_cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let relative = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "memory") {
                // v1 (or a hybrid host, where memory is still on v1).
                let mount = root.join("memory");
                let dir = [mount.join(relative), mount]
                    .into_iter()
                    .find(|d| d.join("memory.limit_in_bytes").exists())?;
                return Some(CgroupMemory::V1 { dir });
            }
            if id == "0" && controllers.is_empty() {
                v2_path = Some(relative.to_owned());
            }
        }
        let relative = v2_path?;
        if !root.join("cgroup.controllers").exists() {
            return None;
        }
        let leaf = [root.join(&relative), root.to_path_buf()]
            .into_iter()
            .find(|d| d.is_dir())?;
        let dirs: Vec<PathBuf> = leaf
            .ancestors()
            .take_while(|d| d.starts_with(root))
            .map(Path::to_path_buf)
            .collect();
        Some(CgroupMemory::V2 { dirs })
    }

    /// `min(limit − working set)` over this cgroup and its limited ancestors, in bytes;
    /// `None` when no level sets a limit.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] naming the file when a limit is set but its usage cannot be read.
    pub fn available_bytes(&self) -> Result<Option<u64>, ProbeError> {
        match self {
            CgroupMemory::V1 { dir } => {
                let stat = read_stat(&dir.join("memory.stat"))?;
                let own = read_u64(&dir.join("memory.limit_in_bytes"))?;
                // hierarchical_memory_limit already folds in the ancestors' limits.
                let limit = stat_value(&stat, "hierarchical_memory_limit")
                    .map_or(own, |h| h.min(own.unwrap_or(u64::MAX)).into());
                let Some(limit) = limit.filter(|&l| l < V1_UNLIMITED_FLOOR) else {
                    return Ok(None);
                };
                let usage = read_u64(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0);
                let inactive = stat_value(&stat, "total_inactive_file")
                    .or_else(|| stat_value(&stat, "inactive_file"))
                    .unwrap_or(0);
                Ok(Some(limit.saturating_sub(usage.saturating_sub(inactive))))
            }
            CgroupMemory::V2 { dirs } => {
                let mut tightest: Option<u64> = None;
                for dir in dirs {
                    let max_file = dir.join("memory.max");
                    if !max_file.exists() {
                        continue; // the root has no memory.max
                    }
                    let Some(limit) = read_u64(&max_file)? else {
                        continue; // "max": no limit at this level
                    };
                    let usage = read_u64(&dir.join("memory.current"))?.unwrap_or(0);
                    let inactive =
                        stat_value(&read_stat(&dir.join("memory.stat"))?, "inactive_file")
                            .unwrap_or(0);
                    let available = limit.saturating_sub(usage.saturating_sub(inactive));
                    tightest = Some(tightest.map_or(available, |t| t.min(available)));
                }
                Ok(tightest)
            }
        }
    }

    /// The cgroup's own PSI file (v2 only).
    pub fn pressure_path(&self) -> Option<PathBuf> {
        match self {
            CgroupMemory::V1 { .. } => None,
            CgroupMemory::V2 { dirs } => dirs.first().map(|d| d.join("memory.pressure")),
        }
    }
}

/// A number file; `Ok(None)` for v2's "max".
fn read_u64(path: &Path) -> Result<Option<u64>, ProbeError> {
    let text =
        fs::read_to_string(path).map_err(|e| ProbeError::new(path.display().to_string(), e))?;
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        ProbeError::new(
            path.display().to_string(),
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })
}

/// A `memory.stat` file's text; missing is empty (older kernels, stripped mounts).
fn read_stat(path: &Path) -> Result<String, ProbeError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ProbeError::new(path.display().to_string(), e)),
    }
}

fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn psi_some_avg10_is_parsed_and_garbage_is_none() {
        let text = "some avg10=12.50 avg60=3.00 avg300=1.00 total=42\n\
                    full avg10=99.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi_some_avg10(text), Some(12.5));
        assert_eq!(parse_psi_some_avg10("full avg10=1.00"), None);
        assert_eq!(parse_psi_some_avg10("some avg10=NaN"), None);
        assert_eq!(parse_psi_some_avg10(""), None);
    }

    #[test]
    fn v1_limit_minus_working_set_with_the_hierarchical_limit() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("memory/kubepods/pod1");
        write(&dir.join("memory.limit_in_bytes"), "9223372036854771712\n");
        write(&dir.join("memory.usage_in_bytes"), "700\n");
        write(
            &dir.join("memory.stat"),
            "cache 5\nhierarchical_memory_limit 1000\ntotal_inactive_file 200\n",
        );
        let table = "12:cpu:/x\n4:memory:/kubepods/pod1\n0::/\n";
        let cgroup = CgroupMemory::detect_in(table, root.path()).unwrap();
        assert_eq!(cgroup, CgroupMemory::V1 { dir: dir.clone() });
        // 1000 − (700 − 200)
        assert_eq!(cgroup.available_bytes().unwrap(), Some(500));

        write(&dir.join("memory.stat"), "total_inactive_file 0\n");
        assert_eq!(cgroup.available_bytes().unwrap(), None, "no limit anywhere");
        write(&dir.join("memory.limit_in_bytes"), "600\n");
        assert_eq!(
            cgroup.available_bytes().unwrap(),
            Some(0),
            "over the limit saturates"
        );
    }

    #[test]
    fn v1_falls_back_to_the_mount_root_inside_a_container() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("memory/memory.limit_in_bytes"), "4096\n");
        let table = "4:memory:/docker/abcdef\n";
        let cgroup = CgroupMemory::detect_in(table, root.path()).unwrap();
        assert_eq!(
            cgroup,
            CgroupMemory::V1 {
                dir: root.path().join("memory")
            }
        );
        let err = cgroup.available_bytes().unwrap_err();
        assert!(err.what().ends_with("memory.usage_in_bytes"), "{err}");
    }

    #[test]
    fn v2_takes_the_tightest_level() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("cgroup.controllers"), "memory\n");
        let parent = root.path().join("svc");
        let leaf = parent.join("worker");
        write(&parent.join("memory.max"), "10000\n");
        write(&parent.join("memory.current"), "9000\n");
        write(&parent.join("memory.stat"), "anon 1\ninactive_file 1000\n");
        write(&leaf.join("memory.max"), "max\n");
        write(&leaf.join("memory.current"), "100\n");
        let table = "0::/svc/worker\n";
        let cgroup = CgroupMemory::detect_in(table, root.path()).unwrap();
        assert_eq!(cgroup.pressure_path(), Some(leaf.join("memory.pressure")));
        // Leaf unlimited; parent 10000 − (9000 − 1000).
        assert_eq!(cgroup.available_bytes().unwrap(), Some(2000));
        write(&leaf.join("memory.max"), "500\n");
        assert_eq!(cgroup.available_bytes().unwrap(), Some(400));
        write(&leaf.join("memory.current"), "garbage\n");
        assert!(cgroup.available_bytes().is_err());
    }

    #[test]
    fn no_memory_cgroup_is_none() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(CgroupMemory::detect_in("0::/\n", root.path()), None);
        assert_eq!(CgroupMemory::detect_in("garbage", root.path()), None);
        assert_eq!(CgroupMemory::detect_in("4:memory:/x\n", root.path()), None);
    }
}
