//! The decision log: every record written and read back, and a malformed line named.

use backstop_sim_check::log::{GateReason, LogReader, Outcome, OverloadReason, Record, Trigger};

#[test]
fn every_record_round_trips() {
    let recs = [
        Record::Decision {
            t_us: 1,
            id: 2,
            outcome: Outcome::Admitted,
            reason: None,
            retry_after_us: None,
        },
        Record::Decision {
            t_us: 1,
            id: 3,
            outcome: Outcome::RateLimited,
            reason: None,
            retry_after_us: Some(9),
        },
        Record::Decision {
            t_us: 1,
            id: 4,
            outcome: Outcome::Overloaded,
            reason: Some(OverloadReason::QueueFull),
            retry_after_us: None,
        },
        Record::JobStart { t_us: 2, id: 2 },
        Record::JobEnd {
            t_us: 3,
            id: 2,
            crashed: true,
        },
        Record::Gate {
            t_us: 4,
            open: false,
            reason: Some(GateReason::LowDisk),
        },
        Record::Gate {
            t_us: 5,
            open: true,
            reason: None,
        },
        Record::FilesWritten {
            t_us: 5,
            id: 2,
            stage: 1,
            files: 4,
            bytes: 100,
        },
        Record::FileRemoved {
            t_us: 6,
            id: 2,
            file: 3,
        },
        Record::Sweep {
            t_us: 6,
            trigger: Trigger::Pressure,
            older_than_us: 7,
            byte_goal: Some(8),
            files_removed: 1,
            bytes_freed: 25,
        },
        Record::Sweep {
            t_us: 6,
            trigger: Trigger::Schedule,
            older_than_us: 7,
            byte_goal: None,
            files_removed: 0,
            bytes_freed: 0,
        },
        Record::Memory {
            t_us: 7,
            available_bytes: 1,
        },
        Record::Disk {
            t_us: 7,
            used_bytes: 2,
        },
    ];
    let mut out = Vec::new();
    for r in &recs {
        r.write_json(&mut out).unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("\"reason\":null,\"retry_after_us\":null")
    );
    let mut reader = LogReader::new(text.as_bytes());
    for r in &recs {
        assert_eq!(reader.next_record().unwrap().as_ref(), Some(r));
    }
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn malformed_log_names_the_line() {
    let text = "{\"t_us\":1,\"event\":\"job_start\",\"id\":1}\n{\"t_us\":1,\"event\":\"nope\"}\n";
    let mut reader = LogReader::new(text.as_bytes());
    reader.next_record().unwrap();
    let e = reader.next_record().unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}
