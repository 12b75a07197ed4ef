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
