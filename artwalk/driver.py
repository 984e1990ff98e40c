"""``artwalk``: the whole walk in one process, and the plan that full_pipeline.sh prints.

``artwalk run INPUT OUT`` runs the four stages in order on one run folder, exactly
as ``full_pipeline.sh`` does with four ``python -m`` calls: every stage caches its
units, so a rerun after a crash or an edit only does the missing work.
``artwalk plan`` states the engines, frames, duration and disk a walk will take,
writes OUT/walk.json and prints the chosen engines for the shell driver.

The driver is the one place that knows all stages; stages never import each other.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from artwalk import __version__
from artwalk.cli import add_common_flags, run_cli
from artwalk.errors import ConfigError
from artwalk.fsutil import atomic_write_json, free_bytes, human_bytes
from artwalk.images import list_images
from artwalk.plan import plan_walk
from artwalk.presets import Engines, resolve_preset
from artwalk.timeline import EASINGS, TimelineSpec

log = logging.getLogger("artwalk")


def add_walk_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="folder of input images (natural order; other files are skipped)")
    p.add_argument("output", type=Path, help="run folder to write (created; reruns resume and reuse work)")
    p.add_argument("--preset", default="auto", choices=["auto", "cpu", "gpu"],
                   help="engine set: gpu (diffusion, FILM, Real-ESRGAN) or cpu (no weights); "
                   "auto picks gpu when CUDA is there (default auto)")
    p.add_argument("--model", "--engine", dest="keyframe_engine", help="override the keyframe engine")
    p.add_argument("--motion-engine", help="override the motion engine (flow, blend, ...)")
    p.add_argument("--upscale-engine", help="override the upscale engine (lanczos, ...)")
    p.add_argument("--keyframe-model", help="the keyframe engine's model: registry name, hub id or folder")
    p.add_argument("--motion-model", help="the motion engine's weights (film): registry name or file")
    p.add_argument("--upscale-model", help="the upscale engine's weights (realesrgan): registry name or file")
    p.add_argument("-S", "--interpolation_steps", type=int, default=5,
                   help="S: in-between artworks per pair (default 5; the cpu preset makes none)")
    p.add_argument("-I", "--sec_interpolation", type=float, default=3.0,
                   help="I: seconds of motion between consecutive keyframes (default 3)")
    p.add_argument("-F", "--sec_freeze", type=float, default=2.0, help="F: seconds each original is held (default 2)")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second (default 24)")
    p.add_argument("--easing", choices=list(EASINGS), default="smoothstep", help="segment timing curve (default smoothstep)")
    p.add_argument("--w", "--width", dest="width", type=int, default=1280, help="walk width before upscaling (default 1280)")
    p.add_argument("--h", "--height", dest="height", type=int, default=720, help="walk height before upscaling (default 720)")
    p.add_argument("--fit", default="cover", choices=["cover", "contain-blur", "contain-mirror"],
                   help="how images of another aspect fill the frame (default cover)")
    p.add_argument("--square_crop", action="store_true", help="square walk, centre-cropped")
    p.add_argument("--loop", action="store_true", help="walk from the last image back to the first")
    p.add_argument("--seed", type=int, default=0, help="walk seed (default 0)")
    p.add_argument("--target", default="2k", help="upscale target: x2, 1080p, 2k (2560x1440), 4k or WxH (default 2k)")
    p.add_argument("--no-upscale", action="store_true", help="skip stage 3; encode the frames as they are")
    p.add_argument("--format", choices=["mp4", "webm", "gif"], default=None, help="video format (default mp4)")
    p.add_argument("--crf", type=int, default=None, help="video quality, lower is better (default 18)")
    p.add_argument("--audio", type=Path, default=None, help="soundtrack, trimmed to the video and faded out")
    p.add_argument("--video", type=Path, default=None, help="video path (default OUT/<OUT name>.mp4)")
    add_common_flags(p)


def plan(args: argparse.Namespace) -> Engines:
    """Log the engines and the plan line; write OUT/walk.json; return the engines."""
    preset, engines, reason = resolve_preset(args.preset)
    engines = Engines(
        keyframes=args.keyframe_engine or engines.keyframes,
        motion=args.motion_engine or engines.motion,
        upscale=args.upscale_engine or engines.upscale,
    )
    log.info("artwalk %s: %s (%s)", __version__, reason, engines)
    images = list_images(args.input)
    steps = args.interpolation_steps if engines.keyframes != "none" else 0
    spec = TimelineSpec(args.fps, args.sec_interpolation, args.sec_freeze, args.easing)
    side = min(args.width, args.height)
    size = (side, side) if args.square_crop else (args.width, args.height)
    upscaled = None
    if not args.no_upscale:
        from super_resolution.engines import target_size

        upscaled = target_size(args.target, *size)
    walk = plan_walk(len(images), steps, spec, args.loop, size, upscaled)
    log.info("%s", walk.describe(args.output))
    if walk.disk_bytes > free_bytes(args.output):
        raise ConfigError(
            f"{args.output}: not enough disk: the walk needs about {human_bytes(walk.disk_bytes)},"
            f" {human_bytes(free_bytes(args.output))} free"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("quiet", "verbose", "command", "func")}
    atomic_write_json(args.output / "walk.json", {
        "artwalk": __version__, "preset": preset, "engines": vars(engines), "settings": settings,
        "images": [p.name for p in images], "frames": walk.frames, "duration_s": walk.duration_s,
    })
    return engines


def run_walk(args: argparse.Namespace) -> None:
    """All four stages in one process."""
    import generate_videos
    from diffusion_models import KeyframeConfig
    from diffusion_models import run as run_keyframes
    from frame_interpolation import MotionConfig
    from frame_interpolation import run as run_motion
    from super_resolution import UpscaleConfig
    from super_resolution import run as run_upscale

    engines = plan(args)
    progress = not args.quiet
    run_keyframes(KeyframeConfig(
        input_dir=args.input, run_dir=args.output, width=args.width, height=args.height, fit=args.fit,
        square_crop=args.square_crop, engine=engines.keyframes, interpolation_steps=args.interpolation_steps,
        seed=args.seed, loop=args.loop, progress=progress, model=args.keyframe_model,
    ))
    run_motion(MotionConfig(
        run_dir=args.output, fps=args.fps, sec_interpolation=args.sec_interpolation,
        sec_freeze=args.sec_freeze, easing=args.easing, engine=engines.motion, loop=args.loop,
        progress=progress, **({"model": args.motion_model} if args.motion_model else {}),
    ))
    if not args.no_upscale:
        run_upscale(UpscaleConfig(run_dir=args.output, target=args.target, engine=engines.upscale,
                                  progress=progress, **({"model": args.upscale_model} if args.upscale_model else {})))
    generate_videos.run(generate_videos.VideoConfig(
        run_dir=args.output, output=args.video, format=args.format,
        crf=args.crf if args.crf is not None else 18, audio=args.audio,
        source="frames" if args.no_upscale else "upscaled", progress=progress,
    ))


def models_list(args: argparse.Namespace) -> None:
    """Print the registry as a table: name, kind, stage, present, licence, source."""
    from artwalk.download import format_models_table, list_models
    from artwalk.models import cache_dir

    print(format_models_table(list_models()))
    log.info("file weights live in %s; hub models in the Hugging Face cache", cache_dir())


def models_download(args: argparse.Namespace) -> None:
    """Fetch one model's weights; print where they are."""
    from artwalk.download import download

    print(download(args.name, url=args.url, force=args.force, progress=not args.quiet))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="artwalk", description="Videos that walk from one artwork to the next.")
    p.add_argument("--version", action="version", version=f"artwalk {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="render a folder of images into a walk video (all four stages)",
                       description="Render INPUT's images into a walk video in OUT: keyframes, motion, "
                       "upscaling, encode. Rerunning resumes and reuses unchanged work.")
    add_walk_flags(r)
    r.set_defaults(func=run_walk)
    pl = sub.add_parser("plan", help="state the engines, frames and disk of a walk; write OUT/walk.json",
                        description="Used by full_pipeline.sh: logs the preset and plan lines, writes "
                        "OUT/walk.json and prints the keyframe, motion and upscale engine names on stdout.")
    add_walk_flags(pl)
    pl.set_defaults(func=lambda a: print(*vars(plan(a)).values()))
    m = sub.add_parser("models", help="list the models the engines use; fetch their weights",
                       description="The model registry: short names, hub ids or URLs, checksums, licences.")
    msub = m.add_subparsers(dest="models_command", required=True)
    ml = msub.add_parser("list", help="every registered model, whether it is here, its licence and source")
    add_common_flags(ml)
    ml.set_defaults(func=models_list)
    md = msub.add_parser("download", help="fetch a model's weights (resumes; checks the sha256)",
                         description="Fetch NAME (a name from `artwalk models list`, or a hub id owner/repo): "
                         "a file model into the artwalk cache, resuming an interrupted transfer and placing it "
                         "only once its checksum matched; a hub model into the Hugging Face cache.")
    md.add_argument("name", metavar="NAME", help="registry name (see `artwalk models list`) or hub id")
    md.add_argument("--url", help="fetch a file model from this URL instead (a mirror; a pinned checksum "
                    "still applies)")
    md.add_argument("--force", action="store_true", help="fetch again even if present, and trust what arrives "
                    "when no checksum is pinned")
    add_common_flags(md)
    md.set_defaults(func=models_download)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda a: a.func(a), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
