"""``python -m diffusion_models INPUT OUT`` (or ``--prompts SCHEDULE OUT``, or ``--video-init VIDEO
--prompts SCHEDULE OUT``): stage 1, keyframes.
See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import Parser, add_common_flags, add_keep_settings_flag, artwalks_paths, run_cli
from artwalk.config import add_flags, engine_option_names, from_args
from artwalk.errors import ConfigError
from artwalk.runfolder import previous_config
from diffusion_models import PROMPT_SETTINGS, STAGE, VIDEO_SETTINGS, KeyframeConfig, check, run


def build_parser(prog: str = "python -m diffusion_models") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Stage 1: conform the input images to W x H and make S in-between "
        "artworks per pair; or, with --prompts SCHEDULE OUT, text to image at each keyframe of a "
        "prompt schedule and the diffused in-betweens --diffuse asks for; or, with --video-init VIDEO "
        "--prompts SCHEDULE OUT, the video's frames restyled by img2img. Writes OUT/keyframes/ (a "
        "unit folder per keyframe and per pair or segment, and manifest.json). Reruns reuse every "
        "unchanged unit.",
    )
    p.add_argument("input", nargs="?", type=Path, metavar="INPUT", help="folder of input images (natural order)")
    p.add_argument("output", nargs="?", type=Path, metavar="OUT", help="run folder to write")
    p.add_argument("--input_path", help="ArtWalks form: parent folder of the image folder")
    p.add_argument("--folder_name", help="ArtWalks form: image folder name under --input_path; "
                   "also the run folder name under --output_path")
    p.add_argument("--output_path", help="ArtWalks form: parent of the run folder (default: output)")
    neural = set(engine_option_names(KeyframeConfig))
    add_flags(p, KeyframeConfig, exclude=neural)
    add_flags(p.add_argument_group(
        "diffusion engines (kandinsky, unclip, sd)",
        "Unset options take the engine's default; an option the engine does not take is an error. Models are "
        "registry names (`artwalk models list`), hub ids from the Hugging Face cache, or local folders."),
        KeyframeConfig, names=neural)
    add_keep_settings_flag(p)
    p.add_argument("--announced", action="store_true", help="the walk's plan has said what is skipped (non-image "
                   "files, in-betweens the engine cannot make): do not say it again (full_pipeline.sh)")
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> KeyframeConfig:
    inp, out = artwalks_paths(args)
    inp, out = inp or args.input, out or args.output
    if out is None and inp is not None:  # one folder: OUT of a prompt walk (--prompts, or kept settings)
        kept = previous_config(inp, STAGE) if args.keep_settings else None
        if getattr(args, "prompts", None) is not None or (kept or {}).get("prompts") is not None:
            inp, out = None, inp
    if out is None:
        raise ConfigError("give INPUT and OUT folders (or --input_path/--folder_name, or --prompts SCHEDULE OUT)")
    base = previous_config(out, STAGE) if args.keep_settings else None
    if base is not None and inp is not None:  # an image walk now: the kept prompt-walk settings do not apply
        base = {k: v for k, v in base.items() if k not in PROMPT_SETTINGS + VIDEO_SETTINGS}
    return from_args(KeyframeConfig, args, base=base, input_dir=inp, run_dir=out, progress=not args.quiet)


def main(argv: list[str] | None = None, prog: str = "python -m diffusion_models") -> int:
    def stage(args: argparse.Namespace):
        config = config_from_args(args)
        return run(config, plan=check(config, announce=not args.announced))

    return run_cli(stage, build_parser(prog), argv)


if __name__ == "__main__":
    sys.exit(main())
