"""In-process decisions per second from Python: backstop's ``Admission.try_admit`` against
``limits``' moving window on memory storage and slowapi's default (``limits``' fixed window
on ``memory://``, the strategy slowapi's ``Limiter`` is built with), interleaved.

    target/python/venv/bin/python crates/python/benches/in_process.py [--rounds 15]

Two loads: ``admit`` (the limit is never reached: every call admits) and ``deny`` (the
limit was reached: every call refuses; backstop raises ``RateLimited``, which the loop
catches, as a web handler would). Each round times a batch of every contender in turn;
the report gives the median decisions/s per contender and the ratio of medians.

``--clock cpu`` times each batch by this thread's CPU time instead of the wall clock: on
a machine shared with other work a batch is also charged the time it waited for a core,
which says more about the scheduler than about the contender (the 20 000 refusals of a
backstop batch take milliseconds, a peer's ten times as long, so the two are preempted
differently). Both clocks time every contender the same way.
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


def measure(load: str, rounds: int, clock: Callable[[], int]) -> Dict[str, float]:
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
            start = clock()
            run()
            rates[name].append(BATCH / ((clock() - start) / 1e9))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time batches by the wall clock or by this thread's CPU time")
    parser.add_argument("--load", choices=("admit", "deny"), action="append",
                        help="only these loads (default: both)")
    args = parser.parse_args()
    clock = time.perf_counter_ns if args.clock == "wall" else time.thread_time_ns
    print(f"load average before: {os.getloadavg()}")
    for load in args.load or ("admit", "deny"):
        medians = measure(load, args.rounds, clock)
        base = medians["backstop"]
        print(f"{load}: median decisions/s ({args.clock} clock) over {args.rounds} "
              f"interleaved rounds of {BATCH}")
        for name, rate in medians.items():
            print(f"  {name:22} {rate:14,.0f}/s   backstop is {base / rate:6.1f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
