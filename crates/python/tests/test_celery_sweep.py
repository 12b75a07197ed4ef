"""The sweep as a Celery task, through a real worker (prefork) and a real beat, on a
real tree: old and young files, links out of the root, a link swapped during the walk,
two runs at once."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

from processes import Proc, celery, wait_for_workers

DAY = 24 * 3600


def old(path: Path, age_s: float = 2 * DAY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 512)
    then = time.time() - age_s
    os.utime(path, (then, then), follow_symlinks=False)
    return path


@pytest.fixture(scope="module")
def worker(redis_url: str) -> Iterator[Tuple[Any, Path]]:
    base = Path(tempfile.mkdtemp(prefix="backstop-celery-sweep-"))
    root = base / "makevideo"
    root.mkdir()
    broker = f"{redis_url}/3" if redis_url.count("/") == 2 else redis_url
    env = {"SWEEP_BROKER": broker, "SWEEP_ROOT": str(root)}
    os.environ.update(env)
    sys.modules.pop("sweep_app", None)
    sys.path.insert(0, str(Path(__file__).parent / "apps"))
    app_module = importlib.import_module("sweep_app")
    proc = celery(["worker", "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
                   "-n", f"sweep-{os.getpid()}@%h"], "sweep_app", env)
    try:
        wait_for_workers(app_module.app, proc)
        yield app_module, root
    finally:
        proc.stop()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def empty_root(worker: Tuple[Any, Path]) -> None:
    """Each test starts from an empty root (the worker, and so the root, is shared)."""
    import shutil

    for entry in worker[1].iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def test_the_task_sweeps_the_tree_and_returns_the_report_as_a_dict(
    worker: Tuple[Any, Path],
) -> None:
    app_module, root = worker
    outside = root.parent / "outside"
    precious = old(outside / "precious.txt", 10 * DAY)
    gone = [old(root / "job-1" / f"clip{i}.mp4") for i in range(4)]
    young = root / "job-2" / "frame.png"
    young.parent.mkdir()
    young.write_bytes(b"y")
    link = root / "escape"
    link.symlink_to(outside)
    os.utime(link, (0, 0), follow_symlinks=False)

    report = app_module.sweep.delay().get(timeout=60)

    assert isinstance(report, dict)
    assert report["root"] == str(root)
    assert report["files_removed"] == 4 and report["symlinks_removed"] == 1
    assert all(not p.exists() for p in gone) and young.exists() and precious.exists()


def test_a_link_swapped_in_during_the_walk_never_leads_outside(
    worker: Tuple[Any, Path],
) -> None:
    app_module, root = worker
    outside = root.parent / "outside2"
    victims = [old(outside / f"v{i}", 10 * DAY) for i in range(10)]
    stop = threading.Event()

    def attacker() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            d = root / f"swap{n % 4}"
            try:
                if d.is_symlink():
                    d.unlink()
                    old(d / "f")
                elif d.exists():
                    d.rename(root.parent / f"moved{n}")
                    d.symlink_to(outside)
            except OSError:
                pass

    for i in range(4):
        for j in range(50):
            old(root / f"swap{i}" / f"f{j}")
    t = threading.Thread(target=attacker)
    t.start()
    try:
        for _ in range(5):
            app_module.sweep.delay().get(timeout=60)
    finally:
        stop.set()
        t.join()
    assert all(v.exists() for v in victims)


def test_two_runs_at_once_are_harmless(worker: Tuple[Any, Path]) -> None:
    app_module, root = worker
    files = [old(root / f"d{i % 20}" / f"f{i}") for i in range(1000)]
    first, second = app_module.sweep.delay(), app_module.sweep.delay()
    reports = [first.get(timeout=60), second.get(timeout=60)]
    assert all(not f.exists() for f in files)
    assert sum(r["files_removed"] for r in reports) == len(files)
    for r in reports:
        failures = sum(v for k, v in r["errors"].items() if k != "vanished")
        assert failures == 0, r["error_samples"]


def test_beat_schedules_the_sweep(redis_url: str, worker: Tuple[Any, Path]) -> None:
    app_module, root = worker
    victim = old(root / "from-beat.tmp")
    schedule = Path(tempfile.mkdtemp()) / "beat-schedule"
    env = {"SWEEP_EVERY": "1"}
    beat = celery(["beat", "--loglevel", "INFO", "-s", str(schedule)], "sweep_app", env)
    try:
        deadline = time.monotonic() + 60
        while victim.exists() and time.monotonic() < deadline and beat.alive():
            time.sleep(0.2)
        assert beat.alive(), beat.output()[-3000:]
        assert not victim.exists(), "beat did not run the sweep within 60 s"
        assert "backstop_admission.sweep" in beat.output()
    finally:
        beat.stop()
