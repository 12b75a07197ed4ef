//! The real probe on this machine.
#![cfg(feature = "sysinfo")]

use backstop_core::resources::{CgroupMemory, ResourceProbe, SysinfoProbe};

#[test]
fn sysinfo_probe_returns_plausible_numbers() {
    let mut probe = SysinfoProbe::new(std::env::temp_dir());
    let reading = probe.read().expect("this machine can be measured");
    // More than 16 MiB and less than 64 TiB of memory available.
    assert!(reading.available_memory_bytes > 16 << 20, "{reading:?}");
    assert!(reading.available_memory_bytes < 64 << 40, "{reading:?}");
    let free = reading.free_disk_bytes.expect("the temp dir is measured");
    assert!(free > 0 && free < 1 << 60, "{reading:?}");
    if let Some(pressure) = reading.memory_pressure_pct {
        assert!((0.0..=100.0).contains(&pressure), "{reading:?}");
    }
    // A second read works too (sysinfo keeps state between refreshes).
    assert!(probe.read().is_ok());
}

#[test]
fn a_missing_disk_path_is_a_probe_error_naming_it() {
    let mut probe = SysinfoProbe::new("/nonexistent/backstop/path");
    let err = probe.read().unwrap_err();
    assert!(err.what().contains("/nonexistent/backstop/path"), "{err}");
}

/// On Linux with a memory cgroup (this container has one), the probe finds and reads it;
/// where that cgroup has a limit, available memory never exceeds limit − working set.
#[cfg(target_os = "linux")]
#[test]
fn reads_this_process_cgroup_where_there_is_one() {
    let Ok(table) = std::fs::read_to_string("/proc/self/cgroup") else {
        return; // no /proc: nothing to check
    };
    let has_memory_cgroup = table.lines().any(|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))
    }) || std::path::Path::new("/sys/fs/cgroup/cgroup.controllers")
        .exists();
    let probe = SysinfoProbe::new(std::env::temp_dir());
    assert_eq!(
        probe.cgroup().is_some(),
        has_memory_cgroup,
        "detected {:?} from {table:?}",
        probe.cgroup()
    );
    if let Some(cgroup) = CgroupMemory::detect() {
        let limited = cgroup
            .available_bytes()
            .expect("the cgroup files are readable");
        let mut probe = probe;
        let reading = probe.read().unwrap();
        if let Some(cgroup_available) = limited {
            assert!(
                reading.available_memory_bytes <= cgroup_available + (64 << 20),
                "the cgroup's {cgroup_available} bounds {reading:?}"
            );
        }
    }
}
