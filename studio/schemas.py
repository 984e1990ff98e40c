"""The studio's JSON, in and out: one pydantic model per shape, so ``/openapi.json`` shows them.

The shapes are what :mod:`studio.keyframes`, :class:`studio.jobs.Job` and
:mod:`studio.walks` already return; a route names its model (``response_model``) and the
model only checks and documents them, field by field in the same order. A project's
settings (:class:`Settings`) go in as a plain JSON object, checked key by key by
:func:`studio.walks.merge` and :func:`studio.walks.walk_for` (their one-line errors), and
come out as this model; an error is always :class:`Problem`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = int | float | str  # a setting's value as JSON gives it (smart union: an int stays an int)


class Problem(BaseModel):
    """Every error: one line, in the page's words, with no path of the server."""

    detail: str


# -------------------------------------------------------------------------- in

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


# ------------------------------------------------------------------- settings

class StageNames(BaseModel):
    """A name per stage (``engines``: "none" for no upscale; ``models``: a registry name, a
    hub id or an entry of the studio's models folder). A stage left out takes the default."""

    keyframes: str | None = None
    motion: str | None = None
    upscale: str | None = None


class Settings(BaseModel):
    """A project's settings (:data:`studio.walks.KEYS`): a key left out is the walk's default.
    Sent to PUT .../settings, only the keys given change (null: back to the default)."""

    model_config = ConfigDict(extra="allow")  # a key walks.KEYS gains is shown, never dropped

    S: Scalar | None = Field(None, description="in-between keyframes per segment")
    I: Scalar | None = Field(None, description="seconds of motion between two keyframes")  # noqa: E741
    F: Scalar | None = Field(None, description="seconds each keyframe holds")
    fps: Scalar | None = None
    easing: Scalar | None = None
    w: Scalar | None = Field(None, description="width of the keyframes, px")
    h: Scalar | None = Field(None, description="height of the keyframes, px")
    target: Scalar | None = Field(None, description="the upscale's target size (2k, 4k, 1920x1080, x2)")
    format: Scalar | None = Field(None, description="mp4, webm or gif")
    seed: Scalar | None = None
    steps: Scalar | None = Field(None, description="diffusion steps")
    preset: Scalar | None = None
    device: Scalar | None = None
    engines: StageNames | None = None
    models: StageNames | None = None


# ------------------------------------------------------------------------ out

class Created(BaseModel):
    id: str


class ProjectSummary(BaseModel):
    id: str
    name: str
    created: float
    keyframes: int = Field(description="how many")


class Position(BaseModel):
    """Where a keyframe sits: its place in the order, and its first frame and second."""

    index: int
    frame: int | None
    seconds: float | None


class Keyframe(BaseModel):
    id: str
    kind: Literal["image", "prompt"]
    name: str | None = Field(description="an image's file name as uploaded")
    prompt: str | None
    negative: str | None
    seed: int | None
    sha256: str
    position: Position
    image_url: str
    conditioning: dict[str, Any] = Field(description="what the keyframe's image was made from")


class Video(BaseModel):
    url: str
    format: str
    frames: int | None
    version: str = Field(description="the job that rendered it")
    filename: str
    sheet_url: str | None


class Project(BaseModel):
    id: str
    name: str
    created: float
    settings: Settings
    keyframes: list[Keyframe]
    video: Video | None = Field(description="the last rendered video")
    job: str | None = Field(description="the render queued or running")


class StageUnits(BaseModel):
    reused: int
    recomputed: int


class Job(BaseModel):
    id: str
    project: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(description="0..1, only grows; 1 only once done")
    eta_s: float | None
    stage: str | None
    error: str | None
    cancelling: bool = Field(description="asked to stop: it stops at its next step")
    stages: dict[str, StageUnits] = Field(description="each finished stage's units")
    created: float
    started: float | None
    finished: float | None
    version: int


class JobRef(BaseModel):
    job: str


class Unit(BaseModel):
    """A stretch of the timeline: a keyframe's hold, or the segment between two keyframes."""

    kind: Literal["hold", "segment"]
    keyframes: list[int]
    start: int
    frames: int
    signature: str
    state: Literal["none", "stale", "queued", "rendering", "done"]


class FrameStates(BaseModel):
    frames: int
    units: list[Unit]
    job: str | None


class Images(BaseModel):
    images: list[str]


class Engines(BaseModel):
    keyframes: list[str]
    motion: list[str]
    upscale: list[str]


class EngineNames(BaseModel):
    keyframes: str
    motion: str
    upscale: str


class Defaults(BaseModel):
    S: int
    I: float  # noqa: E741
    F: float
    fps: float
    easing: str
    w: int
    h: int
    seed: int
    target: str | None
    format: str
    engines: EngineNames


class Options(BaseModel):
    engines: Engines
    easings: list[str]
    formats: list[str]
    settings: list[str]
    defaults: Defaults
