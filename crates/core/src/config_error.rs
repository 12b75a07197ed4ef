use std::fmt;

/// A configuration value was rejected.
///
/// Names the field by its key path as the user spelled it (`rate.window`,
/// `resources.min_free_disk`), why, and, when it came from a file, the line and
/// column, so that an operator can fix the config without reading the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`{}: {reason}", Position(*.position))]
pub struct ConfigError {
    field: String,
    reason: String,
    position: Option<(usize, usize)>,
}

/// ` at line L, column C`, or nothing.
struct Position(Option<(usize, usize)>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, " at line {line}, column {column}"),
            None => Ok(()),
        }
    }
}

impl ConfigError {
    /// A rejection of `field` because of `reason`.
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.to_string(),
            position: None,
        }
    }

    /// The same rejection, placed at 1-based `line` and `column` of the source.
    #[must_use]
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.position = Some((line, column));
        self
    }

    /// The same rejection under another key path (e.g. prefixed by its section).
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// The same rejection for a field of `section`: `limit` under `rate` is `rate.limit`.
    #[must_use]
    pub fn under(self, section: &str) -> Self {
        let field = format!("{section}.{}", self.field);
        self.with_field(field)
    }

    /// The rejected field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The 1-based line of the rejected value in its source, if known.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|(line, _)| line)
    }

    /// The 1-based column of the rejected value in its source, if known.
    pub fn column(&self) -> Option<usize> {
        self.position.map(|(_, column)| column)
    }
}
