"""backstop for Python job services.

- ``sweep`` and ``JobWorkspace``: race-safe temp-file cleanup (``backstop_admission.celery``
  makes the sweep a Celery beat task);
- the exceptions in ``backstop_admission.errors``.

The native module ``backstop_admission._native`` is private; everything public is here.
"""

from __future__ import annotations

from . import _native
from .errors import (
    BackstopError,
    ConfigError,
    InternalError,
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
    "BackstopError",
    "ConfigError",
    "InternalError",
    "JobWorkspace",
    "Overloaded",
    "RateLimited",
    "Refused",
    "StoreError",
    "SweepError",
    "TokenError",
    "WorkspaceError",
    "sweep",
]
