//! Durations and sizes as people write them in a config file or on a command line:
//! `"60s"`, `"250ms"`, `"24h"`, `"2GiB"`. One grammar for every reader: [`Limits`]'s
//! TOML, the simulator's and make-video's configs, the sweep CLI's flags.
//!
//! Durations are read by [humantime](https://docs.rs/humantime) (`"1h 30m"`, `"2d"`,
//! `"10us"`), sizes by [bytesize](https://docs.rs/bytesize) (`"512MiB"`, `"2GiB"`,
//! `"1.5GiB"`, `"500MB"`; `KiB`/`MiB`/`GiB` are powers of 1024, `kB`/`MB`/`GB` of
//! 1000). A bare number is refused: in a config it is more likely a forgotten unit.
//! Written back, a value reads the same way it parses.
//!
//! [`Limits`]: crate::Limits

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A duration or size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// A duration humantime does not read.
    #[error("not a duration: `{text}` ({reason}); write e.g. \"250ms\", \"60s\", \"24h\"")]
    Duration {
        /// What was given.
        text: String,
        /// What humantime says is wrong.
        reason: String,
    },
    /// A size without a unit (a bare number, or nothing).
    #[error("not a size: `{text}` has no unit; write e.g. \"64KiB\", \"512MiB\", \"2GiB\"")]
    SizeWithoutUnit {
        /// What was given.
        text: String,
    },
    /// A size bytesize does not read.
    #[error("not a size: `{text}` ({reason}); write e.g. \"64KiB\", \"512MiB\", \"2GiB\"")]
    Size {
        /// What was given.
        text: String,
        /// What bytesize says is wrong.
        reason: String,
    },
}

/// A [`Duration`] written as text: `"250ms"`, `"60s"`, `"1h 30m"`, `"24h"`. What a
/// configuration or a command-line flag holds before it becomes a `Duration`.
///
/// ```
/// use std::time::Duration;
/// use backstop_core::HumanDuration;
///
/// let day: HumanDuration = "24h".parse()?;
/// assert_eq!(Duration::from(day), Duration::from_secs(86_400));
/// assert_eq!(day.to_string(), "1day");
/// assert!("60".parse::<HumanDuration>().is_err(), "a bare number has no unit");
/// # Ok::<(), backstop_core::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| UnitError::Duration {
                text: text.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl From<HumanDuration> for Duration {
    fn from(text: HumanDuration) -> Duration {
        text.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> HumanDuration {
        HumanDuration(duration)
    }
}

/// A number of bytes, written as text with a unit: `"64KiB"`, `"512MiB"`, `"2GiB"`,
/// `"1.5GiB"`, `"500MB"`.
///
/// ```
/// use backstop_core::ByteSize;
///
/// let size: ByteSize = "2GiB".parse()?;
/// assert_eq!(size, ByteSize::gib(2));
/// assert_eq!(size.bytes(), 2 << 30);
/// assert_eq!(ByteSize::mib(1536).to_string(), "1536MiB");
/// assert!("2048".parse::<ByteSize>().is_err(), "a bare number has no unit");
/// # Ok::<(), backstop_core::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` bytes.
    pub const fn b(n: u64) -> ByteSize {
        ByteSize(n)
    }

    /// `n` KiB (saturating at `u64::MAX` bytes).
    pub const fn kib(n: u64) -> ByteSize {
        ByteSize(n.saturating_mul(1 << 10))
    }

    /// `n` MiB (saturating).
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n.saturating_mul(1 << 20))
    }

    /// `n` GiB (saturating).
    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n.saturating_mul(1 << 30))
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UnitError::SizeWithoutUnit {
                text: text.to_owned(),
            });
        }
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|size| ByteSize(size.as_u64()))
            .map_err(|reason| UnitError::Size {
                text: text.to_owned(),
                reason,
            })
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that holds the size exactly (`"2GiB"`, `"1536MiB"`), so
    /// that it parses back to the same number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
        for (i, unit) in UNITS.iter().enumerate() {
            let factor = 1u64 << (10 * (UNITS.len() - i));
            if self.0 != 0 && self.0 % factor == 0 {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Reads a value of `T` from text, for serde.
fn from_text<'de, D, T>(deserializer: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = UnitError>,
{
    struct Visitor<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = UnitError>> de::Visitor<'_> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            text.parse().map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Visitor(expecting, std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(
            deserializer,
            "a duration as text, e.g. \"250ms\", \"60s\", \"24h\"",
        )
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer, "a size as text, e.g. \"512MiB\", \"2GiB\"")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `#[serde(with = "crate::units::text")]` for a `Duration` field written as text.
pub(crate) mod text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HumanDuration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        HumanDuration(*d).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        HumanDuration::deserialize(d).map(Duration::from)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_exactly() {
        for bytes in [
            0,
            1,
            1023,
            1024,
            64 << 10,
            1536 << 20,
            2 << 30,
            5 << 40,
            u64::MAX,
        ] {
            let text = ByteSize(bytes).to_string();
            if bytes < 1024 || bytes == u64::MAX {
                assert_eq!(text, format!("{bytes}B"));
                continue;
            }
            assert_eq!(text.parse(), Ok(ByteSize(bytes)), "{text}");
        }
        assert_eq!(ByteSize::gib(2).to_string(), "2GiB");
        assert_eq!(ByteSize::mib(1536).to_string(), "1536MiB");
    }

    #[test]
    fn durations_round_trip_exactly() {
        for text in ["250ms", "1m", "1h 30m", "1day", "10us", "1s 5ns"] {
            let duration: HumanDuration = text.parse().unwrap();
            assert_eq!(duration.to_string().parse(), Ok(duration), "{text}");
        }
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        let missing = "2".parse::<ByteSize>().unwrap_err();
        assert!(matches!(missing, UnitError::SizeWithoutUnit { .. }));
        assert!(missing.to_string().contains("has no unit"));
        assert!(
            "2 parsecs"
                .parse::<ByteSize>()
                .unwrap_err()
                .to_string()
                .contains("2GiB")
        );
        let bad = "5 parsecs".parse::<HumanDuration>().unwrap_err();
        assert!(matches!(bad, UnitError::Duration { .. }));
        assert!(bad.to_string().contains("60s"));
        assert!("".parse::<HumanDuration>().is_err());
    }
}
