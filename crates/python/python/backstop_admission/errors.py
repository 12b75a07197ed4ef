"""The exceptions backstop raises: a small hierarchy with attributes, never strings to parse.

``Refused`` mirrors backstop's ``Refusal``: ``RateLimited`` (429, the exact wait) and
``Overloaded`` (503, a hint). Every other failure is a ``BackstopError`` subclass naming
what was wrong; a bug inside backstop (a Rust panic) is ``InternalError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

__all__ = [
    "BackstopError",
    "ConfigError",
    "InternalError",
    "JobMustWait",
    "Overloaded",
    "RateLimited",
    "Refused",
    "StoreError",
    "SweepError",
    "TokenError",
    "WorkspaceError",
]


class BackstopError(Exception):
    """Every error raised by backstop_admission."""


class ConfigError(BackstopError, ValueError):
    """A bad setting: TOML, a keyword argument, a URL, a failure policy, a share."""


class StoreError(BackstopError):
    """The shared store (Redis) could not be reached or used when connecting."""


class TokenError(BackstopError, ValueError):
    """A detached ticket token that is malformed, forged, from another admission, or expired."""


class SweepError(BackstopError):
    """A sweep that could not start (unsafe or missing root, bad exclude, no threads)."""


class WorkspaceError(BackstopError):
    """A job workspace operation that failed (unsafe base, bad name, cleanup left entries)."""


class InternalError(BackstopError, RuntimeError):
    """A bug inside backstop (a Rust panic, caught at the boundary). The call did not complete."""


class JobMustWait(BackstopError):
    """A queued job may not start yet; its ticket keeps its place.

    Attributes:
        reason: ``no_free_slot``, ``low_memory``, ``low_disk``, ``memory_pressure``,
            ``stale`` or ``store_unavailable``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Refused(BackstopError):
    """A request backstop refused, with what an HTTP answer needs.

    Built as ``Refused(message, retry_after, reason, scope=None, retry_after_ns=None)``.
    The attributes read the exception's ``args``, which keeps a refusal (the common answer
    under a burst) cheap: backstop makes one with ``BaseException.__new__`` alone, with
    ``retry_after`` left ``None`` in ``args`` (the property computes it from
    ``retry_after_ns``) and the message written only when it is read. These classes and
    their subclasses below ``Exception`` define no ``__new__`` or ``__init__`` for that
    reason (one that does is called as usual, at the full cost).

    Attributes:
        status_code: 429 or 503.
        retry_after: seconds to wait before retrying (exact for 429, a hint for 503).
        reason: ``rate_limited``, ``queue_full``, ``too_many_keys`` or ``store_unavailable``.
        scope: for 429, which window refused (``global`` or ``per_client``); else ``None``.
        retry_after_ns: ``retry_after`` in whole nanoseconds, exactly as decided.
    """

    status_code: int = 0

    if TYPE_CHECKING:

        def __init__(
            self,
            message: str,
            retry_after: Optional[float],
            reason: str,
            scope: Optional[str] = None,
            retry_after_ns: Optional[int] = None,
        ) -> None: ...

    def __str__(self) -> str:
        message = self._arg(0)
        if message:
            return str(message)
        # Raised by backstop: the message is written only when someone reads it.
        if self.reason == "rate_limited":
            return f"rate limited ({self.scope}): retry after {self.retry_after}s"
        return f"overloaded ({self.reason}): retry after about {self.retry_after}s"

    def _arg(self, index: int) -> Any:
        return self.args[index] if len(self.args) > index else None

    @property
    def retry_after(self) -> float:
        seconds = self._arg(1)
        if seconds is None:
            exact = self._arg(4)
            return 0.0 if exact is None else int(exact) / 1e9
        return float(seconds)

    @property
    def reason(self) -> str:
        return str(self._arg(2))

    @property
    def scope(self) -> Optional[str]:
        scope = self._arg(3)
        return None if scope is None else str(scope)

    @property
    def retry_after_ns(self) -> int:
        exact = self._arg(4)
        if exact is not None:
            return int(exact)
        return max(0, round(self.retry_after * 1e9))

    @property
    def retry_after_secs(self) -> int:
        """``retry_after`` rounded up to whole seconds, for a ``Retry-After`` header."""
        return -(-self.retry_after_ns // 1_000_000_000)


class RateLimited(Refused):
    """429: too many requests in a window; ``retry_after`` is exactly when a retry passes."""

    status_code = 429


class Overloaded(Refused):
    """503: the queue is full, too many clients are tracked, or the store is unavailable."""

    status_code = 503
