//! A tree 10 000 levels deep is swept with a low `RLIMIT_NOFILE` and no `EMFILE`.
//!
//! In its own test binary because the limit is process-wide.

mod common;

use std::os::fd::{AsFd, OwnedFd};

use backstop_sweep::Sweep;
use common::{listing, now};
use rustix::fs::{Mode, OFlags};

const DEPTH: usize = 10_000;
/// Low enough that one fd per level (or even one per 100) would fail.
const NOFILE: u64 = 64;

fn open_dir(parent: &OwnedFd, name: &str) -> OwnedFd {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .unwrap()
}

#[test]
fn a_tree_ten_thousand_levels_deep_is_swept_with_bounded_fds() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(NOFILE),
            maximum: limit.maximum,
        },
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // Paths this long exceed PATH_MAX: build the tree fd by fd, two fds at a time.
    let mut current = rustix::fs::open(
        dir.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let mut files = 0u64;
    for level in 0..DEPTH {
        if level % 1000 == 999 {
            let fd = rustix::fs::openat(&current, "f", OFlags::WRONLY | OFlags::CREATE, Mode::RUSR)
                .unwrap();
            drop(fd);
            files += 1;
        }
        rustix::fs::mkdirat(&current, "d", Mode::RWXU).unwrap();
        current = open_dir(&current, "d");
    }
    // One more file at the very bottom, and a sibling branch near the top.
    drop(
        rustix::fs::openat(
            current.as_fd(),
            "bottom",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::RUSR,
        )
        .unwrap(),
    );
    files += 1;
    drop(current);
    std::fs::create_dir(dir.path().join("side")).unwrap();
    std::fs::write(dir.path().join("side/f"), b"x").unwrap();
    files += 1;

    // Everything was created in real time, long before the virtual now: all of it is old.
    let dry = Sweep::new(dir.path())
        .now(now())
        .threads(2)
        .dry_run(true)
        .run()
        .unwrap();
    assert_eq!(
        dry.errors.total(),
        0,
        "dry run errors: {:?}",
        dry.error_samples
    );
    assert_eq!(dry.files_removed, files);
    assert_eq!(dry.dirs_removed, DEPTH as u64 + 1);

    let real = Sweep::new(dir.path()).now(now()).threads(2).run().unwrap();
    assert_eq!(real.errors.total(), 0, "errors: {:?}", real.error_samples);
    assert_eq!(real.files_removed, files);
    assert_eq!(real.dirs_removed, DEPTH as u64 + 1);
    assert!(listing(dir.path()).is_empty());
}
