//! The simulator's configuration (TOML). Every field has a default; unknown fields are
//! an error that names them.

use std::path::Path;
use std::time::Duration;

use backstop_core::{ByteSize, HumanDuration, Limits, Quota, parse_toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const GIB: u64 = 1 << 30;

/// A bad configuration or flag value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, holds an unknown field or a value out of range.
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The key path, line and column, and why.
        source: backstop_core::ConfigError,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(#[from] backstop_core::ConfigError),
}

/// The temp disk and the jobs' use of it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Capacity of the temp disk, in bytes (TOML `capacity = "100GiB"`).
    #[serde(
        rename = "capacity",
        deserialize_with = "de_bytes",
        serialize_with = "ser_bytes"
    )]
    pub capacity_bytes: u64,
    /// Stages per job; each writes an equal share of the job's files at its start.
    pub stages: u32,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            capacity_bytes: 100 * GIB,
            stages: 3,
        }
    }
}

/// The scheduled and the pressure sweep.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// Scheduled sweeps run at k × interval of virtual time.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub interval: Duration,
    /// Scheduled sweeps remove files older than this.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_age: Duration,
    /// A pressure sweep runs when disk used exceeds this fraction of capacity.
    pub pressure_threshold: f64,
    /// Pressure sweeps remove, oldest first, files older than this.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub pressure_max_age: Duration,
    /// At most one pressure sweep per this much virtual time.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub pressure_cooldown: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        // The original: every 6 h, files older than 24 h; pressure at 80 %.
        SweepConfig {
            interval: Duration::from_secs(6 * 3600),
            max_age: Duration::from_secs(24 * 3600),
            pressure_threshold: 0.8,
            pressure_max_age: Duration::from_secs(600),
            pressure_cooldown: Duration::from_secs(60),
        }
    }
}

/// The optional per-client stage: each request's `key` held to its own exact window
/// (backstop-core's `KeyedSlidingWindow`, between the global limit and the queue).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PerKeyConfig {
    /// Requests each client may pass per window.
    pub limit: u32,
    /// The window.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub window: Duration,
    /// Most clients tracked at once; a new client beyond gets 503 `too_many_keys`.
    pub max_keys: usize,
}

impl PerKeyConfig {
    /// Each client's quota, checked.
    ///
    /// # Errors
    ///
    /// As [`Quota::new`], the field named `per_key.limit` or `per_key.window`.
    pub fn quota(&self) -> Result<Quota, backstop_core::ConfigError> {
        Quota::new(self.limit, self.window).map_err(|e| e.under("per_key"))
    }
}

/// The whole simulator configuration.
///
/// ```
/// use backstop_sim::config::SimConfig;
/// let c = SimConfig::from_toml_str("seed = 9\n[limits.rate]\nlimit = 10\nwindow = \"30s\"\n", "inline")?;
/// assert_eq!(c.seed, 9);
/// assert_eq!(c.limits.rate.limit, 10);
/// assert_eq!(c.limits.queue.max, 100);
/// assert!(SimConfig::from_toml_str("sede = 9", "inline").unwrap_err().to_string().contains("sede"));
/// # Ok::<(), backstop_sim::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// The root seed of every random stream.
    pub seed: u64,
    /// Fraction of started jobs that crash and leave their files behind.
    pub crash_fraction: f64,
    /// Admission limits: backstop-core's own `Limits` (its job slots are the workers).
    pub limits: Limits,
    /// The temp disk.
    pub disk: DiskConfig,
    /// Sweeps.
    pub sweep: SweepConfig,
    /// Per-client limits (off when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<PerKeyConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            crash_fraction: 0.05,
            limits: Limits::default(),
            disk: DiskConfig::default(),
            sweep: SweepConfig::default(),
            per_key: None,
        }
    }
}

impl SimConfig {
    /// Parses and validates TOML; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigFileError> {
        parse_toml(text, SimConfig::validate).map_err(|source| ConfigFileError::Parse {
            path: origin.to_owned(),
            source,
        })
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks relationships serde cannot.
    pub fn validate(&self) -> Result<(), backstop_core::ConfigError> {
        use backstop_core::ConfigError as E;
        if !(0.0..=1.0).contains(&self.crash_fraction) {
            return Err(E::new("crash_fraction", "must be within 0..=1"));
        }
        let l = &self.limits;
        l.validate().map_err(|e| e.under("limits"))?;
        // The trace and the checkers count in microseconds.
        if l.rate.window.subsec_nanos() % 1000 != 0 {
            return Err(E::new("limits.rate.window", "must be whole microseconds"));
        }
        if l.shadow {
            return Err(E::new(
                "limits.shadow",
                "shadow mode is not simulated: the checkers judge enforced decisions",
            ));
        }
        if let Some(k) = &self.per_key {
            use backstop_core::rate::MAX_KEYS;
            k.quota()?;
            if k.max_keys == 0 || k.max_keys > MAX_KEYS {
                return Err(E::new(
                    "per_key.max_keys",
                    format!("must be 1 to {MAX_KEYS}"),
                ));
            }
            if k.window.subsec_nanos() % 1000 != 0 {
                return Err(E::new("per_key.window", "must be whole microseconds"));
            }
        }
        if self.disk.capacity_bytes == 0 {
            return Err(E::new("disk.capacity", "must be above 0"));
        }
        if self.disk.stages == 0 || self.disk.stages > 64 {
            return Err(E::new("disk.stages", "must be within 1..=64"));
        }
        let s = &self.sweep;
        if s.interval < Duration::from_secs(1) {
            // A limit on the number of sweeps: one per virtual second at most.
            return Err(E::new("sweep.interval", "must be at least 1s"));
        }
        if !(s.pressure_threshold > 0.0 && s.pressure_threshold <= 1.0) {
            return Err(E::new("sweep.pressure_threshold", "must be within (0, 1]"));
        }
        for (field, d) in [
            ("sweep.interval", s.interval),
            ("sweep.max_age", s.max_age),
            ("sweep.pressure_max_age", s.pressure_max_age),
            ("sweep.pressure_cooldown", s.pressure_cooldown),
        ] {
            if d.as_micros() > u128::from(backstop_sim_check::trace::MAX_TIME_US) {
                return Err(E::new(field, "must be at most 100 years"));
            }
        }
        Ok(())
    }

    /// The rate window in microseconds.
    pub fn rate_window_us(&self) -> u64 {
        u64::try_from(self.limits.rate.window.as_micros()).unwrap_or(u64::MAX)
    }

    /// The byte count above which the disk is under pressure.
    pub fn pressure_bytes(&self) -> u64 {
        (self.disk.capacity_bytes as f64 * self.sweep.pressure_threshold).floor() as u64
    }
}

/// Parses a duration in backstop-core's grammar ([`HumanDuration`]: `"90s"`, `"10m"`,
/// `"24h"`, `"250ms"`, `"1h 30m"`), at most 100 years.
///
/// ```
/// use std::time::Duration;
/// use backstop_sim::config::parse_duration;
/// assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("90").is_err(), "a bare number has no unit");
/// assert!(parse_duration("-3s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = Duration::from(text.parse::<HumanDuration>().map_err(|e| e.to_string())?);
    if d.as_micros() > u128::from(backstop_sim_check::trace::MAX_TIME_US) {
        return Err(format!("`{text}` is beyond 100 years"));
    }
    Ok(d)
}

/// Writes a duration so that [`parse_duration`] reads it back exactly.
fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    HumanDuration(*d).serialize(s)
}

/// A duration as text, within [`parse_duration`]'s range.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Writes a size as text (`"100GiB"`).
fn ser_bytes<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
    ByteSize(*bytes).serialize(s)
}

/// A size as text (`"100GiB"`).
fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ByteSize::deserialize(d).map(ByteSize::bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../backstop-sim.example.toml");
        let c = SimConfig::from_toml_str(text, "example").unwrap();
        assert_eq!(c, SimConfig::default());
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut c = SimConfig::default();
        c.sweep.pressure_cooldown = Duration::from_micros(1_500_250);
        c.seed = 77;
        let text = toml::to_string(&c).unwrap();
        assert_eq!(SimConfig::from_toml_str(&text, "round trip").unwrap(), c);
    }

    #[test]
    fn per_key_is_off_by_default_and_validated() {
        assert_eq!(SimConfig::default().per_key, None);
        let c = SimConfig::from_toml_str(
            "[per_key]\nlimit = 5\nwindow = \"1m\"\nmax_keys = 100\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.per_key.as_ref().map(|k| k.limit), Some(5));
        let e =
            SimConfig::from_toml_str("[per_key]\nlimit = 0\nwindow = \"1m\"\nmax_keys = 1\n", "x")
                .unwrap_err();
        assert!(e.to_string().contains("per_key.limit"), "{e}");
        let e =
            SimConfig::from_toml_str("[per_key]\nlimit = 1\nwindow = \"1m\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("max_keys"), "{e}");
    }

    #[test]
    fn unknown_nested_field_is_named() {
        let e = SimConfig::from_toml_str("[sweep]\nintervall = \"1h\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("intervall"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (text, field) in [
            ("crash_fraction = 1.5", "crash_fraction"),
            ("[limits.rate]\nlimit = 0", "limits.rate.limit"),
            ("[limits.queue]\nmax = 0", "limits.queue.max"),
            ("[limits]\nshadow = true", "limits.shadow"),
            (
                "[limits.resources]\nmemory_margin = \"9999MiB\"",
                "limits.resources.memory_margin",
            ),
            ("[limits.rate]\nwindow = \"1500ns\"", "limits.rate.window"),
            ("[sweep]\ninterval = \"0s\"", "sweep.interval"),
            ("[sweep]\ninterval = \"500ms\"", "at least 1s"),
            (
                "[sweep]\npressure_threshold = 0.0",
                "sweep.pressure_threshold",
            ),
            ("[disk]\nstages = 0", "disk.stages"),
        ] {
            let e = SimConfig::from_toml_str(text, "x").unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
        let e = SimConfig::from_toml_str("[sweep]\ninterval = \"5 parsecs\"", "x").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn human_sizes_and_durations_everywhere() {
        let c = SimConfig::from_toml_str(
            "[limits.rate]\nwindow = \"30s\"\n[limits.resources]\nmin_free_disk = \"2GiB\"\n\
             [disk]\ncapacity = \"50GiB\"\n[sweep]\ninterval = \"1h 30m\"\nmax_age = \"24h\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.limits.rate.window, Duration::from_secs(30));
        assert_eq!(
            c.limits.resources.min_free_disk,
            backstop_core::ByteSize::gib(2)
        );
        assert_eq!(c.disk.capacity_bytes, 50 << 30);
        assert_eq!(c.sweep.interval, Duration::from_secs(5400));
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("capacity = \"50GiB\""), "{text}");
    }

    #[test]
    fn each_setting_has_one_spelling() {
        for text in [
            "[limits.rate]\nwindow_ms = 30000\n",
            "[disk]\ncapacity_bytes = 53687091200\n",
            "[sweep]\ninterval = 5400\n",
        ] {
            assert!(SimConfig::from_toml_str(text, "x").is_err(), "{text}");
        }
    }

    #[test]
    fn errors_name_the_key_path_line_and_column() {
        for (text, says) in [
            (
                "seed = 1\n[disk]\ncapacity = \"lots\"\n",
                "`disk.capacity` at line 3, column 12",
            ),
            (
                "[disk]\ncapacity = \"1GiB\"\ncapacity_bytes = 5\n",
                "`disk.capacity_bytes` at line 3, column 1: unknown field",
            ),
            (
                "[limits.rate]\nwindow = \"1m\"\nwindow_ms = 5\n",
                "`limits.rate.window_ms` at line 3, column 1: unknown field",
            ),
            (
                "[limits.rate]\nlimit = 0\n",
                "`limits.rate.limit` at line 2, column 1",
            ),
            (
                "[limits.resources]\n\nmemory_margin = \"4GiB\"\n",
                "`limits.resources.memory_margin` at line 3, column 1",
            ),
            (
                "[sweep]\ninterval = \"500ms\"\n",
                "`sweep.interval` at line 2, column 1: must be at least 1s",
            ),
            (
                "[sweep]\nintervall = \"1h\"\n",
                "`sweep.intervall` at line 2, column 1",
            ),
        ] {
            let e = SimConfig::from_toml_str(text, "x").unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
