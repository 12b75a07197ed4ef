//! [`Limits`]: every knob of [`Admission`](crate::Admission), loadable from TOML.

use std::time::Duration;

use crate::ConfigError;
use crate::jobs::JobBounds;
use crate::rate::{MAX_LIMIT, MAX_WINDOW};
use crate::resources::ResourceLimits;
use crate::units::{self, HumanDuration};

/// Longest `queue.retry_after_hint_ms` accepted: one hour.
const MAX_HINT_MS: u64 = 3600 * 1000;

/// All limits of an [`Admission`](crate::Admission), with the original design's
/// defaults: 30 requests per 60 s, a queue of 100, 5 running jobs, jobs wait below
/// 2048 MiB of available memory or 5 GiB of free disk.
///
/// Every field has a default, so a TOML file names only what it changes. Durations are
/// written `"60s"`, sizes `"2GiB"` ([`units`](crate::units)); the older `*_ms` and
/// `*_mib` keys with plain numbers still work as legacy aliases (giving both spellings
/// of one setting is an error):
///
/// ```
/// # #[cfg(feature = "toml")]
/// # fn main() -> Result<(), backstop_core::ConfigError> {
/// use backstop_core::Limits;
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
/// assert_eq!(limits.rate.window_ms, 30_000);
/// assert_eq!(limits.resources.min_free_disk_mib, 1024);
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

/// The `[rate]` section: at most `limit` admissions in any window of `window_ms`.
///
/// In TOML the window is `window = "60s"`; `window_ms = 60000` is its legacy alias.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RateToml", into = "RateToml")]
pub struct RateLimits {
    /// Admissions per window, 1 to [`MAX_LIMIT`] (default 30).
    pub limit: u32,
    /// The window, in milliseconds (default 60 000).
    pub window_ms: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            limit: 30,
            window_ms: 60_000,
        }
    }
}

impl RateLimits {
    /// The window as a `Duration`.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }
}

/// The `[queue]` section.
///
/// In TOML the hint is `retry_after_hint = "1s"`; `retry_after_hint_ms` is its legacy
/// alias.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "QueueToml", into = "QueueToml")]
pub struct QueueLimits {
    /// Most jobs waiting, 1 to [`MAX_QUEUE`](crate::jobs::MAX_QUEUE) (default 100).
    pub max: u32,
    /// Room only `Critical` requests may use (default 0).
    pub critical_reserve: u32,
    /// The `Retry-After` suggested with a 503 (default 1000 ms).
    pub retry_after_hint_ms: u64,
    /// How long a ticket handed to another process keeps its queue place unclaimed,
    /// 1 ms to 24 h (default 5 min; TOML `max_wait = "5m"`). Used by doors whose tickets
    /// cross processes (`backstop_redis`'s detach and claim): an unclaimed place
    /// returns to the queue then. In-process tickets never wait unclaimed.
    pub max_wait: Duration,
}

/// The default of [`QueueLimits::max_wait`].
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
/// Longest `queue.max_wait` accepted: a day.
const MAX_MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max: 100,
            critical_reserve: 0,
            retry_after_hint_ms: 1000,
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// `[rate]` as written in TOML: the window in either spelling.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateToml {
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_ms: Option<u64>,
}

impl TryFrom<RateToml> for RateLimits {
    type Error = String;
    fn try_from(raw: RateToml) -> Result<Self, String> {
        let mut out = RateLimits::default();
        out.limit = raw.limit.unwrap_or(out.limit);
        let window = raw
            .window
            .map(|w| units::whole_millis(w.0, "window"))
            .transpose()?;
        if let Some(ms) = units::one_of(window, raw.window_ms, "window", "window_ms")? {
            out.window_ms = ms;
        }
        Ok(out)
    }
}

impl From<RateLimits> for RateToml {
    fn from(limits: RateLimits) -> Self {
        RateToml {
            limit: Some(limits.limit),
            window: Some(HumanDuration(limits.window())),
            window_ms: None,
        }
    }
}

/// `[queue]` as written in TOML: the hint in either spelling.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueToml {
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    critical_reserve: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_hint: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_hint_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_wait: Option<HumanDuration>,
}

impl TryFrom<QueueToml> for QueueLimits {
    type Error = String;
    fn try_from(raw: QueueToml) -> Result<Self, String> {
        let mut out = QueueLimits::default();
        out.max = raw.max.unwrap_or(out.max);
        out.critical_reserve = raw.critical_reserve.unwrap_or(out.critical_reserve);
        let hint = raw
            .retry_after_hint
            .map(|h| units::whole_millis(h.0, "retry_after_hint"))
            .transpose()?;
        if let Some(ms) = units::one_of(
            hint,
            raw.retry_after_hint_ms,
            "retry_after_hint",
            "retry_after_hint_ms",
        )? {
            out.retry_after_hint_ms = ms;
        }
        out.max_wait = raw.max_wait.map_or(out.max_wait, |w| w.0);
        Ok(out)
    }
}

impl From<QueueLimits> for QueueToml {
    fn from(limits: QueueLimits) -> Self {
        QueueToml {
            max: Some(limits.max),
            critical_reserve: Some(limits.critical_reserve),
            retry_after_hint: Some(HumanDuration(Duration::from_millis(
                limits.retry_after_hint_ms,
            ))),
            retry_after_hint_ms: None,
            // Written only when set, so that reports of limits without detached tickets
            // read as before.
            max_wait: (limits.max_wait != DEFAULT_MAX_WAIT)
                .then_some(HumanDuration(limits.max_wait)),
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
    /// (`rate.limit`, `resources.memory_margin_mib`, …) and says why.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for any value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rate.limit == 0 || self.rate.limit > MAX_LIMIT {
            return Err(ConfigError::new(
                "rate.limit",
                format_args!("must be 1 to {MAX_LIMIT}, got {}", self.rate.limit),
            ));
        }
        let max_window_ms = MAX_WINDOW.as_millis() as u64;
        if self.rate.window_ms == 0 || self.rate.window_ms > max_window_ms {
            return Err(ConfigError::new(
                "rate.window_ms",
                format_args!("must be 1 to {max_window_ms}, got {}", self.rate.window_ms),
            ));
        }
        self.job_bounds().validate()?;
        if self.queue.retry_after_hint_ms > MAX_HINT_MS {
            return Err(ConfigError::new(
                "queue.retry_after_hint_ms",
                format_args!(
                    "must be at most {MAX_HINT_MS}, got {}",
                    self.queue.retry_after_hint_ms
                ),
            ));
        }
        if self.queue.max_wait < Duration::from_millis(1) || self.queue.max_wait > MAX_MAX_WAIT {
            return Err(ConfigError::new(
                "queue.max_wait",
                format_args!("must be 1ms to 24h, got {:?}", self.queue.max_wait),
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
    /// [`toml_config`](crate::toml_config)) for TOML that does not parse or does not
    /// fit, or as [`validate`](Self::validate).
    #[cfg(feature = "toml")]
    pub fn from_toml_str(text: &str) -> Result<Limits, ConfigError> {
        let limits: Limits = crate::toml_config::from_toml_str(text)?;
        limits
            .validate()
            .map_err(|e| crate::toml_config::locate(e, text))?;
        Ok(limits)
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
