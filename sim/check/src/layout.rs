//! How a job's declared `files` and `bytes` are laid out over its stages.
//!
//! Shared by the engine (which writes the files) and the checkers (which model them), so
//! both agree on which file is written when and how big it is.

use std::ops::Range;

/// The indices of the files stage `stage` of `stages` writes, out of `files`.
///
/// ```
/// use backstop_sim_check::layout::stage_files;
/// assert_eq!(stage_files(12, 3, 0), 0..4);
/// assert_eq!(stage_files(12, 3, 2), 8..12);
/// assert_eq!(stage_files(2, 3, 0), 0..0);
/// ```
pub fn stage_files(files: u32, stages: u32, stage: u32) -> Range<u32> {
    let at = |s: u32| (u64::from(files) * u64::from(s) / u64::from(stages.max(1))) as u32;
    at(stage)..at(stage + 1)
}

/// The declared size of file `index` of a job with `files` files totalling `bytes`: an
/// equal share, the remainder spread over the first files.
///
/// ```
/// use backstop_sim_check::layout::file_bytes;
/// assert_eq!((0..3).map(|i| file_bytes(3, 10, i)).sum::<u64>(), 10);
/// assert_eq!(file_bytes(3, 10, 0), 4);
/// ```
pub fn file_bytes(files: u32, bytes: u64, index: u32) -> u64 {
    if files == 0 {
        return 0;
    }
    let share = bytes / u64::from(files);
    let extra = u64::from(u64::from(index) < bytes % u64::from(files));
    share + extra
}

/// The declared bytes stage `stage` writes.
pub fn stage_bytes(files: u32, bytes: u64, stages: u32, stage: u32) -> u64 {
    stage_files(files, stages, stage)
        .map(|i| file_bytes(files, bytes, i))
        .sum()
}

/// When stage `stage` of a job started at `start_us` and lasting `job_us` begins.
pub fn stage_start_us(start_us: u64, job_us: u64, stages: u32, stage: u32) -> u64 {
    start_us + (u128::from(job_us) * u128::from(stage) / u128::from(stages.max(1))) as u64
}
