"""In-process decisions per second from Python: backstop's ``Admission.try_admit`` against
``limits``' moving window on memory storage and slowapi's default (``limits``' fixed window
on ``memory://``, the strategy slowapi's ``Limiter`` is built with), interleaved.

    target/python/venv/bin/python crates/python/benches/in_process.py [--rounds 15]

Two loads: ``admit`` (the limit is never reached: every call admits) and ``deny`` (the
limit was reached: every call refuses; backstop raises ``RateLimited``, which the loop
catches, as a web handler would). Each round times a batch of every contender in turn;
the report gives the median decisions/s per contender and the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from slowapi import Limiter
from slowapi.util import get_remote_address

from backstop_admission import Admission, Limits, RateLimited

BATCH = 20_000


def backstop(limit: int) -> Callable[[], None]:
    admission = Admission(Limits(rate_limit=limit, queue_max=1_000_000, resources_enabled=False))
    try_admit = admission.try_admit

    def run() -> None:
        for _ in range(BATCH):
            try:
                try_admit()
            except RateLimited:
                pass

    return run


def limits_moving(limit: int) -> Callable[[], None]:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerMinute(limit)
    hit = limiter.hit

    def run() -> None:
        for _ in range(BATCH):
            hit(item, "client")

    return run


def slowapi_default(limit: int) -> Callable[[], None]:
    # What slowapi's Limiter builds with its defaults: limits' fixed window on memory://.
    limiter = Limiter(key_func=get_remote_address)
    strategy = limiter.limiter
    assert isinstance(strategy, FixedWindowRateLimiter), type(strategy)
    item = RateLimitItemPerMinute(limit)
    hit = strategy.hit

    def run() -> None:
        for _ in range(BATCH):
            hit(item, "127.0.0.1", "/make-video")

    return run


def measure(load: str, rounds: int) -> Dict[str, float]:
    # admit: a limit no run reaches (rounds x batch calls a minute); deny: 30 a minute.
    limit = BATCH * (rounds + 2) if load == "admit" else 30
    contenders = {"backstop": backstop(limit), "limits_moving_window": limits_moving(limit),
                  "slowapi_default": slowapi_default(limit)}
    if load == "deny":
        for run in contenders.values():
            run()  # fill the windows
    rates: Dict[str, List[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter_ns()
            run()
            rates[name].append(BATCH / ((time.perf_counter_ns() - start) / 1e9))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    for load in ("admit", "deny"):
        medians = measure(load, args.rounds)
        base = medians["backstop"]
        print(f"{load}: median decisions/s over {args.rounds} interleaved rounds of {BATCH}")
        for name, rate in medians.items():
            print(f"  {name:22} {rate:14,.0f}/s   backstop is {base / rate:6.1f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
