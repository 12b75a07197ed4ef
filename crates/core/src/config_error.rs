use std::fmt;

/// A configuration value was rejected.
///
/// Names the field (as the user spelled it, e.g. `limit` or `rate.window`) and why, so
/// that an operator can fix the config without reading the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    /// A rejection of `field` because of `reason`.
    pub fn new(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The rejected field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
