"""A ``prometheus_client`` collector with the Rust registry's families.

    from prometheus_client import REGISTRY
    REGISTRY.register(BackstopCollector(admission))

Each scrape reads backstop's counters once (``render_prometheus``, the same text the Rust
``Metrics::render_prometheus`` writes) and hands its families to ``prometheus_client``:
``backstop_admitted_total``, ``backstop_rate_limited_total``,
``backstop_overloaded_total{reason}``, ``backstop_queue_depth``, ``backstop_jobs_active``,
... — one list of names, kept by the Rust side.
"""

from __future__ import annotations

from typing import Any, Iterator

__all__ = ["BackstopCollector"]


class BackstopCollector:
    """Collects the families of one ``Admission`` or ``RedisAdmission``."""

    def __init__(self, admission: Any) -> None:
        self.admission = admission

    def collect(self) -> Iterator[Any]:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        yield from text_string_to_metric_families(self.admission.render_prometheus())

    def describe(self) -> Iterator[Any]:
        # Families are known only by reading them; an empty describe keeps
        # ``REGISTRY.register`` from scraping at registration.
        return iter(())
