"""An infinite zoom, as the walk's four stages on one run folder: its spec and plan, which
:func:`pipeline.walk.plan` and :func:`pipeline.walk.run` hand over to here.

::

    artwalk zoom PROMPTS OUT [flags]                 levels, upscaled levels, frames, video
    artwalk zoom --through FOLDER OUT [flags]        the same through your own images (no weights)
    artwalk zoom PROMPTS OUT --levels-only           step 1 (the GPU part): levels, upscaled
    artwalk zoom OUT --render                        step 2 (the CPU part): frames, encode, audio

Stage 1 makes the levels (:mod:`diffusion_models.zoom`), stage 3 brings them to the
output size (:func:`super_resolution.run_levels`: Real-ESRGAN on GPU, Lanczos on CPU),
stage 2's ``zoom`` engine composes every frame from them (:mod:`frame_interpolation.zoom`)
and stage 4 encodes the frames with the soundtrack. Everything is checked before any work
and one plan line says what the zoom makes; every stage caches its units, so a rerun
resumes and a changed prompt redoes only its level, those outside it and their frames.

``OUT/zoom.json`` records the flags given; ``--render`` starts from them, so the second
step needs only OUT (flags given to it override the recorded ones).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Mapping

import frame_interpolation
import generate_videos
import super_resolution
from artwalk import __version__
from artwalk.config import from_record, given
from artwalk.errors import ConfigError, InputError, StageOrderError
from artwalk.fsutil import atomic_write_json, check_writable, sha256_file
from artwalk.plan import PNG_BYTES_PER_PIXEL, WalkPlan, plan_counts, state_plan
from artwalk.runfolder import MANIFEST, check_layout, check_run_folder, read_manifest, run_lock
from artwalk.sizes import target_size
from artwalk.zoom import frames_per_level, hold_frames, zoom_timeline
from diffusion_models.zoom import ZoomLevelsConfig, check_zoom, run_zoom as make_levels
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from pipeline.flags import ZOOM_MOTION, ZOOM_UPSCALE_DESTS, ZOOM_VIDEO_DESTS
from pipeline.presets import REGISTRIES, resolve_preset
from pipeline.spec import ExecutorSpec, WalkOptions
from super_resolution import UpscaleConfig

log = logging.getLogger("artwalk")

RECORD = "zoom.json"
SHARED = ("device", "dtype", "wait", "verify")  # given once, for every stage that takes them


@dataclass(frozen=True)
class ZoomSpec:
    """An infinite zoom, whole: its run folder, the stages' configs, the flags given (what
    ``zoom.json`` keeps for ``--render``) and which steps run."""

    run_dir: Path
    levels: ZoomLevelsConfig | None  # None with --render
    upscale: UpscaleConfig | None  # None with --no-upscale
    motion: MotionConfig
    video: VideoConfig
    given: Mapping[str, Mapping[str, Any]]
    reason: str
    steps: tuple[str, ...]  # of levels, upscale, frames, video
    executor: ExecutorSpec = ExecutorSpec()
    track: str = "none"
    tracking_uri: str | None = None


@dataclass(frozen=True)
class ZoomPlan:
    """A checked zoom: its spec, stage 1's plan of the levels, the engines the checks made, the
    numbers of the plan line."""

    spec: ZoomSpec
    levels: Any  # diffusion_models.zoom's plan, None with --render
    engines: Mapping[str, Any]  # motion, and upscale when it runs
    numbers: WalkPlan
    kind: ClassVar[str] = "zoom"

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir


def _json(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


ZOOM_KEYS = ("prompts", "output", "levels_only", "render", "quiet", "verbose")


def zoom_spec(settings: Mapping[str, Any]) -> ZoomSpec:
    """The zoom that ``settings`` describe (with ``render``, over OUT/zoom.json's): keyed as the
    zoom's flags land, like a walk's (:mod:`pipeline.spec`)."""
    values = dict(settings)
    known = set(ZOOM_KEYS) | {f.name for f in dataclasses.fields(WalkOptions) if f.name not in
                              ("interrogate", "interrogate_mode")}
    for cls, dests, names in ((ZoomLevelsConfig, {}, None), (MotionConfig, {}, ZOOM_MOTION),
                              (UpscaleConfig, ZOOM_UPSCALE_DESTS, None), (VideoConfig, ZOOM_VIDEO_DESTS, None)):
        known |= {dests.get(f.name, f.name) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)
                  and (names is None or f.name in names)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ConfigError(f"unknown setting '{unknown[0]}' for a zoom")
    options = WalkOptions(**given(values, WalkOptions))
    levels_only, render = bool(values.get("levels_only")), bool(values.get("render"))
    if levels_only and render:
        raise ConfigError("--levels-only and --render are the two steps: give one of them, or neither for both")
    prompts, out = values.get("prompts"), values.get("output")
    if out is None and prompts is not None and (render or "through" in values):
        prompts, out = None, Path(prompts)  # the one folder given is OUT
    if out is None:
        raise ConfigError("give PROMPTS and OUT (or --through FOLDER OUT, or OUT --render)")
    out = Path(out)
    motion = {k: values[k] for k in ZOOM_MOTION + ("wait", "verify") if k in values}  # not the levels' engine
    staged = {"levels": given(values, ZoomLevelsConfig), "motion": given(motion, MotionConfig),
              "upscale": given(values, UpscaleConfig, ZOOM_UPSCALE_DESTS, {"engine": "--upscale-engine",
                                                                          "model": "--upscale-model"}),
              "video": given(values, VideoConfig, ZOOM_VIDEO_DESTS, {"output": "--video"})}
    staged["upscale"].pop("keep_frames", None)  # --keep-frames is the frames' (stage 2) here
    for name in ("audio", "output"):  # recorded for --render, which may run elsewhere
        if staged["video"].get(name) is not None:
            staged["video"][name] = Path(staged["video"][name]).absolute()
    upscale_asked = [k for k in staged["upscale"] if k not in SHARED]
    no_upscale = options.no_upscale
    if render:
        if prompts is not None:
            raise ConfigError("--render composes OUT's levels: give only OUT (the prompts made the levels)")
        asked = [k for k in staged["levels"] if k not in SHARED]
        if asked:
            raise ConfigError(f"--render composes the levels already in {out}: the level flags (--"
                              f"{asked[0].replace('_', '-')}, ...) belong to the first step")
        recorded = _read_record(out)
        for stage in ("motion", "upscale", "video"):
            kept = (recorded.get("given") or {}).get(stage) or {}
            staged[stage] = {**kept, **staged[stage]}
        if not upscale_asked:  # step 1's choice, unless this step asks for an upscale
            no_upscale = no_upscale or recorded.get("no_upscale", False)
    else:
        staged["levels"]["prompts"] = prompts
    if no_upscale and upscale_asked:
        raise ConfigError(f"--no-upscale skips stage 3, so --{upscale_asked[0].replace('_', '-')} would do nothing")
    # What zoom.json keeps for --render: the flags given, not this machine's engines and devices.
    asked_now = {stage: {k: v for k, v in v_.items() if k not in SHARED} for stage, v_ in staged.items()}
    preset, engines, reason = resolve_preset(options.preset)
    staged["upscale"].setdefault("engine", engines.upscale)
    _route_shared(staged, render, no_upscale)
    progress = not values.get("quiet", False)
    levels = None if render else ZoomLevelsConfig(run_dir=out, progress=progress,
                                                  **_typed(ZoomLevelsConfig, staged["levels"]))
    upscale = None if no_upscale else UpscaleConfig(run_dir=out, progress=progress,
                                                    **_typed(UpscaleConfig, staged["upscale"]))
    motion = MotionConfig(run_dir=out, progress=progress, engine="zoom", **_typed(MotionConfig, staged["motion"]))
    video = VideoConfig(run_dir=out, progress=progress, source="frames", **_typed(VideoConfig, staged["video"]))
    steps = ("levels", "upscale") if levels_only else ("upscale", "frames", "video") if render else \
        ("levels", "upscale", "frames", "video")
    if upscale is None or (render and not upscale_asked and _levels_current(out, upscale.target)):
        steps = tuple(s for s in steps if s != "upscale")  # none, or step 1's are there
    executor = ExecutorSpec(options.executor, options.pool_workers, options.ray_address, options.ray_write,
                            options.ray_gpus)
    executor.make()  # its settings checked now
    return ZoomSpec(out, levels, upscale, motion, video,
                    MappingProxyType({k: MappingProxyType(v) for k, v in asked_now.items()}), reason, steps,
                    executor, options.track, options.tracking_uri)


def _typed(cls, values: dict) -> dict:
    """Recorded (JSON) values typed again (paths), as the config wants them."""
    return {**values, **from_record(cls, values)}


def _route_shared(staged: dict, render: bool, no_upscale: bool) -> None:
    """--device and --dtype go to stage 1 (engine sd) and to an upscale engine that takes them
    (--wait and --verify reach every stage by their names alone)."""
    for name in ("device", "dtype"):
        if not any(name in staged[s] for s in ("levels", "upscale")):
            continue
        takers = []
        level_engine = staged["levels"].get("engine") or ("none" if "through" in staged["levels"] else "sd")
        if level_engine == "sd" and not render:
            takers.append("levels")
        else:
            staged["levels"].pop(name, None)
        if name in REGISTRIES["upscale"].get(staged["upscale"]["engine"]).options and not no_upscale:
            takers.append("upscale")
        else:
            staged["upscale"].pop(name, None)
        if not takers:
            raise ConfigError(f"--{name}: no stage of this zoom takes it (levels engine {level_engine}, upscale "
                              f"{'off' if no_upscale else staged['upscale']['engine']})")


def _read_record(run_dir: Path) -> dict:
    path = Path(run_dir) / RECORD
    if not (Path(run_dir) / "keyframes" / MANIFEST).is_file():
        raise StageOrderError(f"{run_dir}: no zoom levels here; make them first with `artwalk zoom PROMPTS "
                              f"{run_dir} --levels-only` (or --through FOLDER)")
    try:
        record = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); rerun the first step (--levels-only)") from None
    return record if isinstance(record, dict) else {}


def plan_zoom(zoom: ZoomSpec) -> ZoomPlan:
    """Check everything the asked steps need; log the plan. Writes nothing."""
    log.info("artwalk %s: zoom (%s; upscale %s)", __version__, zoom.reason,
             "off" if zoom.upscale is None else zoom.upscale.engine)
    check_writable(zoom.run_dir, "run folder")
    check_layout(zoom.run_dir)
    check_run_folder(zoom.run_dir, "zoom")
    level_plan = None
    if zoom.levels is not None:
        level_plan = check_zoom(zoom.levels)
        count, size = len(level_plan.levels), (zoom.levels.width, zoom.levels.height)
    else:
        keyframes = read_manifest(zoom.run_dir, "keyframes")
        if "zoom" not in keyframes:
            raise ConfigError(f"{zoom.run_dir}: its keyframes are a walk's, not a zoom's levels")
        count, size = int(keyframes["zoom"]["levels"]), tuple(int(v) for v in keyframes["size"])
    engines = {}
    if "upscale" in zoom.steps:
        engines["upscale"] = super_resolution.check(zoom.upscale)
    engines["motion"] = frame_interpolation.check(zoom.motion)
    audio_s = generate_videos.check(zoom.video, zoom.motion.fps)  # in step 1 too: before the GPU work
    out_size = target_size(zoom.upscale.target, *size) if zoom.upscale is not None else size
    engine = engines["motion"]
    n = frames_per_level(zoom.motion.fps, engine.seconds_per_level)
    timeline = zoom_timeline(count, n, zoom.motion.loop, engine.direction,
                             hold_frames(zoom.motion.fps, engine.hold_start, "--hold-start"),
                             hold_frames(zoom.motion.fps, engine.hold_end, "--hold-end"))
    factor = zoom.levels.zoom_factor if zoom.levels is not None else float(keyframes["zoom"]["factor"])
    span = (count if zoom.motion.loop else count - 1) * math.log10(factor)
    log.info("zoom: %d levels x%g (1e%.1f in all), %d frames per level (%g s at %g fps), %s%s, %dx%d -> %dx%d",
             count, factor, span, n, engine.seconds_per_level, zoom.motion.fps, engine.direction,
             ", looped" if zoom.motion.loop else "", *size, *out_size)
    unique = len(timeline.positions)
    frames = plan_counts(timeline.frames, unique, zoom.motion.fps, out_size, keyframes=0,
                         motion_pngs=zoom.motion.keep_frames, chunked=zoom.video.video_format != "gif")
    levels_bytes = count * PNG_BYTES_PER_PIXEL * (size[0] * size[1] + (out_size[0] * out_size[1]
                                                                         if zoom.upscale is not None else 0))
    numbers = WalkPlan(timeline.frames, unique, frames.duration_s, int(frames.intermediate_bytes + levels_bytes),
                       frames.video_bytes)
    state_plan(numbers, zoom.run_dir, zoom.motion.fps, audio_s, "zoom")
    return ZoomPlan(zoom, level_plan, MappingProxyType(engines), numbers)


def run_zoom(planned: ZoomPlan, report=None):
    """The asked steps, under the run folder's lock; ``report(step, None)`` as each starts,
    ``report(step, result)`` as it ends."""
    zoom, engines = planned.spec, planned.engines
    report = report or (lambda step, result: None)
    executor = zoom.executor.make()  # the levels' upscale and the encode's chunks

    def step(name: str, run):
        report(name, None)
        result = run()
        report(name, result)
        return result

    with run_lock(zoom.run_dir, zoom.video.wait):
        if zoom.levels is not None:
            atomic_write_json(zoom.run_dir / RECORD, {
                "artwalk": __version__, "given": {s: _json(v) for s, v in zoom.given.items() if s != "levels"},
                "levels": _json(zoom.given["levels"]), "no_upscale": zoom.upscale is None,
                "frames": planned.numbers.frames, "duration_s": planned.numbers.duration_s})
            step("levels", lambda: make_levels(zoom.levels, planned.levels))
        if "upscale" in zoom.steps:
            step("upscale", lambda: super_resolution.run_levels(zoom.upscale, engines["upscale"], executor=executor))
        elif zoom.upscale is None and (zoom.run_dir / "levels").is_dir():
            log.info("--no-upscale: removing %s, so the frames come from the levels themselves",
                     zoom.run_dir / "levels")
            shutil.rmtree(zoom.run_dir / "levels")
        if "frames" not in zoom.steps:
            log.info("levels ready in %s; render the video with `artwalk zoom %s --render`", zoom.run_dir,
                     zoom.run_dir)
            return None
        step("frames", lambda: frame_interpolation.run(zoom.motion, engines["motion"]))
        return step("video", lambda: generate_videos.run(zoom.video, executor=executor))


def _levels_current(run_dir: Path, target: str) -> bool:
    """--render: the levels/ of step 1 are there, made from the current levels at this target."""
    try:
        levels = read_manifest(run_dir, "levels")
        size = target_size(target, *read_manifest(run_dir, "keyframes")["size"])
    except StageOrderError:
        return False
    return levels.get("upstream") == sha256_file(run_dir / "keyframes" / MANIFEST) and \
        list(levels.get("size", [])) == list(size)
