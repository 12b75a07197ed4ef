//! [`Limits`]: every knob of [`Admission`](crate::Admission), loadable from TOML.

use std::time::Duration;

use crate::ConfigError;
use crate::jobs::JobBounds;
use crate::rate::Quota;
use crate::resources::ResourceLimits;

/// Longest `queue.retry_after_hint` accepted: one hour.
const MAX_HINT: Duration = Duration::from_secs(3600);

/// The default of [`QueueLimits::max_wait`].
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
/// Longest `queue.max_wait` accepted: a day.
const MAX_MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// All limits of an [`Admission`](crate::Admission), with the original design's
/// defaults: 30 requests per 60 s, a queue of 100, 5 running jobs, jobs wait below
/// 2 GiB of available memory or 5 GiB of free disk.
///
/// Every field has a default, so a TOML file names only what it changes. Durations are
/// `Duration`s, written `"60s"`, `"250ms"`, `"24h"` in TOML ([`HumanDuration`]); sizes
/// are [`ByteSize`]s, written `"2GiB"`, `"512MiB"`. Each setting has one spelling.
///
/// [`HumanDuration`]: crate::HumanDuration
/// [`ByteSize`]: crate::ByteSize
///
/// ```
/// # #[cfg(feature = "toml")]
/// # fn main() -> Result<(), backstop_core::ConfigError> {
/// use std::time::Duration;
/// use backstop_core::{ByteSize, Limits};
///
/// let limits = Limits::from_toml_str(r#"
///     [rate]
///     limit = 100
///     window = "30s"
///
///     [resources]
///     min_free_disk = "1GiB"
///     disk_margin = "128MiB"
/// "#)?;
/// assert_eq!(limits.rate.limit, 100);
/// assert_eq!(limits.rate.window, Duration::from_secs(30));
/// assert_eq!(limits.resources.min_free_disk, ByteSize::gib(1));
/// assert_eq!(limits.queue.max, 100, "default kept");
///
/// let err = Limits::from_toml_str("[queue]\nmax = 0\n").unwrap_err();
/// assert_eq!(err.field(), "queue.max");
/// assert_eq!((err.line(), err.column()), (Some(2), Some(1)));
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "toml"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Count refusals without enforcing them (default false): to try new limits on real
    /// traffic before they bite.
    pub shadow: bool,
    /// The rate limit (429).
    pub rate: RateLimits,
    /// The queue of waiting jobs (503 when full).
    pub queue: QueueLimits,
    /// Running jobs.
    pub jobs: JobLimits,
    /// The resource gate.
    pub resources: ResourceLimits,
}

/// The `[rate]` section: at most `limit` admissions in any `window` (TOML
/// `limit = 30`, `window = "60s"`), checked as a [`Quota`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Admissions per window, 1 to [`MAX_LIMIT`](crate::rate::MAX_LIMIT) (default 30).
    pub limit: u32,
    /// The window (default 60 s).
    #[serde(with = "crate::units::text")]
    pub window: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            limit: 30,
            window: Duration::from_secs(60),
        }
    }
}

impl RateLimits {
    /// The shape, checked: the [`Quota`] the limiter is built with.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`], the field named `rate.limit` or `rate.window`.
    pub fn quota(&self) -> Result<Quota, ConfigError> {
        Quota::new(self.limit, self.window).map_err(|e| e.under("rate"))
    }
}

/// The `[queue]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLimits {
    /// Most jobs waiting, 1 to [`MAX_QUEUE`](crate::jobs::MAX_QUEUE) (default 100).
    pub max: u32,
    /// Room only `Critical` requests may use (default 0).
    pub critical_reserve: u32,
    /// The `Retry-After` suggested with a 503, at most an hour (default 1 s; TOML
    /// `retry_after_hint = "1s"`).
    #[serde(with = "crate::units::text")]
    pub retry_after_hint: Duration,
    /// How long a ticket handed to another process keeps its queue place unclaimed,
    /// 1 ms to 24 h (default 5 min; TOML `max_wait = "5m"`). Used by doors whose tickets
    /// cross processes (`backstop_redis`'s detach and claim): an unclaimed place
    /// returns to the queue then. In-process tickets never wait unclaimed.
    // Written only when set, so that reports of limits without detached tickets read
    // as they do without the setting.
    #[serde(
        with = "crate::units::text",
        skip_serializing_if = "is_default_max_wait"
    )]
    pub max_wait: Duration,
}

fn is_default_max_wait(max_wait: &Duration) -> bool {
    *max_wait == DEFAULT_MAX_WAIT
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max: 100,
            critical_reserve: 0,
            retry_after_hint: Duration::from_secs(1),
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// The `[jobs]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobLimits {
    /// Most jobs running, 1 to [`MAX_JOBS`](crate::jobs::MAX_JOBS) (default 5).
    pub max: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits { max: 5 }
    }
}

impl Limits {
    /// Checks every field; the error names the first bad one by its TOML path
    /// (`rate.limit`, `resources.memory_margin`, …) and says why.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for any value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rate.quota()?;
        self.job_bounds().validate()?;
        let queue = &self.queue;
        if queue.retry_after_hint > MAX_HINT {
            return Err(ConfigError::new(
                "queue.retry_after_hint",
                format_args!("must be at most 1h, got {:?}", queue.retry_after_hint),
            ));
        }
        if queue.max_wait < Duration::from_millis(1) || queue.max_wait > MAX_MAX_WAIT {
            return Err(ConfigError::new(
                "queue.max_wait",
                format_args!("must be 1ms to 24h, got {:?}", queue.max_wait),
            ));
        }
        self.resources.validate()
    }

    /// The queue and job bounds.
    pub fn job_bounds(&self) -> JobBounds {
        JobBounds {
            max_queue: self.queue.max,
            critical_reserve: self.queue.critical_reserve,
            max_jobs: self.jobs.max,
        }
    }

    /// Parses and validates limits from TOML. Missing fields take their defaults;
    /// unknown fields are errors, so a typo never silently keeps a default.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the key path, the line and the column (see
    /// [`parse_toml`](crate::parse_toml)) for TOML that does not parse or does not fit,
    /// or as [`validate`](Self::validate).
    #[cfg(feature = "toml")]
    pub fn from_toml_str(text: &str) -> Result<Limits, ConfigError> {
        crate::parse_toml(text, Limits::validate)
    }

    /// Reads, parses and validates a TOML file.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str), and a [`ConfigError`] naming the path
    /// when the file cannot be read.
    #[cfg(feature = "toml")]
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<Limits, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e))?;
        Self::from_toml_str(&text)
    }
}
