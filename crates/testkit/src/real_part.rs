//! Real parts (a redis-server, promtool, a browser) in tests: a test that needs one
//! starts it or uses the one CI started; when it cannot be had, the test fails under
//! `CI=true` (so CI never passes by skipping) and skips elsewhere, saying why and how to
//! get it.

/// Whether this run is CI's (`CI=true`, as `.ci/run` and most CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// The answer for a real part that cannot be had: `None`, after printing a `SKIPPED`
/// line naming `part`, `why` and `how` to get it.
///
/// # Panics
///
/// Under `CI=true`, with the same words: CI must run every test.
///
/// ```
/// // Outside CI, a missing part is a skip.
/// if !backstop_testkit::real_part::in_ci() {
///     let none: Option<()> = backstop_testkit::real_part::unavailable(
///         "frobnicator",
///         "not on PATH",
///         "apt-get install frobnicator",
///     );
///     assert!(none.is_none());
/// }
/// ```
pub fn unavailable<T>(part: &str, why: &str, how: &str) -> Option<T> {
    assert!(!in_ci(), "CI=true and no {part}: {why}");
    eprintln!("SKIPPED: no {part} ({why}); {how}");
    None
}
