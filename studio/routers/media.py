"""What the page shows: the page itself, the timeline's frame states, the video and its contact sheet."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from studio import keyframes as kf
from studio.projects import NotFound
from studio.routers.common import ERRORS, PNG, StoreDep, WorkerDep, file_response
from studio.schemas import FrameStates

STATIC = Path(__file__).resolve().parent.parent / "static"
PAGE_FILES = {"studio.js": "text/javascript", "studio.css": "text/css"}
VIDEO_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}

router = APIRouter(tags=["media"], responses=ERRORS)


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    if name not in PAGE_FILES:
        raise NotFound(f"no file {name}")
    return FileResponse(STATIC / name, media_type=PAGE_FILES[name])


@router.get("/api/projects/{pid}/frames", response_model=FrameStates,
            summary="the timeline as runs: each unit's first frame, frames and state "
            "(none, stale, queued, rendering, done)")
def frames(pid: str, store: StoreDep, worker: WorkerDep) -> dict:
    return kf.frame_states(store, worker, pid)


@router.get("/api/projects/{pid}/video", response_class=FileResponse, summary="the last rendered video",
            responses={200: {"content": {t: {} for t in VIDEO_TYPES.values()}, "description": "the video"}})
def video(pid: str, store: StoreDep) -> FileResponse:
    rendered = store.rendered(pid)
    if rendered is None:
        raise NotFound(f"project {pid} has no video yet: render it first")
    return file_response(store.path(pid, "run", rendered["video"]), VIDEO_TYPES.get(rendered["format"]),
                         filename=kf.video_filename(store.load(pid), rendered))


@router.get("/api/projects/{pid}/contact-sheet", response_class=FileResponse, responses=PNG,
            summary="the last render's contact sheet (PNG)")
def contact_sheet(pid: str, store: StoreDep) -> FileResponse:
    rendered = store.rendered(pid)
    if rendered is None or not rendered.get("sheet"):
        raise NotFound(f"project {pid} has no contact sheet yet: render it first")
    return file_response(store.path(pid, "run", rendered["sheet"]), "image/png")

