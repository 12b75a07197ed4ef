"""The workers: each job holds one of the shared job slots while it runs, works in its
own temp workspace cleaned stage by stage, and beat sweeps what crashed jobs left."""

import json
import os
import time

from celery import Celery

from backstop_admission import JobWorkspace
from backstop_admission.celery import start_job, sweep_task

import settings

app = Celery("make_video", broker=settings.BROKER_URL, backend=settings.BROKER_URL)
app.conf.task_default_queue = settings.QUEUE
admission = settings.admission()  # made again in each forked worker process on first use
sweep_task(app, root=settings.TEMP, every=settings.SWEEP_EVERY,  # every 6 h,
           older_than=settings.SWEEP_OLDER_THAN)  # files older than 24 h

STAGES = ("download", "validation", "build")


def record(event: str, job_id: str) -> None:
    """Appends one line to MAKE_VIDEO_EVENTS (the tests read when jobs ran)."""
    path = os.environ.get("MAKE_VIDEO_EVENTS")
    if path:
        line = json.dumps({"event": event, "job": job_id, "t": time.time(), "pid": os.getpid()})
        with open(path, "a") as out:
            out.write(line + "\n")


@app.task(name="make_video", bind=True, max_retries=None)
def make_video(self, job_id: str, token: str, seconds: float = 1.0) -> dict:
    with start_job(admission, token):  # at most jobs.max of these, across all workers
        record("start", job_id)
        with JobWorkspace(job_id, base=settings.TEMP) as job:
            for stage in STAGES:
                with job.stage(stage) as path:  # removed when the stage ends
                    with open(os.path.join(path, "part.bin"), "wb") as out:
                        out.write(b"\0" * 4096)
                    time.sleep(seconds / len(STAGES))
        record("end", job_id)
    return {"job_id": job_id, "stages": list(STAGES)}
