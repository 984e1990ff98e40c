"""Projects, their settings, and what the settings may name (``/api/options``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import WithJsonSchema

from artwalk.timeline import EASING_NAMES
from pipeline.presets import REGISTRIES
from studio import keyframes as kf
from studio import walks
from studio.routers.common import ERRORS, StoreDep, WorkerDep
from studio.routers.media import VIDEO_TYPES
from studio.schemas import Created, Options, Project, ProjectIn, ProjectSummary, Settings

router = APIRouter(prefix="/api", tags=["projects"], responses=ERRORS)
# Settings in: any JSON object, for walks.merge checks it key by key (its errors, in its order), shown as Settings.
SettingsChange = Annotated[dict[str, Any], WithJsonSchema({"$ref": "#/components/schemas/Settings"})]


@router.get("/options", response_model=Options, summary="what the settings may name: engines, easings, formats")
def options() -> dict:
    engines = {"keyframes": list(REGISTRIES["keyframes"].specs), "motion": walks.motion_engines(),
               "upscale": [*REGISTRIES["upscale"].specs, "none"]}
    return {"engines": engines, "easings": list(EASING_NAMES), "formats": list(VIDEO_TYPES),
            "settings": list(walks.KEYS), "defaults": _defaults()}


@router.post("/projects", response_model=Created, status_code=201)
def create_project(body: ProjectIn, store: StoreDep) -> dict:
    return {"id": store.create(body.name)["id"]}


@router.get("/projects", response_model=list[ProjectSummary])
def list_projects(store: StoreDep) -> list[dict]:
    return [{"id": p["id"], "name": p["name"], "created": p["created"], "keyframes": len(p["keyframes"])}
            for p in store.projects()]


@router.get("/projects/{pid}", response_model=Project, response_model_exclude_unset=True)
def get_project(pid: str, store: StoreDep, worker: WorkerDep) -> dict:
    with store.lock(pid):
        return kf.project_json(store, worker, store.load(pid))


@router.put("/projects/{pid}/settings", response_model=Settings, response_model_exclude_unset=True,
            summary="change settings; keys left out keep their value")
def put_settings(pid: str, body: SettingsChange, store: StoreDep) -> dict:
    return kf.change_settings(store, pid, body)


def _defaults() -> dict:
    walk = walks.walk_for({})
    return {"S": walk.keyframes.interpolation_steps, "I": walk.motion.sec_interpolation,
            "F": walk.motion.sec_freeze, "fps": walk.motion.fps, "easing": walk.motion.easing,
            "w": walk.keyframes.width, "h": walk.keyframes.height, "seed": walk.keyframes.seed,
            "target": walk.upscale.target if walk.upscale else None, "format": walk.video.video_format,
            "engines": vars(walk.engines)}
