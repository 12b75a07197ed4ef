//! The HTML report: one self-contained page (the report's tables, the three charts inline
//! as SVG, the run's configuration) that opens offline in any browser.
//!
//! The page holds only the deterministic part of the report, so the same seed, config and
//! trace give the same bytes; the wall-clock figures stay in the terminal report and
//! `--report-json`. It loads nothing: no script, no font, no image, and a
//! Content-Security-Policy of `default-src 'none'` so that a browser would refuse (and
//! log) anything that tried.

use std::fmt::Write as _;

use crate::charts::Charts;
use crate::report::{Report, SimSection, fmt_bytes, fmt_us};

/// The stylesheet, inline: system fonts, a readable measure, tables and figures that
/// shrink with the window.
const STYLE: &str = "\
body{margin:0;background:#f6f7f9;color:#1f2328;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 20px 40px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px}
.sub{color:#57606a;margin:0 0 16px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:0 0 8px}
.ok{background:#dafbe1;border:1px solid #4ac26b;color:#116329}
.bad{background:#ffebe9;border:1px solid #ff8182;color:#82071e}
.tables{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;align-items:start}
table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;width:100%}
caption{text-align:left;font-weight:600;padding:0 0 6px}
th,td{padding:5px 12px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
thead th{color:#57606a;font-weight:600;font-size:13px}
tbody th{font-weight:500}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:last-child td{border-bottom:none}
figure{margin:0 0 18px;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px}
figure svg{display:block;width:100%;height:auto}
figcaption{color:#57606a;font-size:13px;padding:6px 8px 2px}
pre{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px;overflow:auto;font-size:13px}
footer{color:#57606a;font-size:13px;margin-top:24px}
";

/// Escapes text for HTML element content and attribute values.
///
/// ```
/// use backstop_sim::html::escape;
/// assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Strips the XML prologue a chart might carry: inline SVG in HTML starts at `<svg`.
fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

/// A table of (label, value) rows; values right-aligned.
fn table(o: &mut String, caption: &str, rows: &[(&str, String)]) {
    let _ = write!(o, "<table><caption>{}</caption><tbody>", escape(caption));
    for (label, value) in rows {
        let _ = write!(
            o,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td></tr>",
            escape(label),
            escape(value)
        );
    }
    o.push_str("</tbody></table>\n");
}

fn requests_table(o: &mut String, s: &SimSection) {
    let hours = s.simulated_us as f64 / 3.6e9;
    let per_h = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
    o.push_str(
        "<table><caption>Requests</caption><thead><tr><th>outcome</th>\
         <th class=\"n\">count</th><th class=\"n\">per hour</th></tr></thead><tbody>",
    );
    let mut rows = vec![
        ("received", s.requests, s.per_hour.requests),
        ("admitted", s.admitted, s.per_hour.admitted),
        ("429 rate_limited", s.rate_limited, s.per_hour.rate_limited),
        (
            "503 queue_full",
            s.overloaded_queue_full,
            per_h(s.overloaded_queue_full),
        ),
    ];
    if s.overloaded_too_many_keys > 0 {
        rows.push((
            "503 too_many_keys",
            s.overloaded_too_many_keys,
            per_h(s.overloaded_too_many_keys),
        ));
    }
    for (name, n, rate) in rows {
        let _ = write!(
            o,
            "<tr><th scope=\"row\">{name}</th><td class=\"n\">{n}</td><td class=\"n\">{rate:.1}</td></tr>"
        );
    }
    o.push_str("</tbody></table>\n");
}

/// Renders the report page.
///
/// ```
/// use backstop_sim::charts;
/// use backstop_sim::config::SimConfig;
/// use backstop_sim::run::{RunOptions, run};
/// use backstop_sim_check::trace::TraceReader;
/// let trace = "{\"t_us\":0,\"type\":\"request\",\"id\":1,\"job_us\":1000}\n";
/// let config = SimConfig::default();
/// let out = run(&config, TraceReader::new(trace.as_bytes()), RunOptions::default())?;
/// let charts = charts::render(&out.series, &config).expect("charts render");
/// let page = backstop_sim::html::render(&out.report, &charts);
/// assert!(page.starts_with("<!DOCTYPE html>"));
/// assert_eq!(page.matches("<svg").count(), 3);
/// assert!(!page.contains("src=") && !page.contains("href="), "loads nothing");
/// # Ok::<(), backstop_sim::error::SimError>(())
/// ```
pub fn render(report: &Report, charts: &Charts) -> String {
    let s = report.deterministic();
    let hours = s.simulated_us as f64 / 3.6e9;
    let mut o = String::with_capacity(
        16 * 1024 + charts.outcomes.len() + charts.queue.len() + charts.disk.len(),
    );
    let title = format!("backstop-sim report — {} (seed {})", s.source, s.seed);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    let _ = writeln!(o, "<h1>backstop-sim report</h1>");
    let _ = writeln!(
        o,
        "<p class=\"sub\">{} · seed {} · {:.2} h of virtual time</p>",
        escape(&s.source),
        s.seed,
        hours
    );
    match &s.checks.first {
        None => {
            let _ = writeln!(
                o,
                "<p class=\"verdict ok\">All 6 invariants held over {} decision-log records.</p>",
                s.checks.records
            );
        }
        Some(v) => {
            let _ = writeln!(
                o,
                "<p class=\"verdict bad\">Invariant violated ({} violation(s) in all): {}</p>",
                s.checks.violations,
                escape(&v.to_string())
            );
        }
    }

    o.push_str("<h2>Summary</h2>\n<div class=\"tables\">\n");
    requests_table(&mut o, s);
    table(
        &mut o,
        "Queue and jobs",
        &[
            ("queue wait p50", fmt_us(s.queue_wait.p50_us)),
            ("queue wait p99", fmt_us(s.queue_wait.p99_us)),
            ("queue wait max", fmt_us(s.queue_wait.max_us)),
            ("deepest queue", s.max_queue_depth.to_string()),
            ("jobs started", s.jobs_started.to_string()),
            ("completed", s.jobs_completed.to_string()),
            ("crashed", s.jobs_crashed.to_string()),
            ("left queued", s.still_queued.to_string()),
            ("left running", s.still_running.to_string()),
        ],
    );
    table(
        &mut o,
        "Resource gate and disk",
        &[
            (
                "gate closed, low memory",
                format!("{}×", s.gate_closures_low_memory),
            ),
            (
                "gate closed, low disk",
                format!("{}×", s.gate_closures_low_disk),
            ),
            ("time closed in all", fmt_us(s.gate_closed_us)),
            (
                "disk peak",
                format!(
                    "{} ({:.1} %)",
                    fmt_bytes(s.disk_peak_bytes),
                    s.disk_peak_percent
                ),
            ),
            ("temp files peak", fmt_bytes(s.temp_peak_bytes)),
        ],
    );
    o.push_str(
        "<table><caption>Sweeps</caption><thead><tr><th>trigger</th><th class=\"n\">runs</th>\
         <th class=\"n\">files removed</th><th class=\"n\">freed</th></tr></thead><tbody>",
    );
    for (name, t) in [
        ("scheduled", s.sweeps_schedule),
        ("pressure", s.sweeps_pressure),
    ] {
        let _ = write!(
            o,
            "<tr><th scope=\"row\">{name}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            t.runs,
            t.files_removed,
            escape(&fmt_bytes(t.bytes_freed))
        );
    }
    o.push_str("</tbody></table>\n");
    o.push_str("</div>\n<h2>Charts</h2>\n");
    let captions = [
        "Requests per minute by outcome. 429s have an axis of their own below, so that a handful stays visible beside many admitted.",
        "Jobs waiting for a slot or for the resource gate; at the bound, new requests get 503 queue_full.",
        "Disk used by background data and temp files, against the pressure threshold; each tick below is one sweep.",
    ];
    for ((_, svg), caption) in charts.files().into_iter().zip(captions) {
        let _ = writeln!(
            o,
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            inline_svg(svg).trim_end(),
            escape(caption)
        );
    }
    let config = toml::to_string(&s.config)
        .or_else(|_| serde_json::to_string_pretty(&s.config))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "<h2>Configuration</h2>\n<details><summary>The whole configuration of the run (a valid config file)</summary>\n<pre>{}</pre>\n</details>",
        escape(&config)
    );
    o.push_str(
        "<footer>Everything on this page is reproduced byte for byte by the same seed, \
         config and trace; wall-clock figures (replay speed, sweeper files/s) are in the \
         terminal report and <code>--report-json</code>.</footer>\n</main>\n</body>\n</html>\n",
    );
    o
}
