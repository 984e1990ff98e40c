"""Render jobs: queued for a project, asked after, cancelled, followed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from studio import keyframes as kf
from studio.jobs import FINISHED, Worker
from studio.routers.common import ERRORS, StoreDep, WorkerDep
from studio.schemas import Job, JobRef, Problem

router = APIRouter(prefix="/api", tags=["jobs"], responses=ERRORS)
CONFLICT = {409: {"model": Problem, "description": "a render already running, or a job already finished"}}
EVENTS = {200: {"content": {"text/event-stream": {}}, "description": "`event: progress` with the job as JSON"}}
TICK_S = 0.2  # how often the stream looks at the job
QUIET_S = 15  # a comment line after this long without news keeps proxies from closing the stream


@router.post("/projects/{pid}/render", response_model=JobRef, status_code=202, responses=CONFLICT)
def render(pid: str, store: StoreDep, worker: WorkerDep) -> dict:
    with store.lock(pid):
        kf.check_renderable(store, pid)
        return {"job": worker.submit(pid).id}


@router.get("/jobs/{job}", response_model=Job,
            summary="state (queued, running, done, failed, cancelled), progress, error, stages")
def get_job(job: str, store: StoreDep, worker: WorkerDep) -> dict:
    return worker.get(job).public(store.words)


@router.delete("/jobs/{job}", response_model=Job, responses=CONFLICT,
               summary="cancel a render: a queued one now, a running one at its next step "
               "(its finished units stay in the run folder for the next render); 409 once it has finished")
def cancel_job(job: str, store: StoreDep, worker: WorkerDep) -> dict:
    return worker.cancel(job).public(store.words)


@router.get("/jobs/{job}/events", response_class=StreamingResponse, responses=EVENTS,
            summary="the job's progress as server-sent events")
async def job_events(job: str, request: Request, store: StoreDep, worker: WorkerDep) -> StreamingResponse:
    worker.get(job)  # a 404 now, not a stream that ends at once
    return StreamingResponse(_events(worker, job, store.words, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(worker: Worker, job: str, words: Callable[[str], str], request: Request) -> AsyncIterator[str]:
    """The job each time it changes, until it has finished or the page has gone."""
    sent, quiet = -1, 0.0
    while True:
        current = worker.get(job)
        if current.version != sent:
            sent = current.version
            yield f"event: progress\ndata: {json.dumps(current.public(words))}\n\n"
            if current.state in FINISHED:
                return
        elif quiet > QUIET_S:
            yield ": still working\n\n"
            quiet = 0.0
        if await request.is_disconnected():
            return
        await asyncio.sleep(TICK_S)
        quiet += TICK_S
