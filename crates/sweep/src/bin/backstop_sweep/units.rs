//! The flags' durations (`24h`) and sizes (`10GiB`), read with backstop-core's grammar:
//! the one its TOML configuration uses, so a value means the same on the command line
//! as in a config file.

use std::time::Duration;

use backstop_core::{ByteSize, HumanDuration, UnitError};

/// `90s`, `30m`, `24h`, `2d`, `1w`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    text.parse::<HumanDuration>().map(Duration::from)
}

/// `10GiB` (powers of 1024), `500MB` (of 1000), `1.5GiB`, `4096B`.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    text.parse::<ByteSize>().map(ByteSize::bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use backstop_core::Limits;
    use clap::Parser;

    use crate::Args;

    /// One table, two readers: each value as a TOML config writes it (backstop-core's
    /// `Limits`) and as the sweep's flag, with the same outcome from both.
    #[test]
    fn the_flags_read_durations_and_sizes_as_the_toml_config_does() {
        let secs = Duration::from_secs;
        let durations: &[(&str, Option<Duration>)] = &[
            ("24h", Some(secs(86_400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("90s", Some(secs(90))),
            ("1h 30m", Some(secs(5_400))),
            ("2d", Some(secs(172_800))),
            ("1w", Some(secs(604_800))),
            ("24", None),
            ("", None),
            ("soon", None),
            ("-3s", None),
            ("1.5h", Some(secs(5_400))),
            ("5 parsecs", None),
        ];
        for (text, want) in durations {
            let toml = Limits::from_toml_str(&format!("[rate]\nwindow = \"{text}\"\n"))
                .map(|limits| limits.rate.window)
                .ok();
            let flag = Args::try_parse_from(["backstop-sweep", "/x", "--older-than", text])
                .map(|args| args.older_than)
                .ok();
            assert_eq!((toml, flag), (*want, *want), "{text:?}");
        }
        let sizes: &[(&str, Option<u64>)] = &[
            ("2GiB", Some(2 << 30)),
            ("10GiB", Some(10 << 30)),
            ("1.5GiB", Some(3 << 29)),
            ("500MB", Some(500_000_000)),
            ("64KiB", Some(64 << 10)),
            ("4096B", Some(4096)),
            ("4096", None),
            ("", None),
            ("GiB", None),
            ("3 parsecs", None),
            ("-1GiB", None),
        ];
        for (text, want) in sizes {
            let toml = Limits::from_toml_str(&format!(
                "[resources]\nmin_free_disk = \"{text}\"\ndisk_margin = \"0B\"\n"
            ))
            .map(|limits| limits.resources.min_free_disk.bytes())
            .ok();
            let flag = Args::try_parse_from(["backstop-sweep", "/x", "--byte-goal", text])
                .map(|args| args.byte_goal)
                .ok()
                .flatten();
            assert_eq!((toml, flag), (*want, *want), "{text:?}");
        }
    }
}
