//! Each sweep is one `sweep` span, closed with its counts; a sweep that cannot start
//! says why at `warn`.

mod common;

use backstop_sweep::Sweep;
use backstop_testkit::capture::Captured;
use common::{DAY, file, now, old, young};
use tracing_subscriber::fmt::format::FmtSpan;

fn traced<T>(f: impl FnOnce() -> T) -> (T, String) {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(out.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = out.text();
    (result, text)
}

#[test]
fn a_sweep_is_one_span_closed_with_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tmp");
    for name in ["a", "b", "c"] {
        file(&root.join(name), 100, old());
    }
    file(&root.join("fresh"), 100, young());
    let (report, text) = traced(|| Sweep::new(&root).now(now()).older_than(DAY).run().unwrap());
    assert_eq!(report.files_removed, 3);
    let closes: Vec<&str> = text.lines().filter(|l| l.contains(" close ")).collect();
    assert_eq!(closes.len(), 1, "{text}");
    let close = closes[0];
    assert!(close.contains("sweep{"), "{close}");
    assert!(
        close.contains(&format!("root={}", root.display())),
        "{close}"
    );
    assert!(close.contains("dry_run=false"), "{close}");
    assert!(close.contains("files_removed=3"), "{close}");
    assert!(close.contains("bytes_freed="), "{close}");
    assert!(close.contains("errors=0"), "{close}");
}

#[test]
fn a_sweep_that_cannot_start_is_a_warning_in_its_span() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (result, text) = traced(|| Sweep::new(&missing).run());
    assert!(result.is_err());
    let warning = text
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in:\n{text}"));
    assert!(warning.contains("sweep{"), "{warning}");
    assert!(warning.contains("sweep could not start"), "{warning}");
}
