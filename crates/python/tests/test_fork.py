"""Per-process state after fork: what the parent made is made again in the child."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from backstop_admission import (
    Admission,
    ConfigError,
    Limits,
    ManualClock,
    RedisAdmission,
    _native,
    sweep,
)


HUNG = -1000


def run_in_child(body, timeout: float = 60) -> int:  # type: ignore[no-untyped-def]
    """The child's exit status, or ``HUNG`` if it did not finish in ``timeout`` seconds."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return HUNG


def test_the_runtime_made_before_fork_is_made_again_in_the_child() -> None:
    assert _native._runtime_check() == os.getpid()
    parent = os.getpid()

    def child() -> int:
        # The parent's runtime threads do not exist here; this must not hang.
        return 0 if _native._runtime_check() == os.getpid() != parent else 2

    assert run_in_child(child) == 0
    assert _native._runtime_check() == parent


def test_a_sweep_works_in_a_forked_child(tree: Path) -> None:
    (tree / "a").write_bytes(b"x")
    os.utime(tree / "a", (0, 0))

    def child() -> int:
        return 0 if sweep(tree, age_by="mtime")["files_removed"] == 1 else 3

    assert run_in_child(child) == 0
    assert not (tree / "a").exists()


def test_an_admission_made_before_fork_works_in_the_child() -> None:
    from test_admission import gate_limits, wait_for_a_reading

    admission = Admission(gate_limits())
    wait_for_a_reading(admission)
    held = admission.try_admit()

    def child() -> int:
        # The parent's sampler thread is gone; the child's first job start makes its own.
        before = admission.snapshot()["resource_readings_total"]
        with admission.try_admit() as ticket, ticket.start() as permit:
            assert permit.held
        # The child's copy of the queue holds the parent's ticket too (memory is copied).
        assert admission.snapshot()["queue_depth"] == 1
        return 0 if wait_for_a_reading_after(admission, before) else 4

    assert run_in_child(child) == 0
    assert held.held and admission.snapshot()["jobs_started_total"] == 0


def wait_for_a_reading_after(admission: Admission, before: int) -> bool:
    deadline = time.monotonic() + 10
    while admission.snapshot()["resource_readings_total"] <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_manual_clock_admission_decides_alike_in_parent_and_child() -> None:
    clock = ManualClock()
    admission = Admission(Limits(rate_limit=1, resources_enabled=False), clock=clock)
    ticket = admission.try_admit()

    def child() -> int:
        try:
            admission.try_admit()
        except Exception as refused:  # noqa: BLE001
            return 0 if type(refused).__name__ == "RateLimited" else 5
        return 6

    assert run_in_child(child) == 0
    ticket.release()


def test_a_redis_ticket_and_permit_made_before_fork_stay_the_parents(redis_url: str) -> None:
    limits = Limits(rate_limit=100, queue_max=10, jobs_max=2, resources_enabled=False)
    admission = RedisAdmission.connect(redis_url, f"fork-{uuid.uuid4().hex}", limits)
    ticket = admission.try_admit_blocking()
    permit = admission.try_admit_blocking().start_blocking()

    def child() -> int:
        # Using the parent's place here would give it two owners: each use says so,
        # at once (the parent's runtime, which renews its lease, has no threads here).
        for use in (ticket.start_blocking, ticket.detach_blocking):
            try:
                use()
            except ConfigError as err:
                if "before a fork" not in str(err):
                    return 10
            else:
                return 11
        if ticket.held or permit.held or ticket.release() or permit.release():
            return 12
        # The door itself connects again in this process and admits here.
        with admission.try_admit_blocking() as mine:
            return 0 if mine.held else 13

    assert run_in_child(child, timeout=30) == 0
    # The child neither took nor released the parent's place and slot.
    assert ticket.held and permit.held
    snap = admission.snapshot()
    assert (snap["queue_depth"], snap["jobs_active"]) == (1, 1)
    with ticket.start_blocking() as second:
        assert second.held
    assert permit.release()
