//! Every committed fuzz corpus, replayed on stable: each file of `fuzz/corpus/<target>/`
//! through the same check the fuzz target runs. A failure names the file, so it can be
//! rerun under the fuzzer with `cargo fuzz run <target> <file>`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use backstop_verify::TARGETS;

/// The corpus files of `target`, sorted for a stable order.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    let files = corpus(target);
    assert!(!files.is_empty(), "the {target} corpus is empty");
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("a readable corpus file");
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => failures.push(format!("{}: {violation}", path.display())),
            Err(_) => failures.push(format!("{}: panicked (message above)", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The names of the files in `dir` with the extension stripped, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            path.file_stem()
                .expect("a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Every cargo-fuzz target has a check here and a corpus directory, and nothing else
/// does: a target added on one side only fails here instead of going unreplayed.
#[test]
fn every_fuzz_target_has_a_check_and_a_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut checked: Vec<String> = TARGETS.iter().map(|(name, _)| (*name).to_owned()).collect();
    checked.sort();
    assert_eq!(names_in(&fuzz.join("fuzz_targets")), checked);
    assert_eq!(names_in(&fuzz.join("corpus")), checked);
}

#[test]
fn sliding_window_corpus() {
    replay("sliding_window");
}

#[test]
fn admission_corpus() {
    replay("admission");
}

#[test]
fn limits_toml_corpus() {
    replay("limits_toml");
}

#[test]
fn sweep_tree_corpus() {
    replay("sweep_tree");
}

#[test]
fn keyed_window_corpus() {
    replay("keyed_window");
}

#[test]
fn trace_line_corpus() {
    replay("trace_line");
}
