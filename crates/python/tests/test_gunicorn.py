"""Real ``gunicorn --preload`` with uvicorn workers (``apps/gunicorn_app.py``): what each
door is after the fork.

``--preload`` imports the app in gunicorn's master and forks the workers from it, so
whatever the module made at import is copied into every worker. An in-process
``Admission`` is copied with its window: each worker has its own, and the limit holds
per worker. A ``RedisAdmission`` keeps its limit on Redis: connected in the master or in
each worker's lifespan, every worker decides against the same window.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Tuple

import httpx
import pytest

from conftest import free_port, missing_part
from processes import HERE, Proc

LIMIT = 5
WORKERS = 4
CONCURRENT = 16

Answer = Tuple[int, int]  # (status, worker pid)


@pytest.fixture(scope="module")
def server(redis_url: str) -> Iterator[str]:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        missing_part("gunicorn is not installed")
    port = free_port()
    env = {"GUNICORN_TEST_LIMIT": str(LIMIT), "GUNICORN_TEST_REDIS": redis_url,
           "GUNICORN_TEST_NAME": f"gunicorn-{uuid.uuid4().hex}"}
    # uvicorn's own gunicorn worker class (deprecated in favour of the separate
    # uvicorn-worker package, still shipped with uvicorn).
    argv = [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(WORKERS),
            "--worker-class", "uvicorn.workers.UvicornWorker", "--bind", f"127.0.0.1:{port}",
            "--graceful-timeout", "5", "--log-level", "warning", "gunicorn_app:app"]
    proc = Proc("gunicorn", argv, env, HERE / "apps")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(proc, base)
        yield base
    finally:
        proc.stop()


def wait_for_workers(proc: Proc, base: str) -> None:
    """Until every worker has answered (each has run its lifespan by then)."""
    deadline = time.monotonic() + 60
    seen = set()
    while time.monotonic() < deadline:
        if not proc.alive():
            missing_part(f"gunicorn exited at start:\n{proc.output()[-3000:]}")
        try:
            seen.update(pid for _, pid in burst(base, "GET", "/health", CONCURRENT))
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if len(seen) == WORKERS:
            return
    missing_part(f"{len(seen)} of {WORKERS} gunicorn workers answered in 60 s:\n"
                 f"{proc.output()[-3000:]}")


def burst(base: str, method: str, path: str, n: int) -> List[Answer]:
    """``n`` requests, ``CONCURRENT`` at a time, each on a new connection (so that the
    workers, all accepting on the master's socket, share them)."""

    def one(_: int) -> Answer:
        answer = httpx.request(method, base + path, headers={"connection": "close"}, timeout=30)
        return answer.status_code, int(answer.headers["x-worker-pid"])

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(n)))


def by_worker(answers: List[Answer]) -> Dict[int, Counter]:
    counts: Dict[int, Counter] = {}
    for status, pid in answers:
        counts.setdefault(pid, Counter())[status] += 1
    return counts


def test_an_admission_made_before_fork_is_copied_into_each_worker_with_its_window(
    server: str,
) -> None:
    # Until at least two workers have each been refused (their copies are full), or a
    # bound that four workers sharing bursts of 16 never come near.
    answers: List[Answer] = []
    while len(answers) < 2_000:
        answers += burst(server, "POST", "/local", 4 * CONCURRENT)
        full = [pid for pid, c in by_worker(answers).items() if c[429] > 0]
        if len(full) >= 2:
            break
    counts = by_worker(answers)
    assert len(full) >= 2, f"requests did not spread over the workers: {counts}"
    assert set(status for status, _ in answers) <= {200, 429}
    for pid, c in counts.items():
        # The master spent one admission before the fork; each copy holds it.
        assert c[200] == min(LIMIT - 1, c[200] + c[429]), (pid, c)
    # So together they admit more than one window's limit: the limit is per worker.
    assert sum(c[200] for c in counts.values()) >= 2 * (LIMIT - 1) > LIMIT


@pytest.mark.parametrize("door", ["lifespan", "preforked"])
def test_a_redis_door_holds_one_exact_limit_across_the_workers(server: str, door: str) -> None:
    # `lifespan`: connected in each worker after the fork. `preforked`: connected in the
    # master at import; each worker connects again on its first call.
    answers: List[Answer] = []
    for _ in range(3):
        answers += burst(server, "POST", f"/{door}", 4 * CONCURRENT)
    counts = by_worker(answers)
    assert len(counts) >= 2, f"requests did not spread over the workers: {counts}"
    assert Counter(status for status, _ in answers) == {200: LIMIT, 429: len(answers) - LIMIT}
