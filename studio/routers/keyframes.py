"""Keyframes: an image (multipart) or a prompt (JSON) in, moved, removed, shown; in-betweens.

The handlers are plain functions: FastAPI runs them on its thread pool, where the walk's
image loader and the keyframe engine may take their time.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse

from studio import keyframes as kf
from studio.projects import NotFound
from studio.routers.common import (ERRORS, PNG, Bad, ProjectId, StoreDep, Upload, checked_id, file_response,
                                   image_or, upload_doc)
from studio.schemas import Images, InterpolateIn, Keyframe, KeyframePatch, PromptIn

router = APIRouter(prefix="/api/projects/{pid}", tags=["keyframes"], responses=ERRORS)
ImageOrPrompt = Annotated[Upload | PromptIn, Depends(image_or(PromptIn))]
ImageOrPatch = Annotated[Upload | KeyframePatch, Depends(image_or(KeyframePatch))]
HEX = frozenset("0123456789abcdef")


@router.post("/keyframes", response_model=Keyframe, status_code=201, openapi_extra=upload_doc(PromptIn),
             summary="add a keyframe: an image (multipart field 'file') or a prompt (JSON)")
def add_keyframe(pid: ProjectId, body: ImageOrPrompt, store: StoreDep) -> dict:
    if isinstance(body, Upload):
        return kf.add_image(store, pid, body.data, body.name)
    return kf.add_prompt(store, pid, body.prompt, body.negative, body.seed)


@router.patch("/keyframes/{kid}", response_model=Keyframe, openapi_extra=upload_doc(KeyframePatch),
              summary="replace a keyframe's image (multipart) or prompt, or move it (index or position)")
def patch_keyframe(pid: ProjectId, kid: str, body: ImageOrPatch, store: StoreDep) -> dict:
    if isinstance(body, Upload):
        return kf.add_image(store, pid, body.data, body.name, kid)
    moves = body.index is not None or body.position is not None
    if body.prompt is None and not moves:
        raise Bad("give an image, a prompt, an index or a position")
    if body.prompt is not None:
        remade = kf.add_prompt(store, pid, body.prompt, body.negative, body.seed, kid)
        if not moves:
            return remade
    return kf.move(store, pid, kid, body.index, body.position)


@router.delete("/keyframes/{kid}", status_code=204, response_class=Response)
def delete_keyframe(pid: str, kid: str, store: StoreDep) -> Response:
    kf.delete(store, pid, kid)
    return Response(status_code=204)


@router.get("/keyframes/{kid}/image", response_class=FileResponse, responses=PNG,
            summary="the keyframe's thumbnail (PNG)")
def keyframe_image(pid: str, kid: str, store: StoreDep) -> FileResponse:
    return file_response(store.path(pid, "thumbs", f"{checked_id(kid)}.png"), "image/png")


@router.post("/interpolate", response_model=Images, summary="n in-between images of two keyframes")
def interpolate(pid: str, body: InterpolateIn, store: StoreDep) -> dict:
    return {"images": kf.interpolate(store, pid, body.a, body.b, body.n)}


@router.get("/inbetweens/{key}/{name}", include_in_schema=False)
def inbetween(pid: str, key: str, name: str, store: StoreDep) -> FileResponse:
    if not (len(key) == 16 and set(key) <= HEX and len(name) == 7 and name[:3].isdigit() and name.endswith(".png")):
        raise NotFound(f"no in-between {key}/{name}")
    return file_response(store.path(pid, "inbetweens", key, name), "image/png")
