//! Metrics count every outcome, and the OpenMetrics text parses.
#![cfg(feature = "prometheus")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backstop_core::clock::ManualClock;
use backstop_core::resources::ResourceReading;
use backstop_core::{Admission, ByteSize, Decision, Limits, RequestClass};

/// A sample: family name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the OpenMetrics text format for what backstop writes: every
/// sample's family has exactly one HELP and one TYPE line (and at most one UNIT) before
/// its samples, names and labels are well-formed, values are numbers, a counter
/// family's samples are named `<family>_total`, no family or sample repeats, and the
/// text ends with `# EOF`. (The reference service's test also runs `promtool`.)
fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut helped = BTreeSet::new();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut seen_samples = BTreeSet::new();
    let mut samples = Vec::new();
    let Some(text) = text.strip_suffix("# EOF\n") else {
        return Err("text must end with `# EOF`".into());
    };
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or(format!("line {n}: HELP without text"))?;
            if !valid_name(name) || help.is_empty() || !helped.insert(name.to_owned()) {
                return Err(format!("line {n}: bad or repeated HELP"));
            }
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or(format!("line {n}: TYPE without kind"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("line {n}: unknown type {kind}"));
            }
            if current.as_deref() != Some(name)
                || typed.insert(name.to_owned(), kind.to_owned()).is_some()
            {
                return Err(format!("line {n}: TYPE not right after its HELP"));
            }
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest
                .split_once(' ')
                .ok_or(format!("line {n}: UNIT without unit"))?;
            if current.as_deref() != Some(name) || !name.ends_with(&format!("_{unit}")) {
                return Err(format!("line {n}: UNIT not of its family"));
            }
        } else if line.starts_with('#') || line.is_empty() {
            return Err(format!("line {n}: unexpected comment or blank line"));
        } else {
            let (series, value) = line.rsplit_once(' ').ok_or(format!("line {n}: no value"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| format!("line {n}: bad value {value}"))?;
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .ok_or(format!("line {n}: unclosed labels"))?;
                    let mut labels = BTreeMap::new();
                    for pair in body.split(',') {
                        let (k, v) = pair.split_once('=').ok_or(format!("line {n}: bad label"))?;
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .ok_or(format!("line {n}: unquoted label value"))?;
                        if !valid_name(k) || v.contains(['"', '\\', '\n']) {
                            return Err(format!("line {n}: bad label {pair}"));
                        }
                        labels.insert(k.to_owned(), v.to_owned());
                    }
                    (name, labels)
                }
            };
            let family = current.as_deref().unwrap_or("");
            let kind = typed.get(family).map(String::as_str);
            let belongs = match kind {
                Some("counter") => name == format!("{family}_total"),
                Some("histogram") => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name == format!("{family}{suffix}")),
                _ => name == family,
            };
            if !belongs {
                return Err(format!("line {n}: sample of {name} outside its family"));
            }
            if kind == Some("counter") && value < 0.0 {
                return Err(format!("line {n}: counter {name} negative"));
            }
            if !name.starts_with("backstop_") {
                return Err(format!("line {n}: {name} lacks the backstop_ prefix"));
            }
            if !seen_samples.insert(format!("{name}{labels:?}")) {
                return Err(format!("line {n}: repeated sample"));
            }
            samples.push((name.to_owned(), labels, value));
        }
    }
    Ok(samples)
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
        .2
}

/// A sample expected: its name, the one label it is picked by (if any), its value.
type Expected<'a> = (&'a str, Option<(&'a str, &'a str)>, f64);

/// Asserts each expected sample against `samples`.
/// A sample with one label, `name{key="value"}`, expected to be `want`.
fn labelled<'a>(name: &'a str, key: &'a str, value: &'a str, want: f64) -> Expected<'a> {
    (name, Some((key, value)), want)
}

fn assert_samples(samples: &[Sample], expected: &[Expected<'_>]) {
    for &(name, label, want) in expected {
        assert_eq!(value(samples, name, label), want, "{name} {label:?}");
    }
}

#[test]
fn the_parser_rejects_what_it_should() {
    assert!(
        parse_prometheus("backstop_x_total 1\n# EOF\n").is_err(),
        "no HELP/TYPE"
    );
    assert!(
        parse_prometheus(
            "# HELP backstop_x x\n# TYPE backstop_x counter\nbackstop_x_total one\n# EOF\n"
        )
        .is_err()
    );
    assert!(
        parse_prometheus("# HELP backstop_x x\n# TYPE backstop_x counter\nbackstop_x 1\n# EOF\n")
            .is_err()
    );
    assert!(
        parse_prometheus(
            "# HELP backstop_x x\n# TYPE backstop_x gauge\nbackstop_x{a=b} 1\n# EOF\n"
        )
        .is_err()
    );
    assert!(
        parse_prometheus(
            "# HELP backstop_x x\n# TYPE backstop_x gauge\nbackstop_x 1\nbackstop_x 2\n# EOF\n"
        )
        .is_err()
    );
    assert!(
        parse_prometheus("# HELP backstop_x x\n# TYPE backstop_x gauge\nbackstop_x 1\n").is_err(),
        "no EOF"
    );
    assert!(
        parse_prometheus(
            "# HELP backstop_x x\n# TYPE backstop_x gauge\nbackstop_x{a=\"b\"} 1\n# EOF\n"
        )
        .is_ok()
    );
    assert!(
        parse_prometheus(
            "# HELP backstop_x x\n# TYPE backstop_x counter\nbackstop_x_total 1\n# EOF\n"
        )
        .is_ok()
    );
}

#[test]
fn prometheus_text_parses_and_carries_every_outcome() {
    let mut limits = Limits::default();
    limits.rate.limit = 3;
    limits.queue.max = 2;
    limits.jobs.max = 1;
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits, clock.clone()).unwrap();
    admission.resource_gate().observe(ResourceReading {
        available_memory_bytes: 8 << 30,
        free_disk_bytes: Some(50 << 30),
        memory_pressure_pct: Some(1.5),
    });

    let Decision::Admitted(a) = admission.try_admit() else {
        panic!()
    };
    let Decision::Admitted(b) = admission.try_admit() else {
        panic!()
    };
    assert_eq!(
        admission.try_admit().refusal().unwrap().as_str(),
        "queue_full"
    );
    assert_eq!(
        admission.try_admit().refusal().unwrap().as_str(),
        "rate_limited"
    );
    assert!(matches!(
        admission.admit(None, RequestClass::Exempt),
        Decision::Exempt
    ));
    let permit = admission.start_job(a).unwrap();
    let (_b, _) = admission.start_job(b).unwrap_err();
    drop(permit);
    clock.advance(Duration::from_millis(1500));

    let text = admission.metrics().render_prometheus();
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_samples(
        &samples,
        &[
            ("backstop_admitted_total", None, 2.0),
            ("backstop_exempt_total", None, 1.0),
            ("backstop_rate_limited_total", None, 1.0),
            labelled("backstop_overloaded_total", "reason", "queue_full", 1.0),
            labelled("backstop_overloaded_total", "reason", "too_many_keys", 0.0),
            labelled("backstop_job_waits_total", "reason", "no_free_slot", 1.0),
            ("backstop_jobs_started_total", None, 1.0),
            ("backstop_jobs_finished_total", None, 1.0),
            ("backstop_queue_depth", None, 1.0),
            ("backstop_queue_max", None, 2.0),
            ("backstop_jobs_active", None, 0.0),
            labelled("backstop_resource_gate_state", "state", "open", 1.0),
            labelled("backstop_resource_gate_state", "state", "stale", 0.0),
            ("backstop_resource_sample_age_seconds", None, 1.5),
            ("backstop_available_memory_bytes", None, (8u64 << 30) as f64),
            ("backstop_free_disk_bytes", None, (50u64 << 30) as f64),
            ("backstop_memory_pressure_percent", None, 1.5),
            ("backstop_resource_readings_total", None, 1.0),
        ],
    );

    // The gate going stale shows in the one-hot state.
    clock.advance(Duration::from_secs(10));
    let samples = parse_prometheus(&admission.metrics().render_prometheus()).unwrap();
    assert_samples(
        &samples,
        &[
            labelled("backstop_resource_gate_state", "state", "stale", 1.0),
            labelled("backstop_resource_gate_state", "state", "open", 0.0),
        ],
    );
}

/// Queue waits and run times are observed when a job starts and when it finishes, never
/// when a request is admitted; the limits and thresholds the door decides by are gauges.
#[test]
fn job_times_limits_and_thresholds_show_in_the_prometheus_text() {
    let mut limits = Limits::default();
    limits.rate.limit = 30;
    limits.queue.max = 4;
    limits.jobs.max = 1;
    limits.resources.min_available_memory = ByteSize::mib(1024);
    limits.resources.min_free_disk = ByteSize::mib(2048);
    limits.resources.max_memory_pressure_pct = Some(40.0);
    let window = limits.rate.window;
    let clock = ManualClock::new();
    let admission = Admission::with_clock(limits, clock.clone()).unwrap();
    // A fresh reading before each start: the gate closes on a stale one.
    let plenty = || {
        admission.resource_gate().observe(ResourceReading {
            available_memory_bytes: 8 << 30,
            free_disk_bytes: Some(50 << 30),
            memory_pressure_pct: Some(1.5),
        })
    };
    let samples = |admission: &Admission<ManualClock>| {
        let text = admission.metrics().render_prometheus();
        parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };

    let Decision::Admitted(first) = admission.try_admit() else {
        panic!("admitted")
    };
    let Decision::Admitted(second) = admission.try_admit() else {
        panic!("admitted")
    };
    clock.advance(Duration::from_secs(3));
    // Admitted, not started: nothing observed yet.
    assert_samples(
        &samples(&admission),
        &[
            ("backstop_queue_wait_seconds_count", None, 0.0),
            ("backstop_job_run_seconds_count", None, 0.0),
        ],
    );
    plenty();
    let permit = admission.start_job(first).unwrap();
    clock.advance(Duration::from_secs(40));
    drop(permit);
    plenty();
    let permit = admission.start_job(second).unwrap();
    assert_samples(
        &samples(&admission),
        &[
            ("backstop_queue_wait_seconds_count", None, 2.0),
            ("backstop_queue_wait_seconds_sum", None, 46.0),
            labelled("backstop_queue_wait_seconds_bucket", "le", "5.0", 1.0),
            labelled("backstop_queue_wait_seconds_bucket", "le", "60.0", 2.0),
            labelled("backstop_queue_wait_seconds_bucket", "le", "+Inf", 2.0),
            // The second job is still running: one run observed.
            ("backstop_job_run_seconds_count", None, 1.0),
            ("backstop_job_run_seconds_sum", None, 40.0),
            labelled("backstop_job_run_seconds_bucket", "le", "30.0", 0.0),
            labelled("backstop_job_run_seconds_bucket", "le", "60.0", 1.0),
            ("backstop_rate_limit", None, 30.0),
            ("backstop_rate_window_seconds", None, window.as_secs_f64()),
            (
                "backstop_min_available_memory_bytes",
                None,
                (1024u64 << 20) as f64,
            ),
            ("backstop_min_free_disk_bytes", None, (2048u64 << 20) as f64),
            ("backstop_max_memory_pressure_percent", None, 40.0),
        ],
    );
    drop(permit);

    // A new limit shows at once.
    let mut changed = admission.limits();
    changed.rate.limit = 12;
    admission.reconfigure(changed).unwrap();
    assert_samples(&samples(&admission), &[("backstop_rate_limit", None, 12.0)]);
}

#[test]
fn concurrent_counting_loses_nothing() {
    let mut limits = Limits::default();
    limits.rate.limit = 1 << 20;
    limits.queue.max = 1 << 20;
    let admission = Admission::new(limits).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    let decision = admission.try_admit();
                    assert!(matches!(decision, Decision::Admitted(_)));
                }
            });
        }
    });
    let m = admission.metrics().snapshot();
    assert_eq!(m.admitted_total, 40_000);
    assert_eq!(m.queue_depth, 0);
}
