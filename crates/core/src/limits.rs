//! [`Limits`]: every knob of [`Admission`](crate::Admission), loadable from TOML.

use std::time::Duration;

use crate::ConfigError;
use crate::jobs::JobBounds;
use crate::rate::{MAX_LIMIT, MAX_WINDOW};
use crate::resources::ResourceLimits;

/// Longest `queue.retry_after_hint_ms` accepted: one hour.
const MAX_HINT_MS: u64 = 3600 * 1000;

/// All limits of an [`Admission`](crate::Admission), with the original design's
/// defaults: 30 requests per 60 s, a queue of 100, 5 running jobs, jobs wait below
/// 2048 MiB of available memory or 5 GiB of free disk.
///
/// Every field has a default, so a TOML file names only what it changes:
///
/// ```
/// # #[cfg(feature = "toml")]
/// # fn main() -> Result<(), backstop_core::ConfigError> {
/// use backstop_core::Limits;
///
/// let limits = Limits::from_toml_str(r#"
///     [rate]
///     limit = 100
///
///     [resources]
///     min_free_disk_mib = 1024
///     disk_margin_mib = 128
/// "#)?;
/// assert_eq!(limits.rate.limit, 100);
/// assert_eq!(limits.rate.window_ms, 60_000, "default kept");
/// assert_eq!(limits.queue.max, 100);
///
/// let err = Limits::from_toml_str("[queue]\nmax = 0\n").unwrap_err();
/// assert_eq!(err.field(), "queue.max");
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueLimits {
    /// Most jobs waiting, 1 to [`MAX_QUEUE`](crate::jobs::MAX_QUEUE) (default 100).
    pub max: u32,
    /// Room only `Critical` requests may use (default 0).
    pub critical_reserve: u32,
    /// The `Retry-After` suggested with a 503 (default 1000 ms).
    pub retry_after_hint_ms: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max: 100,
            critical_reserve: 0,
            retry_after_hint_ms: 1000,
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
    /// A [`ConfigError`] naming the field (`section.key`, as far as the parser's
    /// position tells) for TOML that does not parse or does not fit, or as
    /// [`validate`](Self::validate).
    #[cfg(feature = "toml")]
    pub fn from_toml_str(text: &str) -> Result<Limits, ConfigError> {
        let limits: Limits = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        limits.validate()?;
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

/// A TOML error as a [`ConfigError`]: the field is `table.key` of the line the parser
/// stopped at, and the reason keeps the parser's message and the line number.
#[cfg(feature = "toml")]
fn toml_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return ConfigError::new("(limits)", message);
    };
    let offset = span.start.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let whole_line = text[line_start..].lines().next().unwrap_or("");
    // The table is named by the last header above the line, or by the line itself.
    let mut table = String::new();
    for line in text[..line_start].lines().chain([whole_line]) {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = header.trim().to_owned();
        }
    }
    let key = whole_line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let field = match (key, table.is_empty()) {
        (Some(key), true) => key,
        (Some(key), false) => format!("{table}.{key}"),
        (None, false) => table,
        (None, true) => "(limits)".to_owned(),
    };
    ConfigError::new(field, format_args!("{message} (line {line_no})"))
}
