"""The API: POST /make-video admits a job (429/503 otherwise) and hands it to Celery."""

import uuid

from celery.result import AsyncResult
from fastapi import Body, Depends, FastAPI, Request, Response
from prometheus_client import REGISTRY, generate_latest

from backstop_admission import RedisTicket
from backstop_admission.fastapi import Admit, install
from backstop_admission.prometheus import BackstopCollector

import settings
from celery_app import app as celery, make_video

app = FastAPI()
install(app)  # refusals: 429/503, Retry-After, RateLimit headers, problem+json
admission = settings.admission()
REGISTRY.register(BackstopCollector(admission))
admit = Admit(admission, key=lambda request: request.headers.get("x-client"))


@app.post("/make-video", status_code=202)
async def create_video(
    ticket: RedisTicket = Depends(admit), seconds: float = Body(1.0, embed=True)
) -> dict:
    job_id = uuid.uuid4().hex
    token = await ticket.detach()  # the queue place goes to whichever worker claims it
    make_video.apply_async((job_id, token, seconds), task_id=job_id)
    return {"job_id": job_id}


@app.get("/jobs/{job_id}")
async def job(job_id: str) -> dict:
    return {"job_id": job_id, "state": AsyncResult(job_id, app=celery).state}


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4")
