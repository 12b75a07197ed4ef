"""The app ``test_gunicorn.py`` serves with ``gunicorn --preload`` and uvicorn workers.

Under ``--preload`` this module is imported once, in gunicorn's master, and every worker
is a ``fork`` of it. Three doors, one limit (``GUNICORN_TEST_LIMIT`` per hour):

- ``/local``: an in-process ``Admission`` made at import, before the fork, which has
  already admitted one request there. Each worker gets its own copy of the window,
  that admission included, so each admits ``limit - 1`` more: the limit is per worker.
- ``/preforked``: a ``RedisAdmission`` connected at import, in the master. Each worker
  connects again on its first call (the master's runtime threads and connection do not
  survive the fork); the limit is the one on Redis, shared.
- ``/lifespan``: a ``RedisAdmission`` connected in each worker's lifespan, after the
  fork; shared the same way.

Every answer carries the worker's pid, so the test can count per worker.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, AsyncIterator, Dict

from fastapi import FastAPI
from fastapi.responses import Response

from backstop_admission import Admission, Limits, RedisAdmission, Refused
from backstop_admission.asgi import admit

LIMIT = int(os.environ["GUNICORN_TEST_LIMIT"])
REDIS_URL = os.environ["GUNICORN_TEST_REDIS"]
NAME = os.environ["GUNICORN_TEST_NAME"]
LIMITS = Limits(rate_limit=LIMIT, rate_window="1h", queue_max=10_000, resources_enabled=False)

local = Admission(LIMITS)
local.try_admit().release()  # spent in the master, before any worker exists
# A deadline for a loaded test machine, not the 50 ms a service would use: a call that
# misses it is refused with 503 (fail closed), which is not what this test is about.
DEADLINE = 5.0
preforked = RedisAdmission.connect(REDIS_URL, f"{NAME}-preforked", LIMITS, deadline=DEADLINE)
MASTER = os.getpid()

doors: Dict[str, Any] = {"local": local, "preforked": preforked}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    doors["lifespan"] = RedisAdmission.connect(
        REDIS_URL, f"{NAME}-lifespan", LIMITS, deadline=DEADLINE)
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> Response:
    return Response("ok", headers={"x-worker-pid": str(os.getpid())})


@app.post("/{door}")
async def decide(door: str) -> Response:
    pid = {"x-worker-pid": str(os.getpid()), "x-master-pid": str(MASTER)}
    try:
        ticket = await admit(doors[door], None, "normal")
    except Refused as refused:
        return Response(refused.reason, status_code=refused.status_code, headers=pid)
    ticket.release()
    return Response("admitted", headers=pid)
