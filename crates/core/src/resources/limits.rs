use std::path::PathBuf;
use std::time::Duration;

use crate::ConfigError;
use crate::units::{self, HumanDuration, HumanSize};

const MIB: u64 = 1 << 20;

/// Most MiB a threshold may name (16 EiB in bytes would overflow).
const MAX_MIB: u64 = u64::MAX / MIB / 2;

/// Longest sampling interval or sample age accepted: one day.
const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;

/// What the gate does when its last sample is older than `max_sample_age_ms`.
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
/// `sample_interval = "1s"`; each `*_mib` / `*_ms` field name with a plain number is the
/// legacy alias of the key without its suffix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ResourcesToml", into = "ResourcesToml")]
pub struct ResourceLimits {
    /// Whether the gate is consulted at all (default true). When false, jobs start
    /// whenever a slot is free.
    pub enabled: bool,
    /// Jobs wait while available memory is below this (default 2048 MiB).
    pub min_available_memory_mib: u64,
    /// ... and until it is back above threshold + this (default 256 MiB).
    pub memory_margin_mib: u64,
    /// The file system whose free space is watched (default: the temp directory).
    pub disk_path: PathBuf,
    /// Jobs wait while free space on `disk_path` is below this (default 5120 MiB, 5 GiB).
    pub min_free_disk_mib: u64,
    /// ... and until it is back above threshold + this (default 512 MiB).
    pub disk_margin_mib: u64,
    /// Jobs wait while Linux memory pressure (PSI `some avg10`, percent of time some task
    /// stalled on memory) is above this; `None` (the default) ignores pressure.
    pub max_memory_pressure_pct: Option<f64>,
    /// ... and until it is back below threshold − this (default 5 percentage points).
    pub memory_pressure_margin_pct: f64,
    /// How often the [`Sampler`](super::Sampler) reads the probe (default 1000 ms).
    pub sample_interval_ms: u64,
    /// A sample older than this is stale (default 5000 ms).
    pub max_sample_age_ms: u64,
    /// What a stale gate does (default [`StalePolicy::FailClosed`]).
    pub on_stale: StalePolicy,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            enabled: true,
            min_available_memory_mib: 2048,
            memory_margin_mib: 256,
            disk_path: std::env::temp_dir(),
            min_free_disk_mib: 5 * 1024,
            disk_margin_mib: 512,
            max_memory_pressure_pct: None,
            memory_pressure_margin_pct: 5.0,
            sample_interval_ms: 1000,
            max_sample_age_ms: 5000,
            on_stale: StalePolicy::FailClosed,
        }
    }
}

impl ResourceLimits {
    /// Checks every field, naming the first bad one as `resources.<field>`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a margin larger than its threshold, a threshold too large to
    /// count in bytes, a pressure outside 0–100 %, a zero interval, or a maximum sample
    /// age shorter than the sampling interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, mib) in [
            (
                "resources.min_available_memory_mib",
                self.min_available_memory_mib,
            ),
            ("resources.memory_margin_mib", self.memory_margin_mib),
            ("resources.min_free_disk_mib", self.min_free_disk_mib),
            ("resources.disk_margin_mib", self.disk_margin_mib),
        ] {
            if mib > MAX_MIB {
                return Err(ConfigError::new(
                    field,
                    format_args!("must be at most {MAX_MIB} MiB, got {mib}"),
                ));
            }
        }
        if self.memory_margin_mib > self.min_available_memory_mib {
            return Err(ConfigError::new(
                "resources.memory_margin_mib",
                format_args!(
                    "must not exceed resources.min_available_memory_mib ({}), got {}",
                    self.min_available_memory_mib, self.memory_margin_mib
                ),
            ));
        }
        if self.disk_margin_mib > self.min_free_disk_mib {
            return Err(ConfigError::new(
                "resources.disk_margin_mib",
                format_args!(
                    "must not exceed resources.min_free_disk_mib ({}), got {}",
                    self.min_free_disk_mib, self.disk_margin_mib
                ),
            ));
        }
        if self.disk_path.as_os_str().is_empty() {
            return Err(ConfigError::new("resources.disk_path", "must not be empty"));
        }
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
        if self.sample_interval_ms == 0 || self.sample_interval_ms > MAX_INTERVAL_MS {
            return Err(ConfigError::new(
                "resources.sample_interval_ms",
                format_args!(
                    "must be 1 to {MAX_INTERVAL_MS}, got {}",
                    self.sample_interval_ms
                ),
            ));
        }
        if self.max_sample_age_ms < self.sample_interval_ms
            || self.max_sample_age_ms > MAX_INTERVAL_MS
        {
            return Err(ConfigError::new(
                "resources.max_sample_age_ms",
                format_args!(
                    "must be from resources.sample_interval_ms ({}) to {MAX_INTERVAL_MS}, got {}",
                    self.sample_interval_ms, self.max_sample_age_ms
                ),
            ));
        }
        Ok(())
    }

    /// The sampling interval as a `Duration`.
    pub fn sample_interval(&self) -> Duration {
        Duration::from_millis(self.sample_interval_ms)
    }

    /// The maximum sample age as a `Duration`.
    pub fn max_sample_age(&self) -> Duration {
        Duration::from_millis(self.max_sample_age_ms)
    }

    /// Thresholds in the units the gate compares (bytes, nanoseconds); call on validated
    /// limits only, where nothing overflows.
    pub(super) fn thresholds(&self) -> Thresholds {
        Thresholds {
            enabled: self.enabled,
            min_memory_bytes: self.min_available_memory_mib * MIB,
            memory_reopen_bytes: (self.min_available_memory_mib + self.memory_margin_mib) * MIB,
            min_disk_bytes: self.min_free_disk_mib * MIB,
            disk_reopen_bytes: (self.min_free_disk_mib + self.disk_margin_mib) * MIB,
            max_pressure_pct: self.max_memory_pressure_pct,
            pressure_reopen_pct: self
                .max_memory_pressure_pct
                .map(|max| max - self.memory_pressure_margin_pct),
            max_age_ns: self.max_sample_age_ms * 1_000_000,
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

/// `[resources]` as written in TOML: each size and interval in either spelling.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesToml {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_available_memory: Option<HumanSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_available_memory_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_margin: Option<HumanSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_margin_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free_disk: Option<HumanSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_free_disk_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_margin: Option<HumanSize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_margin_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_memory_pressure_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_pressure_margin_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_interval: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sample_age: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sample_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_stale: Option<StalePolicy>,
}

/// The MiB of a size given either way; `None` when neither is given.
fn mib(human: Option<HumanSize>, legacy: Option<u64>, key: &str) -> Result<Option<u64>, String> {
    let human = human.map(|s| units::whole_mib(s.0, key)).transpose()?;
    units::one_of(human, legacy, key, &format!("{key}_mib"))
}

/// The milliseconds of an interval given either way; `None` when neither is given.
fn ms(human: Option<HumanDuration>, legacy: Option<u64>, key: &str) -> Result<Option<u64>, String> {
    let human = human.map(|d| units::whole_millis(d.0, key)).transpose()?;
    units::one_of(human, legacy, key, &format!("{key}_ms"))
}

impl TryFrom<ResourcesToml> for ResourceLimits {
    type Error = String;
    fn try_from(raw: ResourcesToml) -> Result<Self, String> {
        let d = ResourceLimits::default();
        Ok(ResourceLimits {
            enabled: raw.enabled.unwrap_or(d.enabled),
            min_available_memory_mib: mib(
                raw.min_available_memory,
                raw.min_available_memory_mib,
                "min_available_memory",
            )?
            .unwrap_or(d.min_available_memory_mib),
            memory_margin_mib: mib(raw.memory_margin, raw.memory_margin_mib, "memory_margin")?
                .unwrap_or(d.memory_margin_mib),
            disk_path: raw.disk_path.unwrap_or(d.disk_path),
            min_free_disk_mib: mib(raw.min_free_disk, raw.min_free_disk_mib, "min_free_disk")?
                .unwrap_or(d.min_free_disk_mib),
            disk_margin_mib: mib(raw.disk_margin, raw.disk_margin_mib, "disk_margin")?
                .unwrap_or(d.disk_margin_mib),
            max_memory_pressure_pct: raw.max_memory_pressure_pct.or(d.max_memory_pressure_pct),
            memory_pressure_margin_pct: raw
                .memory_pressure_margin_pct
                .unwrap_or(d.memory_pressure_margin_pct),
            sample_interval_ms: ms(
                raw.sample_interval,
                raw.sample_interval_ms,
                "sample_interval",
            )?
            .unwrap_or(d.sample_interval_ms),
            max_sample_age_ms: ms(raw.max_sample_age, raw.max_sample_age_ms, "max_sample_age")?
                .unwrap_or(d.max_sample_age_ms),
            on_stale: raw.on_stale.unwrap_or(d.on_stale),
        })
    }
}

impl From<ResourceLimits> for ResourcesToml {
    fn from(l: ResourceLimits) -> Self {
        // Sizes above what bytes can count are refused by `validate`; saturate here so
        // that writing never fails.
        let size = |mib: u64| Some(HumanSize(mib.saturating_mul(MIB)));
        let interval = |ms: u64| Some(HumanDuration(Duration::from_millis(ms)));
        ResourcesToml {
            enabled: Some(l.enabled),
            min_available_memory: size(l.min_available_memory_mib),
            memory_margin: size(l.memory_margin_mib),
            disk_path: Some(l.disk_path),
            min_free_disk: size(l.min_free_disk_mib),
            disk_margin: size(l.disk_margin_mib),
            max_memory_pressure_pct: l.max_memory_pressure_pct,
            memory_pressure_margin_pct: Some(l.memory_pressure_margin_pct),
            sample_interval: interval(l.sample_interval_ms),
            max_sample_age: interval(l.max_sample_age_ms),
            on_stale: Some(l.on_stale),
            ..ResourcesToml::default()
        }
    }
}
