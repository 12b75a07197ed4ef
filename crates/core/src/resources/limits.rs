use std::path::PathBuf;
use std::time::Duration;

use crate::ConfigError;
use crate::units::ByteSize;

/// Longest sampling interval or sample age accepted: one day.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// What the gate does when its last sample is older than `max_sample_age`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Jobs wait until a fresh sample arrives: safe when the sampler died because the
    /// machine is in trouble.
    #[default]
    FailClosed,
    /// Jobs start anyway; the gate still reports [`GateState::Stale`](super::GateState).
    FailOpen,
}

/// The `[resources]` section of [`Limits`](crate::Limits): thresholds of the resource
/// gate, each with a hysteresis margin, and how it is sampled.
///
/// A threshold closes the gate when the resource falls below it and reopens it only when
/// the resource is back above threshold + margin, so a value hovering at the threshold
/// does not make the gate flap.
///
/// In TOML, sizes are written `min_free_disk = "5GiB"` and intervals
/// `sample_interval = "1s"`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Whether the gate is consulted at all (default true). When false, jobs start
    /// whenever a slot is free.
    pub enabled: bool,
    /// Jobs wait while available memory is below this (default 2 GiB).
    pub min_available_memory: ByteSize,
    /// ... and until it is back above threshold + this (default 256 MiB).
    pub memory_margin: ByteSize,
    /// The file system whose free space is watched (default: the temp directory).
    pub disk_path: PathBuf,
    /// Jobs wait while free space on `disk_path` is below this (default 5 GiB).
    pub min_free_disk: ByteSize,
    /// ... and until it is back above threshold + this (default 512 MiB).
    pub disk_margin: ByteSize,
    /// Jobs wait while Linux memory pressure (PSI `some avg10`, percent of time some task
    /// stalled on memory) is above this; `None` (the default) ignores pressure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_pressure_pct: Option<f64>,
    /// ... and until it is back below threshold − this (default 5 percentage points).
    pub memory_pressure_margin_pct: f64,
    /// How often the [`Sampler`](super::Sampler) reads the probe (default 1 s).
    #[serde(with = "crate::units::text")]
    pub sample_interval: Duration,
    /// A sample older than this is stale (default 5 s).
    #[serde(with = "crate::units::text")]
    pub max_sample_age: Duration,
    /// What a stale gate does (default [`StalePolicy::FailClosed`]).
    pub on_stale: StalePolicy,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            enabled: true,
            min_available_memory: ByteSize::gib(2),
            memory_margin: ByteSize::mib(256),
            disk_path: std::env::temp_dir(),
            min_free_disk: ByteSize::gib(5),
            disk_margin: ByteSize::mib(512),
            max_memory_pressure_pct: None,
            memory_pressure_margin_pct: 5.0,
            sample_interval: Duration::from_secs(1),
            max_sample_age: Duration::from_secs(5),
            on_stale: StalePolicy::FailClosed,
        }
    }
}

impl ResourceLimits {
    /// Checks every field, naming the first bad one as `resources.<field>`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a margin larger than its threshold, a threshold and margin
    /// that add up past what bytes can count, a pressure outside 0–100 %, a zero
    /// interval, or a maximum sample age shorter than the sampling interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sizes()?;
        if self.disk_path.as_os_str().is_empty() {
            return Err(ConfigError::new("resources.disk_path", "must not be empty"));
        }
        self.validate_pressure()?;
        self.validate_sampling()
    }

    /// Each margin within its threshold, and their sum countable in bytes.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        for (margin_key, margin, threshold_key, threshold) in [
            (
                "resources.memory_margin",
                self.memory_margin,
                "resources.min_available_memory",
                self.min_available_memory,
            ),
            (
                "resources.disk_margin",
                self.disk_margin,
                "resources.min_free_disk",
                self.min_free_disk,
            ),
        ] {
            if threshold.bytes() > u64::MAX / 2 {
                return Err(ConfigError::new(
                    threshold_key,
                    format_args!(
                        "must be at most {}, got {threshold}",
                        ByteSize(u64::MAX / 2)
                    ),
                ));
            }
            if margin > threshold {
                return Err(ConfigError::new(
                    margin_key,
                    format_args!("must not exceed {threshold_key} ({threshold}), got {margin}"),
                ));
            }
        }
        Ok(())
    }

    /// The pressure threshold within 0–100 %, and its margin below it.
    fn validate_pressure(&self) -> Result<(), ConfigError> {
        let max_pressure = self.max_memory_pressure_pct;
        if let Some(max) = max_pressure.filter(|max| !(*max > 0.0 && *max <= 100.0)) {
            return Err(ConfigError::new(
                "resources.max_memory_pressure_pct",
                format_args!("must be above 0 and at most 100, got {max}"),
            ));
        }
        let margin = self.memory_pressure_margin_pct;
        if !(0.0..=100.0).contains(&margin) {
            return Err(ConfigError::new(
                "resources.memory_pressure_margin_pct",
                format_args!("must be 0 to 100, got {margin}"),
            ));
        }
        if let Some(max) = max_pressure.filter(|max| margin >= *max) {
            return Err(ConfigError::new(
                "resources.memory_pressure_margin_pct",
                format_args!(
                    "must be below resources.max_memory_pressure_pct ({max}), got {margin}"
                ),
            ));
        }
        Ok(())
    }

    /// A sampling interval of a day at most, and a maximum age from it to a day.
    fn validate_sampling(&self) -> Result<(), ConfigError> {
        let (interval, max_age) = (self.sample_interval, self.max_sample_age);
        if interval.is_zero() || interval > MAX_INTERVAL {
            return Err(ConfigError::new(
                "resources.sample_interval",
                format_args!("must be above zero and at most 24h, got {interval:?}"),
            ));
        }
        if max_age < interval || max_age > MAX_INTERVAL {
            return Err(ConfigError::new(
                "resources.max_sample_age",
                format_args!(
                    "must be from resources.sample_interval ({interval:?}) to 24h, got {max_age:?}"
                ),
            ));
        }
        Ok(())
    }

    /// Thresholds in the units the gate compares (bytes, nanoseconds); call on validated
    /// limits only, where nothing overflows.
    pub(super) fn thresholds(&self) -> Thresholds {
        let reopen = |threshold: ByteSize, margin: ByteSize| {
            threshold.bytes().saturating_add(margin.bytes())
        };
        Thresholds {
            enabled: self.enabled,
            min_memory_bytes: self.min_available_memory.bytes(),
            memory_reopen_bytes: reopen(self.min_available_memory, self.memory_margin),
            min_disk_bytes: self.min_free_disk.bytes(),
            disk_reopen_bytes: reopen(self.min_free_disk, self.disk_margin),
            max_pressure_pct: self.max_memory_pressure_pct,
            pressure_reopen_pct: self
                .max_memory_pressure_pct
                .map(|max| max - self.memory_pressure_margin_pct),
            max_age_ns: u64::try_from(self.max_sample_age.as_nanos()).unwrap_or(u64::MAX),
            on_stale: self.on_stale,
        }
    }
}

/// [`ResourceLimits`] in the gate's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Thresholds {
    pub(super) enabled: bool,
    pub(super) min_memory_bytes: u64,
    pub(super) memory_reopen_bytes: u64,
    pub(super) min_disk_bytes: u64,
    pub(super) disk_reopen_bytes: u64,
    pub(super) max_pressure_pct: Option<f64>,
    pub(super) pressure_reopen_pct: Option<f64>,
    pub(super) max_age_ns: u64,
    pub(super) on_stale: StalePolicy,
}
