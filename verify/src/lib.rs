//! The property checks behind backstop's fuzz targets.
//!
//! Each module holds one target's check: a function from arbitrary bytes to
//! `Ok(())` or a [`Violation`] naming what went wrong. The same function runs
//!
//! - under cargo-fuzz and libFuzzer with AddressSanitizer (nightly), from `fuzz/`, where a
//!   violation becomes a panic and so a crash artifact;
//! - over the committed corpus `fuzz/corpus/<target>/` as ordinary `#[test]`s on stable
//!   (`tests/corpus_replay.rs`), so a regression is caught without nightly.
//!
//! Checks compare the code under test with a model simple enough to be obviously right
//! (a `VecDeque` of admission times, plain counters, a set of paths) or, for parsers,
//! check that nothing panics and that what is accepted round-trips. A panic inside the
//! code under test is a finding too: the fuzzer reports it as a crash, the replay as a
//! failed test naming the input file.
//!
//! See `VERIFICATION.md` at the repository root for what each target covers and how to
//! run it.

use std::fmt;

pub mod admission;
pub mod input;
pub mod keyed_window;
pub mod limits_toml;
pub mod sliding_window;
pub mod sweep_tree;
pub mod trace_line;

/// A target's check: arbitrary bytes in, a property verdict out.
pub type Check = fn(&[u8]) -> Result<(), Violation>;

/// Every fuzz target, by the name of its corpus directory, with its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("sliding_window", sliding_window::check),
    ("admission", admission::check),
    ("keyed_window", keyed_window::check),
    ("limits_toml", limits_toml::check),
    ("sweep_tree", sweep_tree::check),
    ("trace_line", trace_line::check),
];

/// A property that failed: the code under test disagreed with its model or its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    message: String,
}

impl Violation {
    /// A violation described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Violation {}

/// Returns a [`Violation`] from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Violation::new(format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;
