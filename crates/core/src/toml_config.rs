//! Reading a configuration from TOML so that every error names the key path, the line
//! and the column: `invalid `rate.window` at line 3, column 10: ...`.
//!
//! serde_path_to_error follows the key path while serde deserializes; toml gives the
//! span of the value (or key) that failed. A value that parses but fails a later
//! `validate()` is placed with [`locate`], which finds its key in the document.
//!
//! ```
//! use backstop_core::{Limits, toml_config};
//!
//! let text = "[rate]\nlimit = 10\nwindow = \"sixty\"\n";
//! let err = toml_config::from_toml_str::<Limits>(text).unwrap_err();
//! assert_eq!(err.field(), "rate.window");
//! assert_eq!((err.line(), err.column()), (Some(3), Some(10)));
//! ```

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::ConfigError;

/// The field named for a document that is not TOML at all.
pub const SYNTAX: &str = "(TOML syntax)";

/// Deserializes `T` from TOML text.
///
/// # Errors
///
/// A [`ConfigError`] with the key path (`section.key`), the line and column and the
/// reason, for malformed TOML, an unknown key, or a value of the wrong type or form.
/// For malformed TOML, where there is no key path yet, the field is [`SYNTAX`] and the
/// reason quotes the offending line.
pub fn from_toml_str<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_owned();
        let field = if path == "." { String::new() } else { path };
        let span = inner.span();
        let field = if field.is_empty() {
            "(root)".to_owned()
        } else {
            field
        };
        // A section's own check (`units::one_of`, `units::whole_millis`, ...) fails for
        // the section, with the key it means first in backticks; both spellings of one
        // setting name the legacy one, the key to remove. Point at that key.
        let named = message
            .split_once("legacy alias `")
            .map(|(_, rest)| rest)
            .or_else(|| message.strip_prefix('`'))
            .and_then(|rest| rest.split_once('`'))
            .map(|(key, _)| key);
        if let Some(key) = named {
            let field = if field == "(root)" {
                key.to_owned()
            } else {
                format!("{field}.{key}")
            };
            return locate(ConfigError::new(field, message), text);
        }
        let error = ConfigError::new(field, message);
        match span {
            Some(span) => place(error, text, span.start),
            None => error,
        }
    })
}

/// Places an error from `validate()` at its key in `text`: the line and column of the
/// key, and the key path as spelled there. A key with a legacy alias (`window` /
/// `window_ms`, `min_free_disk` / `min_free_disk_mib`) is found under either spelling.
/// An error whose key is not in the text (a default broke a rule) comes back as is.
pub fn locate(error: ConfigError, text: &str) -> ConfigError {
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
    for candidate in spellings(last) {
        if let Some((key, _)) = table.iter().find(|(k, _)| k.get_ref() == &candidate) {
            let mut field = sections.join(".");
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&candidate);
            let start = key.span().start;
            return place(error.with_field(field), text, start);
        }
    }
    error
}

/// `key` and its other spelling: `window_ms` ↔ `window`, `min_free_disk_mib` ↔
/// `min_free_disk`.
fn spellings(key: &str) -> Vec<String> {
    const LEGACY_SUFFIXES: [&str; 4] = ["_ms", "_mib", "_secs", "_bytes"];
    let mut out = vec![key.to_owned()];
    match LEGACY_SUFFIXES.iter().find_map(|s| key.strip_suffix(s)) {
        Some(human) => out.push(human.to_owned()),
        None => out.extend(LEGACY_SUFFIXES.iter().map(|s| format!("{key}{s}"))),
    }
    out
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

    #[test]
    fn both_spellings_are_tried() {
        assert_eq!(spellings("window_ms"), ["window_ms", "window"]);
        assert!(spellings("window").contains(&"window_ms".to_owned()));
    }
}
