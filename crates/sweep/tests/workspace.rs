//! Per-job workspaces: private, cleaned per stage, removed on drop (even on panic).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use backstop_sweep::{JobWorkspace, WorkspaceError};

#[test]
fn a_workspace_is_private_and_stages_clean_up_incrementally() {
    let base = tempfile::tempdir().unwrap();
    let job = JobWorkspace::create(base.path(), "job-1").unwrap();
    assert_eq!(job.path(), base.path().join("job-1"));
    assert_eq!(job.job_id(), "job-1");
    let mode = fs::metadata(job.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    let download = job.stage("download").unwrap();
    let render = job.stage("render").unwrap();
    assert_eq!(
        job.stage("download").unwrap(),
        download,
        "stage() is idempotent"
    );
    fs::create_dir_all(download.join("parts/a")).unwrap();
    fs::write(download.join("parts/a/1.ts"), vec![0u8; 10_000]).unwrap();
    fs::write(download.join("source.mp4"), vec![0u8; 5_000]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", download.join("link")).unwrap();
    fs::write(render.join("out.mp4"), b"frames").unwrap();

    let report = job.finish_stage("download").unwrap();
    assert_eq!(report.files_removed, 2);
    assert_eq!(report.symlinks_removed, 1);
    assert_eq!(
        report.dirs_removed, 3,
        "parts/a, parts and the stage itself"
    );
    assert!(report.bytes_freed >= 15_000);
    assert!(!download.exists());
    assert!(render.join("out.mp4").exists());
    assert!(
        fs::metadata("/etc/passwd").is_ok(),
        "a link's target is never touched"
    );
    assert_eq!(
        job.finish_stage("download").unwrap().files_removed,
        0,
        "finishing twice is harmless"
    );

    drop(job);
    assert!(!base.path().join("job-1").exists());
    assert!(base.path().exists());
}

#[test]
fn unsafe_job_ids_and_stage_names_are_rejected() {
    let base = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "../x", "a/b", "nul\0"] {
        match JobWorkspace::create(base.path(), bad) {
            Err(WorkspaceError::InvalidName { field, .. }) => assert_eq!(field, "job_id"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let job = JobWorkspace::create(base.path(), "ok").unwrap();
    match job.stage("../escape") {
        Err(err @ WorkspaceError::InvalidName { .. }) => {
            assert!(err.to_string().contains("stage"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(job.finish_stage("..").is_err());
    assert_eq!(
        fs::read_dir(base.path()).unwrap().count(),
        1,
        "nothing was created outside"
    );
}

#[test]
fn a_second_workspace_for_the_same_job_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let _first = JobWorkspace::create(base.path(), "dup").unwrap();
    match JobWorkspace::create(base.path(), "dup") {
        Err(WorkspaceError::AlreadyExists { path }) => assert_eq!(path, base.path().join("dup")),
        other => panic!("{other:?}"),
    }
    match JobWorkspace::create(base.path().join("missing/deeper"), "x") {
        Err(err @ WorkspaceError::Base { .. }) => assert!(err.to_string().contains("missing")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_workspace_is_removed_when_the_job_panics() {
    let base = tempfile::tempdir().unwrap();
    let path = base.path().join("doomed");
    let result = std::panic::catch_unwind(|| {
        let job = JobWorkspace::create(base.path(), "doomed").unwrap();
        let stage = job.stage("encode").unwrap();
        fs::write(stage.join("partial.mp4"), b"half").unwrap();
        assert!(path.join("encode/partial.mp4").exists());
        panic!("encoder crashed");
    });
    assert!(result.is_err());
    assert!(
        !path.exists(),
        "dropping during unwinding removed the workspace"
    );
}

#[test]
fn keep_leaves_the_workspace_and_remove_reports() {
    let base = tempfile::tempdir().unwrap();
    {
        let mut job = JobWorkspace::create(base.path(), "kept").unwrap();
        fs::write(job.stage("s").unwrap().join("f"), b"x").unwrap();
        job.keep();
    }
    assert!(base.path().join("kept/s/f").exists());

    let job = JobWorkspace::create(base.path(), "removed").unwrap();
    fs::write(job.stage("s").unwrap().join("f"), b"x").unwrap();
    let report = job.remove().unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(report.dirs_removed, 2);
    assert!(!base.path().join("removed").exists());
}

#[test]
fn a_locked_workspace_is_skipped_by_sweeps() {
    let base = tempfile::tempdir().unwrap();
    let job = JobWorkspace::create(base.path(), "running").unwrap();
    fs::write(job.stage("s").unwrap().join("f"), b"x").unwrap();
    job.lock_against_sweeps().unwrap();
    let report = backstop_sweep::Sweep::new(base.path())
        .now(common::now())
        .run()
        .unwrap();
    assert_eq!(report.skipped.locked, 1);
    assert_eq!(report.files_removed, 0);
    assert!(job.path().join("s/f").exists());
}

/// The base is made private when missing, and refused when someone else could redirect
/// or read into it: another owner, group/world-writable, not a directory, or reached
/// through a link planted by another user in a world-writable directory.
#[test]
fn the_workspace_base_is_created_private_and_checked() {
    use std::os::unix::fs::{MetadataExt, lchown, symlink};
    let parent = tempfile::tempdir().unwrap();
    let base = parent.path().join("makevideo");
    let job = JobWorkspace::create(&base, "j").unwrap();
    let meta = fs::metadata(&base).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700, "a missing base is created 0700");
    drop(job);

    let refused = |base: &std::path::Path, why: &str| match JobWorkspace::create(base, "j") {
        Err(err @ WorkspaceError::UnsafeBase { .. }) => {
            assert!(err.to_string().contains(why), "{err}");
        }
        other => panic!("{} accepted: {other:?}", base.display()),
    };
    fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).unwrap();
    refused(&base, "group or others");
    fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
    lchown(&base, Some(65534), Some(65534)).unwrap();
    refused(&base, "owned by uid 65534");
    let plain = parent.path().join("plain-file");
    fs::write(&plain, b"").unwrap();
    refused(&plain, "not a directory");

    let victim = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = tmp.path().join("makevideo");
    symlink(victim.path(), &planted).unwrap();
    lchown(&planted, Some(65534), Some(65534)).unwrap();
    refused(&planted, "world-writable");
    assert_eq!(fs::read_dir(victim.path()).unwrap().count(), 0);
}

/// Jobs lock their workspace while sweeps loop over the base and probe every directory
/// with a non-blocking exclusive lock: no lock request may ever fail, and no file a job
/// wrote (with an old mtime, as an archive restores it) may be removed.
#[test]
fn jobs_always_get_their_lock_against_a_looping_sweep() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const JOBS: usize = 4;
    const ATTEMPTS: usize = 1000;
    const BATCH: usize = 50;
    let base = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sweeps = Arc::new(AtomicU64::new(0));
    // Two sweepers on one reused pool each, so that nearly all their time is spent
    // walking (and probing) rather than starting threads.
    let sweepers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sweeps) = (Arc::clone(&stop), Arc::clone(&sweeps));
            let base = base.path().to_path_buf();
            std::thread::spawn(move || {
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .unwrap(),
                );
                let sweep = backstop_sweep::Sweep::new(&base)
                    .thread_pool(pool)
                    .older_than(std::time::Duration::from_secs(3600));
                while !stop.load(Ordering::SeqCst) {
                    let report = sweep.run().unwrap();
                    assert_eq!(report.files_removed, 0, "a live job's file was swept");
                    sweeps.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    // The sweep's probe, as `enter_dir` makes it (`LOCK_EX | LOCK_NB`, then unlock), on
    // every workspace in a loop, held a little longer between the two calls: what the
    // real probe looks like when its thread is preempted in between, which on a busy
    // machine is what makes a non-blocking job lock fail.
    let prober = {
        let stop = Arc::clone(&stop);
        let base = base.path().to_path_buf();
        std::thread::spawn(move || {
            let mut probes = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let Ok(entries) = fs::read_dir(&base) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let Ok(dir) = fs::File::open(entry.path()) else {
                        continue;
                    };
                    let exclusive = rustix::fs::FlockOperation::NonBlockingLockExclusive;
                    if rustix::fs::flock(&dir, exclusive).is_ok() {
                        let held = std::time::Instant::now();
                        while held.elapsed() < std::time::Duration::from_micros(20) {
                            std::hint::spin_loop();
                        }
                        let _ = rustix::fs::flock(&dir, rustix::fs::FlockOperation::Unlock);
                        probes += 1;
                    }
                }
            }
            probes
        })
    };
    let two_days_ago = std::time::SystemTime::now() - 2 * common::DAY;
    let failures: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..JOBS)
            .map(|j| {
                let base = base.path();
                scope.spawn(move || {
                    let mut failures = 0;
                    // Workspaces are created a batch at a time and then locked, so that
                    // the sweeps have listed them and are probing them when the locks
                    // are requested.
                    for round in 0..ATTEMPTS / BATCH {
                        let batch: Vec<JobWorkspace> = (0..BATCH)
                            .map(|i| JobWorkspace::create(base, &format!("job-{j}-{round}-{i}")))
                            .collect::<Result<_, _>>()
                            .unwrap();
                        for job in &batch {
                            if let Err(err) = job.lock_against_sweeps() {
                                eprintln!("lock failed: {err}");
                                failures += 1;
                            }
                        }
                        let extracted = batch[0].stage("unpack").unwrap().join("frame.png");
                        fs::write(&extracted, b"png").unwrap();
                        filetime::set_file_mtime(&extracted, two_days_ago.into()).unwrap();
                        for job in &batch[1..] {
                            job.lock_against_sweeps().unwrap();
                        }
                        assert!(extracted.exists(), "swept from a locked workspace");
                        drop(batch);
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    stop.store(true, Ordering::SeqCst);
    for sweeper in sweepers {
        sweeper.join().unwrap();
    }
    assert!(prober.join().unwrap() > 0, "the probe ran meanwhile");
    assert!(sweeps.load(Ordering::SeqCst) > 0, "the sweep ran meanwhile");
    assert_eq!(failures, 0, "lock requests refused against a looping sweep");
}
