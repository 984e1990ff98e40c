"""``artwalk zoom``: an infinite zoom, as the walk's four stages on one run folder.

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

import argparse
import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frame_interpolation
import generate_videos
import super_resolution
from artwalk import __version__
from artwalk.config import add_flags, from_record, given
from artwalk.errors import ConfigError, InputError, StageOrderError
from artwalk.executors import add_executor_flags, executor_from_args
from artwalk.fsutil import atomic_write_json, check_writable, sha256_file
from artwalk.plan import PNG_BYTES_PER_PIXEL, WalkPlan, plan_counts
from artwalk.runfolder import MANIFEST, check_layout, check_run_folder, read_manifest, run_lock
from artwalk.sizes import target_size
from artwalk.zoom import frames_per_level, hold_frames, zoom_timeline
from diffusion_models.zoom import ZoomLevelsConfig, check_zoom, run_zoom
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from pipeline import tracking
from pipeline.presets import REGISTRIES, resolve_preset
from pipeline.walk import state_plan
from super_resolution import UpscaleConfig

log = logging.getLogger("artwalk")

RECORD = "zoom.json"
MOTION = ("fps", "seconds_per_level", "direction", "hold_start", "hold_end", "loop", "keep_frames")
UPSCALE_DESTS = {"engine": "upscale_engine", "model": "upscale_model"}
VIDEO_DESTS = {"output": "video"}
SHARED = ("device", "dtype", "wait", "verify")  # given once, for every stage that takes them


def add_command(sub) -> None:
    z = sub.add_parser(
        "zoom", help="an infinite zoom from prompts (outpainted levels) or through your own images",
        description="An infinite zoom video. Level 0 is text to image of the schedule's line 0 (or --start IMAGE); "
        "each next level is the last one shrunk by --zoom-factor into the centre of a W x H canvas, its border "
        "outpainted with that level's prompt (the schedule is keyed by level). --through FOLDER zooms through "
        "your own images instead, with no weights. The levels are upscaled to --target, then every frame is "
        "composed from all the levels it shows, each at its own resolution. Two steps, as on a GPU machine and "
        "a CPU one: --levels-only, then `artwalk zoom OUT --render`.")
    add_zoom_flags(z)
    from artwalk.cli import add_common_flags

    add_common_flags(z)
    z.set_defaults(func=zoom_command)


def add_zoom_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompts", nargs="?", metavar="PROMPTS",
                   help="the prompt schedule keyed by level: a file of 'LEVEL: prompt' lines ('0: a forest', "
                   "'3: a city at night --neg blur'), or that text; not with --render")
    p.add_argument("output", nargs="?", type=Path, metavar="OUT", help="run folder (reruns resume and reuse work)")
    steps = p.add_argument_group("the zoom")
    steps.add_argument("--levels-only", action="store_true",
                       help="step 1 only: make the levels and upscale them (the GPU part)")
    steps.add_argument("--render", action="store_true",
                       help="step 2 only: compose the frames from OUT's levels and encode the video (the CPU "
                       "part); takes the flags recorded in OUT/zoom.json")
    steps.add_argument("--preset", default="auto", choices=["auto", "cpu", "gpu"],
                       help="the upscale engine: gpu (Real-ESRGAN) or cpu (Lanczos); auto picks gpu when CUDA and "
                       "its engines are there (default auto); --upscale-engine overrides it")
    steps.add_argument("--no-upscale", action="store_true",
                       help="compose the frames at the levels' own size (W x H), not --target")
    add_executor_flags(steps)
    seen: set[str] = set()
    add_flags(p.add_argument_group("levels (stage 1)"), ZoomLevelsConfig, seen=seen,
              flags={"engine": ("--engine", "--keyframe-engine")})
    add_flags(p.add_argument_group("frames (stage 2, motion engine zoom)"), MotionConfig, names=MOTION, seen=seen,
              helps={"loop": "the last level blends back into the first: the video loops without a seam",
                     "keep_frames": "store each frame as a PNG file, not each level's frames in one lossless file"})
    add_flags(p.add_argument_group("upscaling the levels (stage 3)"), UpscaleConfig, exclude=("keep_frames",),
              seen=seen, flags={"engine": ("--upscale-engine",), "model": ("--upscale-model",)}, dests=UPSCALE_DESTS,
              helps={"target": "the output size the levels are upscaled to and the frames made at: a scale (x2), a "
                               "name (720p, 1080p, 2k, 4k) or WxH, a box the level fits inside (default 2k)",
                     "engine": "upscale engine: lanczos or realesrgan (default: the preset's)"})
    add_flags(p.add_argument_group("video (stage 4)"), VideoConfig, exclude=("source",), seen=seen,
              flags={"output": ("--video", "-o")}, dests=VIDEO_DESTS)
    tracking.add_tracking_flags(p.add_argument_group("run records (pipeline/tracking.py)"))


@dataclass
class Zoom:
    run_dir: Path
    levels: ZoomLevelsConfig | None  # None with --render
    upscale: UpscaleConfig | None  # None with --no-upscale
    motion: MotionConfig
    video: VideoConfig
    given: dict[str, dict[str, Any]]
    reason: str
    steps: tuple[str, ...]  # of levels, upscale, frames, video
    plan: WalkPlan | None = None


def _json(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def configure(args: argparse.Namespace) -> Zoom:
    """The stages' configs from the flags (and with --render, OUT/zoom.json's)."""
    if args.levels_only and args.render:
        raise ConfigError("--levels-only and --render are the two steps: give one of them, or neither for both")
    prompts, out = args.prompts, args.output
    if out is None and prompts is not None and (args.render or "through" in vars(args)):
        prompts, out = None, Path(prompts)  # the one folder given is OUT
    if out is None:
        raise ConfigError("give PROMPTS and OUT (or --through FOLDER OUT, or OUT --render)")
    values = {"levels": given(args, ZoomLevelsConfig), "motion": given(args, MotionConfig),
              "upscale": given(args, UpscaleConfig, UPSCALE_DESTS), "video": given(args, VideoConfig, VIDEO_DESTS)}
    values["motion"] = {k: v for k, v in values["motion"].items() if k in MOTION + ("wait", "verify")}
    values["upscale"].pop("keep_frames", None)  # --keep-frames is the frames' (stage 2) here
    for name in ("audio", "output"):  # recorded for --render, which may run elsewhere
        if values["video"].get(name) is not None:
            values["video"][name] = Path(values["video"][name]).absolute()
    upscale_asked = [k for k in values["upscale"] if k not in SHARED]
    if args.render:
        if prompts is not None:
            raise ConfigError("--render composes OUT's levels: give only OUT (the prompts made the levels)")
        asked = [k for k in values["levels"] if k not in SHARED]
        if asked:
            raise ConfigError(f"--render composes the levels already in {out}: the level flags (--"
                              f"{asked[0].replace('_', '-')}, ...) belong to the first step")
        recorded = _read_record(out)
        for stage in ("motion", "upscale", "video"):
            kept = (recorded.get("given") or {}).get(stage) or {}
            values[stage] = {**kept, **values[stage]}
        if not upscale_asked:  # step 1's choice, unless this step asks for an upscale
            args.no_upscale = args.no_upscale or recorded.get("no_upscale", False)
    else:
        values["levels"]["prompts"] = prompts
    if args.no_upscale and upscale_asked:
        raise ConfigError(f"--no-upscale skips stage 3, so --{upscale_asked[0].replace('_', '-')} would do nothing")
    # What zoom.json keeps for --render: the flags given, not this machine's engines and devices.
    asked_now = {stage: {k: v for k, v in v_.items() if k not in SHARED} for stage, v_ in values.items()}
    preset, engines, reason = resolve_preset(args.preset)
    values["upscale"].setdefault("engine", engines.upscale)
    _route_shared(args, values)
    progress = not args.quiet
    levels = None if args.render else ZoomLevelsConfig(run_dir=out, progress=progress, **_typed(ZoomLevelsConfig,
                                                                                                values["levels"]))
    upscale = None if args.no_upscale else UpscaleConfig(run_dir=out, progress=progress,
                                                         **_typed(UpscaleConfig, values["upscale"]))
    motion = MotionConfig(run_dir=out, progress=progress, engine="zoom", **_typed(MotionConfig, values["motion"]))
    video = VideoConfig(run_dir=out, progress=progress, source="frames", **_typed(VideoConfig, values["video"]))
    steps = ("levels", "upscale") if args.levels_only else ("upscale", "frames", "video") if args.render else \
        ("levels", "upscale", "frames", "video")
    if upscale is None or (args.render and not upscale_asked and _levels_current(out, upscale.target)):
        steps = tuple(s for s in steps if s != "upscale")  # none, or step 1's are there
    return Zoom(out, levels, upscale, motion, video, asked_now, reason, steps)


def _typed(cls, values: dict) -> dict:
    """Recorded (JSON) values typed again (paths), as the config wants them."""
    return {**values, **from_record(cls, values)}


def _route_shared(args: argparse.Namespace, values: dict) -> None:
    """--device and --dtype go to stage 1 (engine sd) and to an upscale engine that takes them
    (--wait and --verify reach every stage by their names alone)."""
    for name in ("device", "dtype"):
        if name not in vars(args):
            continue
        takers = []
        level_engine = values["levels"].get("engine") or ("none" if "through" in values["levels"] else "sd")
        if level_engine == "sd" and not args.render:
            takers.append("levels")
        else:
            values["levels"].pop(name, None)
        if name in REGISTRIES["upscale"].get(values["upscale"]["engine"]).options and not args.no_upscale:
            takers.append("upscale")
        else:
            values["upscale"].pop(name, None)
        if not takers:
            raise ConfigError(f"--{name}: no stage of this zoom takes it (levels engine {level_engine}, upscale "
                              f"{'off' if args.no_upscale else values['upscale']['engine']})")


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


def plan_zoom(args: argparse.Namespace) -> tuple[Zoom, Any]:
    """Configure and check everything the asked steps need; log the plan. Writes nothing."""
    zoom = configure(args)
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
    zoom.plan = WalkPlan(timeline.frames, unique, frames.duration_s, int(frames.intermediate_bytes + levels_bytes),
                         frames.video_bytes)
    state_plan(zoom.plan, zoom.run_dir, zoom.motion.fps, audio_s, "zoom")
    return zoom, (level_plan, engines)


def zoom_command(args: argparse.Namespace):
    """Plan, then the asked steps in this process, holding the run folder's lock throughout
    (with --track, recorded as a run: the store is opened before any step)."""
    zoom, (level_plan, engines) = plan_zoom(args)
    executor = executor_from_args(args)  # the levels' upscale and the encode's chunks
    tracker = tracking.open_tracker(args, zoom.run_dir.absolute().parent)
    return tracking.run_tracked(tracker, lambda: tracking.zoom_record(zoom), lambda: tracking.zoom_files(zoom),
                                lambda report: _run_steps(zoom, level_plan, engines, executor, report))


def _run_steps(zoom: Zoom, level_plan, engines: dict, executor, report=None):
    """The asked steps; ``report(step, None)`` as each starts, ``report(step, result)`` as it ends."""
    report = report or (lambda step, result: None)

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
                "frames": zoom.plan.frames, "duration_s": zoom.plan.duration_s})
            step("levels", lambda: run_zoom(zoom.levels, level_plan))
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
