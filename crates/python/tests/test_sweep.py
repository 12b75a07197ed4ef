"""The sweep from Python on real trees: old and young files, links out of the root, a
link swapped in during the walk, two sweeps at once, bad input, the GIL released."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from backstop_admission import ConfigError, SweepError, sweep

DAY = 24 * 3600


def make_file(path: Path, age_s: float, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_old_files_go_young_stay_links_out_of_the_root_are_removed_as_links(
    tree: Path,
) -> None:
    root = tree / "makevideo"
    outside = tree / "outside"
    old = [make_file(root / "job-1" / f"clip{i}.mp4", 2 * DAY) for i in range(3)]
    young = make_file(root / "job-2" / "frame.png", 3600)
    precious = make_file(outside / "precious.txt", 10 * DAY)
    link = root / "escape"
    link.symlink_to(outside)
    then = time.time() - 2 * DAY
    os.utime(link, (then, then), follow_symlinks=False)

    report = sweep(root, age_by="mtime")

    assert all(not p.exists() for p in old)
    assert young.exists()
    assert precious.exists(), "a link out of the root must never be followed"
    assert not link.is_symlink(), "an old link is removed as a link"
    assert report["files_removed"] == 3
    assert report["symlinks_removed"] == 1
    assert report["bytes_freed"] > 0
    assert report["skipped"]["too_young"] >= 1
    assert sum(report["errors"].values()) == 0


def test_a_directory_swapped_for_a_link_during_the_walk_never_leads_outside(
    tree: Path,
) -> None:
    root = tree / "root"
    outside = tree / "outside"
    victims = [make_file(outside / f"v{i}", 10 * DAY) for i in range(20)]
    stop = threading.Event()

    def attacker() -> None:
        spare = root / "swap"
        n = 0
        while not stop.is_set():
            n += 1
            target = root / f"d{n % 8}"
            try:
                if target.is_symlink():
                    target.unlink()
                    target.mkdir()
                    make_file(target / "old", 10 * DAY)
                else:
                    target.rename(spare / str(n)) if spare.exists() else None
                    target.symlink_to(outside)
            except OSError:
                pass

    for i in range(8):
        for j in range(30):
            make_file(root / f"d{i}" / f"f{j}", 10 * DAY)
    (root / "swap").mkdir()
    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        for _ in range(15):
            sweep(root, age_by="mtime", keep_empty_dirs=True)
    finally:
        stop.set()
        thread.join()
    assert all(v.exists() for v in victims), "a file outside the root was removed"


def test_two_sweeps_at_once_remove_each_file_once_and_report_no_failure(
    tree: Path,
) -> None:
    files = [make_file(tree / f"d{i % 10}" / f"f{i}", 2 * DAY) for i in range(2000)]
    keep = make_file(tree / "young", 60)
    reports = []

    def run() -> None:
        reports.append(sweep(tree, age_by="mtime", threads=2))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not f.exists() for f in files)
    assert keep.exists()
    assert sum(r["files_removed"] for r in reports) == len(files)
    for r in reports:
        errors = dict(r["errors"])
        errors.pop("vanished")
        assert sum(errors.values()) == 0, r["error_samples"]


def test_the_gil_is_released_while_the_sweep_walks(tree: Path) -> None:
    for i in range(5000):
        make_file(tree / f"d{i % 50}" / f"f{i}", 2 * DAY, size=1)
    entered = threading.Event()
    seen_alive = []
    old_interval = sys.getswitchinterval()
    # No forced switches: the main thread can only run while the sweeping thread is in
    # the sweep if the sweep let go of the GIL.
    sys.setswitchinterval(1000)
    try:
        def run() -> None:
            entered.set()
            sweep(tree, age_by="mtime", threads=1)

        t = threading.Thread(target=run)
        t.start()
        entered.wait()
        seen_alive.append(t.is_alive())
        t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert seen_alive == [True]
    assert not any(p.is_file() for p in tree.rglob("*"))


def test_dry_run_and_now_and_excludes(tree: Path) -> None:
    from datetime import datetime, timedelta

    a = make_file(tree / "a.mp4", 60)
    b = make_file(tree / "b.lock", 60)
    in_a_week = datetime.now() + timedelta(days=7)
    report = sweep(tree, now=in_a_week, dry_run=True, exclude=["*.lock"])
    assert report["dry_run"] is True and report["files_removed"] == 1
    assert report["skipped"]["excluded"] == 1
    assert a.exists() and b.exists()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"older_than": -1}, ConfigError, "older_than"),
        ({"older_than": float("nan")}, ConfigError, "older_than"),
        ({"age_by": "ctime"}, ConfigError, "age_by"),
        ({"exclude": ["a[b"]}, ConfigError, "exclude"),
    ],
)
def test_bad_options_are_config_errors_that_name_the_option(
    tree: Path, kwargs: dict, error: type, words: str  # type: ignore[type-arg]
) -> None:
    with pytest.raises(error, match=words):
        sweep(tree, **kwargs)


def test_a_root_that_cannot_be_swept_is_a_sweep_error(tree: Path) -> None:
    with pytest.raises(SweepError, match="missing"):
        sweep(tree / "missing")
    with pytest.raises(SweepError, match="it is /"):
        sweep("/")
    with pytest.raises(SweepError, match="pseudo-filesystem"):
        sweep("/proc/self", dry_run=True)
