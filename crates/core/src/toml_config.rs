//! Reading a configuration from TOML so that every error names the key path, the line
//! and the column: `invalid `rate.window` at line 3, column 10: ...`.
//!
//! serde_path_to_error follows the key path while serde deserializes; toml gives the
//! span of the value (or key) that failed. A value that parses but fails the
//! configuration's own check is placed with [`locate`], which finds its key in the
//! document.

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::ConfigError;

/// The field named for a document that is not TOML at all.
pub(crate) const SYNTAX: &str = "(TOML syntax)";

/// Parses TOML text into `T` (a service's configuration, [`Limits`](crate::Limits) or one that holds
/// it), then runs `check` on it (the checks serde cannot make: ranges, relations between
/// fields). Missing fields take whatever defaults `T` gives them; unknown fields are
/// errors when `T` denies them.
///
/// ```
/// use backstop_core::{ConfigError, Limits, parse_toml};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Service {
///     workers: u32,
///     limits: Limits,
/// }
///
/// fn check(service: &Service) -> Result<(), ConfigError> {
///     service.limits.validate().map_err(|e| e.under("limits"))
/// }
///
/// let text = "workers = 4\n[limits.rate]\nlimit = 0\n";
/// let err = parse_toml::<Service>(text, check).err().unwrap();
/// assert_eq!(err.to_string(), "invalid `limits.rate.limit` at line 3, column 1: must be 1 to 16777216, got 0");
///
/// let err = parse_toml::<Service>("workers = \"four\"\n", check).err().unwrap();
/// assert_eq!((err.field(), err.line(), err.column()), ("workers", Some(1), Some(11)));
/// ```
///
/// # Errors
///
/// A [`ConfigError`] with the key path (`section.key`), the line and column and the
/// reason: for malformed TOML (the field is `(TOML syntax)` and the reason quotes the
/// offending line), an unknown key, a value of the wrong type or form, or a value
/// `check` refuses (placed at its key when the key is in the text).
pub fn parse_toml<T: DeserializeOwned>(
    text: &str,
    check: impl FnOnce(&T) -> Result<(), ConfigError>,
) -> Result<T, ConfigError> {
    let value = deserialize(text)?;
    check(&value).map_err(|e| locate(e, text))?;
    Ok(value)
}

/// Deserializes `T` from TOML text, errors placed as in [`parse_toml`].
fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            "(root)".to_owned()
        } else {
            path
        };
        let error = ConfigError::new(field, inner.message().trim());
        match inner.span() {
            Some(span) => place(error, text, span.start),
            None => error,
        }
    })
}

/// Places an error from a check at its key in `text`: the line and column of the key.
/// An error whose key is not in the text (a default broke a rule) comes back as is.
fn locate(error: ConfigError, text: &str) -> ConfigError {
    if error.line().is_some() {
        return error;
    }
    let Ok(root) = DeTable::parse(text) else {
        return error;
    };
    let parts: Vec<&str> = error.field().split('.').collect();
    let Some((last, sections)) = parts.split_last() else {
        return error;
    };
    let mut table = root.get_ref();
    for section in sections {
        let Some(DeValue::Table(next)) = table
            .iter()
            .find(|(k, _)| k.get_ref() == section)
            .map(|(_, v)| v.get_ref())
        else {
            return error;
        };
        table = next;
    }
    match table.iter().find(|(k, _)| k.get_ref() == last) {
        Some((key, _)) => place(error, text, key.span().start),
        None => error,
    }
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return ConfigError::new(SYNTAX, message);
    };
    let (line, _) = line_column(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
    place(
        ConfigError::new(SYNTAX, format_args!("{message}, in `{source_line}`")),
        text,
        span.start,
    )
}

fn place(error: ConfigError, text: &str, offset: usize) -> ConfigError {
    let (line, column) = line_column(text, offset);
    error.at(line, column)
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("a\nbé = 1", 7), (2, 5));
        assert_eq!(line_column("x", 0), (1, 1));
        assert_eq!(line_column("x", 99), (1, 2));
    }
}
