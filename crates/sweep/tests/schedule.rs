//! The schedule's pressure trigger and clean shutdown.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use backstop_sweep::{Sweep, SweepSchedule, Trigger};
use common::{file, now, old, young};

#[test]
fn a_full_disk_triggers_a_pressure_sweep_with_a_byte_goal() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        file(&dir.path().join(format!("old{i}")), 4096, old());
    }
    file(&dir.path().join("young"), 4096, young());
    let (tx, rx) = mpsc::channel();
    // Threshold 0: any use at all is "too full", so the check at start fires.
    let handle = SweepSchedule::new(Sweep::new(dir.path()).now(now()))
        .pressure_threshold(0.0)
        .check_every(Duration::from_secs(3600))
        .pressure_older_than(Duration::from_secs(24 * 3600))
        .on_report(move |trigger, result| {
            let report = match result {
                Ok(report) => Ok(report.clone()),
                Err(err) => Err(err.to_string()),
            };
            let _ = tx.send((trigger, report));
        })
        .start()
        .unwrap();
    let (trigger, report) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    handle.shutdown();

    let Trigger::Pressure {
        used_fraction,
        byte_goal,
    } = trigger
    else {
        panic!("expected a pressure sweep, got {trigger:?}");
    };
    assert!(used_fraction > 0.0);
    let report = report.unwrap();
    assert_eq!(report.byte_goal, Some(byte_goal));
    // The goal is the whole filesystem's use: every eligible file goes, the young stays.
    assert_eq!(report.files_removed, 5);
    assert!(dir.path().join("young").exists());
    assert!(rx.try_recv().is_err(), "shutdown left no sweep behind");
}

#[test]
fn a_root_that_vanished_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("gone");
    let (tx, rx) = mpsc::channel();
    let handle = SweepSchedule::new(Sweep::new(&root))
        .pressure_threshold(1.0)
        .on_report(move |trigger, result| {
            let _ = tx.send((trigger, result.as_ref().err().map(ToString::to_string)));
        })
        .start()
        .unwrap();
    handle.trigger();
    let (trigger, err) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(trigger, Trigger::Manual);
    assert!(err.unwrap().contains("gone"));
    handle.trigger();
    let (trigger, _) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        trigger,
        Trigger::Manual,
        "the schedule keeps going after a failed sweep"
    );
}
