//! Behaviour of one sweep on real temp dirs.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backstop_sweep::{AgeBy, EntryKind, ErrorKind, Sweep, SweepError};
use common::{DAY, file, listing, now, old, set_mtime, young};

fn sweep(root: &std::path::Path) -> Sweep {
    Sweep::new(root).now(now())
}

#[test]
fn removes_old_files_keeps_young_ones_and_never_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("old.mp4"), 10_000, old());
    file(&root.join("young.mp4"), 10_000, young());
    file(&root.join("a/b/old.tmp"), 1, old());
    file(&root.join("keep/young.tmp"), 1, young());
    set_mtime(&root.join("a/b"), old());
    set_mtime(&root.join("a"), old());
    set_mtime(root, old());

    let report = sweep(root).run().unwrap();
    assert_eq!(report.files_removed, 2);
    assert_eq!(report.dirs_removed, 2, "a/b then a were left empty");
    assert_eq!(report.skipped.too_young, 2);
    assert_eq!(report.entries_scanned, 7);
    assert_eq!(report.apparent_bytes, 10_001);
    assert!(
        report.bytes_freed >= 10_000,
        "blocks of the removed data are freed"
    );
    assert_eq!(report.errors.total(), 0);
    let left: BTreeSet<PathBuf> = ["young.mp4", "keep", "keep/young.tmp"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(listing(root), left);
    assert!(
        root.exists(),
        "the root itself stays, however old and empty"
    );
}

#[test]
fn the_cutoff_is_strict_and_future_times_count_as_new() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("exactly-a-day"), 1, now() - DAY);
    file(
        &root.join("a-day-and-a-bit"),
        1,
        now() - DAY - std::time::Duration::from_nanos(1000),
    );
    file(&root.join("future"), 1, now() + 365 * DAY);
    let report = sweep(root).run().unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(report.skipped.too_young, 2);
    assert!(root.join("exactly-a-day").exists());
    assert!(root.join("future").exists());
    assert!(!root.join("a-day-and-a-bit").exists());
}

#[test]
fn young_directories_stay_even_when_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("fresh/old.tmp"), 1, old());
    set_mtime(&root.join("fresh"), young());
    let report = sweep(root).run().unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(report.dirs_removed, 0);
    assert!(root.join("fresh").is_dir());
    let report = sweep(root).remove_empty_dirs(false).run().unwrap();
    assert_eq!(report.dirs_removed, 0);
}

#[test]
fn symlinks_are_removed_as_links_and_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    file(&outside.path().join("precious"), 100, old());
    set_mtime(outside.path(), old());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::os::unix::fs::symlink(outside.path(), root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("precious"), root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("young-link")).unwrap();
    set_mtime(&root.join("link-to-dir"), old());
    set_mtime(&root.join("link-to-file"), old());
    set_mtime(&root.join("young-link"), young());

    let report = sweep(root).collect_removed(true).run().unwrap();
    assert_eq!(report.symlinks_removed, 2);
    assert_eq!(report.files_removed, 0);
    assert!(
        report
            .removed
            .iter()
            .all(|entry| entry.kind == EntryKind::Symlink)
    );
    assert!(
        outside.path().join("precious").exists(),
        "a link's target is never touched"
    );
    assert!(root.join("young-link").symlink_metadata().is_ok());
}

#[test]
fn fifos_and_sockets_are_skipped_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    set_mtime(&root.join("pipe"), old());
    file(&root.join("old"), 1, old());
    let report = sweep(root).run().unwrap();
    assert_eq!(report.skipped.special_file, 2);
    assert_eq!(report.files_removed, 1);
    assert!(root.join("pipe").symlink_metadata().is_ok());
}

#[test]
fn excluded_entries_and_subtrees_stay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("job.lock"), 1, old());
    file(&root.join("deep/er/x.lock"), 1, old());
    file(&root.join("cache/a"), 1, old());
    file(&root.join("cache/b/c"), 1, old());
    file(&root.join("other"), 1, old());
    let report = sweep(root)
        .exclude("*.lock")
        .unwrap()
        .exclude("cache")
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(report.files_removed, 1);
    assert_eq!(
        report.skipped.excluded, 3,
        "two lock files and the cache dir"
    );
    assert!(root.join("cache/b/c").exists());
    assert!(root.join("deep/er/x.lock").exists());
    assert!(!root.join("other").exists());
}

#[test]
fn an_invalid_glob_names_the_pattern() {
    let err = Sweep::new("/tmp").exclude("a[").unwrap_err();
    match &err {
        SweepError::InvalidExclude { pattern, .. } => assert_eq!(pattern, "a["),
        other => panic!("wrong error: {other:?}"),
    }
    assert!(err.to_string().contains("a["));
}

#[test]
fn a_root_that_is_missing_or_a_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    match Sweep::new(&missing).run() {
        Err(err @ SweepError::RootOpen { .. }) => assert!(err.to_string().contains("missing")),
        other => panic!("wrong result: {other:?}"),
    }
    file(&dir.path().join("plain"), 1, old());
    match Sweep::new(dir.path().join("plain")).run() {
        Err(SweepError::RootNotDirectory { path }) => assert!(path.ends_with("plain")),
        other => panic!("wrong result: {other:?}"),
    }
}

#[test]
fn files_and_directories_under_flock_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("busy.mp4"), 1, old());
    file(&root.join("job/busy-dir-file"), 1, old());
    file(&root.join("free.mp4"), 1, old());
    // A second open file description conflicts with ours, as another process would.
    let held_file = fs::File::open(root.join("busy.mp4")).unwrap();
    rustix::fs::flock(&held_file, rustix::fs::FlockOperation::LockShared).unwrap();
    let held_dir = fs::File::open(root.join("job")).unwrap();
    rustix::fs::flock(&held_dir, rustix::fs::FlockOperation::LockShared).unwrap();

    // A dry run predicts both (from /proc/locks where that lists every flock).
    let dry = sweep(root).dry_run(true).run().unwrap();
    assert_eq!((dry.skipped.locked, dry.files_removed), (2, 1));
    let report = sweep(root).run().unwrap();
    assert_eq!(report.skipped.locked, 2);
    assert_eq!(report.files_removed, 1);
    assert!(root.join("busy.mp4").exists());
    assert!(root.join("job/busy-dir-file").exists());

    let report = sweep(root).skip_locked(false).run().unwrap();
    assert_eq!(report.skipped.locked, 0);
    assert_eq!(report.files_removed, 2);
}

#[test]
fn a_locked_file_is_skipped_alike_by_dry_runs_and_pressure_mode() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("oldest-but-busy.mp4"), 4096, old() - DAY);
    file(&root.join("free.mp4"), 4096, old());
    let held = fs::File::open(root.join("oldest-but-busy.mp4")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let dry = sweep(root).dry_run(true).run().unwrap();
    assert_eq!((dry.files_removed, dry.skipped.locked), (1, 1));
    // Pressure mode would take the oldest first; the busy one is passed over.
    let report = sweep(root)
        .byte_goal(1)
        .collect_removed(true)
        .run()
        .unwrap();
    assert_eq!((report.files_removed, report.skipped.locked), (1, 1));
    assert!(report.removed[0].path.ends_with("free.mp4"));
    assert!(root.join("oldest-but-busy.mp4").exists());
    drop(held);
    let report = sweep(root).run().unwrap();
    assert_eq!((report.files_removed, report.skipped.locked), (1, 0));
}

#[test]
fn an_unreadable_subtree_is_reported_and_the_rest_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    file(&root.join("sealed/inside"), 1, old());
    file(&root.join("open/inside"), 1, old());
    file(&root.join("top"), 1, old());
    fs::set_permissions(root.join("sealed"), fs::Permissions::from_mode(0o000)).unwrap();

    let report = {
        let _no_override = common::NoDacOverride::new();
        sweep(root).threads(2).run().unwrap()
    };
    fs::set_permissions(root.join("sealed"), fs::Permissions::from_mode(0o700)).unwrap();

    assert_eq!(report.errors.permission_denied, 1);
    assert_eq!(report.error_samples.len(), 1);
    let sample = &report.error_samples[0];
    assert_eq!(sample.kind, ErrorKind::PermissionDenied);
    assert!(sample.path.ends_with("sealed"), "{sample:?}");
    assert!(
        sample.message.contains("cannot open directory"),
        "{sample:?}"
    );
    assert!(report.has_failures());
    assert_eq!(report.files_removed, 2);
    assert!(root.join("sealed/inside").exists());
    assert!(!root.join("open").exists());
}

#[test]
fn dry_run_reports_exactly_what_a_real_run_then_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..40 {
        let t = if i % 3 == 0 { young() } else { old() };
        file(
            &root.join(format!("d{}/e{}/f{i}", i % 5, i % 2)),
            i * 100,
            t,
        );
    }
    file(&root.join("x.keep"), 1, old());
    let before = listing(root);
    let configured = sweep(root).exclude("*.keep").unwrap().collect_removed(true);

    let dry = configured.clone().dry_run(true).run().unwrap();
    assert_eq!(listing(root), before, "a dry run deletes nothing");
    let real = configured.run().unwrap();
    assert!(dry.dry_run && !real.dry_run);
    assert!(dry.files_removed > 0);
    for (a, b) in [
        (dry.files_removed, real.files_removed),
        (dry.dirs_removed, real.dirs_removed),
        (dry.bytes_freed, real.bytes_freed),
        (dry.apparent_bytes, real.apparent_bytes),
        (dry.entries_scanned, real.entries_scanned),
    ] {
        assert_eq!(a, b);
    }
    assert_eq!(dry.skipped, real.skipped);
    assert_eq!(dry.removed, real.removed);
    let gone: BTreeSet<PathBuf> = before
        .difference(&listing(root))
        .map(|p| root.join(p))
        .collect();
    let reported: BTreeSet<PathBuf> = real.removed.iter().map(|e| e.path.clone()).collect();
    assert_eq!(gone, reported);
}

#[test]
fn reports_are_the_same_on_one_thread_and_on_many() {
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..60 {
            let t = if i % 4 == 0 { young() } else { old() };
            file(
                &dir.path()
                    .join(format!("a{}/b{}/c{}/f{i}", i % 3, i % 4, i % 2)),
                10,
                t,
            );
        }
        dir
    };
    let one = make();
    let many = make();
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap(),
    );
    let mut r1 = sweep(one.path())
        .thread_pool(pool)
        .collect_removed(true)
        .run()
        .unwrap();
    let mut r4 = sweep(many.path())
        .threads(4)
        .collect_removed(true)
        .run()
        .unwrap();
    r1.elapsed_us = 0;
    r4.elapsed_us = 0;
    r4.root = r1.root.clone();
    for entry in &mut r4.removed {
        entry.path = one
            .path()
            .join(entry.path.strip_prefix(many.path()).unwrap());
    }
    // Directory times are the real clock's, which differs between the two trees.
    for entry in r1.removed.iter_mut().chain(r4.removed.iter_mut()) {
        if entry.kind == EntryKind::Dir {
            entry.age_time = std::time::UNIX_EPOCH;
        }
    }
    assert_eq!(r1, r4);
}

#[test]
fn the_observer_sees_every_removal_with_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..10 {
        file(
            &root.join(format!("s/f{i}")),
            1,
            if i < 7 { old() } else { young() },
        );
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let report = sweep(root)
        .on_removed(move |entry| sink.lock().unwrap().push(entry.clone()))
        .run()
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len() as u64,
        report.files_removed + report.dirs_removed
    );
    let cutoff = now() - DAY;
    assert!(
        seen.iter()
            .all(|e| e.kind != EntryKind::File || e.age_time < cutoff)
    );
    assert_eq!(seen.iter().filter(|e| e.kind == EntryKind::File).count(), 7);
}

#[test]
fn age_by_newest_keeps_files_read_recently() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = root.join("read-yesterday");
    file(&path, 1, old());
    filetime::set_file_times(
        &path,
        filetime::FileTime::from_system_time(young()),
        filetime::FileTime::from_system_time(old()),
    )
    .unwrap();
    // ctime is the real clock, which is far older than the virtual now: only atime counts.
    let newest = sweep(root)
        .age_by(AgeBy::Newest)
        .dry_run(true)
        .run()
        .unwrap();
    assert_eq!(newest.files_removed, 0);
    let by_mtime = sweep(root).dry_run(true).run().unwrap();
    assert_eq!(by_mtime.files_removed, 1);
}

#[test]
fn pressure_mode_deletes_the_oldest_first_and_stops_at_the_goal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Ten 8 KiB files, f0 the oldest; two young ones that must never go.
    for i in 0..10u32 {
        let t = old() - DAY * (10 - i);
        file(&root.join(format!("d{}/f{i}", i % 3)), 8192, t);
    }
    file(&root.join("d0/young1"), 8192, young());
    file(&root.join("young2"), 8192, young());
    let per_file = fs::metadata(root.join("d0/f0"))
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        })
        .unwrap();

    let report = sweep(root)
        .byte_goal(3 * per_file)
        .collect_removed(true)
        .run()
        .unwrap();
    assert_eq!(report.files_removed, 3);
    assert!(report.goal_met());
    assert_eq!(report.skipped.goal_reached, 7);
    assert_eq!(report.dirs_removed, 0);
    let names: Vec<_> = report
        .removed
        .iter()
        .map(|e| e.path.file_name().unwrap().to_owned())
        .collect();
    let mut names: Vec<_> = names
        .iter()
        .map(|n| n.to_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["f0", "f1", "f2"]);

    let report = sweep(root).byte_goal(u64::MAX).run().unwrap();
    assert_eq!(report.files_removed, 7);
    assert!(!report.goal_met());
    assert!(root.join("d0/young1").exists() && root.join("young2").exists());
}

#[test]
fn pressure_mode_dry_run_matches_the_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..20u32 {
        file(
            &root.join(format!("d{}/f{i}", i % 4)),
            4096 * (1 + i as usize % 3),
            old() - DAY * (i % 7),
        );
    }
    let configured = sweep(root).byte_goal(40_000).collect_removed(true);
    let dry = configured.clone().dry_run(true).run().unwrap();
    let real = configured.run().unwrap();
    assert_eq!(dry.removed, real.removed);
    assert_eq!(dry.bytes_freed, real.bytes_freed);
    assert!(real.bytes_freed >= 40_000);
}

#[test]
fn slash_and_pseudo_filesystems_are_refused_unless_allowed() {
    match Sweep::new("/").dry_run(true).run() {
        Err(err @ SweepError::RootIsSlash { .. }) => {
            assert!(err.to_string().contains("--no-preserve-root"), "{err}");
        }
        other => panic!("`/` accepted: {other:?}"),
    }
    for (root, fs_type) in [
        ("/sys", "sysfs"),
        ("/proc", "proc"),
        ("/proc/sys/kernel", "proc"),
    ] {
        match Sweep::new(root).dry_run(true).run() {
            Err(err @ SweepError::PseudoFilesystem { .. }) => {
                assert!(err.to_string().contains(fs_type), "{err}");
                assert!(err.to_string().contains("--allow-pseudo-fs"), "{err}");
            }
            other => panic!("{root} accepted: {other:?}"),
        }
    }
    let dev_is_devtmpfs = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/dev") && l.contains(" - devtmpfs "));
    if dev_is_devtmpfs {
        assert!(matches!(
            Sweep::new("/dev").dry_run(true).run(),
            Err(SweepError::PseudoFilesystem {
                fs_type: "devtmpfs",
                ..
            })
        ));
    }
    // Said explicitly, they are swept (a dry run, of a small corner).
    let report = Sweep::new("/proc/sys/kernel")
        .allow_pseudo_fs(true)
        .dry_run(true)
        .run()
        .unwrap();
    assert!(report.entries_scanned > 0);
    // An ordinary directory is no pseudo-filesystem.
    let dir = tempfile::tempdir().unwrap();
    assert!(Sweep::new(dir.path()).dry_run(true).run().is_ok());
}

/// CVE-2018-6954's shape: someone plants `/tmp/x → victim` (or a directory) in a
/// world-writable directory before the sweep starts. The root path must not be
/// followed there. The tests run as root, so the planter is uid 65534.
#[test]
fn a_root_planted_by_another_user_in_a_world_writable_directory_is_refused() {
    use std::os::unix::fs::{lchown, symlink};
    let victim = tempfile::tempdir().unwrap();
    file(&victim.path().join("precious"), 10, old());
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = tmp.path().join("makevideo");
    symlink(victim.path(), &planted).unwrap();
    lchown(&planted, Some(65534), Some(65534)).unwrap();
    let planted_dir = tmp.path().join("dir-of-another");
    fs::create_dir(&planted_dir).unwrap();
    file(&planted_dir.join("x"), 1, old());
    lchown(&planted_dir, Some(65534), Some(65534)).unwrap();
    // Through a directory of a non-root user, a jump back to `/`-owned land.
    let users = tempfile::tempdir().unwrap();
    lchown(users.path(), Some(65534), Some(65534)).unwrap();
    let link_in_users_dir = users.path().join("to-victim");
    symlink(victim.path(), &link_in_users_dir).unwrap();
    lchown(&link_in_users_dir, Some(65534), Some(65534)).unwrap();

    for root in [
        planted.clone(),
        planted.join("."),
        planted_dir.clone(),
        link_in_users_dir,
    ] {
        match Sweep::new(&root).now(now()).run() {
            Err(err @ SweepError::UnsafeRoot { .. }) => {
                assert!(err.to_string().contains("uid 65534"), "{err}");
            }
            other => panic!("{} accepted: {other:?}", root.display()),
        }
    }
    assert!(victim.path().join("precious").exists());
    assert!(planted_dir.join("x").exists());

    // The same link, owned by root (as if the operator made it), is followed.
    lchown(&planted, Some(0), Some(0)).unwrap();
    let report = Sweep::new(&planted).now(now()).run().unwrap();
    assert_eq!(report.files_removed, 1);
    assert!(!victim.path().join("precious").exists());
}

/// A job extracts an archive: the files keep the archive's old mtimes, but their ctime
/// is the extraction time. Ageing by mtime alone would delete them mid-job.
#[test]
fn a_file_with_an_old_mtime_but_a_fresh_ctime_survives_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("frame-0001.png");
    fs::write(&extracted, b"png").unwrap();
    // Real clock here: the ctime is now, the mtime two days ago.
    let two_days_ago = std::time::SystemTime::now() - 2 * DAY;
    filetime::set_file_mtime(&extracted, two_days_ago.into()).unwrap();

    let report = Sweep::new(dir.path()).run().unwrap();
    assert_eq!(report.files_removed, 0);
    assert_eq!(report.skipped.too_young, 1);
    assert!(extracted.exists());
    let by_mtime = Sweep::new(dir.path()).age_by(AgeBy::Mtime).run().unwrap();
    assert_eq!(by_mtime.files_removed, 1);
}

/// Two old names of one inode, and a third inode whose second name stays (excluded):
/// a dry run must report the bytes the real run then frees, in total and per entry, in
/// a plain sweep and in pressure mode.
#[test]
fn hard_links_count_the_same_in_a_dry_run_and_a_real_run() {
    use std::os::unix::fs::MetadataExt;
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        file(&root.join("a/clip.mp4"), 64 * 1024, old());
        fs::create_dir(root.join("b")).unwrap();
        fs::hard_link(root.join("a/clip.mp4"), root.join("b/clip-link.mp4")).unwrap();
        file(&root.join("c/shared.mp4"), 32 * 1024, old());
        fs::hard_link(root.join("c/shared.mp4"), root.join("c/shared.keep")).unwrap();
        file(&root.join("single.tmp"), 4096, old());
        // Written out, so that the blocks measured below are the ones the sweep sees
        // (a filesystem may still be choosing them for data in its page cache).
        for data in ["a/clip.mp4", "c/shared.mp4", "single.tmp"] {
            fs::File::open(root.join(data)).unwrap().sync_all().unwrap();
        }
        dir
    };
    let blocks = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    let tree = make();
    let root = tree.path();
    let clip = blocks(&root.join("a/clip.mp4"));
    let single = blocks(&root.join("single.tmp"));
    let configured = sweep(root).exclude("*.keep").unwrap().collect_removed(true);
    let dry = configured.clone().dry_run(true).run().unwrap();
    let real = configured.run().unwrap();
    assert_eq!(real.files_removed, 4);
    assert_eq!(
        real.bytes_freed,
        clip + single,
        "the clip once, the shared file not at all"
    );
    assert_eq!(dry.bytes_freed, real.bytes_freed);
    assert_eq!(dry.removed, real.removed);

    let tree = make();
    let root = tree.path();
    let (clip, single) = (
        blocks(&root.join("a/clip.mp4")),
        blocks(&root.join("single.tmp")),
    );
    let configured = sweep(root)
        .exclude("*.keep")
        .unwrap()
        .byte_goal(u64::MAX)
        .collect_removed(true);
    let dry = configured.clone().dry_run(true).run().unwrap();
    let real = configured.run().unwrap();
    assert_eq!(real.bytes_freed, clip + single);
    assert_eq!(dry.bytes_freed, real.bytes_freed);
    assert_eq!(dry.removed, real.removed);
}
