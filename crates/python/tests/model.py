"""A plain Python model of backstop's in-process rules, for the stateful tests.

The exact window: a request at time t is admitted iff fewer than ``limit`` admissions
happened in ``(t - window, t]``; refused, it waits until the ``limit``-th most recent
admission leaves the window. Then the queue (at most ``queue_max`` tickets; a request
the queue refuses still counts in the window), then the job slots (at most ``jobs_max``
permits; a ticket that starts leaves the queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass
class Model:
    limit: int
    window_ns: int
    queue_max: int
    jobs_max: int
    now_ns: int = 0
    admissions: List[int] = field(default_factory=list)
    tickets: int = 0
    permits: int = 0

    def admit(self) -> Tuple[str, Optional[int]]:
        """``("admitted", None)``, ``("rate_limited", wait_ns)`` or ``("queue_full", None)``."""
        if len(self.admissions) >= self.limit:
            oldest_counted = self.admissions[-self.limit]
            if oldest_counted > self.now_ns - self.window_ns:
                return "rate_limited", oldest_counted + self.window_ns - self.now_ns
        self.admissions.append(self.now_ns)
        if self.tickets >= self.queue_max:
            return "queue_full", None
        self.tickets += 1
        return "admitted", None

    def start(self) -> bool:
        """Whether a held ticket may start now (it then leaves the queue)."""
        if self.permits >= self.jobs_max:
            return False
        self.tickets -= 1
        self.permits += 1
        return True

    def next_edge_ns(self) -> Optional[int]:
        """When the next refused request would be admitted (None if none would be refused)."""
        if len(self.admissions) < self.limit:
            return None
        return self.admissions[-self.limit] + self.window_ns
