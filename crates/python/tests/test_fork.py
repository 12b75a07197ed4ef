"""Per-process state after fork: what the parent made is made again in the child."""

from __future__ import annotations

import os
from pathlib import Path

from backstop_admission import _native, sweep


def run_in_child(body) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


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
