"""The ASGI middleware and the FastAPI dependency, in process (httpx's ASGI transport),
and the Prometheus collector."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Tuple

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from backstop_admission import Admission, Limits, ManualClock, Ticket
from backstop_admission.asgi import AdmissionMiddleware, header_key
from backstop_admission.fastapi import Admit, install


def limits(**extra: Any) -> Limits:
    settings: Dict[str, Any] = dict(rate_limit=2, rate_window="60s", queue_max=10,
                                    resources_enabled=False)
    settings.update(extra)
    return Limits(**settings)


def middleware_app(admission: Admission) -> FastAPI:
    app = FastAPI()

    @app.post("/make-video", status_code=202)
    async def make_video(request: Request) -> Dict[str, bool]:
        ticket = request.state.backstop_ticket
        return {"held": bool(ticket.held)}

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> str:
        return "metrics"

    app.add_middleware(AdmissionMiddleware, admission=admission,
                       routes=[("POST", "/make-video")], key=header_key("x-api-key"))
    return app


def dependency_app(admission: Admission) -> FastAPI:
    app = FastAPI()
    install(app)

    @app.post("/make-video", status_code=202)
    async def make_video(ticket: Ticket = Depends(Admit(admission))) -> Dict[str, bool]:
        return {"held": ticket.held}

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"status": "ok"}

    return app


async def requests(app: FastAPI, calls: List[Tuple[str, str]]) -> List[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, path) for method, path in calls]


@pytest.mark.parametrize("make_app", [middleware_app, dependency_app])
def test_only_the_admitted_route_spends_budget(make_app: Any) -> None:
    admission = Admission(limits(), clock=ManualClock())
    app = make_app(admission)
    calls = [("GET", "/nope")] * 5 + [("GET", "/make-video")] * 5 + [("GET", "/health")] * 5
    if make_app is middleware_app:
        calls += [("GET", "/metrics")] * 5
    answers = asyncio.run(requests(app, calls))
    assert {r.status_code for r in answers} == {404, 405, 200}
    snap = admission.snapshot()
    assert snap["admitted_total"] == 0 and snap["rate_limited_total"] == 0
    answers = asyncio.run(requests(app, [("POST", "/make-video")] * 3))
    assert [r.status_code for r in answers] == [202, 202, 429]
    assert answers[0].json() == {"held": True}
    # The ticket was released when its response was done.
    assert admission.snapshot()["queue_depth"] == 0


@pytest.mark.parametrize("make_app", [middleware_app, dependency_app])
def test_a_429_is_answered_as_the_tower_layer_answers(make_app: Any) -> None:
    clock = ManualClock()
    admission = Admission(limits(), clock=clock)
    app = make_app(admission)
    asyncio.run(requests(app, [("POST", "/make-video")] * 2))
    clock.advance(0.5)
    (refused,) = asyncio.run(requests(app, [("POST", "/make-video")]))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"  # 59.5 s, rounded up
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["ratelimit-policy"] == '"default";q=2;w=60'
    assert refused.headers["ratelimit"] == '"default";r=0;t=60'
    assert json.loads(refused.text) == {
        "type": "about:blank", "title": "Too Many Requests", "status": 429,
        "detail": "rate limit reached; retry after 60 s", "reason": "rate_limited"}


def test_a_full_queue_is_a_503_with_the_hint() -> None:
    admission = Admission(limits(rate_limit=10, queue_max=1), clock=ManualClock())
    held = admission.try_admit()
    (refused,) = asyncio.run(requests(middleware_app(admission), [("POST", "/make-video")]))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["reason"] == "queue_full"
    assert "ratelimit" not in refused.headers
    held.release()


def test_per_client_keys_from_a_header_get_the_client_policy() -> None:
    admission = Admission(limits(rate_limit=10), clock=ManualClock(), per_client=(1, 30))
    app = middleware_app(admission)

    async def run() -> List[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            h = {"x-api-key": "alice"}
            return [await c.post("/make-video", headers=h), await c.post("/make-video", headers=h),
                    await c.post("/make-video", headers={"x-api-key": "bob"})]

    first, second, bob = asyncio.run(run())
    assert (first.status_code, second.status_code, bob.status_code) == (202, 429, 202)
    assert second.headers["ratelimit-policy"] == '"client";q=1;w=30'


def test_the_collector_exposes_the_rust_registry_families() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from backstop_admission.prometheus import BackstopCollector

    admission = Admission(limits(rate_limit=1), clock=ManualClock())
    admission.try_admit()
    with pytest.raises(Exception):
        admission.try_admit()
    registry = CollectorRegistry()
    registry.register(BackstopCollector(admission))
    text = generate_latest(registry).decode()
    assert "backstop_admitted_total 1.0" in text
    assert "backstop_rate_limited_total 1.0" in text
    assert 'backstop_overloaded_total{reason="queue_full"} 0.0' in text
    rust = {f.name for f in text_string_to_metric_families(admission.render_prometheus())}
    # The classic text format names a counter family with its `_total` suffix.
    python = {line.split()[2].removesuffix("_total") if line.split()[3] == "counter"
              else line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert rust == python
    assert {"backstop_admitted", "backstop_queue_depth", "backstop_jobs_active"} <= rust
