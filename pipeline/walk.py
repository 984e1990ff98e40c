"""The walk: a spec planned and checked before any work, then run through the four stages.

::

    WalkSpec | ZoomSpec --plan()--> Plan (frozen: every check done, the numbers, the key)
                        --run(plan, report)--> stage 4's result (None when up to date)

:func:`plan` checks everything a walk needs before anything is written: each stage's
settings, engine and weights, every input image, the soundtrack, the output paths and the
disk space. It states one plan line; :func:`run` writes ``OUT/walk.json`` (what was asked,
the engines, the frames, and the walk's key) and runs the stages under the run folder's
lock. A walk whose run folder was cleaned (``--clean``) after its video was made, and whose
inputs and settings have not changed since, is up to date: nothing runs. An infinite zoom
(:class:`pipeline.zoom.ZoomSpec`) is planned and run by the same two calls.

With ``interrogate`` an image walk first writes INPUT/desc.csv (``artwalk interrogate``,
ranked with the keyframe model's CLIP family and counted by its tokenizer), which the
``sd`` and ``unclip`` engines read; the plan is then made again with those prompts.

``track`` (``--track mlflow [--tracking-uri URI]``) records the walk as an MLflow run (its
settings, prompts, seeds, stage timings, units reused and computed, the video and contact
sheet; see :mod:`pipeline.tracking`), by default in ``mlruns/`` beside the run folder.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import diffusion_models
import frame_interpolation
import generate_videos
import super_resolution
from artwalk import __version__
from artwalk.config import engine_options, key_settings, record, to_argv
from artwalk.devices import cuda_available
from artwalk.errors import ConfigError
from artwalk.fsutil import check_writable, sha256_file, write_json_once
from artwalk.plan import WalkPlan, plan_counts, plan_walk as plan_numbers, state_plan
from artwalk.runfolder import MANIFEST, STAGE_DIRS, cache_key, check_layout, check_run_folder, run_lock
from artwalk.sizes import target_size
from diffusion_models import KeyframeConfig
import pipeline.interrogate as interrogation
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
import pipeline.tracking as tracking
import pipeline.zoom as zoom
from pipeline.presets import REGISTRIES
from pipeline.spec import STAGES, WalkSpec
from super_resolution import UpscaleConfig

log = logging.getLogger("artwalk")

# What each stage reports as it starts (result None) and ends (its result: units reused and computed).
StageReport = Callable[[str, Any], None]


@dataclass(frozen=True)
class Plan:
    """A checked walk: its spec, what stage 1 found (images, prompts, frames), the engines
    the checks made, the numbers of the plan line, and what the video would be made of (the
    key) with whether that video exists already."""

    spec: WalkSpec
    keyframes: diffusion_models.KeyframePlan
    motion_engine: Any
    upscale_engine: Any  # None without stage 3
    numbers: WalkPlan
    key: str
    up_to_date: bool  # cleaned after its video was made, and unchanged since: nothing runs
    current: bool  # its video is made of exactly this walk (or up to date): a batch skips it
    kind: ClassVar[str] = "walk"

    @property
    def run_dir(self) -> Path:
        return self.spec.run_dir

    def stage_argv(self, quiet: bool = False, verbose: bool = False) -> dict[str, list[str]]:
        """Each stage's command-line arguments: only what was given, plus the engines
        (``full_pipeline.sh`` runs each stage with them)."""
        spec = self.spec
        extra = (["--quiet"] if quiet else []) + (["--verbose"] if verbose else [])
        asked = spec.interrogate
        return {
            "interrogate": [] if asked is None else
            [*to_argv(interrogation.InterrogateConfig, {"mode": asked.mode, "target": asked.target,
                                                        "tokenizer": asked.tokenizer, "device": asked.device,
                                                        "dtype": asked.dtype}),
             "--only-new", *(["--wait"] if asked.wait else []), *extra, "--", str(spec.input_dir)],
            "keyframes": [*to_argv(KeyframeConfig, dict(spec.given["keyframes"])), *extra, "--announced", "--",
                          *([] if spec.input_dir is None else [str(spec.input_dir)]), str(spec.run_dir)],
            "motion": [*to_argv(MotionConfig, dict(spec.given["motion"])), *extra, "--", str(spec.run_dir)],
            "upscale": [] if spec.upscale is None else
            [*to_argv(UpscaleConfig, dict(spec.given["upscale"])), *extra, "--", str(spec.run_dir)],
            "video": [*to_argv(VideoConfig, {**spec.given["video"], "source": spec.video.source}), *extra,
                      "--walk-key", self.key, "--", str(spec.run_dir)],
        }


def plan(spec):
    """Check everything ``spec`` needs and state the plan; write nothing. A walk's
    :class:`Plan`, or a zoom's (:func:`pipeline.zoom.plan_zoom`)."""
    if isinstance(spec, zoom.ZoomSpec):
        return zoom.plan_zoom(spec)
    log.info("artwalk %s: %s (%s)", __version__, spec.reason, spec.engines)
    if spec.executor.name != "local":
        log.info("units of work run on %s", spec.executor.make().describe())
    if spec.preset == "gpu" and not cuda_available():
        log.warning("warning: --preset gpu without a CUDA device here: the neural engines will run on the CPU, "
                    "very slowly")
    check_writable(spec.run_dir, "run folder")
    check_layout(spec.run_dir)
    check_engines(spec)
    kf = diffusion_models.check(spec.keyframes, announce=True)  # INPUT and OUT swapped, among the rest
    check_run_folder(spec.run_dir, "walk")  # a zoom's run folder
    every_frame = (kf.prompt_walk is not None and kf.prompt_walk.density == "every") or (
        kf.video is not None and len(kf.video.keyframes) == kf.video.frames)
    if spec.motion.engine == "none" and not every_frame:
        raise ConfigError("motion engine none makes no motion frames: it is for prompt walks with --diffuse every "
                          "and video inits with --every 1")
    if "levels" in REGISTRIES["motion"].get(spec.motion.engine).features:
        raise ConfigError(f"motion engine {spec.motion.engine} composes an infinite zoom's levels: use `artwalk zoom`")
    motion_engine = frame_interpolation.check(spec.motion)
    upscale_engine = super_resolution.check(spec.upscale) if spec.upscale is not None else None
    audio_s = generate_videos.check(spec.video, spec.motion.fps)
    video_path = spec.video.video_path.resolve()
    if spec.keyframes.video_init is not None and video_path == Path(spec.keyframes.video_init).resolve():
        raise ConfigError(f"{spec.video.video_path}: that is the input video; write the new one elsewhere")
    if spec.input_dir is not None and video_path.is_relative_to(spec.input_dir.resolve()):
        raise ConfigError(f"{spec.video.video_path}: the video would be written inside the input folder, and its "
                          "contact sheet read back as an image; write it elsewhere")
    numbers = _numbers(spec, kf)
    made = _made(spec, kf)
    # A walk whose video is made already needs no disk: decided before the disk is looked at.
    state_plan(numbers, spec.run_dir, spec.motion.fps, audio_s, "walk", check_disk=not made["current"])
    if made["up_to_date"]:
        log.info("%s is up to date (the run folder was cleaned after it was made): nothing to do",
                 spec.video.video_path)
    return Plan(spec, kf, motion_engine, upscale_engine, numbers, **made)


def _numbers(spec: WalkSpec, kf) -> WalkPlan:
    """The plan line's figures: frames, duration, disk."""
    size = spec.keyframes.size
    upscaled = target_size(spec.upscale.target, *size) if spec.upscale is not None else None
    loop = spec.keyframes.loop or spec.motion.loop
    stored = spec.upscale is not None and (spec.upscale.keep_frames or "streamed" not in
                                           REGISTRIES["upscale"].get(spec.upscale.engine).features)
    pngs = spec.motion.keep_frames
    if kf.prompt_walk is not None:
        counts = (kf.prompt_walk.frames, kf.prompt_walk.unique_frames,
                  len(kf.prompt_walk.keyframes) + kf.prompt_walk.inbetweens)
    elif kf.video is not None:
        counts = kf.video.frames, kf.video.unique_frames, len(kf.video.keyframes)
    elif kf.sync is not None:  # keyframes on the song's events; motion fills every gap
        counts = kf.sync.frames, kf.sync.positions[-1] + 1, len(kf.sync.positions)
    else:
        counts = None
    chunked = spec.video.video_format != "gif"  # a gif is one pass; mp4 and webm keep their chunks
    released = stored and not spec.upscale.keep_frames  # a neural upscale's frames, freed once in the chunks
    if counts is None:
        return plan_numbers(len(kf.images), kf.steps, spec.motion.spec, loop, size, upscaled, stored, pngs, chunked,
                            released)
    return plan_counts(*counts[:2], spec.motion.fps, size, upscaled, stored, keyframes=counts[2], motion_pngs=pngs,
                       chunked=chunked, released_upscale=released)


def _made(spec: WalkSpec, kf) -> dict[str, Any]:
    """The walk's key, and whether its video is made of it already."""
    key = walk_key(spec, kf)
    up_to_date = _up_to_date(spec, key)
    return {"key": key, "up_to_date": up_to_date, "current": up_to_date or is_current(spec, key)}


def check_engines(spec: WalkSpec, models: bool = False) -> None:
    """What the walk needs whatever its inputs: each stage's engine installed and taking the
    options given (in the walk's own spelling of the flags); with ``models``, every model
    it would load is on this machine too (the stages' own checks say so later otherwise)."""
    if spec.keyframes.prompts is not None:  # before its options: what a prompt walk needs first
        diffusion_models.check_text2image(spec.engines.keyframes)
    for stage, config in zip(STAGES, spec.configs):
        if stage.name in REGISTRIES and config is not None:
            name = spec.engines.keyframes if stage.name == "keyframes" else config.engine
            options = engine_options(config)
            engine = REGISTRIES[stage.name].check(name, options, stage.flag)
            if models:
                engine.check_models(options, **({"outpaint": config.outpaint} if stage.name == "keyframes" else {}))
    if spec.interrogate is not None:
        interrogation.check_ready(spec.interrogate)


def is_current(spec: WalkSpec, key: str) -> bool:
    """The walk's video is there and was made of exactly this walk: its record names the
    walk's key (inputs, prompts, engines, every stage's settings) and the encode settings
    asked now, and the file has its recorded size (with ``--verify``, its sha256). Nothing
    is read but the record, so an unchanged walk is recognised without running a stage."""
    previous = generate_videos.video_record(spec.video, verify=spec.keyframes.verify)
    if not previous or previous.get("walk_key") != key or previous.get("source") != spec.video.source:
        return False
    asked = key_settings(spec.video)
    if asked != {k: v for k, v in previous.get("config", {}).items() if k in asked}:
        return False  # re-encoded by hand with other settings since
    if spec.video.clean and any((spec.run_dir / stage).exists() for stage in STAGE_DIRS):
        return False  # --clean asked now: the stages find their work done, and the encode cleans
    return not spec.video.contact_sheet or spec.video.sheet_path.is_file()


def _up_to_date(spec: WalkSpec, key: str) -> bool:
    """The run folder was cleaned after its video was made, and nothing has changed since."""
    previous = generate_videos.video_record(spec.video)
    return (not (spec.run_dir / "keyframes" / MANIFEST).is_file() and bool(previous.get("cleaned"))
            and previous.get("walk_key") == key)


def walk_key(spec: WalkSpec, kf) -> str:
    """What the video is made of: the inputs, their prompts, the engines and the settings."""
    return cache_key(
        images=[[p.name, h] for p, h in zip(kf.images, kf.hashes)], engines=vars(spec.engines),
        image_prompts=kf.prompts,
        sync=None if kf.sync is None else [kf.sync.positions, kf.sync.frames],
        video=None if kf.video is None else {"sha256": kf.video.sha256, "frames": kf.video.frames,
                                             "keys": [[v.frame, v.key] for v in kf.video.keyframes]},
        prompts=None if kf.prompt_walk is None else {
            "keyframes": [[k.frame, k.key] for k in kf.prompt_walk.keyframes], "frames": kf.prompt_walk.frames,
            "segments": [[g.frames, g.fractions, g.guidances] for g in kf.prompt_walk.segments]},
        settings={s.name: key_settings(c) for s, c in zip(STAGES, spec.configs) if c is not None},
        interrogate=None if spec.interrogate is None else key_settings(spec.interrogate),
        audio=sha256_file(spec.video.audio) if spec.video.audio is not None else None,
    )


def write_walk_json(planned: Plan) -> Path:
    """OUT/walk.json: what was asked, the engines, the plan and the walk's key (call under the lock)."""
    spec, kf, numbers = planned.spec, planned.keyframes, planned.numbers
    path = spec.run_dir / "walk.json"
    write_json_once(path, {
        "artwalk": __version__, "preset": spec.preset, "engines": vars(spec.engines),
        "input": str(spec.input_dir) if spec.input_dir is not None else
        None if spec.keyframes.video_init is None else str(spec.keyframes.video_init),
        "images": [p.name for p in kf.images],
        "prompts": None if kf.prompt_walk is None else [
            {"frame": k.frame, "prompt": k.text, "negative": k.negative, "seed": k.seed}
            for k in kf.prompt_walk.keyframes],
        "settings": {s.name: record(c) for s, c in zip(STAGES, spec.configs) if c is not None},
        "audio": None if spec.video.audio is None else str(spec.video.audio),
        "format": spec.video.video_format, "video": str(spec.video.video_path),
        "frames": numbers.frames, "duration_s": numbers.duration_s, "disk_bytes": numbers.disk_bytes,
        "intermediate_bytes": numbers.intermediate_bytes, "video_bytes": numbers.video_bytes,
        "transient_bytes": numbers.transient_bytes, "walk_key": planned.key,
    })
    return path


def run_tracked(planned, tracker: tracking.MlflowTracker | None = None, tags: dict[str, str] | None = None):
    """:func:`run`, recorded as a run by ``tracker`` (None: not recorded)."""
    return tracking.run_tracked(tracker, lambda: tracking.record_of(planned, tags),
                                lambda: tracking.files_of(planned), lambda report: run(planned, report))


def run(planned, report: StageReport | None = None):
    """Run a planned walk's (or zoom's) stages under the run folder's lock. ``report(stage,
    None)`` is called as each stage starts and ``report(stage, result)`` as it ends
    (keyframes, motion, upscale, video). Returns stage 4's result, or None when the walk was
    up to date. The lock is re-entrant: a caller may hold it already, as ``artwalk batch``
    does while it plans."""
    if isinstance(planned, zoom.ZoomPlan):
        return zoom.run_zoom(planned, report)
    report = report or (lambda stage, result: None)
    spec = planned.spec
    with run_lock(spec.run_dir, spec.video.wait):
        if spec.interrogate is not None and not planned.up_to_date:
            interrogation.interrogate(spec.interrogate)  # desc.csv, then stage 1 reads its prompts: plan again
            kf = diffusion_models.check(spec.keyframes, announce=False)
            planned = dataclasses.replace(planned, keyframes=kf, **_made(spec, kf))
        write_walk_json(planned)
        if planned.up_to_date:
            return None
        ex = spec.executor.make()
        stages = [("keyframes", lambda: diffusion_models.run(spec.keyframes, plan=planned.keyframes, executor=ex)),
                  ("motion", lambda: frame_interpolation.run(spec.motion, planned.motion_engine, executor=ex))]

        def restore(run_dir: Path, indices: list[int]) -> None:  # upscaled frames stage 4 freed, and needs again
            super_resolution.run(spec.upscale, planned.upscale_engine, executor=ex, restore=indices)

        if spec.upscale is not None:
            stages.append(("upscale", lambda: super_resolution.run(spec.upscale, planned.upscale_engine,
                                                                   executor=ex)))
        stages.append(("video", lambda: generate_videos.run(spec.video, executor=ex, walk_key=planned.key,
                                                            restore=restore if spec.upscale is not None else None)))
        result = None
        for name, stage_run in stages:
            report(name, None)
            result = stage_run()
            report(name, result)
        return result
