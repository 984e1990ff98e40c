"""``artwalk``: the walk in one process, its plan for full_pipeline.sh, and the models.

    artwalk run INPUT OUT [flags]                  plan, then the four stages
    artwalk prompts SCHEDULE OUT [flags]           the same from a prompt schedule
    artwalk video-init VIDEO OUT --prompts SCHEDULE   a video's frames restyled by img2img
    artwalk zoom PROMPTS OUT [flags]               an infinite zoom (--through FOLDER: your images;
                                                   --levels-only, then OUT --render: two steps)
    artwalk plan [INPUT] OUT [flags] [--stage-args FILE]   (--prompts SCHEDULE instead of INPUT)
    artwalk batch COLLECTION [--out ROOT] [flags]  a walk per sub-folder (or --list FILE), for cron
    artwalk retime OUT [--sec_interpolation I] [--sec_freeze F]   motion again with new timing, then the
                                                   upscale and the encode (ArtWalks' generate_videos.py form)
    artwalk interrogate FOLDER [flags]             a prompt per image into FOLDER/desc.csv
    artwalk audio SONG [--fps 24] [--on beats]     a song's events as keyframe frames
    artwalk story COLLECTION OUT [-n 10] [flags]   a seeded random subset of a collection as a walk's input
    artwalk studio [ROOT] [--port 8765]            the timeline web studio (python -m studio; see studio/)
    artwalk models list | download NAME

``plan --stage-args FILE`` is how ``full_pipeline.sh`` learns what to run: FILE gets,
NUL-separated, a status word (``run``, or ``done`` for a walk that is up to date),
then for ``artwalk interrogate`` (no arguments unless ``--interrogate``) and each stage
(keyframes, motion, upscale, video) the number of its arguments and the arguments
themselves: only the flags the user gave, plus the chosen engines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from artwalk import __version__
from artwalk.cli import Parser, add_common_flags, run_cli
from artwalk.fsutil import atomic_write_bytes
from artwalk.runfolder import run_lock
from pipeline import audio_cmd
from pipeline import batch as batch_cmd
from pipeline import inspire_cmd
from pipeline import interrogate_cmd
from pipeline import retime as retime_cmd
from pipeline import schedule_cmd
from pipeline import story_cmd
from pipeline.flags import add_walk_flags, add_zoom_flags, plan_source, settings_of
from pipeline.spec import walk_spec
from pipeline.tracking import open_tracker
from pipeline.walk import plan, run_tracked, write_walk_json
from pipeline.zoom import zoom_spec

log = logging.getLogger("artwalk")


def walk_command(source: str):
    """``artwalk run|prompts|video-init``: the spec, its plan, then the stages in this
    process under the run folder's lock (with --track, recorded as a run: the store is
    opened before any stage)."""

    def command(args: argparse.Namespace):
        planned = plan(walk_spec(settings_of(args), source))
        return run_tracked(planned, _tracker(planned.spec))

    return command


def zoom_command(args: argparse.Namespace):
    """``artwalk zoom``: the same for an infinite zoom's asked steps."""
    planned = plan(zoom_spec(settings_of(args)))
    return run_tracked(planned, _tracker(planned.spec))


def _tracker(spec):
    return open_tracker(spec.track, spec.tracking_uri, spec.run_dir.absolute().parent)


def plan_command(args: argparse.Namespace) -> None:
    """Check and plan the walk; write OUT/walk.json (and the stages' arguments)."""
    source, settings = plan_source(settings_of(args))
    planned = plan(walk_spec(settings, source))
    with run_lock(planned.run_dir, planned.spec.video.wait):
        write_walk_json(planned)
    if args.stage_args is not None:
        words = ["done" if planned.up_to_date else "run"]
        for argv in planned.stage_argv(quiet=args.quiet, verbose=args.verbose).values():
            words += [str(len(argv)), *argv]
        atomic_write_bytes(args.stage_args, b"".join(w.encode("utf-8") + b"\0" for w in words))
    else:
        print(planned.spec.engines)  # keyframes ..., motion ..., upscale ...


def models_list(args: argparse.Namespace) -> None:
    """Print the registry as a table: name, kind, stage, present, licence, source."""
    from artwalk.download import format_models_table, list_models
    from artwalk.models import cache_dir

    print(f"file weights live in {cache_dir()}; hub models in the Hugging Face cache")
    print(format_models_table(list_models()))


def models_download(args: argparse.Namespace) -> None:
    """Fetch one model's weights; print where they are."""
    from artwalk.download import download

    print(download(args.name, url=args.url, force=args.force, progress=not args.quiet))


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="artwalk", description="Videos that walk from one artwork to the next.")
    p.add_argument("--version", action="version", version=f"artwalk {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    r = sub.add_parser("run", help="render a folder of images into a walk video (all four stages)",
                       description="Render INPUT's images into a walk video in OUT: keyframes, motion, "
                       "upscaling, encode. Everything is checked before any work starts; rerunning resumes "
                       "and reuses unchanged work. Each flag's default is its stage's.")
    add_walk_flags(r)
    add_common_flags(r)
    r.set_defaults(func=walk_command("images"))
    pr = sub.add_parser("prompts", help="render a prompt schedule into a walk video (all four stages)",
                        description="Render a prompt schedule ('0: a corgi' / '60: a lion') into a walk video in "
                        "OUT: text to image at each keyframe's frame, diffused in-betweens as --diffuse says, "
                        "motion for the rest, upscaling, encode. Same stages, caches and checks as `artwalk run`.")
    add_walk_flags(pr, source="prompts")
    add_common_flags(pr)
    pr.set_defaults(func=walk_command("prompts"))
    vi = sub.add_parser("video-init", help="restyle a video's frames by img2img, with a prompt schedule",
                        description="Restyle the frames of VIDEO with the sd engine's img2img, each with the prompt, "
                        "strength, guidance and seed of its frame from the schedules (frames count from --start), "
                        "into a video in OUT at the input's frame rate, size (or --w/--h) and with its sound. With "
                        "--every N only every N-th frame (and the last) is restyled and the motion engine fills "
                        "between them; --color-match holds the palette. Each frame is a cached unit: a rerun "
                        "resumes, and a changed prompt redoes only its frames.")
    add_walk_flags(vi, source="video")
    add_common_flags(vi)
    vi.set_defaults(func=walk_command("video"))
    pl = sub.add_parser("plan", help="check a walk, state its engines, frames and disk; write OUT/walk.json",
                        description="Check everything the walk needs, log the preset and plan lines and write "
                        "OUT/walk.json; print the engines on stdout ('keyframes none, motion flow, upscale "
                        "lanczos'). Writes "
                        "nothing when a check fails.")
    add_walk_flags(pl, source="either")
    pl.add_argument("--stage-args", type=Path, metavar="FILE",
                    help="write each stage's arguments to FILE, NUL-separated (used by full_pipeline.sh)")
    add_common_flags(pl)
    pl.set_defaults(func=plan_command)
    m = sub.add_parser("models", help="list the models the engines use; fetch their weights",
                       description="The model registry: short names, hub ids or URLs, checksums, licences.")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=Parser)
    ml = msub.add_parser("list", help="every registered model, whether it is here, its licence and source")
    add_common_flags(ml)
    ml.set_defaults(func=models_list)
    md = msub.add_parser("download", help="fetch a model's weights (resumes; checks the sha256)",
                         description="Fetch NAME (a name from `artwalk models list`, or a hub id owner/repo): "
                         "a file model into the artwalk cache, resuming an interrupted transfer and placing it "
                         "only once its checksum matched; a hub model into the Hugging Face cache. This is the "
                         "only command that downloads.")
    md.add_argument("name", metavar="NAME", help="registry name (see `artwalk models list`) or hub id")
    md.add_argument("--url", help="fetch a file model from this URL instead (a mirror; a pinned checksum "
                    "still applies)")
    md.add_argument("--force", action="store_true", help="fetch again even if present, and trust what arrives "
                    "when no checksum is pinned")
    add_common_flags(md)
    md.set_defaults(func=models_download)
    audio_cmd.add_command(sub)
    batch_cmd.add_command(sub)
    inspire_cmd.add_command(sub)
    interrogate_cmd.add_command(sub)
    retime_cmd.add_command(sub)
    schedule_cmd.add_command(sub)
    story_cmd.add_command(sub)
    z = sub.add_parser(
        "zoom", help="an infinite zoom from prompts (outpainted levels) or through your own images",
        description="An infinite zoom video. Level 0 is text to image of the schedule's line 0 (or --start IMAGE); "
        "each next level is the last one shrunk by --zoom-factor into the centre of a W x H canvas, its border "
        "outpainted with that level's prompt (the schedule is keyed by level). --through FOLDER zooms through "
        "your own images instead, with no weights. The levels are upscaled to --target, then every frame is "
        "composed from all the levels it shows, each at its own resolution. Two steps, as on a GPU machine and "
        "a CPU one: --levels-only, then `artwalk zoom OUT --render`.")
    add_zoom_flags(z)
    add_common_flags(z)
    z.set_defaults(func=zoom_command)
    sub.add_parser("studio", add_help=False, help="the timeline web studio: keyframes in the browser, re-rendering "
                   "what changed (python -m studio; `artwalk studio --help` lists its flags)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["studio"]:  # its own program, built on this package (not the reverse): `python -m studio`
        os.execv(sys.executable, [sys.executable, "-m", "studio", *argv[1:]])
    return run_cli(lambda a: a.func(a), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
