//! Every way a `Limits` can be wrong names its field and says why.
#![cfg(feature = "toml")]

use std::time::Duration;

use backstop_core::resources::StalePolicy;
use backstop_core::{ByteSize, Limits};

fn field_of(toml: &str) -> (String, String) {
    let err = Limits::from_toml_str(toml).expect_err(toml);
    (err.field().to_owned(), err.to_string())
}

#[test]
fn an_empty_file_is_the_defaults() {
    assert_eq!(Limits::from_toml_str("").unwrap(), Limits::default());
}

#[test]
fn a_full_file_round_trips() {
    let text = r#"
        shadow = true
        [rate]
        limit = 5
        window = "1s"
        [queue]
        max = 10
        critical_reserve = 2
        retry_after_hint = "3s"
        [jobs]
        max = 3
        [resources]
        enabled = true
        min_available_memory = "1GiB"
        memory_margin = "100MiB"
        disk_path = "/var/tmp"
        min_free_disk = "2GiB"
        disk_margin = "200MiB"
        max_memory_pressure_pct = 40.0
        memory_pressure_margin_pct = 10.0
        sample_interval = "500ms"
        max_sample_age = "2s"
        on_stale = "fail_open"
    "#;
    let limits = Limits::from_toml_str(text).unwrap();
    assert!(limits.shadow);
    assert_eq!(
        (limits.rate.limit, limits.rate.window),
        (5, Duration::from_secs(1))
    );
    assert_eq!((limits.queue.max, limits.queue.critical_reserve), (10, 2));
    assert_eq!(limits.jobs.max, 3);
    assert_eq!(
        limits.resources.disk_path,
        std::path::PathBuf::from("/var/tmp")
    );
    assert_eq!(limits.resources.max_memory_pressure_pct, Some(40.0));
    assert_eq!(limits.resources.on_stale, StalePolicy::FailOpen);
    let again = Limits::from_toml_str(&toml::to_string(&limits).unwrap()).unwrap();
    assert_eq!(again, limits);
}

#[test]
fn every_range_error_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("[rate]\nlimit = 0", "rate.limit", "must be 1 to"),
        ("[rate]\nlimit = 20000000", "rate.limit", "must be 1 to"),
        ("[rate]\nwindow = \"0s\"", "rate.window", "above zero"),
        (
            "[rate]\nwindow = \"101years\"",
            "rate.window",
            "at most 100 years",
        ),
        ("[queue]\nmax = 0", "queue.max", "must be 1 to"),
        ("[queue]\nmax = 2000000", "queue.max", "must be 1 to"),
        (
            "[queue]\nmax = 4\ncritical_reserve = 4",
            "queue.critical_reserve",
            "below queue.max",
        ),
        (
            "[queue]\nretry_after_hint = \"2h\"",
            "queue.retry_after_hint",
            "at most 1h",
        ),
        ("[jobs]\nmax = 0", "jobs.max", "must be 1 to"),
        (
            "[resources]\nmemory_margin = \"4GiB\"",
            "resources.memory_margin",
            "must not exceed resources.min_available_memory (2GiB), got 4GiB",
        ),
        (
            "[resources]\ndisk_margin = \"6000MiB\"",
            "resources.disk_margin",
            "must not exceed resources.min_free_disk",
        ),
        (
            "[resources]\nmin_available_memory = \"9EiB\"",
            "resources.min_available_memory",
            "at most",
        ),
        (
            "[resources]\ndisk_path = \"\"",
            "resources.disk_path",
            "empty",
        ),
        (
            "[resources]\nmax_memory_pressure_pct = 0.0",
            "resources.max_memory_pressure_pct",
            "above 0",
        ),
        (
            "[resources]\nmax_memory_pressure_pct = 101.0",
            "resources.max_memory_pressure_pct",
            "at most 100",
        ),
        (
            "[resources]\nmax_memory_pressure_pct = nan",
            "resources.max_memory_pressure_pct",
            "above 0",
        ),
        (
            "[resources]\nmemory_pressure_margin_pct = -1.0",
            "resources.memory_pressure_margin_pct",
            "0 to 100",
        ),
        (
            "[resources]\nmax_memory_pressure_pct = 10.0\nmemory_pressure_margin_pct = 10.0",
            "resources.memory_pressure_margin_pct",
            "below resources.max_memory_pressure_pct",
        ),
        (
            "[resources]\nsample_interval = \"0s\"",
            "resources.sample_interval",
            "above zero",
        ),
        (
            "[resources]\nsample_interval = \"1s\"\nmax_sample_age = \"999ms\"",
            "resources.max_sample_age",
            "from resources.sample_interval",
        ),
    ];
    for (toml, field, reason) in cases {
        let (got_field, got_reason) = field_of(toml);
        assert_eq!(got_field, *field, "{toml}");
        assert!(got_reason.contains(reason), "{toml}: {got_reason}");
    }
}

#[test]
fn unknown_fields_are_errors_naming_them() {
    let (field, reason) = field_of("[rate]\nlimt = 5\n");
    assert_eq!(field, "rate.limt");
    assert!(reason.contains("unknown field"), "{reason}");
    assert!(reason.contains("at line 2"), "{reason}");

    let (field, reason) = field_of("shadw = true\n");
    assert_eq!(field, "shadw");
    assert!(reason.contains("unknown field"), "{reason}");

    let (field, reason) = field_of("[rate]\nlimit = 5\n\n[ratee]\nlimit = 5\n");
    assert_eq!(field, "ratee");
    assert!(reason.contains("unknown field"), "{reason}");
    assert!(reason.contains("at line 4"), "{reason}");

    let (field, reason) = field_of("[resources]\nmin_memory_mib = 1\n");
    assert_eq!(field, "resources.min_memory_mib");
    assert!(reason.contains("unknown field"), "{reason}");
}

#[test]
fn wrong_types_and_syntax_name_the_line_and_field() {
    let (field, reason) = field_of("[queue]\nmax = \"lots\"\n");
    assert_eq!(field, "queue.max");
    assert!(reason.contains("at line 2"), "{reason}");

    let (field, reason) = field_of("[jobs]\nmax = -1\n");
    assert_eq!(field, "jobs.max");
    assert!(!reason.is_empty());

    let (field, reason) = field_of("[resources]\non_stale = \"maybe\"\n");
    assert_eq!(field, "resources.on_stale");
    assert!(reason.contains("fail_closed"), "{reason}");

    let (_field, reason) = field_of("[rate\nlimit = 1\n");
    assert!(reason.contains("at line 1"), "{reason}");
}

#[test]
fn an_unreadable_file_names_its_path() {
    let err = Limits::from_toml_file("/nonexistent/limits.toml").unwrap_err();
    assert_eq!(err.field(), "/nonexistent/limits.toml");
}

#[test]
fn a_file_is_read_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.toml");
    std::fs::write(&path, "[jobs]\nmax = 9\n").unwrap();
    assert_eq!(Limits::from_toml_file(&path).unwrap().jobs.max, 9);
}

/// The error for `toml`: its key path, line and column.
fn place_of(toml: &str) -> (String, Option<usize>, Option<usize>, String) {
    let err = Limits::from_toml_str(toml).expect_err(toml);
    (
        err.field().to_owned(),
        err.line(),
        err.column(),
        err.to_string(),
    )
}

#[test]
fn human_durations_and_sizes_are_read() {
    let limits = Limits::from_toml_str(
        "[rate]\nwindow = \"90s\"\n[queue]\nretry_after_hint = \"250ms\"\n\
         [resources]\nmin_available_memory = \"2GiB\"\nmemory_margin = \"256MiB\"\n\
         min_free_disk = \"1.5GiB\"\ndisk_margin = \"512MiB\"\n\
         sample_interval = \"2s\"\nmax_sample_age = \"1m\"\n",
    )
    .unwrap();
    assert_eq!(limits.rate.window, Duration::from_secs(90));
    assert_eq!(limits.queue.retry_after_hint, Duration::from_millis(250));
    assert_eq!(limits.resources.min_available_memory, ByteSize::gib(2));
    assert_eq!(limits.resources.memory_margin, ByteSize::mib(256));
    assert_eq!(limits.resources.min_free_disk, ByteSize::mib(1536));
    assert_eq!(limits.resources.disk_margin, ByteSize::mib(512));
    assert_eq!(limits.resources.sample_interval, Duration::from_secs(2));
    assert_eq!(limits.resources.max_sample_age, Duration::from_secs(60));
    // Written back, limits read back the same.
    let text = toml::to_string(&limits).unwrap();
    assert!(text.contains("window = \"1m 30s\""), "{text}");
    assert!(text.contains("min_free_disk = \"1536MiB\""), "{text}");
    assert_eq!(Limits::from_toml_str(&text).unwrap(), limits);
}

#[test]
fn a_detached_tickets_max_wait_is_read_and_bounded() {
    assert_eq!(Limits::default().queue.max_wait, Duration::from_secs(300));
    let limits = Limits::from_toml_str("[queue]\nmax_wait = \"90s\"\n").unwrap();
    assert_eq!(limits.queue.max_wait, Duration::from_secs(90));
    let text = toml::to_string(&limits).unwrap();
    assert!(text.contains("max_wait = \"1m 30s\""), "{text}");
    for bad in ["0s", "25h"] {
        let toml = format!("[queue]\nmax_wait = \"{bad}\"\n");
        let err = Limits::from_toml_str(&toml).unwrap_err();
        assert_eq!(err.field(), "queue.max_wait", "{bad}: {err}");
    }
}

#[test]
fn each_setting_has_one_spelling() {
    for (toml, field) in [
        ("[rate]\nwindow_ms = 5\n", "rate.window_ms"),
        (
            "[queue]\nretry_after_hint_ms = 1\n",
            "queue.retry_after_hint_ms",
        ),
        (
            "[resources]\nmin_free_disk_mib = 10\n",
            "resources.min_free_disk_mib",
        ),
        (
            "[resources]\nsample_interval_ms = 10\n",
            "resources.sample_interval_ms",
        ),
    ] {
        let (got, line, column, text) = place_of(toml);
        assert_eq!(got, field, "{toml}");
        assert_eq!((line, column), (Some(2), Some(1)), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }
}

#[test]
fn bad_human_values_name_the_key_line_and_column() {
    for (toml, field, line, column, says) in [
        (
            "[rate]\nlimit = 3\nwindow = \"sixty\"\n",
            "rate.window",
            3,
            10,
            "not a duration",
        ),
        (
            "[rate]\nwindow = 60\n",
            "rate.window",
            2,
            10,
            "a duration as text",
        ),
        (
            "[rate]\nwindow = \"-1s\"\n",
            "rate.window",
            2,
            10,
            "not a duration",
        ),
        (
            "[resources]\nmin_free_disk = \"2 parsecs\"\n",
            "resources.min_free_disk",
            2,
            17,
            "not a size",
        ),
        (
            "[resources]\n  disk_margin = \"1000\"\n",
            "resources.disk_margin",
            2,
            17,
            "has no unit",
        ),
        (
            "[resources]\nsample_interval = \"0s\"\n",
            "resources.sample_interval",
            2,
            1,
            "above zero",
        ),
        (
            "[rate]\n\nwindow = \"0s\"\n",
            "rate.window",
            3,
            1,
            "above zero",
        ),
        (
            "[queue]\nmax = \"lots\"\n",
            "queue.max",
            2,
            7,
            "expected u32",
        ),
        ("[rate]\nlimt = 5\n", "rate.limt", 2, 1, "unknown field"),
    ] {
        let (got, got_line, got_column, text) = place_of(toml);
        assert_eq!(got, field, "{toml}: {text}");
        assert_eq!(
            (got_line, got_column),
            (Some(line), Some(column)),
            "{toml}: {text}"
        );
        assert!(text.contains(says), "{toml}: {text}");
        assert!(
            text.contains(&format!("line {line}, column {column}")),
            "{text}"
        );
    }
}

#[test]
fn a_syntax_error_names_the_line_and_quotes_it() {
    let (field, line, column, text) = place_of("[rate]\nlimit = = 3\n");
    assert_eq!(field, "(TOML syntax)");
    assert_eq!(line, Some(2));
    assert!(column.is_some());
    assert!(text.contains("`limit = = 3`"), "{text}");
}
