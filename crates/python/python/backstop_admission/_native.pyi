# The private native module. The public, documented API is the package around it.
from datetime import timedelta
from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str

def _after_fork_in_child() -> None: ...
def _panic_for_tests(message: str) -> None: ...
def _runtime_check() -> int: ...
def sweep(
    root: str,
    *,
    older_than_s: float,
    now_s: Optional[float] = None,
    age_by_name: Optional[str] = None,
    dry_run: bool = False,
    exclude: List[str] = ...,
    keep_empty_dirs: bool = False,
    threads: int = 0,
    byte_goal: Optional[int] = None,
    collect_removed: bool = False,
) -> str: ...

class JobWorkspace:
    def __init__(self, base: str, job_id: str) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def removed(self) -> bool: ...
    def stage(self, name: str) -> str: ...
    def finish_stage(self, name: str) -> str: ...
    def keep(self) -> None: ...
    def lock_against_sweeps(self) -> None: ...
    def close(self) -> Optional[str]: ...

class Limits:
    """backstop's limits, with the original service's defaults (30 per 60 s, a queue of
    100, 5 running jobs, jobs wait below 2 GiB of memory or 5 GiB of disk).

    Keyword arguments are the TOML keys as ``<section>_<key>``: ``rate_limit=30``,
    ``rate_window="60s"`` (or a ``timedelta``), ``queue_max=100``, ``jobs_max=5``,
    ``resources_enabled=False``, ``shadow=True``. Raises ``ConfigError`` naming the key.
    """

    def __init__(self, **settings: Union[int, float, bool, str, timedelta]) -> None: ...
    @staticmethod
    def from_toml(text: str) -> Limits:
        """From the TOML of the reference service's ``[limits]`` (``[rate]``, ``[queue]``, ...)."""
    @staticmethod
    def from_file(path: Union[str, PathLike[str]]) -> Limits: ...
    def to_json(self) -> str:
        """The limits as JSON, durations and sizes written as in TOML."""
    def rate(self) -> Tuple[int, float]:
        """The shared rate limit: ``(limit, window in seconds)``."""

class ManualClock:
    """A clock that moves only when told (tests, simulations); starts at 0."""

    def __init__(self) -> None: ...
    @property
    def now_ns(self) -> int: ...
    def advance_ns(self, ns: int) -> None: ...
    def advance(self, seconds: float) -> None: ...
    def set_ns(self, ns: int) -> None: ...

class Admission:
    """The in-process front door: rate limit (429), queue (503), job slots.

    ``per_client=(limit, window_s)`` adds a window per client key (checked before the
    shared one), tracking at most ``max_clients`` clients.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Optional[ManualClock] = None,
        per_client: Optional[Tuple[int, float]] = None,
        max_clients: int = 10000,
    ) -> None: ...
    def try_admit(self, key: Optional[str] = None, priority: str = "normal") -> Ticket:
        """A ``Ticket`` (a place in the queue), or raises ``RateLimited`` / ``Overloaded``.

        ``priority``: ``"normal"``, ``"critical"`` (may use ``queue.critical_reserve``) or
        ``"exempt"`` (only counted; the ticket holds nothing).
        """
    def reconfigure(self, limits: Limits) -> None: ...
    def limits(self) -> Limits: ...
    def snapshot(self) -> Dict[str, Any]: ...
    def render_prometheus(self) -> str: ...

class Ticket:
    """A place in the queue, given back once: ``release()``, its ``with`` block, or GC."""

    @property
    def held(self) -> bool: ...
    def start(self) -> Permit:
        """A ``Permit``, or raises ``JobMustWait`` (``.reason``); the ticket then stays."""
    def release(self) -> bool: ...
    def __enter__(self) -> Ticket: ...
    def __exit__(self, *exc: object) -> bool: ...

class Permit:
    """A running job's slot, given back once: ``release()``, its ``with`` block, or GC."""

    @property
    def held(self) -> bool: ...
    def release(self) -> bool: ...
    def __enter__(self) -> Permit: ...
    def __exit__(self, *exc: object) -> bool: ...
