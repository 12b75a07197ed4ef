"""``JobWorkspace``: a job's private temp directory, cleaned stage by stage.

Replaces the original service's ``_cleanup_stage`` stubs: each stage's files go when the
stage ends, and the whole directory goes when the job ends, on success, on an exception,
or when the worker shuts the task down.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Dict, Iterator, Optional, Type, Union

from . import _native

__all__ = ["JobWorkspace"]

_log = logging.getLogger(__name__)

DEFAULT_BASE = "/tmp/makevideo"


class JobWorkspace:
    """A private (0700) directory ``base/job_id`` for one job.

    >>> import tempfile, os
    >>> base = tempfile.mkdtemp()
    >>> with JobWorkspace("job-1", base=base) as job:
    ...     with job.stage("download") as download:
    ...         _ = open(os.path.join(download, "clip.mp4"), "wb").write(b"...")
    ...     os.path.exists(download)  # the stage's files went with the stage
    False
    >>> os.path.exists(os.path.join(base, "job-1"))  # and the workspace with the job
    False

    The base is created 0700 when missing; an existing one must belong to this user and
    not be writable by others (``WorkspaceError`` otherwise), and is resolved without
    following links someone else could have planted. The job id and stage names must
    be single path components.

    ``lock=True`` (the default) takes a shared ``flock`` on the directory so that the
    periodic sweep leaves a long-running job's files alone however old they look.
    """

    def __init__(
        self,
        job_id: str,
        *,
        base: Union[str, "os.PathLike[str]"] = DEFAULT_BASE,
        lock: bool = True,
    ) -> None:
        self._native = _native.JobWorkspace(os.fspath(base), job_id)
        if lock:
            try:
                self._native.lock_against_sweeps()
            except BaseException:
                self._native.close()
                raise

    @property
    def path(self) -> str:
        """The workspace directory."""
        return self._native.path

    @property
    def job_id(self) -> str:
        """The job id."""
        return self._native.job_id

    @property
    def closed(self) -> bool:
        """Whether the workspace was removed (or closed while kept)."""
        return self._native.removed

    def stage_dir(self, name: str) -> str:
        """The directory of stage ``name`` (created 0700 if missing), without cleanup."""
        return self._native.stage(name)

    def finish_stage(self, name: str) -> Dict[str, Any]:
        """Removes stage ``name`` and everything in it; the sweep report of what went.

        Finishing a stage that does not exist removes nothing and succeeds.
        """
        report: Dict[str, Any] = json.loads(self._native.finish_stage(name))
        return report

    @contextmanager
    def stage(self, name: str) -> Iterator[str]:
        """The directory of stage ``name``, removed with its contents when the block ends.

        On an exception the stage is removed too; the exception goes on.
        """
        path = self.stage_dir(name)
        try:
            yield path
        finally:
            self.finish_stage(name)

    def keep(self) -> None:
        """Leave the directory on disk when the workspace closes (to inspect a failed job)."""
        self._native.keep()

    def close(self) -> Optional[Dict[str, Any]]:
        """Removes the workspace now (unless kept); the report, or ``None`` if nothing went.

        Closing twice is harmless.
        """
        report = self._native.close()
        return None if report is None else json.loads(report)

    def __enter__(self) -> "JobWorkspace":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            self.close()
            return
        # The job failed: remove what it left, but never hide its exception behind a
        # cleanup error (the periodic sweep collects whatever stays).
        try:
            self.close()
        except Exception:  # noqa: BLE001
            _log.warning("cleanup of workspace %s failed", self.path, exc_info=True)

    def __repr__(self) -> str:
        return f"JobWorkspace({self.job_id!r}, path={self.path!r}, closed={self.closed})"
