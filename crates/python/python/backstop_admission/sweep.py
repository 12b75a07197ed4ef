"""One sweep of a temp tree: backstop-sweep's race-safe walk, the GIL released while it runs."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, Optional, Union

from . import _native

__all__ = ["DEFAULT_OLDER_THAN", "Duration", "seconds", "sweep"]

#: What the original cleanup deleted: files older than 24 hours.
DEFAULT_OLDER_THAN = timedelta(hours=24)

#: A duration: a ``timedelta`` or seconds.
Duration = Union[timedelta, float, int]


def seconds(value: Duration) -> float:
    """``value`` in seconds (a ``timedelta`` or a number)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def sweep(
    root: Union[str, "os.PathLike[str]"] = "/tmp/makevideo",
    *,
    older_than: Duration = DEFAULT_OLDER_THAN,
    now: Optional[datetime] = None,
    age_by: Optional[str] = None,
    dry_run: bool = False,
    exclude: Iterable[str] = (),
    keep_empty_dirs: bool = False,
    threads: int = 0,
    byte_goal: Optional[int] = None,
    collect_removed: bool = False,
) -> Dict[str, Any]:
    """Deletes the entries under ``root`` strictly older than ``older_than``; returns the report.

    The walk never follows a symlink, deletes only through directory file descriptors,
    stays on ``root``'s mount, skips files another process holds under ``flock``, and
    refuses a ``root`` reached through a link someone else could have planted. Two
    sweeps of one tree at once are harmless: an entry the other removed first is
    counted under ``errors["vanished"]``, which is not a failure.

    Args:
        root: the tree to sweep (never removed itself).
        older_than: age cutoff (default 24 h).
        now: judge ages against this time instead of the clock (ages then go by mtime).
        age_by: ``"mtime-ctime"`` (default: the newer of the two), ``"mtime"`` (as the
            original cleanup and ``find -mtime``) or ``"newest"`` (atime too).
        dry_run: count what would go, delete nothing.
        exclude: globs of paths (relative to ``root``) to leave alone.
        keep_empty_dirs: keep directories the sweep empties.
        threads: worker threads (0: chosen by the root's filesystem).
        byte_goal: pressure mode: oldest files first until this many bytes are freed.
        collect_removed: list every removed entry under ``"removed"``.

    Returns:
        The report as a dict (the schema of ``backstop-sweep --json``): ``files_removed``,
        ``symlinks_removed``, ``dirs_removed``, ``bytes_freed``, ``skipped``, ``errors``, ...

    Raises:
        SweepError: the sweep could not start (missing or unsafe root, ``/``, a
            pseudo-filesystem, no threads).
        ConfigError: a bad ``older_than``, ``age_by`` or ``exclude`` glob.
    """
    report = _native.sweep(
        os.fspath(root),
        older_than_s=seconds(older_than),
        now_s=None if now is None else now.timestamp(),
        age_by_name=age_by,
        dry_run=dry_run,
        exclude=list(exclude),
        keep_empty_dirs=keep_empty_dirs,
        threads=threads,
        byte_goal=byte_goal,
        collect_removed=collect_removed,
    )
    result: Dict[str, Any] = json.loads(report)
    return result
