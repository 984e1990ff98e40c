"""What every router uses: the store and the worker as dependencies, bodies, files, ids.

The store and the worker are the app's (``app.state``, set once by
:func:`studio.app.create_app`); a handler asks for them by type, ``store: StoreDep``. A
project that must exist before its body is read is :data:`ProjectId`. A keyframe route
that takes an image (multipart field ``file``) or JSON reads its body with
:func:`image_or`, which checks the JSON with the route's model: its errors are the 400
of any other body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from pydantic import BaseModel, ValidationError

from artwalk.errors import ArtwalkError, first_line
from studio.jobs import Worker
from studio.projects import ID, NotFound, Store
from studio.schemas import Problem

M = TypeVar("M", bound=BaseModel)
PNG = {200: {"content": {"image/png": {}}, "description": "a PNG"}}
# Every route's errors, one model; a range, so that FastAPI adds no 422 (a refused body is a 400 here).
ERRORS: dict[int | str, dict[str, Any]] = {"4XX": {"model": Problem, "description": (
    "400 a bad value or input, 401 no token, 403 a change from another origin, 404 nothing there, "
    "413 a body over the limit, 415 a body that is not JSON (or multipart where an image is sent)")}}


class Bad(ArtwalkError):
    """A request that asks for nothing the route does."""


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_worker(request: Request) -> Worker:
    return request.app.state.worker


StoreDep = Annotated[Store, Depends(get_store)]
WorkerDep = Annotated[Worker, Depends(get_worker)]


def project_id(pid: str, store: StoreDep) -> str:
    """``pid`` once it is a project here (:class:`NotFound` otherwise): checked before the body is read."""
    store.folder(pid)
    return pid


ProjectId = Annotated[str, Depends(project_id)]


@dataclass(frozen=True)
class Upload:
    """An image sent as the multipart form field ``file``."""

    data: bytes
    name: str


def image_or(model: type[M]) -> Callable[[Request], Awaitable[Upload | M]]:
    """A dependency reading the body: an :class:`Upload` if it is multipart, else JSON as ``model``."""

    async def body(request: Request) -> Upload | M:
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            return await _upload(request)
        try:
            return model.model_validate(await _json(request))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None

    return body


async def _upload(request: Request) -> Upload:
    form = await request.form()
    file = form.get("file")
    if file is None or isinstance(file, str):
        raise Bad("send the image as the multipart form field 'file'")
    return Upload(await file.read(), file.filename or "upload")


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise Bad(f"the body is not JSON ({first_line(exc)})") from None


def upload_doc(model: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route read by :func:`image_or`: an image, or ``model`` as JSON."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": model.model_json_schema()}}}}


def checked_id(value: str) -> str:
    """A keyframe id as it may name a file; :class:`NotFound` otherwise."""
    if not ID.fullmatch(value):
        raise NotFound(f"no keyframe '{value}'")
    return value


def file_response(path: Path, media_type: str | None, filename: str | None = None) -> FileResponse:
    if not path.is_file():
        raise NotFound(f"no file {path.name}")
    return FileResponse(path, media_type=media_type, filename=filename)
