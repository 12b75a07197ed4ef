//! [`SweepTotals`] as a node_exporter textfile: the Prometheus text format (0.0.4) that
//! node_exporter's textfile collector reads from `*.prom` files, written atomically, and
//! read back so that a command run by a timer keeps its counters across runs.
//!
//! A one-shot run cannot be scraped, so its numbers go to a file that node_exporter
//! serves. Counters only make sense if they only grow: each run reads the previous
//! file, adds its own run and writes the sum. The file is written to a temporary file
//! in the same directory and renamed over the old one, so a scrape sees the old file or
//! the new one, never half of either (node_exporter skips names not ending in `.prom`,
//! such as the temporary one).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::{DURATION_BUCKETS_SECONDS, Family, Samples, SweepTotals};

/// Every family name in a textfile starts with this: a file with other names was not
/// written by a sweep, and is refused rather than overwritten.
const PREFIX: &str = "backstop_sweep_";

/// A textfile could not be read back or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextfileError {
    /// The path does not end in `.prom`: node_exporter would never read it.
    #[error("metrics textfile {}: the name must end in .prom (node_exporter reads only those)", path.display())]
    NotProm {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but is not one a sweep wrote; it is left alone.
    #[error("metrics textfile {}: line {line}: {reason}; not a file backstop-sweep wrote, so it is left alone (remove it or choose another path)", path.display())]
    Foreign {
        /// The path as given.
        path: PathBuf,
        /// The first line that does not fit, 1-based.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing or renaming failed.
    #[error("metrics textfile {}: {source}", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TextfileError + '_ {
    move |source| TextfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A float as the text format reads it (`+Inf`, never Rust's `inf`).
fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        // `{:?}` keeps a decimal point (`60.0`), as prometheus-client writes bucket
        // bounds, so both exporters name the same buckets alike.
        format!("{v:?}")
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Every sample of `family` as `(series, value)`, named and written as the text format
/// names and writes them (counts as integers).
fn samples(family: &Family) -> (String, &'static str, Vec<(String, String)>) {
    let base = family.full_name();
    match &family.samples {
        Samples::Counters(values) => {
            let name = format!("{base}_total");
            let lines = values
                .iter()
                .map(|(label, v)| {
                    let labels: Vec<(&str, &str)> = family.label.zip(*label).into_iter().collect();
                    (series(&name, &labels), v.to_string())
                })
                .collect();
            (name, "counter", lines)
        }
        Samples::Gauge(v) => (base.clone(), "gauge", vec![(base, number(*v))]),
        Samples::Histogram { buckets, sum } => {
            let bucket = format!("{base}_bucket");
            let mut cumulative = 0;
            let mut lines: Vec<(String, String)> = buckets
                .iter()
                .map(|(upper, n)| {
                    cumulative += n;
                    let le = number(*upper);
                    (series(&bucket, &[("le", &le)]), cumulative.to_string())
                })
                .collect();
            lines.push((format!("{base}_sum"), number(*sum)));
            lines.push((format!("{base}_count"), cumulative.to_string()));
            (base, "histogram", lines)
        }
    }
}

impl SweepTotals {
    /// These totals in the Prometheus text format, as node_exporter's textfile collector
    /// reads them (no timestamps, no `# EOF`).
    pub fn to_textfile(&self) -> String {
        let mut text = String::with_capacity(4096);
        for family in self.families() {
            let (name, kind, lines) = samples(&family);
            // Writing to a String cannot fail.
            let _ = writeln!(text, "# HELP {name} {}", family.help);
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for (series, value) in lines {
                let _ = writeln!(text, "{series} {value}");
            }
        }
        text
    }

    /// Reads back a textfile [`to_textfile`](Self::to_textfile) wrote. Families it
    /// does not hold stay at zero (or unknown), so a file from a version with fewer
    /// families still reads.
    ///
    /// # Errors
    /// A line that is not a sample of a `backstop_sweep_*` family, as `(line, reason)`.
    pub fn from_textfile(text: &str) -> Result<SweepTotals, (usize, String)> {
        let mut values: HashMap<&str, f64> = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: String| (index + 1, reason);
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| fail(format!("{line:?} is not `name value`")))?;
            if !series.starts_with(PREFIX) {
                return Err(fail(format!("{series:?} is not a {PREFIX}* series")));
            }
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .map_err(|_| fail(format!("{value:?} is not a number")))?,
            };
            values.insert(series, value);
        }
        let mut totals = SweepTotals::default();
        totals.fill_from(&values);
        Ok(totals)
    }

    /// Takes every value `values` holds under the series names this version writes.
    fn fill_from(&mut self, values: &HashMap<&str, f64>) {
        let template = SweepTotals {
            last_success_unix_seconds: Some(0.0),
            start_unix_seconds: Some(0.0),
            interval_seconds: Some(0.0),
            ..SweepTotals::default()
        };
        for family in template.families() {
            let (_, _, lines) = samples(&family);
            let found: Vec<Option<f64>> = lines
                .iter()
                .map(|(series, _)| values.get(series.as_str()).copied())
                .collect();
            self.set_family(family.name, &found);
        }
    }

    /// Sets the family `name` from its samples in text-format order (`None`: absent).
    fn set_family(&mut self, name: &str, found: &[Option<f64>]) {
        let count = |v: &Option<f64>| v.map_or(0, |v| v as u64);
        let counts = |into: &mut [u64]| {
            for (slot, v) in into.iter_mut().zip(found) {
                *slot = count(v);
            }
        };
        match name {
            "backstop_sweep_runs" => counts(&mut self.runs),
            "backstop_sweep_removed" => counts(&mut self.removed),
            "backstop_sweep_freed" => self.bytes_freed = found.first().map_or(0, count),
            "backstop_sweep_skipped" => counts(&mut self.skipped),
            "backstop_sweep_entry_errors" => counts(&mut self.errors),
            "backstop_sweep_duration" => {
                // Cumulative buckets back to per-bucket counts; then `_sum`.
                let mut below = 0;
                for (slot, v) in self.duration_buckets.iter_mut().zip(found) {
                    let cumulative = count(v).max(below);
                    *slot = cumulative - below;
                    below = cumulative;
                }
                let sum_at = DURATION_BUCKETS_SECONDS.len() + 1;
                self.duration_sum_seconds = found.get(sum_at).copied().flatten().unwrap_or(0.0);
            }
            "backstop_sweep_last_success_timestamp" => {
                self.last_success_unix_seconds = found.first().copied().flatten();
            }
            "backstop_sweep_schedule_start_timestamp" => {
                self.start_unix_seconds = found.first().copied().flatten();
            }
            "backstop_sweep_interval" => self.interval_seconds = found.first().copied().flatten(),
            _ => {}
        }
    }

    /// Reads the textfile at `path`: `None` when there is none yet.
    ///
    /// # Errors
    /// [`TextfileError::NotProm`] for a name node_exporter would not read,
    /// [`TextfileError::Foreign`] for a file a sweep did not write (it must not be
    /// overwritten), [`TextfileError::Io`] when it cannot be read.
    pub fn read_textfile(path: &Path) -> Result<Option<SweepTotals>, TextfileError> {
        if path.extension().is_none_or(|e| e != "prom") {
            return Err(TextfileError::NotProm {
                path: path.to_path_buf(),
            });
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // No file yet is normal; no directory to write it in is not.
                return match std::fs::metadata(directory(path)) {
                    Ok(meta) if meta.is_dir() => Ok(None),
                    Ok(_) => Err(io_error(path)(std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "its parent is not a directory",
                    ))),
                    Err(e) => Err(io_error(path)(std::io::Error::new(
                        e.kind(),
                        format!("its directory cannot be used: {e}"),
                    ))),
                };
            }
            Err(e) => return Err(io_error(path)(e)),
        };
        SweepTotals::from_textfile(&text)
            .map(Some)
            .map_err(|(line, reason)| TextfileError::Foreign {
                path: path.to_path_buf(),
                line,
                reason,
            })
    }

    /// Writes these totals to `path` atomically: into a temporary file in the same
    /// directory (readable by all, since node_exporter runs as another user), synced,
    /// renamed over `path`, and the directory synced. A failure leaves the old file as
    /// it was.
    ///
    /// # Errors
    /// [`TextfileError::NotProm`] or [`TextfileError::Io`].
    pub fn write_textfile(&self, path: &Path) -> Result<(), TextfileError> {
        use std::os::unix::fs::PermissionsExt;
        if path.extension().is_none_or(|e| e != "prom") {
            return Err(TextfileError::NotProm {
                path: path.to_path_buf(),
            });
        }
        let dir = directory(path);
        let fail = io_error(path);
        let mut temp = tempfile::Builder::new()
            .prefix(".backstop-sweep-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io_error(path))?;
        let written = temp
            .write_all(self.to_textfile().as_bytes())
            .and_then(|()| {
                temp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .and_then(|()| temp.as_file().sync_all());
        if let Err(e) = written {
            return Err(fail(e));
        }
        temp.persist(path).map_err(|e| io_error(path)(e.error))?;
        // The rename is durable once the directory is synced; a failure here leaves
        // the new file in place, which is still correct to read.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(path))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Sweep;

    fn sample_totals() -> SweepTotals {
        let dir = tempfile::tempdir().unwrap();
        let mut totals = SweepTotals::default();
        let mut report = Sweep::new(dir.path()).run().unwrap();
        report.files_removed = 4;
        report.dirs_removed = 1;
        report.bytes_freed = 1 << 20;
        report.skipped.locked = 2;
        report.errors.busy = 1;
        report.elapsed_us = 1_500_000;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        totals.record(&Ok(report), at);
        totals.record(
            &Err(crate::SweepError::RootNotDirectory { path: "/x".into() }),
            at,
        );
        totals.set_schedule(at - Duration::from_secs(60), Duration::from_secs(6 * 3600));
        totals
    }

    #[test]
    fn the_text_reads_back_as_the_same_totals() {
        let totals = sample_totals();
        let text = totals.to_textfile();
        assert!(
            text.contains("# TYPE backstop_sweep_freed_bytes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("backstop_sweep_freed_bytes_total 1048576\n"),
            "{text}"
        );
        assert!(
            text.contains("backstop_sweep_duration_seconds_bucket{le=\"1.0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("backstop_sweep_duration_seconds_bucket{le=\"5.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("backstop_sweep_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("backstop_sweep_last_success_timestamp_seconds 1700000123.0\n"));
        assert_eq!(SweepTotals::from_textfile(&text), Ok(totals));
    }

    #[test]
    fn an_empty_file_reads_as_nothing_yet_and_a_foreign_one_is_refused() {
        assert_eq!(SweepTotals::from_textfile(""), Ok(SweepTotals::default()));
        let foreign = SweepTotals::from_textfile("# TYPE x gauge\nnode_load1 0.5\n");
        assert_eq!(foreign.unwrap_err().0, 2);
        let garbage =
            SweepTotals::from_textfile("backstop_sweep_runs_total{outcome=\"clean\"} many\n");
        assert!(garbage.unwrap_err().1.contains("not a number"));
    }

    #[test]
    fn writing_replaces_the_file_whole_and_leaves_no_temporary_behind() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backstop_sweep.prom");
        assert_eq!(SweepTotals::read_textfile(&path).unwrap(), None);
        let totals = sample_totals();
        totals.write_textfile(&path).unwrap();
        totals.write_textfile(&path).unwrap();
        assert_eq!(SweepTotals::read_textfile(&path).unwrap(), Some(totals));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["backstop_sweep.prom"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "node_exporter, another user, reads it");

        let not_prom = dir.path().join("backstop_sweep.txt");
        assert!(matches!(
            SweepTotals::default().write_textfile(&not_prom),
            Err(TextfileError::NotProm { .. })
        ));
        std::fs::write(&not_prom, "x").unwrap();
        let foreign = dir.path().join("node.prom");
        std::fs::write(&foreign, "node_load1 1\n").unwrap();
        let err = SweepTotals::read_textfile(&foreign).unwrap_err();
        assert!(err.to_string().contains("left alone"), "{err}");
    }

    #[test]
    fn a_write_into_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("backstop_sweep.prom");
        let err = SweepTotals::read_textfile(&path).unwrap_err();
        assert!(err.to_string().contains("missing-dir"), "{err}");
        let err = sample_totals().write_textfile(&path).unwrap_err();
        assert!(matches!(err, TextfileError::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing-dir"), "{err}");
    }

    /// A reader that opens the file while it is being replaced again and again sees a
    /// whole file every time: the old one or the new one.
    #[test]
    fn a_reader_never_sees_half_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backstop_sweep.prom");
        let mut totals = sample_totals();
        totals.write_textfile(&path).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let read = SweepTotals::from_textfile(&text).unwrap();
                    assert!(text.ends_with('\n'), "{text}");
                    assert!(
                        read.interval_seconds.is_some(),
                        "the last family is missing:\n{text}"
                    );
                    reads += 1;
                }
                reads
            });
            for i in 0..300u64 {
                // Growing numbers make each file longer than the one before.
                totals.bytes_freed = 10u64.pow((i % 19) as u32);
                totals.write_textfile(&path).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(reader.join().unwrap() > 0);
        });
    }
}
