"""The edge: every flag of the walk commands, and the one place a parsed command line
becomes plain settings.

::

    argv --argparse (these flags)--> Namespace --settings_of--> dict --pipeline.spec.walk_spec--> WalkSpec

The flags are made from the settings' own definitions (the stages' config dataclasses and
:class:`pipeline.spec.WalkOptions`), so a default or a help text is written once; this
module adds only how the command line spells and groups them: the walk's renames of stage
fields (``--motion-engine``), the shared flags in the walk's words, a video init's own
words, the zoom's groups. Nothing below this module sees an ``argparse.Namespace``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from artwalk.config import add_flags
import pipeline.interrogate as interrogation
from diffusion_models import video_init
from diffusion_models.zoom import ZoomLevelsConfig
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from pipeline.spec import EXECUTOR_OPTIONS, LEFT_OUT, SHARED, STAGES, TRACKING_OPTIONS, WalkOptions
from super_resolution import UpscaleConfig

# How `artwalk video-init` spells and words the flags whose meaning a video init changes.
VIDEO_FLAGS = {"keyframes": {"strength_schedule": ("--strength", "--strength-schedule")}}
VIDEO_HELPS = {
    "keyframes": {
        "strength_schedule": "img2img strength per frame: a number, or a numeric schedule such as '0:(0.45), "
                             f"48:(0.6)' (default {video_init.DEFAULT_STRENGTH})",
        "engine": "keyframe engine (default sd: img2img of each frame)",
        "prompts": "the prompt schedule, a file or its text ('0: a watercolour | ink:0.5' / '2s: an oil painting "
                   "--neg blur'): each frame takes the line at or before it; frames count from --start (see "
                   "`artwalk schedule`)",
        "easing": "timing of the motion frames between restyled frames (default linear, as the video moves)",
        "every": "restyle every K-th frame (and each schedule key's frame, and the last); the motion engine fills "
                 "between them (default 1: every frame)",
        "width": "frame width (default the video's; --w alone keeps its aspect)",
        "height": "frame height (default the video's; --h alone keeps its aspect)",
        "guidance_schedule": "guidance per frame, a numeric schedule such as '0:(7.5), 48:(12)' (default --guidance)",
        "seed_schedule": "each frame's seed, a numeric schedule such as '0:(42), 48:(7)' (default --seed on every "
                         "frame: the same noise keeps the restyle steady)",
    },
    "upscale": {"target": "upscale to this size: a scale (x2, 1.5), a name (2k, 4k, ...) or WxH (default: no "
                          "upscaling; the video keeps its size)"},
}
# Parsed values that are the command line's own, not settings.
NOT_SETTINGS = ("func", "command", "models_command", "stage_args")


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given (and the positional arguments) as plain settings: the one place a
    Namespace becomes a dict."""
    return {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}


def add_walk_flags(p: argparse.ArgumentParser, source: str = "images") -> None:
    """The walk's flags. ``source``: images (INPUT OUT), prompts (SCHEDULE OUT), video
    (VIDEO OUT, ``artwalk video-init``), either ([INPUT] OUT, with --prompts instead of
    INPUT: ``artwalk plan``, for full_pipeline.sh, which runs each stage itself: no executor
    nor run record), or batch (an image walk's flags without INPUT, OUT and --video, which
    ``artwalk batch`` sets for each walk)."""
    if source == "prompts":
        p.add_argument("prompts", metavar="SCHEDULE", nargs="?",
                       help="prompt schedule: a file of 'FRAME: prompt' lines, or that text itself "
                       "(see `artwalk schedule`); or --from-images FOLDER instead")
    elif source == "video":
        p.add_argument("video_init", type=Path, metavar="VIDEO",
                       help="the video whose frames are restyled (any format PyAV decodes); its frame rate, size "
                       "and sound are the walk's")
    elif source != "batch":
        p.add_argument("input", type=Path, metavar="INPUT", nargs="?" if source == "either" else None,
                       help="folder of input images (natural order; other files are skipped)")
    if source != "batch":
        p.add_argument("output", type=Path, metavar="OUT", nargs="?" if source == "either" else None,
                       help="run folder to write (reruns resume and reuse work)")
    left_out = {"either": (), "batch": LEFT_OUT["images"] + (STAGES[3].dests["output"],),
                "video": ("video_init",) + LEFT_OUT["video"]}.get(source, LEFT_OUT.get(source, ()))
    walk = p.add_argument_group("the walk")
    add_flags(walk, WalkOptions, names=("preset", "no_upscale"))
    if source != "either":  # a walk that runs here
        add_flags(walk, WalkOptions, names=EXECUTOR_OPTIONS)
        add_flags(p.add_argument_group("run records (pipeline/tracking.py)"), WalkOptions, names=TRACKING_OPTIONS)
    if source == "prompts":
        desc = p.add_argument_group(f"prompts from images ({interrogation.DESC})")
        desc.add_argument("--from-images", type=Path, metavar="FOLDER", default=argparse.SUPPRESS,
                          help=f"instead of SCHEDULE: a keyframe per image of FOLDER (in its order), prompted by "
                          f"its row of FOLDER/{interrogation.DESC} (`artwalk interrogate FOLDER` writes it), "
                          "--step apart; --frames defaults to the last one's frame plus --step")
        desc.add_argument("--step", metavar="2s|48", default=argparse.SUPPRESS,
                          help="with --from-images: the step between keyframes, seconds (2s, 2.5s) or frames (48) "
                          "(default 2s)")
    elif source != "video":
        add_flags(p.add_argument_group("prompts from the images (artwalk interrogate)"), WalkOptions,
                  names=("interrogate", "interrogate_mode"))
    seen: set[str] = set(left_out) | ({"prompts"} if source == "prompts" else set())
    for name, text in SHARED.items():  # in the walk's own words, as they serve several stages
        owner = next(s for s in STAGES if name in {f.name for f in dataclasses.fields(s.config)})
        add_flags(walk, owner.config, names=[name], seen=seen, helps={name: text})
    for stage in STAGES:
        flags = {f: spellings for f, (spellings, _) in stage.renamed.items()}
        helps = dict(stage.helps)
        if source == "video":  # its own words, and --strength takes a schedule (the spelling)
            flags.update(VIDEO_FLAGS.get(stage.name, {}))
            helps.update(VIDEO_HELPS.get(stage.name, {}))
        add_flags(p.add_argument_group(stage.title), stage.config, exclude=stage.exclude, seen=seen,
                  flags=flags, dests=stage.dests, helps=helps)


def plan_source(settings: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``artwalk plan [INPUT] OUT``: which kind of walk the settings describe, and the
    settings with the one folder given as OUT when there is a schedule or a video."""
    settings = dict(settings)
    source = "video" if settings.get("video_init") is not None else \
        "prompts" if settings.get("prompts") is not None else "images"
    if source != "images" and settings.get("output") is None:
        settings["output"], settings["input"] = settings.get("input"), None
    if source != "images" and settings.get("input") is None:
        settings.pop("input", None)
    return source, settings


# ---------------------------------------------------------------------------------------------
# The zoom's flags

ZOOM_MOTION = ("fps", "seconds_per_level", "direction", "hold_start", "hold_end", "loop", "keep_frames")
ZOOM_UPSCALE_DESTS = {"engine": "upscale_engine", "model": "upscale_model"}
ZOOM_VIDEO_DESTS = {"output": "video"}


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
    add_flags(steps, WalkOptions, names=("preset", "no_upscale", *EXECUTOR_OPTIONS),
              helps={"preset": "the upscale engine: gpu (Real-ESRGAN) or cpu (Lanczos); auto picks gpu when CUDA "
                               "and its engines are there (default auto); --upscale-engine overrides it",
                     "no_upscale": "compose the frames at the levels' own size (W x H), not --target"})
    seen: set[str] = set()
    add_flags(p.add_argument_group("levels (stage 1)"), ZoomLevelsConfig, seen=seen,
              flags={"engine": ("--engine", "--keyframe-engine")})
    add_flags(p.add_argument_group("frames (stage 2, motion engine zoom)"), MotionConfig, names=ZOOM_MOTION,
              seen=seen, helps={"loop": "the last level blends back into the first: the video loops without a seam",
                                "keep_frames": "store each frame as a PNG file, not each level's frames in one "
                                               "lossless file"})
    add_flags(p.add_argument_group("upscaling the levels (stage 3)"), UpscaleConfig, exclude=("keep_frames",),
              seen=seen, flags={"engine": ("--upscale-engine",), "model": ("--upscale-model",)},
              dests=ZOOM_UPSCALE_DESTS,
              helps={"target": "the output size the levels are upscaled to and the frames made at: a scale (x2), a "
                               "name (720p, 1080p, 2k, 4k) or WxH, a box the level fits inside (default 2k)",
                     "engine": "upscale engine: lanczos or realesrgan (default: the preset's)"})
    add_flags(p.add_argument_group("video (stage 4)"), VideoConfig, exclude=("source",), seen=seen,
              flags={"output": ("--video", "-o")}, dests=ZOOM_VIDEO_DESTS)
    add_flags(p.add_argument_group("run records (pipeline/tracking.py)"), WalkOptions, names=TRACKING_OPTIONS)
