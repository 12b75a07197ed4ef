"""Celery: job slots held by workers, and the periodic temp-file sweep as a beat task.

In ``celery_app.py``::

    from backstop_admission.celery import sweep_task
    sweep_task(app)   # /tmp/makevideo, files older than 24 h, every 6 h

The task returns the sweep report as a dict (JSON-safe, so any result backend stores it).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Dict, Iterable, Iterator, Optional, Union

from ._native import RedisAdmission, RedisPermit
from .errors import JobMustWait
from .sweep import DEFAULT_OLDER_THAN, Duration, seconds, sweep

__all__ = ["DEFAULT_EVERY", "SWEEP_TASK_NAME", "start_job", "sweep_task"]

#: How often the original cleanup ran.
DEFAULT_EVERY = timedelta(hours=6)

#: The task's registered name.
SWEEP_TASK_NAME = "backstop_admission.sweep"


def sweep_task(
    app: Any,
    *,
    root: str = "/tmp/makevideo",
    older_than: Duration = DEFAULT_OLDER_THAN,
    every: Optional[Union[Duration, Any]] = DEFAULT_EVERY,
    name: str = SWEEP_TASK_NAME,
    age_by: Optional[str] = None,
    exclude: Iterable[str] = (),
    threads: int = 0,
) -> Any:
    """Registers the sweep task on ``app`` and, unless ``every`` is ``None``, its beat entry.

    Args:
        app: the ``celery.Celery`` application.
        root: the tree to sweep.
        older_than: age cutoff (default 24 h).
        every: the beat schedule: a duration (default 6 h) or any Celery schedule
            (``crontab(minute=0, hour="*/6")``); ``None`` registers the task only.
        name: the task name (and beat entry key).
        age_by, exclude, threads: as for ``backstop_admission.sweep``.

    Returns:
        The registered task; ``task.delay()`` runs a sweep now.

    Two beats firing at once (two beat processes, or a late run overlapping the next)
    are harmless: each entry is removed by exactly one sweep, and the other counts it
    under ``errors["vanished"]``, which is not a failure. A run that waited in the
    queue longer than ``every`` expires instead of piling up behind the next.
    """
    excludes = list(exclude)

    @app.task(name=name, ignore_result=False)  # type: ignore[untyped-decorator,misc]
    def backstop_sweep() -> Dict[str, Any]:
        return sweep(
            root,
            older_than=older_than,
            age_by=age_by,
            exclude=excludes,
            threads=threads,
        )

    if every is not None:
        schedule = seconds(every) if isinstance(every, (timedelta, int, float)) else every
        entry: Dict[str, Any] = {"task": name, "schedule": schedule}
        if isinstance(schedule, float):
            entry["options"] = {"expires": schedule}
        app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), name: entry}
    return backstop_sweep


@contextmanager
def start_job(
    admission: RedisAdmission,
    token: str,
    *,
    wait: Duration = 60.0,
    poll: Duration = 0.05,
) -> Iterator[RedisPermit]:
    """Claims a detached ticket and holds a running job's slot for the ``with`` block.

    In a Celery task::

        @app.task(bind=True)
        def make_video(self, job_id, token):
            with start_job(admission, token):
                ...   # at most jobs.max of these run at once, across every worker

    The permit's lease is renewed in the background while the block runs, and the slot
    is given back when the block ends (normally, by an exception, or by the worker
    shutting the task down); a worker that is killed outright gives it back when the
    lease runs out.

    When no slot frees up within ``wait``, the place is detached again and
    ``JobMustWait`` is raised with the new token as ``.token``, for the task to retry
    with (``raise self.retry(args=(job_id, err.token))``).

    Raises:
        TokenError: the token is malformed, forged, of another admission, expired
            (``queue.max_wait`` passed) or already claimed.
        JobMustWait: no slot within ``wait`` (``.token`` holds the place).
    """
    ticket = admission.claim_blocking(token)
    deadline = time.monotonic() + seconds(wait)
    while True:
        try:
            permit = ticket.start_blocking()
            break
        except JobMustWait as must_wait:
            if time.monotonic() >= deadline:
                must_wait.token = ticket.detach_blocking()  # type: ignore[attr-defined]
                raise
            time.sleep(seconds(poll))
    with permit:
        yield permit
