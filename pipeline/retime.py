"""``artwalk retime``: a run folder's video again, its motion re-timed, every stage in this process.

    artwalk retime OUT [--sec_interpolation I] [--sec_freeze F] [stage 4's flags]
    artwalk retime --input_path P --folder_name F --sec_interpolation I --sec_freeze F

ArtWalks' ``python generate_videos.py --input_path P --folder_name F --sec_interpolation I
--sec_freeze F`` ends here: stage 4's script hands its whole command line over (it imports
and starts no other stage), and this command composes the stages in one process::

    OUT/keyframes/ ─► frame_interpolation.run ─► OUT/frames/     only I and F changed; engine, fps,
                                                                  easing, ... as OUT/frames/ recorded them
    OUT/frames/    ─► super_resolution.run    ─► OUT/upscaled/   when the run has one, as it was made
    OUT/upscaled/  ─► generate_videos.run     ─► OUT/<name>.mp4  with stage 4's flags; frames an earlier
                                                                  encode freed are upscaled again here, by
                                                                  the engine already loaded

Without ``--sec_*`` the motion and the upscale stay as they are and only the encode runs,
with freed frames brought back: what stage 4's script hands over when it needs stage 3.
Each stage reuses every unit whose inputs and settings are unchanged; everything is
checked before any work, and the run folder is locked throughout. The video's record
keeps a walk's key only while the video is the one that walk made: a re-timed video is
not the walk ``OUT/walk.json`` describes, so a later ``artwalk run`` of that walk makes
it again.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Mapping

import frame_interpolation
import generate_videos
import super_resolution
from artwalk.cli import add_common_flags
from artwalk.config import from_record, ranges_text, to_argv
from artwalk.errors import ConfigError
from artwalk.executors import Executor
from artwalk.runfolder import MANIFEST, previous_config, run_lock
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig, VideoResult
from super_resolution import UpscaleConfig

log = logging.getLogger(__name__)


def retime(video: VideoConfig, changes: Mapping[str, float] | None = None, executor: Executor | None = None,
           walk_key: str | None = None) -> VideoResult:
    """The motion stage again with ``changes`` (``{"sec_interpolation": I, "sec_freeze": F}``, either
    or both; none: the motion and the upscale stay as they are), the upscale again when the run has
    one, both with their recorded settings, then the encode ``video``, restoring freed frames by
    the same upscale engine. ``executor``: where the units are made (default: here); ``walk_key``:
    the walk the frames were made for (:func:`generate_videos.run`), only without ``changes``."""
    run_dir = video.run_dir
    if changes and walk_key is not None:
        raise ConfigError("--walk-key names the walk the frames were made for, and --sec_* changes them: drop one")
    generate_videos.check(video)
    motion = motion_engine = upscale = engine = None
    if changes:
        recorded = from_record(MotionConfig, previous_config(run_dir, frame_interpolation.STAGE))
        motion = MotionConfig(**{**recorded, **changes, "run_dir": run_dir,
                                 "progress": video.progress, "wait": video.wait})
        motion_engine = frame_interpolation.check(motion)
    if (run_dir / super_resolution.STAGE / MANIFEST).is_file():
        upscale = UpscaleConfig(**{**from_record(UpscaleConfig, previous_config(run_dir, super_resolution.STAGE)),
                                   "run_dir": run_dir, "progress": video.progress, "wait": video.wait})

    def upscale_engine():  # made once: when the motion changed, or when freed frames come back
        nonlocal engine
        engine = engine or super_resolution.check(upscale)
        return engine

    if motion is not None and upscale is not None:
        upscale_engine()  # its weights checked before any work

    def restore(folder: Path, indices: list[int]) -> None:
        log.info("retime: upscaling %d freed frame(s) again in this process (as `python -m super_resolution %s "
                 "--keep-settings --restore %s` would)", len(indices), folder, ranges_text(indices))
        super_resolution.run(upscale, upscale_engine(), executor=executor, restore=indices)

    with run_lock(run_dir, video.wait, create=False):
        if motion is not None:
            log.info("retime: the motion stage again with %s, its other settings as %s/ recorded them",
                     " ".join(to_argv(MotionConfig, dict(changes))), frame_interpolation.STAGE)
            frame_interpolation.run(motion, motion_engine, executor=executor)
            if upscale is not None:
                log.info("retime: the upscale again, with the settings %s/ recorded", super_resolution.STAGE)
                super_resolution.run(upscale, upscale_engine(), executor=executor)
        return generate_videos.run(video, executor=executor, restore=restore if upscale is not None else None,
                                   walk_key=walk_key)


def retime_command(args: argparse.Namespace) -> None:
    generate_videos.exit_on_sigterm()  # as stage 4's own CLI: a SIGTERM leaves no temporary video
    changes = generate_videos.retiming(args)
    retime(generate_videos.config_from_args(args), changes, walk_key=args.walk_key)


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``retime`` on the ``artwalk`` command's subparsers."""
    p = subparsers.add_parser(
        "retime", help="a run folder's video again with other --sec_interpolation/--sec_freeze (ArtWalks' form)",
        description="Run the motion stage of OUT again with the given --sec_interpolation and/or --sec_freeze, "
        "keeping every other setting it was made with, then the upscale as the run had it, then the encode with "
        "stage 4's flags, in one process; frames an earlier encode freed are upscaled again first. Without "
        "--sec_* only the encode runs. `python generate_videos.py ... --sec_interpolation I --sec_freeze F` hands "
        "its command here. Unchanged work is reused.")
    generate_videos.add_arguments(p)
    add_common_flags(p)
    p.set_defaults(func=retime_command)
    return p
