//! What more than one test file needs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The example binary, built by the cargo running this test, with the same profile and
/// target directory; built once per test process (cargo has released its build lock
/// by the time tests run).
pub fn make_video_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // This test is <target>/<profile>/deps/<test>; the example lands in
        // <target>/<profile>/examples/.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // The features of the README's and CI's `cargo test --workspace --all-features`,
        // so that the example reuses what that run already built.
        build.args([
            "build",
            "--quiet",
            "--workspace",
            "--all-features",
            "--example",
            "make_video",
            "--target-dir",
        ]);
        build.arg(target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building the make_video example failed");
        profile_dir.join("examples").join("make_video")
    })
}
