"""End to end on the reference service (examples/make_video): real ``uvicorn --workers 4``,
a real ``celery worker`` (prefork, concurrency 8) and ``celery beat``, Redis as broker,
backend and the store of the limits. Windows, leases and waits are short, by config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import pytest

from conftest import RedisServer, free_port, missing_part
from processes import Proc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "make_video"
LEASE_S = 3.0


def write_limits(path: Path, *, queue_max: int, max_wait: str) -> Path:
    path.write_text(
        f'[rate]\nlimit = 30\nwindow = "60s"\n[queue]\nmax = {queue_max}\n'
        f'max_wait = "{max_wait}"\n[jobs]\nmax = 5\n[resources]\nenabled = false\n')
    return path


def uvicorn(workers: int, env: Dict[str, str]) -> Tuple[Proc, str]:
    port = free_port()
    proc = Proc("uvicorn", [sys.executable, "-m", "uvicorn", "main:app", "--workers",
                            str(workers), "--port", str(port), "--log-level", "warning"],
                env, EXAMPLE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            missing_part(f"uvicorn exited at start:\n{proc.output()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    missing_part(f"uvicorn did not answer /health in 60 s:\n{proc.output()[-3000:]}")


def events(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def max_overlap(intervals: List[Tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda p: (p[0], p[1]))
    running = best = 0
    for _, step in points:
        running += step
        best = max(best, running)
    return best


@pytest.fixture(scope="module")
def stack() -> Iterator[Dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="backstop-e2e-"))
    limits_redis, broker = RedisServer.start(), RedisServer.start()
    temp = work / "makevideo"
    temp.mkdir(mode=0o700)
    stale = temp / "crashed-job" / "old.mp4"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 86400,) * 2)
    os.utime(stale.parent, (time.time() - 2 * 86400,) * 2)
    env = {
        "MAKE_VIDEO_REDIS": limits_redis.url, "MAKE_VIDEO_BROKER": broker.url,
        "MAKE_VIDEO_NAME": "e2e", "MAKE_VIDEO_TEMP": str(temp),
        "MAKE_VIDEO_LIMITS": str(write_limits(work / "limits.toml", queue_max=100, max_wait="30s")),
        "MAKE_VIDEO_LEASE": str(LEASE_S), "MAKE_VIDEO_EVENTS": str(work / "events.jsonl"),
        # Beat sweeps every second whatever is older than 3 s (by mtime and ctime), so
        # the crashed job's files planted here go while the running jobs' stay.
        "MAKE_VIDEO_SWEEP_EVERY": "1", "MAKE_VIDEO_SWEEP_OLDER_THAN": "3",
        # Four API processes, eight workers and the test share two loaded cores: give
        # Redis time to answer rather than fail closed.
        "MAKE_VIDEO_DEADLINE": "1.0",
    }
    procs: List[Proc] = []
    try:
        worker = Proc("celery-worker", [sys.executable, "-m", "celery", "-A", "celery_app",
                                        "worker", "--pool", "prefork", "--concurrency", "8",
                                        "--loglevel", "INFO"], env, EXAMPLE)
        procs.append(worker)
        beat = Proc("celery-beat", [sys.executable, "-m", "celery", "-A", "celery_app", "beat",
                                    "-s", str(work / "beat-schedule")], env, EXAMPLE)
        procs.append(beat)
        api, base = uvicorn(4, env)
        procs.append(api)
        wait_for_worker(worker)
        yield {"base": base, "events": work / "events.jsonl", "worker": worker, "beat": beat,
               "stale": stale, "api": api}
    finally:
        for p in procs:
            p.stop()
        limits_redis.stop()
        broker.stop()


def wait_for_worker(worker: Proc) -> None:
    deadline = time.monotonic() + 60
    while "ready." not in worker.output():
        if not worker.alive() or time.monotonic() > deadline:
            missing_part(f"celery worker did not start:\n{worker.output()[-3000:]}")
        time.sleep(0.2)


async def burst(base: str, n: int, seconds: float) -> List[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async def post(i: int) -> httpx.Response:
            return await client.post("/make-video", json={"seconds": seconds},
                                     headers={"x-client": f"client-{i % 50}"})
        return await asyncio.gather(*(post(i) for i in range(n)))


def test_200_posts_admit_exactly_30_never_more_than_5_jobs_and_a_killed_worker_slot_returns(
    stack: Dict[str, Any],
) -> None:
    base, log = stack["base"], stack["events"]
    # Nothing but the admitted route spends budget.
    with httpx.Client(base_url=base) as client:
        assert client.get("/nope").status_code == 404
        assert client.get("/make-video").status_code == 405
        assert client.get("/health").status_code == 200
    answers = asyncio.run(burst(base, 200, seconds=2.0))
    codes = [r.status_code for r in answers]
    reasons = sorted({r.json().get("reason", "") for r in answers if r.status_code == 503})
    assert codes.count(202) == 30 and codes.count(429) == 170, (sorted(set(codes)), reasons)
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
    job_ids = [r.json()["job_id"] for r in answers if r.status_code == 202]

    # Kill a worker process in the middle of a job: one that started under half a
    # second ago (jobs take 2 s) and has not ended.
    deadline = time.monotonic() + 60
    while True:
        seen = events(log)
        ended = {e["job"] for e in seen if e["event"] == "end"}
        fresh = [e for e in seen if e["event"] == "start" and e["job"] not in ended
                 and time.time() - e["t"] < 0.5]
        if fresh:
            break
        assert time.monotonic() < deadline, stack["worker"].output()[-3000:]
        time.sleep(0.02)
    victim = fresh[0]
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.time()

    deadline = time.monotonic() + 90
    while len([e for e in events(log) if e["event"] == "end"]) < 29:
        assert time.monotonic() < deadline, stack["worker"].output()[-3000:]
        time.sleep(0.1)
    seen = events(log)
    starts = {e["job"]: e["t"] for e in seen if e["event"] == "start"}
    ends = {e["job"]: e["t"] for e in seen if e["event"] == "end"}
    intervals = [(starts[j], ends.get(j, killed_at)) for j in starts]
    assert len(starts) == 30 and victim["job"] not in ends
    assert max_overlap(intervals) <= 5
    # The killed job's slot came back within the lease: 5 jobs ran at once again.
    after = [(s, e) for j, (s, e) in zip(starts, intervals) if j != victim["job"]]
    back_at = next((s for s, _ in sorted(after) if s > killed_at and
                    sum(1 for s2, e2 in after if s2 <= s < e2) == 5), None)
    assert back_at is not None, "never 5 jobs at once after the kill"
    assert back_at - killed_at <= LEASE_S + 2.0, back_at - killed_at

    with httpx.Client(base_url=base) as client:
        done = [j for j in job_ids if j != victim["job"]][0]
        assert client.get(f"/jobs/{done}").json()["state"] == "SUCCESS"
        metrics = client.get("/metrics").text
    assert "backstop_admitted_total" in metrics and "backstop_rate_limited_total" in metrics
    # Beat ran the sweep: the crashed job's old files are gone.
    assert not stack["stale"].exists(), stack["beat"].output()[-2000:]


@pytest.fixture(scope="module")
def solo() -> Iterator[Dict[str, Any]]:
    """One API process whose jobs go to a Celery queue no worker reads."""
    work = Path(tempfile.mkdtemp(prefix="backstop-solo-"))
    limits_redis, broker = RedisServer.start(), RedisServer.start()
    env = {
        "MAKE_VIDEO_REDIS": limits_redis.url, "MAKE_VIDEO_BROKER": broker.url,
        "MAKE_VIDEO_NAME": "solo", "MAKE_VIDEO_TEMP": str(work / "t"),
        "MAKE_VIDEO_LIMITS": str(write_limits(work / "limits.toml", queue_max=2, max_wait="2s")),
        "MAKE_VIDEO_CELERY_QUEUE": "nobody", "MAKE_VIDEO_LEASE": str(LEASE_S),
        "MAKE_VIDEO_DEADLINE": "1.0",
    }
    api, base = uvicorn(1, env)
    try:
        yield {"base": base, "redis": limits_redis}
    finally:
        api.stop()
        limits_redis.stop()
        broker.stop()


def post(base: str) -> httpx.Response:
    return httpx.post(f"{base}/make-video", json={"seconds": 0.1}, timeout=10)


def test_queue_full_is_503_and_an_unclaimed_place_comes_back_after_max_wait(
    solo: Dict[str, Any],
) -> None:
    base = solo["base"]
    before = time.monotonic()  # the places are detached after this
    first, second, third = post(base), post(base), post(base)
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    assert third.status_code == 503 and third.json()["reason"] == "queue_full"
    assert third.headers["retry-after"] == "1"
    deadline = time.monotonic() + 15
    while (answer := post(base)).status_code == 503:
        assert time.monotonic() < deadline, "the unclaimed places never came back"
        time.sleep(0.1)
    assert answer.status_code == 202
    # Not before max_wait (2 s) from the detach, which came after `before`.
    assert time.monotonic() - before >= 1.9


def test_redis_killed_the_api_fails_closed_then_recovers(solo: Dict[str, Any]) -> None:
    base, redis = solo["base"], solo["redis"]
    port = redis.port
    redis.kill()
    down = post(base)
    assert down.status_code == 503 and down.json()["reason"] == "store_unavailable"
    restarted = RedisServer.start(port)
    try:
        deadline = time.monotonic() + 20
        while (answer := post(base)).status_code == 503:
            assert answer.json()["reason"] in ("store_unavailable", "queue_full")
            assert time.monotonic() < deadline, "no recovery within 20 s of the restart"
            time.sleep(0.2)
        assert answer.status_code == 202
    finally:
        restarted.stop()
