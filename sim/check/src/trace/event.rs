//! The trace's events and the bounds every trace keeps.

/// Microseconds in 100 years (36 525 days): the largest time or duration a trace may hold.
pub const MAX_TIME_US: u64 = 36_525 * 86_400 * 1_000_000;
/// The longest line accepted, in bytes (without its line ending).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// The most temp files one job may declare.
pub const MAX_FILES_PER_JOB: u32 = 4096;
/// The most temp bytes one job may declare (1 PiB).
pub const MAX_BYTES_PER_JOB: u64 = 1 << 50;
/// The longest client key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The most distinct client keys in one trace.
pub const MAX_KEYS: usize = 1_000_000;

const _: () = assert!(
    MAX_TIME_US < u64::MAX / 1_000,
    "times must fit in u64 nanoseconds"
);
const _: () = assert!(MAX_KEYS <= u32::MAX as usize, "key indices are u32");

/// One request: a client asks for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Arrival, virtual microseconds.
    pub t_us: u64,
    /// Unique request id.
    pub id: u64,
    /// The client's key, interned (index into the trace's key table), if any.
    pub key: Option<u32>,
    /// How long the job runs once started, microseconds.
    pub job_us: u64,
    /// Temp files the job writes (0 when absent).
    pub files: u32,
    /// Total bytes of those files (0 when absent).
    pub bytes: u64,
}

/// One trace event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request arrives.
    Request(Request),
    /// Available memory is read.
    Memory {
        /// Virtual microseconds.
        t_us: u64,
        /// Bytes of memory available.
        available_bytes: u64,
    },
    /// Background disk usage (besides temp files) is read.
    Disk {
        /// Virtual microseconds.
        t_us: u64,
        /// Bytes used on the temp disk by everything but the simulated temp files.
        used_bytes: u64,
    },
}

impl Event {
    /// The event's virtual time in microseconds.
    pub fn t_us(&self) -> u64 {
        match *self {
            Event::Request(r) => r.t_us,
            Event::Memory { t_us, .. } | Event::Disk { t_us, .. } => t_us,
        }
    }
}
