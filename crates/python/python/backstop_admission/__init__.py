"""backstop for Python job services.

- ``Limits``, ``Admission``, ``Ticket``, ``Permit``: the exact rate limit, the bounded
  queue and the job slots, in process (``try_admit`` is a nanosecond decision in Rust);
- ``RedisAdmission``, ``RedisTicket``, ``RedisPermit``: the same limits shared by every
  process through Redis, awaitable (asyncio) and blocking (threads, Celery), with tickets
  that detach to a token for a worker to claim (``backstop_admission.celery.start_job``);
- ``sweep`` and ``JobWorkspace``: race-safe temp-file cleanup (``backstop_admission.celery``
  makes the sweep a Celery beat task);
- the exceptions in ``backstop_admission.errors``.

The native module ``backstop_admission._native`` is private; everything public is here.
"""

from __future__ import annotations

from . import _native
from ._native import (
    Admission,
    Limits,
    ManualClock,
    Permit,
    RedisAdmission,
    RedisPermit,
    RedisTicket,
    Ticket,
)
from .errors import (
    BackstopError,
    ConfigError,
    InternalError,
    JobMustWait,
    Overloaded,
    RateLimited,
    Refused,
    StoreError,
    SweepError,
    TokenError,
    WorkspaceError,
)
from .sweep import sweep
from .workspace import JobWorkspace

__version__: str = _native.__version__

__all__ = [
    "Admission",
    "BackstopError",
    "ConfigError",
    "InternalError",
    "JobMustWait",
    "JobWorkspace",
    "Limits",
    "ManualClock",
    "Overloaded",
    "Permit",
    "RedisAdmission",
    "RedisPermit",
    "RedisTicket",
    "RateLimited",
    "Refused",
    "StoreError",
    "SweepError",
    "Ticket",
    "TokenError",
    "WorkspaceError",
    "sweep",
]
