"""A Celery app with only the beat sweep, for the tests (broker and backend: Redis)."""

from __future__ import annotations

import os

from celery import Celery

from backstop_admission.celery import sweep_task

app = Celery("sweep_app", broker=os.environ["SWEEP_BROKER"], backend=os.environ["SWEEP_BROKER"])
app.conf.worker_hijack_root_logger = False
sweep_root = os.environ["SWEEP_ROOT"]
sweep = sweep_task(
    app,
    root=sweep_root,
    older_than=float(os.environ.get("SWEEP_OLDER_THAN", str(24 * 3600))),
    every=float(os.environ.get("SWEEP_EVERY", str(6 * 3600))),
    age_by="mtime",
)
