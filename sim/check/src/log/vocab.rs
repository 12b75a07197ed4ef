//! The words of the decision log: outcomes, 503 reasons, gate reasons, sweep triggers.

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed the rate limiter and entered the queue.
    Admitted,
    /// 429.
    RateLimited,
    /// 503.
    Overloaded,
}

impl Outcome {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Admitted => "admitted",
            Outcome::RateLimited => "rate_limited",
            Outcome::Overloaded => "overloaded",
        }
    }
}

/// Why a request got 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadReason {
    /// The queue held `max_queue` jobs.
    QueueFull,
    /// The per-key table was full of live keys.
    TooManyKeys,
}

impl OverloadReason {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OverloadReason::QueueFull => "queue_full",
            OverloadReason::TooManyKeys => "too_many_keys",
        }
    }
}

/// Why the resource gate is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReason {
    /// Available memory below its threshold.
    LowMemory,
    /// Free disk below its threshold.
    LowDisk,
}

impl GateReason {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GateReason::LowMemory => "low_memory",
            GateReason::LowDisk => "low_disk",
        }
    }
}

/// What started a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The k × interval schedule.
    Schedule,
    /// Disk fuller than the pressure threshold.
    Pressure,
}

impl Trigger {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Pressure => "pressure",
        }
    }
}
