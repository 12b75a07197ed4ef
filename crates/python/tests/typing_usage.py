"""A usage file type-checked by ``mypy --strict`` in CI: the public API, as written by users."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, Optional

import backstop_admission
from backstop_admission import JobWorkspace, Refused, sweep


def cleanup(root: str) -> int:
    report: Dict[str, Any] = sweep(root, older_than=timedelta(hours=24), dry_run=True)
    removed: int = report["files_removed"]
    return removed


def run_job(job_id: str) -> Optional[Dict[str, Any]]:
    with JobWorkspace(job_id, base="/tmp/makevideo") as job:
        with job.stage("download") as download:
            _: str = download
        return job.finish_stage("validation")


def answer(refused: Refused) -> Dict[str, str]:
    status: int = refused.status_code
    wait: float = refused.retry_after
    return {"Retry-After": str(refused.retry_after_secs), "status": str(status + int(wait) * 0)}


version: str = backstop_admission.__version__


def admission_usage() -> int:
    from backstop_admission import Admission, JobMustWait, Limits, ManualClock, RateLimited

    limits = Limits(rate_limit=30, rate_window=timedelta(seconds=60), queue_max=100)
    admission = Admission(limits, clock=ManualClock(), per_client=(5, 60.0))
    try:
        ticket = admission.try_admit("client-1", priority="critical")
    except RateLimited as refused:
        return refused.retry_after_secs
    with ticket:
        try:
            with ticket.start() as permit:
                held: bool = permit.held
        except JobMustWait as wait:
            reason: str = wait.reason
    snapshot: Dict[str, Any] = admission.snapshot()
    admission.reconfigure(Limits.from_toml("[rate]\nlimit = 10\n"))
    return int(snapshot["admitted_total"])


def web_usage() -> Any:
    from fastapi import Depends, FastAPI
    from prometheus_client import CollectorRegistry

    from backstop_admission import Admission, Limits, Ticket
    from backstop_admission.asgi import AdmissionMiddleware, header_key
    from backstop_admission.fastapi import Admit, install
    from backstop_admission.prometheus import BackstopCollector

    admission = Admission(Limits())
    app = FastAPI()
    install(app)
    app.add_middleware(AdmissionMiddleware, admission=admission,
                       routes=[("POST", "/make-video")], key=header_key("x-api-key"))

    @app.post("/make-video", status_code=202)
    async def make_video(ticket: Ticket = Depends(Admit(admission))) -> Dict[str, bool]:
        return {"held": ticket.held}

    CollectorRegistry().register(BackstopCollector(admission))
    return app


async def redis_usage(url: str) -> str:
    from backstop_admission import Limits, RedisAdmission, RedisPermit, RedisTicket
    from backstop_admission.celery import start_job

    admission = RedisAdmission.connect(url, "video", Limits(), failure="local_fallback",
                                       share=0.5)
    ticket: RedisTicket = await admission.try_admit("client", "normal")
    token: str = await ticket.detach()
    with start_job(admission, token, wait=timedelta(seconds=30)) as permit:
        lost: bool = permit.lost
    blocking: RedisPermit = admission.try_admit_blocking().start_blocking()
    blocking.release()
    return token
