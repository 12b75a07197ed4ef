//! `limits_toml`: [`Limits::from_toml_str`] on arbitrary text.
//!
//! - It never panics, whatever the bytes (non-UTF-8 input is read lossily, as a caller
//!   reading a damaged file would).
//! - A refusal is a [`ConfigError`](backstop_core::ConfigError) that names a field and
//!   gives a reason.
//! - What it accepts is valid ([`Limits::validate`]) and round-trips: serialised back
//!   to TOML and parsed again it gives the same limits.

use backstop_core::Limits;

use crate::{Violation, ensure};

/// Longest text tried: a limit on run time per input (real limit files are a few
/// hundred bytes).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The `limits_toml` check.
///
/// # Errors
///
/// A [`Violation`] for an unnamed error, an invalid result, or one that does not
/// round-trip.
pub fn check(data: &[u8]) -> Result<(), Violation> {
    if data.len() > MAX_TEXT_BYTES {
        return Ok(());
    }
    let text = String::from_utf8_lossy(data);
    let limits = match Limits::from_toml_str(&text) {
        Ok(limits) => limits,
        Err(e) => {
            ensure!(!e.field().is_empty(), "an error names no field: {e}");
            ensure!(!e.reason().is_empty(), "an error gives no reason: {e}");
            return Ok(());
        }
    };
    ensure!(
        limits.validate().is_ok(),
        "accepted limits fail validate: {limits:?}"
    );
    let written = toml::to_string(&limits).map_err(|e| {
        Violation::new(format!("accepted limits do not serialise: {e}: {limits:?}"))
    })?;
    let again = Limits::from_toml_str(&written)
        .map_err(|e| Violation::new(format!("written limits do not parse: {e}\n{written}")))?;
    ensure!(
        again == limits,
        "round trip changed the limits:\n{written}\n{limits:?}\n{again:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_texts_pass() {
        for text in [
            "",
            "shadow = true\n[rate]\nlimit = 3\n",
            "[queue]\nmax = 0\n",
            "[rate\n",
            "\u{0}\u{ff}",
        ] {
            check(text.as_bytes()).unwrap();
        }
    }
}
