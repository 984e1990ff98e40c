"""The studio's HTTP API and page: thin handlers over :mod:`studio.keyframes` and the worker.

Before any route, :class:`studio.guard.Guard` checks the Host, the origin of a request that
changes something, the token and the body. The routes (:mod:`studio.routers`, one router per
resource) take and give the models of :mod:`studio.schemas`. Every route that names a
project, keyframe or job resolves it through the :class:`~studio.projects.Store`, which
refuses ids that are not ids and paths that leave the project. Errors are JSON
``{"detail": "one line"}``: 400 a bad value or input (or a Host the studio does not answer
to), 401 no token, 403 a change asked from another origin, 404 nothing there, 409 a render
already running (or a cancel of a finished job), 413 an upload over the limit, 415 a body
that is not JSON (or multipart where an image is sent), 507 a full disk, 500 a bug (its
traceback stays in the server's log). An error names a setting as the page names it, not by
its flag, and no path of the server (:meth:`studio.projects.Store.words`).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Iterable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from artwalk.errors import ArtwalkError, DiskFullError, first_line
from studio.guard import Guard, check_token
from studio.jobs import Finished, Worker
from studio.projects import Busy, NotFound, Store
from studio.routers import ROUTERS

log = logging.getLogger("artwalk.studio")

# An error's status, by its type (the first that matches); any other ArtwalkError is a 400.
STATUS = ((NotFound, 404), ((Busy, Finished), 409), (DiskFullError, 507))


def create_app(root: Path | str, token: str | None = None, max_upload_mb: float = 50, *, port: int = 8765,
               hosts: Iterable[str] = (), models: Path | str | None = None) -> FastAPI:
    """The studio over the projects in ``root`` (made if missing), answering on ``port`` to
    127.0.0.1, localhost, [::1] and the names in ``hosts``; with ``token`` (16 characters or
    more), to no request without it. ``models``: the folder whose entries a project may name
    as its models (over HTTP, a model is otherwise a registry name or a hub id)."""
    check_token(token)  # a token too short is refused before anything is made
    app = FastAPI(title="artwalk studio", version="1", lifespan=_closing_the_worker,
                  description="Keyframes on a timeline, walks rendered from them; only what changed is redone.")
    app.state.store = Store(Path(root), None if models is None else Path(models))
    app.state.worker = Worker(app.state.store)
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(ArtwalkError, artwalk_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, bug)
    app.add_middleware(Guard, token=token, max_bytes=int(max_upload_mb * 2**20), port=port, names=list(hosts))
    return app


@asynccontextmanager
async def _closing_the_worker(app: FastAPI) -> AsyncIterator[None]:
    """When the server stops, its render thread takes no more jobs (and ends after its render)."""
    yield
    app.state.worker.close()


async def artwalk_error(request: Request, exc: ArtwalkError) -> JSONResponse:
    """Our own errors: their first line, in the page's words, with the status their type says."""
    status = next((code for kinds, code in STATUS if isinstance(exc, kinds)), 400)
    return JSONResponse({"detail": request.app.state.store.words(first_line(exc))}, status_code=status)


async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body or parameter its model refuses: a 400 naming each field (``name: Field required``)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=400)


async def bug(request: Request, exc: Exception) -> JSONResponse:
    """Anything else is a bug: its traceback to the server's log, only its type to the page."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server's log"},
                        status_code=500)
