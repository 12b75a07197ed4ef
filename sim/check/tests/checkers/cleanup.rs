//! Invariant 5: sweeps remove old files, only old files, oldest first under pressure.

use super::*;

fn crashed_job_with_files() -> Vec<(Option<Event>, Vec<Record>)> {
    vec![
        (
            Some(req(0, 1, 100, 2, 20)),
            vec![
                dec(0, 1, Admitted, None),
                R::JobStart { t_us: 0, id: 1 },
                R::FilesWritten {
                    t_us: 0,
                    id: 1,
                    stage: 0,
                    files: 2,
                    bytes: 20,
                },
            ],
        ),
        (
            None,
            vec![R::JobEnd {
                t_us: 50,
                id: 1,
                crashed: true,
            }],
        ),
    ]
}

#[test]
fn sweeping_a_young_file_is_caught() {
    let mut steps = crashed_job_with_files();
    steps.push((
        None,
        vec![
            R::FileRemoved {
                t_us: 60,
                id: 1,
                file: 0,
            },
            R::Sweep {
                t_us: 60,
                trigger: Trigger::Schedule,
                older_than_us: 100,
                byte_goal: None,
                files_removed: 1,
                bytes_freed: 10,
            },
        ],
    ));
    assert_eq!(run(params(), &steps), Some(Invariant::Cleanup));
}

#[test]
fn leaving_an_old_file_is_caught_and_removing_all_passes() {
    let mut steps = crashed_job_with_files();
    steps.push((
        None,
        vec![
            R::FileRemoved {
                t_us: 200,
                id: 1,
                file: 0,
            },
            R::Sweep {
                t_us: 200,
                trigger: Trigger::Schedule,
                older_than_us: 100,
                byte_goal: None,
                files_removed: 1,
                bytes_freed: 10,
            },
        ],
    ));
    assert_eq!(run(params(), &steps), Some(Invariant::Cleanup));
    let mut steps = crashed_job_with_files();
    steps.push((
        None,
        vec![
            R::FileRemoved {
                t_us: 200,
                id: 1,
                file: 0,
            },
            R::FileRemoved {
                t_us: 200,
                id: 1,
                file: 1,
            },
            R::Sweep {
                t_us: 200,
                trigger: Trigger::Schedule,
                older_than_us: 100,
                byte_goal: None,
                files_removed: 2,
                bytes_freed: 20,
            },
        ],
    ));
    assert_eq!(run(params(), &steps), None);
}

#[test]
fn pressure_sweep_that_stops_short_is_caught() {
    let mut p = params();
    p.pressure_bytes = 5;
    let mut steps = crashed_job_with_files();
    steps.push((
        None,
        vec![
            R::FileRemoved {
                t_us: 200,
                id: 1,
                file: 0,
            },
            R::Sweep {
                t_us: 200,
                trigger: Trigger::Pressure,
                older_than_us: 100,
                byte_goal: Some(15),
                files_removed: 1,
                bytes_freed: 10,
            },
        ],
    ));
    assert_eq!(
        run(p, &steps),
        Some(Invariant::Cleanup),
        "10 B left > 5 B threshold, an old file remains"
    );
}
