//! `check` reads logs from anywhere: arbitrary records never panic the checkers.

use super::*;

fn any_record() -> impl proptest::strategy::Strategy<Value = Record> {
    use proptest::prelude::*;
    let t = 0u64..50;
    let id = 0u64..6;
    prop_oneof![
        (
            t.clone(),
            id.clone(),
            0u8..3,
            any::<bool>(),
            proptest::option::of(0u64..20)
        )
            .prop_map(|(t_us, id, o, r, retry_after_us)| {
                let outcome = [Admitted, RateLimited, Overloaded][o as usize];
                R::Decision {
                    t_us,
                    id,
                    outcome,
                    reason: r.then_some(OverloadReason::QueueFull),
                    retry_after_us,
                }
            }),
        (t.clone(), id.clone()).prop_map(|(t_us, id)| R::JobStart { t_us, id }),
        (t.clone(), id.clone(), any::<bool>()).prop_map(|(t_us, id, crashed)| R::JobEnd {
            t_us,
            id,
            crashed
        }),
        (t.clone(), any::<bool>()).prop_map(|(t_us, open)| R::Gate {
            t_us,
            open,
            reason: (!open).then_some(GateReason::LowDisk)
        }),
        (t.clone(), id.clone(), 0u32..3, 0u32..4, 0u64..100).prop_map(
            |(t_us, id, stage, files, bytes)| R::FilesWritten {
                t_us,
                id,
                stage,
                files,
                bytes
            }
        ),
        (t.clone(), id.clone(), 0u32..4).prop_map(|(t_us, id, file)| R::FileRemoved {
            t_us,
            id,
            file
        }),
        (t.clone(), any::<bool>(), 0u64..50, 0u64..5, 0u64..100).prop_map(
            |(t_us, p, older_than_us, files_removed, bytes_freed)| R::Sweep {
                t_us,
                trigger: if p {
                    Trigger::Pressure
                } else {
                    Trigger::Schedule
                },
                older_than_us,
                byte_goal: p.then_some(10),
                files_removed,
                bytes_freed,
            }
        ),
        (t.clone(), 0u64..300).prop_map(|(t_us, available_bytes)| R::Memory {
            t_us,
            available_bytes
        }),
        (t, 0u64..20_000).prop_map(|(t_us, used_bytes)| R::Disk { t_us, used_bytes }),
    ]
}

proptest::proptest! {
    /// `check` reads logs from anywhere: arbitrary records never panic the checker.
    #[test]
    fn arbitrary_logs_never_panic(recs in proptest::collection::vec(any_record(), 0..60), inputs in proptest::collection::vec(0u64..50, 0..20)) {
        let mut c = Checker::new(params());
        for (i, r) in recs.iter().enumerate() {
            if let Some(&t) = inputs.get(i) {
                c.expect_input(&req(t, i as u64, 3, 2, 10));
            }
            c.on_record(r);
        }
        let summary = c.finish();
        proptest::prop_assert_eq!(summary.records, recs.len() as u64);
    }
}
