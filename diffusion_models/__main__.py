"""``python -m diffusion_models INPUT OUT``: stage 1, keyframes. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import add_common_flags, artwalks_paths, run_cli
from artwalk.errors import ConfigError
from diffusion_models import KeyframeConfig, run
from diffusion_models.conform import FIT_MODES
from diffusion_models.engines import ENGINES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diffusion_models",
        description="Stage 1: conform the input images to W x H and make S in-between "
        "artworks per pair. Writes OUT/keyframes/ (a unit folder per original and per "
        "pair, and manifest.json). Reruns reuse every unchanged unit.",
    )
    p.add_argument("input", nargs="?", type=Path, help="folder of input images (natural order)")
    p.add_argument("output", nargs="?", type=Path, help="run folder to write (OUT)")
    p.add_argument("--input_path", help="ArtWalks form: parent folder of the image folder")
    p.add_argument("--folder_name", help="ArtWalks form: image folder name under --input_path; "
                   "also the run folder name under --output_path")
    p.add_argument("--output_path", help="ArtWalks form: parent of the run folder (default: output)")
    p.add_argument("--model", "--engine", dest="engine", default="none",
                   help=f"keyframe engine (available: {', '.join(ENGINES)}; default none)")
    p.add_argument("--interpolation_steps", "-S", type=int, default=5,
                   help="S: in-betweens generated per pair of images (default 5; none makes 0)")
    p.add_argument("--w", "--width", dest="width", type=int, default=1280, help="frame width (default 1280)")
    p.add_argument("--h", "--height", dest="height", type=int, default=720, help="frame height (default 720)")
    p.add_argument("--fit", choices=FIT_MODES, default="cover",
                   help="how an image of another aspect fills W x H: cover (crop), "
                   "contain-blur (blurred bars) or contain-mirror (mirrored bars); default cover")
    p.add_argument("--square_crop", action="store_true", help="square walk: min(W, H) on each side, centre crop")
    p.add_argument("--no_originals", action="store_true", help="leave the originals out; keep only in-betweens")
    p.add_argument("--outpaint", action="store_true",
                   help="extend images of another aspect with the diffusion model instead of --fit")
    p.add_argument("--loop", action="store_true", help="also walk from the last image back to the first")
    p.add_argument("--seed", type=int, default=0, help="walk seed; each pair's seed derives from it (default 0)")
    add_common_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def go(args: argparse.Namespace) -> None:
        inp, out = artwalks_paths(args)
        inp, out = inp or args.input, out or args.output
        if inp is None or out is None:
            raise ConfigError("give INPUT and OUT folders (or --input_path/--folder_name)")
        run(KeyframeConfig(
            input_dir=inp, run_dir=out, width=args.width, height=args.height, fit=args.fit,
            square_crop=args.square_crop, engine=args.engine,
            interpolation_steps=args.interpolation_steps, seed=args.seed, loop=args.loop,
            no_originals=args.no_originals, outpaint=args.outpaint, progress=not args.quiet,
        ))

    return run_cli(go, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
