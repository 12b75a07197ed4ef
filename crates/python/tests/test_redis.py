"""RedisAdmission from Python on a real redis-server: awaitable and blocking decisions,
tickets that detach to a token and are claimed elsewhere, permits, fork, bad input."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any, List

import pytest

from backstop_admission import (
    ConfigError,
    JobMustWait,
    Limits,
    Overloaded,
    RateLimited,
    RedisAdmission,
    StoreError,
    TokenError,
)
from backstop_admission.celery import start_job
from conftest import RedisServer


def connect(url: str, **settings: Any) -> RedisAdmission:
    base: dict = dict(rate_limit=5, rate_window="60s", queue_max=3, jobs_max=1,
                      resources_enabled=False)
    options = {k: settings.pop(k) for k in list(settings) if k in
               ("failure", "share", "deadline", "lease", "per_client")}
    base.update(settings)
    return RedisAdmission.connect(url, f"py-{uuid.uuid4().hex[:12]}", Limits(**base), **options)


def test_blocking_decisions_are_exact_and_refusals_carry_attributes(redis_url: str) -> None:
    admission = connect(redis_url, queue_max=10)
    tickets = [admission.try_admit_blocking() for _ in range(5)]
    with pytest.raises(RateLimited) as limited:
        admission.try_admit_blocking()
    assert limited.value.status_code == 429 and 59 < limited.value.retry_after <= 60
    assert admission.snapshot()["admitted_total"] == 5
    for t in tickets:
        assert t.release() and not t.release()


def test_64_concurrent_awaiters_get_exactly_the_limit(redis_url: str) -> None:
    admission = connect(redis_url, rate_limit=30, queue_max=100)

    async def one() -> str:
        try:
            ticket = await admission.try_admit()
            ticket.release()
            return "admitted"
        except RateLimited:
            return "rate_limited"

    async def burst() -> List[str]:
        return await asyncio.gather(*(one() for _ in range(64)))

    outcomes = asyncio.run(burst())
    assert outcomes.count("admitted") == 30 and outcomes.count("rate_limited") == 34


def test_a_full_queue_is_503_and_the_tower_answer_matches(redis_url: str) -> None:
    admission = connect(redis_url, queue_max=1)
    held = admission.try_admit_blocking()
    with pytest.raises(Overloaded) as full:
        admission.try_admit_blocking()
    assert full.value.reason == "queue_full"
    status, headers, body = admission.refusal_response(full.value)
    assert status == 503 and ("retry-after", "1") in headers and '"queue_full"' in body
    held.release()


def test_detach_then_claim_in_another_process_then_start(redis_url: str) -> None:
    admission = connect(redis_url, queue_max=2)
    token = admission.try_admit_blocking().detach_blocking()
    assert isinstance(token, str) and token.isascii()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # A child: the parent's connection is not used here; a fresh one is made.
            with start_job(admission, token) as permit:
                code = 0 if permit.held and not permit.lost else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(TokenError, match="claim"):
        admission.claim_blocking(token)  # claimed already


def test_awaitable_detach_claim_start(redis_url: str) -> None:
    admission = connect(redis_url)

    async def flow() -> bool:
        ticket = await admission.try_admit()
        token = await ticket.detach()
        claimed = await admission.claim(token)
        permit = await claimed.start()
        with permit:
            return bool(permit.held)

    assert asyncio.run(flow())


def test_a_job_waits_for_a_slot_and_gets_its_token_back(redis_url: str) -> None:
    admission = connect(redis_url, jobs_max=1, queue_max=3)
    running = admission.try_admit_blocking().start_blocking()
    token = admission.try_admit_blocking().detach_blocking()
    with pytest.raises(JobMustWait) as wait:
        with start_job(admission, token, wait=0.2):
            pass
    assert wait.value.reason == "no_free_slot"
    again = wait.value.token  # type: ignore[attr-defined]
    running.release()
    with start_job(admission, again) as permit:
        assert permit.held


@pytest.mark.parametrize("token, words", [
    ("not a token", "claim"),
    ("", "claim"),
])
def test_forged_tokens_are_token_errors(redis_url: str, token: str, words: str) -> None:
    admission = connect(redis_url)
    with pytest.raises(TokenError, match=words):
        admission.claim_blocking(token)


def test_a_token_of_another_admission_or_forged_id_is_refused(redis_url: str) -> None:
    one, other = connect(redis_url), connect(redis_url)
    token = one.try_admit_blocking().detach_blocking()
    with pytest.raises(TokenError):
        other.claim_blocking(token)
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    with pytest.raises(TokenError):
        one.claim_blocking(forged)


def test_an_expired_token_is_a_token_error_and_its_place_is_back(redis_url: str) -> None:
    admission = connect(redis_url, queue_max=1, queue_max_wait="100ms")
    token = admission.try_admit_blocking().detach_blocking()
    with pytest.raises(Overloaded):
        admission.try_admit_blocking()  # the detached ticket still holds the place
    time.sleep(0.3)  # past max_wait (the place is kept in Redis, on Redis's clock)
    with pytest.raises(TokenError, match="expired|no queue place"):
        admission.claim_blocking(token)
    admission.try_admit_blocking().release()  # the place came back


@pytest.mark.parametrize("kwargs, words", [
    (dict(url="http://127.0.0.1:1"), "URL|url|scheme"),
    (dict(url="redis://"), "URL|url|host"),
    (dict(failure="local_fallback", share=1.5), "share"),
    (dict(failure="local_fallback"), "share"),
    (dict(failure="fail_open"), "failure"),
    (dict(deadline=-1), "deadline"),
])
def test_bad_connect_arguments_are_config_errors(redis_url: str, kwargs: dict, words: str) -> None:
    url = kwargs.pop("url", redis_url)
    with pytest.raises(ConfigError, match=words):
        RedisAdmission.connect(url, "bad", Limits(resources_enabled=False), **kwargs)


def test_an_unreachable_redis_is_a_store_error() -> None:
    from conftest import free_port

    with pytest.raises(StoreError, match="unreachable"):
        RedisAdmission.connect(f"redis://127.0.0.1:{free_port()}", "x",
                               Limits(resources_enabled=False), connect_timeout=0.5)


def test_redis_killed_fail_closed_then_recovery(private_redis: RedisServer) -> None:
    admission = connect(private_redis.url, queue_max=10, rate_limit=100)
    admission.try_admit_blocking().release()
    port = private_redis.port
    private_redis.kill()
    with pytest.raises(Overloaded) as down:
        admission.try_admit_blocking()
    assert down.value.reason == "store_unavailable" and down.value.status_code == 503
    restarted = RedisServer.start(port)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                admission.try_admit_blocking().release()
                break
            except Overloaded as still:
                assert still.reason == "store_unavailable"
                assert time.monotonic() < deadline, "no recovery within 15 s"
                time.sleep(0.1)
    finally:
        restarted.stop()


def test_redis_killed_local_fallback_decides_on_the_share(private_redis: RedisServer) -> None:
    admission = connect(private_redis.url, rate_limit=10, queue_max=10,
                        failure="local_fallback", share=0.5)
    private_redis.kill()
    admitted = refused = 0
    for _ in range(8):
        try:
            admission.try_admit_blocking()
            admitted += 1
        except RateLimited:
            refused += 1
        except Overloaded as o:
            assert o.reason == "store_unavailable"  # the queue fails closed
            admitted += 1
    # The rate stage decides locally on half the limit: 5 pass it, 3 are 429.
    assert (admitted, refused) == (5, 3)


def test_the_collector_reads_the_shared_door_and_its_store(redis_url: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from backstop_admission.prometheus import BackstopCollector

    admission = connect(redis_url, rate_limit=1)
    admission.try_admit_blocking().release()
    with pytest.raises(RateLimited):
        admission.try_admit_blocking()
    registry = CollectorRegistry()
    registry.register(BackstopCollector(admission))
    text = generate_latest(registry).decode()
    assert "backstop_admitted_total 1.0" in text
    assert "backstop_rate_limited_total 1.0" in text
    assert "backstop_store_" in text
