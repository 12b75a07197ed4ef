//! Every way a `Limits` can be wrong names its field and says why.
#![cfg(feature = "toml")]

use backstop_core::Limits;
use backstop_core::resources::StalePolicy;

fn field_of(toml: &str) -> (String, String) {
    let err = Limits::from_toml_str(toml).expect_err(toml);
    (err.field().to_owned(), err.reason().to_owned())
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
        window_ms = 1000
        [queue]
        max = 10
        critical_reserve = 2
        retry_after_hint_ms = 3000
        [jobs]
        max = 3
        [resources]
        enabled = true
        min_available_memory_mib = 1024
        memory_margin_mib = 100
        disk_path = "/var/tmp"
        min_free_disk_mib = 2048
        disk_margin_mib = 200
        max_memory_pressure_pct = 40.0
        memory_pressure_margin_pct = 10.0
        sample_interval_ms = 500
        max_sample_age_ms = 2000
        on_stale = "fail_open"
    "#;
    let limits = Limits::from_toml_str(text).unwrap();
    assert!(limits.shadow);
    assert_eq!((limits.rate.limit, limits.rate.window_ms), (5, 1000));
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
        ("[rate]\nwindow_ms = 0", "rate.window_ms", "must be 1 to"),
        ("[queue]\nmax = 0", "queue.max", "must be 1 to"),
        ("[queue]\nmax = 2000000", "queue.max", "must be 1 to"),
        (
            "[queue]\nmax = 4\ncritical_reserve = 4",
            "queue.critical_reserve",
            "below queue.max",
        ),
        (
            "[queue]\nretry_after_hint_ms = 99999999",
            "queue.retry_after_hint_ms",
            "at most",
        ),
        ("[jobs]\nmax = 0", "jobs.max", "must be 1 to"),
        (
            "[resources]\nmemory_margin_mib = 4096",
            "resources.memory_margin_mib",
            "must not exceed resources.min_available_memory_mib",
        ),
        (
            "[resources]\ndisk_margin_mib = 6000",
            "resources.disk_margin_mib",
            "must not exceed resources.min_free_disk_mib",
        ),
        (
            "[resources]\nmin_available_memory_mib = 18446744073709551615",
            "resources.min_available_memory_mib",
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
            "[resources]\nsample_interval_ms = 0",
            "resources.sample_interval_ms",
            "must be 1 to",
        ),
        (
            "[resources]\nsample_interval_ms = 1000\nmax_sample_age_ms = 999",
            "resources.max_sample_age_ms",
            "from resources.sample_interval_ms",
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
    assert!(reason.contains("line 2"), "{reason}");

    let (field, reason) = field_of("shadw = true\n");
    assert_eq!(field, "shadw");
    assert!(reason.contains("unknown field"), "{reason}");

    let (field, reason) = field_of("[rate]\nlimit = 5\n\n[ratee]\nlimit = 5\n");
    assert_eq!(field, "ratee");
    assert!(reason.contains("unknown field"), "{reason}");
    assert!(reason.contains("line 4"), "{reason}");

    let (field, reason) = field_of("[resources]\nmin_memory_mib = 1\n");
    assert_eq!(field, "resources.min_memory_mib");
    assert!(reason.contains("unknown field"), "{reason}");
}

#[test]
fn wrong_types_and_syntax_name_the_line_and_field() {
    let (field, reason) = field_of("[queue]\nmax = \"lots\"\n");
    assert_eq!(field, "queue.max");
    assert!(reason.contains("line 2"), "{reason}");

    let (field, reason) = field_of("[jobs]\nmax = -1\n");
    assert_eq!(field, "jobs.max");
    assert!(!reason.is_empty());

    let (field, reason) = field_of("[resources]\non_stale = \"maybe\"\n");
    assert_eq!(field, "resources.on_stale");
    assert!(reason.contains("fail_closed"), "{reason}");

    let (_field, reason) = field_of("[rate\nlimit = 1\n");
    assert!(reason.contains("line 1"), "{reason}");
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
