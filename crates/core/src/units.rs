//! Durations and sizes as people write them in a config file: `"60s"`, `"250ms"`,
//! `"24h"`, `"2GiB"`.
//!
//! Durations are read by [humantime](https://docs.rs/humantime) (`"1h 30m"`, `"2d"`,
//! `"10us"`), sizes by [bytesize](https://docs.rs/bytesize) (`"512MiB"`, `"2GiB"`,
//! `"1.5GiB"`, `"500MB"`; `KiB`/`MiB`/`GiB` are powers of 1024, `kB`/`MB`/`GB` of
//! 1000). Written back, a value reads the same way it parses.
//!
//! ```
//! use std::time::Duration;
//! use backstop_core::units::{parse_duration, parse_size};
//!
//! assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
//! assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
//! assert_eq!(parse_size("2GiB"), Ok(2 << 30));
//! assert!(parse_duration("60").unwrap_err().contains("unit"));
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// Parses a duration such as `"60s"`, `"250ms"`, `"1h 30m"` or `"24h"`.
///
/// # Errors
///
/// A sentence saying what is wrong, with an example of what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("not a duration: `{text}` ({e}); write e.g. \"250ms\", \"60s\", \"24h\"")
    })
}

/// Parses a size such as `"2GiB"`, `"512MiB"` or `"64KiB"` into bytes.
///
/// # Errors
///
/// A sentence saying what is wrong, with an example of what is accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    // bytesize reads a bare number as bytes; in a config a bare number is more likely a
    // forgotten unit, so one is required.
    if trimmed.is_empty() || trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "not a size: `{text}` has no unit; write e.g. \"64KiB\", \"512MiB\", \"2GiB\""
        ));
    }
    trimmed
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| {
            format!("not a size: `{text}` ({e}); write e.g. \"64KiB\", \"512MiB\", \"2GiB\"")
        })
}

/// Writes `bytes` in the largest binary unit that holds it exactly (`"2GiB"`, `"1536MiB"`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["EiB", "PiB", "TiB", "GiB", "MiB", "KiB"];
    for (i, unit) in UNITS.iter().enumerate() {
        let factor = 1u64 << (10 * (UNITS.len() - i));
        if bytes != 0 && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// A duration in a config file, written as text (`"60s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration as text, e.g. \"250ms\", \"60s\", \"24h\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse_duration(text).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

/// A size in a config file, written as text (`"2GiB"`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size as text, e.g. \"512MiB\", \"2GiB\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanSize, E> {
                parse_size(text).map(HumanSize).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl Serialize for HumanSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(self.0))
    }
}

/// One setting that may be spelled two ways: `key = "60s"` and its legacy alias
/// `key_ms = 60000`. Giving both is an error rather than a silent pick.
///
/// # Errors
///
/// A sentence naming both keys when both are given.
pub fn one_of<T>(
    human: Option<T>,
    legacy: Option<T>,
    key: &str,
    legacy_key: &str,
) -> Result<Option<T>, String> {
    match (human, legacy) {
        (Some(_), Some(_)) => Err(format!(
            "`{key}` and its legacy alias `{legacy_key}` are both given; keep one"
        )),
        (Some(v), None) | (None, Some(v)) => Ok(Some(v)),
        (None, None) => Ok(None),
    }
}

// Errors of the section conversions below start with the key in backticks: the TOML
// reader takes it as the key within the section being read (`toml_config`).

/// `duration` in whole milliseconds, for a field stored in milliseconds.
///
/// # Errors
///
/// A sentence naming `key` when the duration has a fraction of a millisecond or does
/// not fit.
pub fn whole_millis(duration: Duration, key: &str) -> Result<u64, String> {
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{key}` must be whole milliseconds, got {}",
            humantime::format_duration(duration)
        ));
    }
    u64::try_from(duration.as_millis()).map_err(|_| format!("`{key}` is too long"))
}

/// `bytes` in whole MiB, for a field stored in MiB.
///
/// # Errors
///
/// A sentence naming `key` when the size is not a whole number of MiB.
pub fn whole_mib(bytes: u64, key: &str) -> Result<u64, String> {
    const MIB: u64 = 1 << 20;
    if bytes % MIB != 0 {
        return Err(format!(
            "`{key}` must be a whole number of MiB, got {bytes} bytes"
        ));
    }
    Ok(bytes / MIB)
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
            let text = format_size(bytes);
            if bytes == 0 || bytes < 1024 || bytes == u64::MAX {
                assert_eq!(text, format!("{bytes}B"));
                continue;
            }
            assert_eq!(parse_size(&text), Ok(bytes), "{text}");
        }
        assert_eq!(format_size(2 << 30), "2GiB");
        assert_eq!(format_size(1536 << 20), "1536MiB");
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        assert!(parse_size("2").unwrap_err().contains("has no unit"));
        assert!(parse_size("2 parsecs").unwrap_err().contains("2GiB"));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("60s"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn legacy_and_human_spelling_together_is_an_error() {
        assert_eq!(one_of(Some(1), None, "a", "a_ms"), Ok(Some(1)));
        assert_eq!(one_of(None, Some(2), "a", "a_ms"), Ok(Some(2)));
        assert_eq!(one_of::<u8>(None, None, "a", "a_ms"), Ok(None));
        let e = one_of(Some(1), Some(2), "window", "window_ms").unwrap_err();
        assert!(e.contains("`window`") && e.contains("`window_ms`"), "{e}");
    }

    #[test]
    fn fractions_of_the_stored_unit_are_refused() {
        assert_eq!(whole_millis(Duration::from_secs(60), "w"), Ok(60_000));
        assert!(
            whole_millis(Duration::from_micros(1500), "w")
                .unwrap_err()
                .contains("whole milliseconds")
        );
        assert_eq!(whole_mib(2 << 30, "m"), Ok(2048));
        assert!(
            whole_mib(1000, "m")
                .unwrap_err()
                .contains("whole number of MiB")
        );
    }
}
