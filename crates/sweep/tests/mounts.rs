//! Real mounts in a private mount namespace: an overlay with layers on two filesystems,
//! a bind mount of the root's own filesystem (a directory and a file), a tmpfs inside
//! the root, and a read-only root.
//!
//! Each test re-runs itself under `unshare -m --propagation private` (util-linux), so
//! the mounts never leak to the host, and builds its tree there with `mount`. It is
//! skipped with a message only where the kernel lacks a filesystem it needs; when
//! `CI=true`, a missing `unshare` or a failing mount fails the test instead.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use backstop_sweep::Sweep;
use common::{file, listing, now, old};

/// Set in the re-run child to the name of the test it is to run inside the namespace.
const IN_NAMESPACE: &str = "BACKSTOP_SWEEP_IN_MOUNT_NS";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs `body` in a private mount namespace: in the re-run child, or by re-running
/// this test binary for `test` under `unshare`.
fn in_private_mount_namespace(test: &str, body: impl FnOnce()) {
    if std::env::var(IN_NAMESPACE).is_ok_and(|t| t == test) {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, test)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(err) => {
            assert!(!in_ci(), "CI=true but `unshare` cannot run: {err}");
            eprintln!("SKIPPED {test}: cannot run `unshare` ({err})");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        assert!(!in_ci(), "CI=true but no private mount namespace: {stderr}");
        eprintln!("SKIPPED {test}: no private mount namespace ({stderr})");
        return;
    }
    assert!(
        out.status.success(),
        "{test} failed in its mount namespace:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") || stdout.contains("SKIPPED"),
        "the child ran no test:\n{stdout}"
    );
    print!("{stdout}");
}

/// True when the kernel knows filesystem `fs` (else prints why the test is skipped).
fn kernel_has(fs: &str, test: &str) -> bool {
    let known = fs::read_to_string("/proc/filesystems")
        .unwrap()
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fs));
    if !known {
        // Not even CI can conjure a filesystem the kernel was built without.
        println!("SKIPPED {test}: the kernel has no {fs}");
    }
    known
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dev_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).unwrap().dev()
}

#[test]
fn an_overlay_with_layers_on_two_filesystems_is_swept() {
    in_private_mount_namespace("an_overlay_with_layers_on_two_filesystems_is_swept", || {
        if !kernel_has(
            "overlay",
            "an_overlay_with_layers_on_two_filesystems_is_swept",
        ) {
            return;
        }
        // The lower layer on the temp dir's filesystem, the upper one on a tmpfs.
        let base = tempfile::tempdir().unwrap();
        let lower = base.path().join("lower");
        let upper_fs = base.path().join("upper-fs");
        let merged = base.path().join("merged");
        for dir in [&lower, &upper_fs, &merged] {
            fs::create_dir(dir).unwrap();
        }
        file(&lower.join("old-from-image.mp4"), 5000, old());
        file(&lower.join("sub/old-frame.png"), 100, old());
        mount(&["-t", "tmpfs", "tmpfs", upper_fs.to_str().unwrap()]);
        fs::create_dir(upper_fs.join("upper")).unwrap();
        fs::create_dir(upper_fs.join("work")).unwrap();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper_fs.join("upper").display(),
            upper_fs.join("work").display()
        );
        mount(&[
            "-t",
            "overlay",
            "overlay",
            "-o",
            &options,
            merged.to_str().unwrap(),
        ]);
        // Written through the overlay: lands on the tmpfs upper layer.
        file(&merged.join("old-written.tmp"), 100, old());
        file(&merged.join("sub/old-written.tmp"), 100, old());
        assert_ne!(
            dev_of(&merged.join("old-from-image.mp4")),
            dev_of(&merged),
            "files report their layer's device, not the overlay's: the case at hand"
        );

        // `now` is years ahead: every file is old by mtime and ctime.
        let report = Sweep::new(&merged).now(now()).run().unwrap();
        assert_eq!(report.skipped.other_filesystem, 0, "{report:?}");
        assert_eq!(report.files_removed, 4, "{report:?}");
        assert_eq!(report.errors.total(), 0, "{report:?}");
        assert!(listing(&merged).is_empty(), "{:?}", listing(&merged));
    });
}

#[test]
fn a_bind_mount_of_the_same_filesystem_is_not_entered() {
    in_private_mount_namespace("a_bind_mount_of_the_same_filesystem_is_not_entered", || {
        let outside = tempfile::tempdir().unwrap();
        file(&outside.path().join("precious/a"), 10, old());
        file(&outside.path().join("precious/b"), 10, old());
        file(&outside.path().join("single"), 10, old());
        let before = listing(outside.path());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("bound-dir")).unwrap();
        file(&root.join("bound-file"), 1, old());
        file(&root.join("mine/old"), 1, old());
        mount(&[
            "--bind",
            outside.path().join("precious").to_str().unwrap(),
            root.join("bound-dir").to_str().unwrap(),
        ]);
        mount(&[
            "--bind",
            outside.path().join("single").to_str().unwrap(),
            root.join("bound-file").to_str().unwrap(),
        ]);
        assert_eq!(
            dev_of(&root.join("bound-dir/a")),
            dev_of(root),
            "a bind mount of the same filesystem: st_dev cannot tell"
        );

        for dry_run in [true, false] {
            let report = Sweep::new(root).now(now()).dry_run(dry_run).run().unwrap();
            assert_eq!(report.skipped.other_filesystem, 2, "{report:?}");
            assert_eq!(report.files_removed, 1, "only mine/old: {report:?}");
            assert_eq!(report.errors.total(), 0, "{report:?}");
        }
        assert_eq!(
            listing(outside.path()),
            before,
            "nothing outside was deleted"
        );
        assert!(!root.join("mine").exists());
    });
}

#[test]
fn a_tmpfs_inside_the_root_is_left_alone_and_a_read_only_root_is_reported() {
    in_private_mount_namespace(
        "a_tmpfs_inside_the_root_is_left_alone_and_a_read_only_root_is_reported",
        || {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs::create_dir(root.join("scratch")).unwrap();
            mount(&[
                "-t",
                "tmpfs",
                "tmpfs",
                root.join("scratch").to_str().unwrap(),
            ]);
            file(&root.join("scratch/old"), 10, old());
            file(&root.join("old"), 10, old());
            let report = Sweep::new(root).now(now()).run().unwrap();
            assert_eq!(report.skipped.other_filesystem, 1);
            assert_eq!(report.files_removed, 1);
            assert!(root.join("scratch/old").exists());

            // A read-only root: every removal fails with EROFS, each counted, none fatal.
            let ro = root.join("scratch");
            mount(&["-o", "remount,ro", ro.to_str().unwrap()]);
            let report = Sweep::new(&ro).now(now()).run().unwrap();
            assert_eq!(report.files_removed, 0);
            assert_eq!(report.errors.other, 1, "{report:?}");
            assert!(
                report.error_samples[0].message.contains("Read-only"),
                "{report:?}"
            );
            assert!(report.has_failures());
            let dry = Sweep::new(&ro).now(now()).dry_run(true).run().unwrap();
            assert_eq!(dry.files_removed, 1, "a dry run plans what it may try");
        },
    );
}
