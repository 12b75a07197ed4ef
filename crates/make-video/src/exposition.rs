//! The two formats `/metrics` speaks: OpenMetrics, which prometheus-client writes and
//! Prometheus asks for, and the classic Prometheus text format (0.0.4) for every other
//! reader (`curl | promtool check metrics`, older scrapers), chosen by the `Accept`
//! header as client_golang chooses.
//!
//! The classic format is derived from the OpenMetrics text rather than encoded a
//! second time, so both always hold the same samples. The two differ only in framing: a
//! counter's `# HELP`/`# TYPE` name the family (`backstop_admitted`) in OpenMetrics but
//! the sample (`backstop_admitted_total`) in the classic format, `# UNIT` and `# EOF`
//! exist only in OpenMetrics, and so do exemplars and `_created` samples.

/// The OpenMetrics content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format's content type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a request's `Accept` header asks for OpenMetrics (Prometheus's does, ranked
/// first); any other reader gets the classic format.
///
/// ```
/// use make_video::exposition::wants_openmetrics;
/// let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
///                   version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// assert!(wants_openmetrics(Some(prometheus)));
/// assert!(!wants_openmetrics(Some("*/*")));
/// assert!(!wants_openmetrics(None));
/// assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
/// ```
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// The classic text format of an OpenMetrics exposition.
///
/// ```
/// use make_video::exposition::to_text_format;
/// let openmetrics = "# HELP jobs Jobs started.\n# TYPE jobs counter\njobs_total 3\n\
///                    # HELP age Age.\n# TYPE age gauge\n# UNIT age seconds\nage 0.5\n# EOF\n";
/// assert_eq!(
///     to_text_format(openmetrics),
///     "# HELP jobs_total Jobs started.\n# TYPE jobs_total counter\njobs_total 3\n\
///      # HELP age Age.\n# TYPE age gauge\nage 0.5\n"
/// );
/// ```
pub fn to_text_format(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // A `# HELP` line waits for its family's `# TYPE`, which decides its name.
    let mut help: Option<(&str, &str)> = None;
    // The `_created` sample name of the counter being read.
    let mut created: Option<String> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            push_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), kind),
                "gauge" | "histogram" | "summary" => (family.to_owned(), kind),
                _ => (family.to_owned(), "untyped"),
            };
            push_help(&mut out, help.take(), Some((family, &name)));
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            created = (kind == "counter").then(|| format!("{family}_created"));
        } else if !line.starts_with('#') {
            push_help(&mut out, help.take(), None);
            // Exemplars (` # {...}`) and a counter's `_created` have no classic form.
            let sample = line.split(" # ").next().unwrap_or(line);
            if created.as_deref().is_some_and(|c| sample.starts_with(c)) {
                continue;
            }
            out.push_str(sample);
            out.push('\n');
        }
        // `# UNIT` and `# EOF` have no classic form either.
    }
    push_help(&mut out, help, None);
    out
}

/// Writes a waiting `# HELP` line, under `renamed.1` when it belongs to the family
/// `renamed.0` (a counter's HELP names its sample in the classic format).
fn push_help(out: &mut String, help: Option<(&str, &str)>, renamed: Option<(&str, &str)>) {
    let Some((name, text)) = help else { return };
    let name = match renamed {
        Some((family, to)) if family == name => to,
        _ => name,
    };
    out.push_str(&format!("# HELP {name} {text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_labels_pass_through_and_exemplars_and_created_go() {
        let openmetrics = "# HELP wait Wait.\n# TYPE wait histogram\n# UNIT wait seconds\n\
                           wait_sum 1.5\nwait_count 2\nwait_bucket{le=\"1.0\"} 1 # {id=\"a\"} 0.5\n\
                           wait_bucket{le=\"+Inf\"} 2\n\
                           # HELP refused Refused.\n# TYPE refused counter\n\
                           refused_total{reason=\"queue_full\"} 4\nrefused_created 1700000000.0\n# EOF\n";
        assert_eq!(
            to_text_format(openmetrics),
            "# HELP wait Wait.\n# TYPE wait histogram\nwait_sum 1.5\nwait_count 2\n\
             wait_bucket{le=\"1.0\"} 1\nwait_bucket{le=\"+Inf\"} 2\n\
             # HELP refused_total Refused.\n# TYPE refused_total counter\n\
             refused_total{reason=\"queue_full\"} 4\n"
        );
    }

    #[test]
    fn info_and_unknown_types_become_untyped() {
        let openmetrics = "# HELP build Build.\n# TYPE build info\nbuild_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            to_text_format(openmetrics),
            "# HELP build Build.\n# TYPE build untyped\nbuild_info{v=\"1\"} 1\n"
        );
    }
}
