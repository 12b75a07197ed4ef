//! `promtool`: Prometheus's parsers and linters, run on a text a test produced.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::real_part;

/// The `promtool` binary on `PATH`.
#[derive(Debug, Clone, Copy)]
pub struct Promtool(());

impl Promtool {
    /// `promtool` if it runs; `None` (after printing why) outside CI when it does not.
    ///
    /// # Panics
    ///
    /// Under `CI=true` when it does not run.
    pub fn find() -> Option<Promtool> {
        let found = Command::new("promtool")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Some(Promtool(()));
        }
        real_part::unavailable(
            "promtool",
            "not installed (.ci/promtool.sh installs it in CI)",
            "apt-get install prometheus",
        )
    }

    /// `promtool check metrics` on `text`: the classic text format's parser (the one
    /// node_exporter's textfile collector uses) and Prometheus's naming linter. Its exit
    /// status (0 clean, 1 unparsable, 3 lint remarks) and everything it printed.
    ///
    /// # Panics
    ///
    /// When promtool cannot be run.
    pub fn check_metrics(self, text: &str) -> (Option<i32>, String) {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        if let Some(mut stdin) = child.stdin.take() {
            // promtool may stop reading at a parse error: a broken pipe is its answer.
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().expect("wait for promtool");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    }

    /// Reads `text` with Prometheus's own OpenMetrics parser and returns every sample it
    /// stored, as `name{label="value",...}` → value, or what promtool said when it could
    /// not parse it.
    ///
    /// `promtool tsdb create-blocks-from openmetrics` parses an OpenMetrics exposition
    /// (it fails on a malformed one) into a TSDB block, and `promtool tsdb dump` prints
    /// what was stored. The importer wants a timestamp on every sample, so one is
    /// appended; nothing else in the text is touched.
    ///
    /// # Panics
    ///
    /// When promtool cannot be run or a temporary directory cannot be made.
    pub fn parse_openmetrics(self, text: &str) -> Result<BTreeMap<String, f64>, String> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let stamped: String = text
            .lines()
            .map(|line| {
                if line.starts_with('#') {
                    format!("{line}\n")
                } else {
                    format!("{line} 1700000000\n")
                }
            })
            .collect();
        let input = dir.path().join("scrape.txt");
        std::fs::write(&input, stamped).expect("write the scrape");
        let blocks = dir.path().join("blocks");
        let import = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&blocks)
            .output()
            .expect("run promtool");
        if !import.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&import.stdout),
                String::from_utf8_lossy(&import.stderr)
            ));
        }
        // `dump` opens the directory as a TSDB, which has a write-ahead log.
        std::fs::create_dir_all(blocks.join("wal")).expect("make the wal directory");
        let dump = Command::new("promtool")
            .args(["tsdb", "dump"])
            .arg(&blocks)
            .output()
            .expect("run promtool");
        if !dump.status.success() {
            return Err(String::from_utf8_lossy(&dump.stderr).into_owned());
        }
        String::from_utf8_lossy(&dump.stdout)
            .lines()
            .map(dumped_sample)
            .collect()
    }
}

/// One line of `promtool tsdb dump`, `{__name__="x_total", reason="queue_full"} 0
/// 1700000000000`, as (`x_total{reason="queue_full"}`, 0).
fn dumped_sample(line: &str) -> Result<(String, f64), String> {
    let (series, rest) = line.rsplit_once("} ").ok_or_else(|| line.to_owned())?;
    let value: f64 = rest
        .split(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| line.to_owned())?;
    let mut name = String::new();
    let mut labels = Vec::new();
    for pair in series.trim_start_matches('{').split(", ") {
        match pair.strip_prefix("__name__=") {
            Some(n) => name = n.trim_matches('"').to_owned(),
            None => labels.push(pair.to_owned()),
        }
    }
    let key = if labels.is_empty() {
        name
    } else {
        format!("{name}{{{}}}", labels.join(","))
    };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_read_as_series_and_values() {
        assert_eq!(
            dumped_sample(r#"{__name__="x_total", reason="queue_full"} 3 1700000000000"#),
            Ok(("x_total{reason=\"queue_full\"}".to_owned(), 3.0))
        );
        assert_eq!(
            dumped_sample(r#"{__name__="up"} 1 1700000000000"#),
            Ok(("up".to_owned(), 1.0))
        );
        assert!(dumped_sample("garbage").is_err());
    }

    /// promtool must say no to broken input, or a test that it passes proves nothing.
    #[test]
    fn promtool_refuses_broken_text_in_both_formats() {
        let Some(promtool) = Promtool::find() else {
            return;
        };
        let broken = "# HELP x x\n# TYPE x counter\nx_total one\n# EOF\n";
        assert!(promtool.parse_openmetrics(broken).is_err());
        let no_eof = "# HELP x x\n# TYPE x counter\nx_total 1\n";
        assert!(promtool.parse_openmetrics(no_eof).is_err());
        let good = "# HELP x x\n# TYPE x counter\nx_total{a=\"b\"} 7\n# EOF\n";
        assert_eq!(
            promtool.parse_openmetrics(good).unwrap()["x_total{a=\"b\"}"],
            7.0
        );

        let (status, said) =
            promtool.check_metrics("# HELP x_total x\n# TYPE x_total counter\nx_total one\n");
        assert_eq!(status, Some(1), "{said}");
        assert!(said.contains("parsing error"), "{said}");
        let (status, said) = promtool.check_metrics("# HELP x x\n# TYPE x counter\nx 1\n");
        assert_eq!(status, Some(3), "a counter without _total: {said}");
        let (status, said) =
            promtool.check_metrics("# HELP x_total x\n# TYPE x_total counter\nx_total 1\n");
        assert_eq!((status, said.as_str()), (Some(0), ""));
    }
}
