"""The studio's HTTP API and page: thin handlers over :mod:`studio.keyframes` and the worker.

Before any route, :class:`studio.guard.Guard` checks the Host, the origin of a request that
changes something, the token and the body. Every route that names a project, keyframe or
job resolves it through the :class:`~studio.projects.Store`, which refuses ids that are not
ids and paths that leave the project. Errors are JSON ``{"detail": "one line"}``: 400 a bad
value or input (or a Host the studio does not answer to), 401 no token, 403 a change asked
from another origin, 404 nothing there, 409 a render already running (or a cancel of a
finished job), 413 an upload over the limit, 415 a body that is not JSON (or multipart where
an image is sent), 500 a bug (its traceback stays in the server's log). An error names a
setting as the page names it, not by its flag, and no path of the server
(:meth:`studio.projects.Store.words`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from artwalk.errors import ArtwalkError, DiskFullError, first_line
from artwalk.timeline import EASING_NAMES
from pipeline.presets import REGISTRIES
from studio import keyframes as kf
from studio import walks
from studio.guard import Guard, check_token
from studio.jobs import FINISHED, Finished, Worker
from studio.projects import ID, Busy, NotFound, Store

log = logging.getLogger("artwalk.studio")

STATIC = Path(__file__).resolve().parent / "static"
PAGE_FILES = {"studio.js": "text/javascript", "studio.css": "text/css"}
VIDEO_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}


# ----------------------------------------------------------------------- models

class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class PromptIn(BaseModel):
    prompt: str
    negative: str | None = None
    seed: int | None = None


class KeyframePatch(BaseModel):
    """Replace the prompt (a prompt keyframe), or move: ``index`` in the order, or
    ``position`` as a frame (48) or seconds ("2.5s")."""

    prompt: str | None = None
    negative: str | None = None
    seed: int | None = None
    index: int | None = None
    position: int | float | str | None = None


class InterpolateIn(BaseModel):
    a: str
    b: str
    n: int = 3


class Created(BaseModel):
    id: str


class JobRef(BaseModel):
    job: str


# -------------------------------------------------------------------------- app

def create_app(root: Path | str, token: str | None = None, max_upload_mb: float = 50, *, port: int = 8765,
               hosts: Iterable[str] = (), models: Path | str | None = None) -> FastAPI:
    """The studio over the projects in ``root`` (made if missing), answering on ``port`` to
    127.0.0.1, localhost, [::1] and the names in ``hosts``; with ``token`` (16 characters or
    more), to no request without it. ``models``: the folder whose entries a project may name
    as its models (over HTTP, a model is otherwise a registry name or a hub id)."""
    check_token(token)  # a token too short is refused before anything is made
    store = Store(Path(root), None if models is None else Path(models))
    worker = Worker(store)
    app = FastAPI(title="artwalk studio", version="1",
                  description="Keyframes on a timeline, walks rendered from them; only what changed is redone.")
    app.state.store, app.state.worker = store, worker

    @app.exception_handler(ArtwalkError)
    async def artwalk_error(request: Request, exc: ArtwalkError):
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, (Busy, Finished)) else \
            507 if isinstance(exc, DiskFullError) else 400
        return JSONResponse({"detail": store.words(first_line(exc))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=400)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"},
                            status_code=500)

    # ------------------------------------------------------------- the page
    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in PAGE_FILES:
            raise NotFound(f"no file {name}")
        return FileResponse(STATIC / name, media_type=PAGE_FILES[name])

    @app.get("/api/options", summary="what the settings may name: engines, easings, formats")
    def options() -> dict:
        engines = {"keyframes": list(REGISTRIES["keyframes"].specs), "motion": walks.motion_engines(),
                   "upscale": [*REGISTRIES["upscale"].specs, "none"]}
        return {"engines": engines,
                "easings": list(EASING_NAMES), "formats": list(VIDEO_TYPES), "settings": list(walks.KEYS),
                "defaults": _defaults()}

    # --------------------------------------------------------- projects
    @app.post("/api/projects", response_model=Created, status_code=201)
    def create_project(body: ProjectIn) -> dict:
        return {"id": store.create(body.name)["id"]}

    @app.get("/api/projects")
    def list_projects() -> list[dict]:
        return [{"id": p["id"], "name": p["name"], "created": p["created"], "keyframes": len(p["keyframes"])}
                for p in store.projects()]

    @app.get("/api/projects/{pid}")
    def get_project(pid: str) -> dict:
        with store.lock(pid):
            return kf.project_json(store, worker, store.load(pid))

    @app.put("/api/projects/{pid}/settings", summary="change settings; keys left out keep their value")
    def put_settings(pid: str, body: dict[str, Any]) -> dict:
        with store.lock(pid):
            project = store.load(pid)
            merged = walks.merge(project["settings"], body)
            walk = walks.walk_for(merged, models=store.models)  # the CLI's checks, its one-line errors
            walks.layout(walk, [k["sha256"] for k in project["keyframes"]])  # its keyframes within the caps
            project["settings"] = merged
            store.save(project)
            return merged

    # -------------------------------------------------------- keyframes
    upload_doc = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": PromptIn.model_json_schema()}}}}

    @app.post("/api/projects/{pid}/keyframes", status_code=201, openapi_extra=upload_doc,
              summary="add a keyframe: an image (multipart field 'file') or a prompt (JSON)")
    async def add_keyframe(pid: str, request: Request) -> dict:
        store.folder(pid)
        if _is_multipart(request):
            data, name = await _upload(request)
            return await run_in_threadpool(kf.add_image, store, pid, data, name)
        body = PromptIn.model_validate(await _json(request))
        return await run_in_threadpool(kf.add_prompt, store, pid, body.prompt, body.negative, body.seed)

    patch_doc = {"requestBody": {"required": True, "content": {
        "multipart/form-data": upload_doc["requestBody"]["content"]["multipart/form-data"],
        "application/json": {"schema": KeyframePatch.model_json_schema()}}}}

    @app.patch("/api/projects/{pid}/keyframes/{kid}", openapi_extra=patch_doc,
               summary="replace a keyframe's image (multipart) or prompt, or move it (index or position)")
    async def patch_keyframe(pid: str, kid: str, request: Request) -> dict:
        store.folder(pid)
        if _is_multipart(request):
            data, name = await _upload(request)
            return await run_in_threadpool(kf.add_image, store, pid, data, name, kid)
        body = KeyframePatch.model_validate(await _json(request))
        if body.prompt is not None:
            result = await run_in_threadpool(kf.add_prompt, store, pid, body.prompt, body.negative, body.seed, kid)
            if body.index is None and body.position is None:
                return result
        if body.index is None and body.position is None:
            raise _Bad("give an image, a prompt, an index or a position")
        return await run_in_threadpool(kf.move, store, pid, kid, body.index, body.position)

    @app.delete("/api/projects/{pid}/keyframes/{kid}", status_code=204)
    def delete_keyframe(pid: str, kid: str) -> Response:
        kf.delete(store, pid, kid)
        return Response(status_code=204)

    @app.get("/api/projects/{pid}/keyframes/{kid}/image", summary="the keyframe's thumbnail (PNG)")
    def keyframe_image(pid: str, kid: str):
        return _file(store.path(pid, "thumbs", f"{_id(kid)}.png"), "image/png")

    @app.post("/api/projects/{pid}/interpolate", summary="n in-between images of two keyframes")
    def interpolate(pid: str, body: InterpolateIn) -> dict:
        return {"images": kf.interpolate(store, pid, body.a, body.b, body.n)}

    @app.get("/api/projects/{pid}/inbetweens/{key}/{name}", include_in_schema=False)
    def inbetween(pid: str, key: str, name: str):
        if not (len(key) == 16 and all(c in "0123456789abcdef" for c in key)) or not (
                len(name) == 7 and name[:3].isdigit() and name.endswith(".png")):
            raise NotFound(f"no in-between {key}/{name}")
        return _file(store.path(pid, "inbetweens", key, name), "image/png")

    # ----------------------------------------------------------- render
    @app.post("/api/projects/{pid}/render", response_model=JobRef, status_code=202)
    def render(pid: str) -> dict:
        with store.lock(pid):
            kf.check_renderable(store, pid)
            return {"job": worker.submit(pid).id}

    @app.get("/api/jobs/{job}", summary="state (queued, running, done, failed, cancelled), progress, error, stages")
    def get_job(job: str) -> dict:
        return worker.get(job).public(store.words)

    @app.delete("/api/jobs/{job}", summary="cancel a render: a queued one now, a running one at its next step "
                "(its finished units stay in the run folder for the next render); 409 once it has finished")
    def cancel_job(job: str) -> dict:
        return worker.cancel(job).public(store.words)

    @app.get("/api/jobs/{job}/events", summary="the job's progress as server-sent events")
    async def job_events(job: str, request: Request):
        worker.get(job)

        async def events():
            sent, quiet = -1, 0.0
            while True:
                current = worker.get(job)
                if current.version != sent:
                    sent = current.version
                    yield f"event: progress\ndata: {json.dumps(current.public(store.words))}\n\n"
                    if current.state in FINISHED:
                        return
                elif quiet > 15:
                    yield ": still working\n\n"
                    quiet = 0.0
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)
                quiet += 0.2

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/projects/{pid}/frames", summary="the timeline as runs: each unit's first frame, frames and "
             "state (none, stale, queued, rendering, done)")
    def frames(pid: str) -> dict:
        return kf.frame_states(store, worker, pid)

    @app.get("/api/projects/{pid}/video", summary="the last rendered video")
    def video(pid: str):
        rendered = store.rendered(pid)
        if rendered is None:
            raise NotFound(f"project {pid} has no video yet: render it first")
        return _file(store.path(pid, "run", rendered["video"]), VIDEO_TYPES.get(rendered["format"]),
                     filename=kf.video_filename(store.load(pid), rendered))

    @app.get("/api/projects/{pid}/contact-sheet", summary="the last render's contact sheet (PNG)")
    def contact_sheet(pid: str):
        rendered = store.rendered(pid)
        if rendered is None or not rendered.get("sheet"):
            raise NotFound(f"project {pid} has no contact sheet yet: render it first")
        return _file(store.path(pid, "run", rendered["sheet"]), "image/png")

    app.add_middleware(Guard, token=token, max_bytes=int(max_upload_mb * 2**20), port=port, names=list(hosts))
    return app


class _Bad(ArtwalkError):
    """A request that asks for nothing the route does."""


def _defaults() -> dict:
    walk = walks.walk_for({})
    return {"S": walk.keyframes.interpolation_steps, "I": walk.motion.sec_interpolation,
            "F": walk.motion.sec_freeze, "fps": walk.motion.fps, "easing": walk.motion.easing,
            "w": walk.keyframes.width, "h": walk.keyframes.height, "seed": walk.keyframes.seed,
            "target": walk.upscale.target if walk.upscale else None, "format": walk.video.video_format,
            "engines": vars(walk.engines)}


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _upload(request: Request) -> tuple[bytes, str]:
    form = await request.form()
    file = form.get("file")
    if file is None or isinstance(file, str):
        raise _Bad("send the image as the multipart form field 'file'")
    return await file.read(), file.filename or "upload"


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise _Bad(f"the body is not JSON ({first_line(exc)})") from None


def _id(value: str) -> str:
    if not ID.fullmatch(value):
        raise NotFound(f"no keyframe '{value}'")
    return value


def _file(path: Path, media_type: str | None, filename: str | None = None):
    if not path.is_file():
        raise NotFound(f"no file {path.name}")
    return FileResponse(path, media_type=media_type, filename=filename)
