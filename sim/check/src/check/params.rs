//! [`CheckParams`]: what the checkers need to know of a run's configuration.

/// The parameters the checkers need from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckParams {
    /// Passes allowed per window.
    pub rate_limit: u32,
    /// Window, µs.
    pub rate_window_us: u64,
    /// Queue bound.
    pub max_queue: u32,
    /// Job slots.
    pub job_slots: u32,
    /// Stages per job.
    pub stages: u32,
    /// Gate thresholds and margins.
    pub min_memory_bytes: u64,
    /// Memory reopen margin.
    pub memory_margin_bytes: u64,
    /// Minimum free disk.
    pub min_disk_bytes: u64,
    /// Disk reopen margin.
    pub disk_margin_bytes: u64,
    /// Disk capacity.
    pub capacity_bytes: u64,
    /// Usage above which the disk is under pressure.
    pub pressure_bytes: u64,
    /// The per-client stage: (passes per window, window µs), when configured.
    pub per_key: Option<(u32, u64)>,
}
