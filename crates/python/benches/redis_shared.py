"""Redis-backed decisions from asyncio: backstop's RedisAdmission against limits' async
Redis moving window (redis-py), on the same redis-server, and exactness of both under a
1 s clock skew between two replicas.

    target/python/venv/bin/python crates/python/benches/redis_shared.py redis://127.0.0.1:PORT

Throughput: 64 asyncio tasks in one process call the limiter in a loop for a few
seconds (limit 30 per 60 s, so nearly every call is a refusal, as under a burst); rounds
alternate between the two. Skew: two replica processes, one whose clock runs 1 s ahead,
hammer one limit of 30 per 2 s for 6 s; every admission is stamped with the real time
the call was sent and the time it returned (the decision fell in between); the report
gives the most admissions certainly inside one 2 s window of real time (sent and
returned within it), so that a slow answer on a loaded machine is not mistaken for an
excess.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Awaitable, Callable, Dict, List

CALLERS = 64
ROUND_S = 3.0


async def drive(decide: Callable[[], Awaitable[bool]]) -> float:
    """Decisions per second of CALLERS tasks calling ``decide`` for ROUND_S."""
    stop = time.perf_counter() + ROUND_S
    counts = [0] * CALLERS

    async def caller(i: int) -> None:
        while time.perf_counter() < stop:
            await decide()
            counts[i] += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return sum(counts) / (time.perf_counter() - start)


def backstop_decider(url: str, limit: int, window: str) -> Callable[[], Awaitable[bool]]:
    from backstop_admission import Limits, RedisAdmission, Refused

    admission = RedisAdmission.connect(
        url, f"bench-{uuid.uuid4().hex[:8]}",
        Limits(rate_limit=limit, rate_window=window, queue_max=100_000, resources_enabled=False))

    async def decide() -> bool:
        try:
            (await admission.try_admit()).release()
            return True
        except Refused:
            return False

    return decide


def limits_decider(url: str, limit: int, window_s: int) -> Callable[[], Awaitable[bool]]:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage("async+" + url, implementation="redispy")
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(limit, window_s)
    key = f"bench-{uuid.uuid4().hex[:8]}"

    async def decide() -> bool:
        return bool(await limiter.hit(item, key))

    return decide


async def throughput(url: str, rounds: int) -> Dict[str, List[float]]:
    contenders = {"backstop": backstop_decider(url, 30, "60s"),
                  "limits_moving_window": limits_decider(url, 30, 60)}
    rates: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, decide in contenders.items():
            rates[name].append(await drive(decide))
    return rates


def replica(which: str, url: str, name: str, skew: float, run_s: float) -> None:
    """One replica process: decides for run_s, prints the real times it was admitted."""
    real_time = time.time
    time.time = lambda: real_time() + skew  # type: ignore[assignment]  # this replica's clock
    if which == "backstop":
        from backstop_admission import Limits, RedisAdmission, Refused

        admission = RedisAdmission.connect(url, name, Limits(
            rate_limit=30, rate_window="2s", queue_max=100_000, resources_enabled=False))

        async def decide() -> bool:
            try:
                (await admission.try_admit()).release()
                return True
            except Refused:
                return False
    else:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        limiter = MovingWindowRateLimiter(RedisStorage("async+" + url, implementation="redispy"))
        item = RateLimitItemPerSecond(30, 2)

        async def decide() -> bool:
            return bool(await limiter.hit(item, name))

    async def run() -> List[List[float]]:
        admitted: List[List[float]] = []
        stop = real_time() + run_s

        async def caller() -> None:
            while real_time() < stop:
                sent = real_time()
                if await decide():
                    admitted.append([sent, real_time()])
                await asyncio.sleep(0.002)

        await asyncio.gather(*(caller() for _ in range(8)))
        return admitted

    print(json.dumps(asyncio.run(run())))


def most_in_window(spans: List[List[float]], window_s: float) -> int:
    """Most admissions whose whole span (sent, returned) lies in one window of real time."""
    best = 0
    for start, _ in spans:
        inside = sum(1 for s, e in spans if s >= start and e < start + window_s)
        best = max(best, inside)
    return best


def skewed(url: str, which: str) -> int:
    name = f"skew-{uuid.uuid4().hex[:8]}"
    start_at = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, __file__, "--replica", which, url, name, str(skew),
                               str(start_at)], stdout=subprocess.PIPE) for skew in (0.0, 1.0)]
    spans: List[List[float]] = []
    for p in procs:
        out, _ = p.communicate()
        spans += json.loads(out)
    return most_in_window(spans, 2.0)


def main() -> None:
    if sys.argv[1] == "--replica":
        which, url, name, skew, start_at = sys.argv[2:7]
        time.sleep(max(0.0, float(start_at) - time.time()))
        replica(which, url, name, float(skew), run_s=6.0)
        return
    url = sys.argv[1]
    rounds = int(os.environ.get("ROUNDS", "5"))
    print(f"load average before: {os.getloadavg()}")
    rates = asyncio.run(throughput(url, rounds))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(f"{CALLERS} asyncio callers, limit 30/60 s, {rounds} alternating rounds of {ROUND_S} s:")
    for name, r in rates.items():
        print(f"  {name:22} median {medians[name]:10,.0f}/s  rounds {[round(x) for x in r]}")
    print(f"  backstop / limits: {medians['backstop'] / medians['limits_moving_window']:.2f}x")
    for which in ("backstop", "limits"):
        print(f"1 s skew, two replicas, limit 30 per 2 s: {which} admitted at most "
              f"{skewed(url, which)} certainly within one 2 s window of real time")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
