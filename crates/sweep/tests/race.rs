//! An attacker keeps swapping a directory inside the tree for a symlink to a directory
//! outside it while sweeps run: nothing outside may ever be deleted.

mod common;

use std::fs;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use backstop_sweep::Sweep;
use common::{file, listing, now, old, set_mtime};
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};

const SWEEPS: usize = 150;
const BAIT_FILES: usize = 20;

/// Refills `root/dir` with old files through an fd opened without following symlinks,
/// so the refill itself can never write outside.
fn refill(root: &std::path::Path, dir: &str) {
    let Ok(root_fd) = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
    else {
        return;
    };
    let Ok(dir_fd) = rustix::fs::openat(
        &root_fd,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    ) else {
        return;
    };
    let old_secs = old()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stamp = Timespec {
        tv_sec: old_secs,
        tv_nsec: 0,
    };
    for i in 0..BAIT_FILES {
        let name = format!("bait{i}");
        if let Ok(fd) = rustix::fs::openat(
            dir_fd.as_fd(),
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW,
            Mode::RUSR | Mode::WUSR,
        ) {
            let _ = rustix::fs::futimens(
                &fd,
                &Timestamps {
                    last_access: stamp,
                    last_modification: stamp,
                },
            );
        }
    }
}

#[test]
fn swapping_directories_for_symlinks_never_leaks_a_deletion_outside() {
    let outside = tempfile::tempdir().unwrap();
    for i in 0..BAIT_FILES {
        // Same names as the bait inside, all old: a followed link would delete them.
        file(&outside.path().join(format!("bait{i}")), 10, old());
        file(&outside.path().join(format!("sub/bait{i}")), 10, old());
    }
    set_mtime(&outside.path().join("sub"), old());
    let outside_before = listing(outside.path());

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for name in ["a", "b", "c"] {
        fs::create_dir_all(root.join(name).join("sub")).unwrap();
        refill(&root, name);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, swaps, root) = (Arc::clone(&stop), Arc::clone(&swaps), root.clone());
        let target = outside.path().to_path_buf();
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let name = ["a", "b", "c"][round % 3];
                round += 1;
                let real = root.join(format!("{name}.real"));
                // Errors are expected: the sweep removes things under our feet.
                if fs::rename(root.join(name), &real).is_ok() {
                    let _ = std::os::unix::fs::symlink(&target, root.join(name));
                    let _ = std::os::unix::fs::symlink(&target, root.join(name).join("sub"));
                    std::thread::yield_now();
                    let _ = fs::remove_file(root.join(name));
                    let _ = fs::rename(&real, root.join(name));
                    swaps.fetch_add(1, Ordering::SeqCst);
                } else {
                    let _ = fs::create_dir_all(root.join(name).join("sub"));
                }
            }
        })
    };

    let mut removed = 0u64;
    for i in 0..SWEEPS {
        refill(&root, ["a", "b", "c"][i % 3]);
        refill(&root, &format!("{}.real", ["a", "b", "c"][i % 3]));
        let report = Sweep::new(&root).now(now()).threads(2).run().unwrap();
        removed += report.files_removed + report.symlinks_removed;
        assert_eq!(
            listing(outside.path()),
            outside_before,
            "sweep {i} deleted outside the root"
        );
    }
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();

    assert_eq!(listing(outside.path()), outside_before);
    assert!(removed > 0, "the sweeps did real work while under attack");
    assert!(swaps.load(Ordering::SeqCst) > 0, "the attacker got to swap");
}
