"""``python -m super_resolution OUT``: stage 3, upscaling. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import Parser, add_common_flags, add_keep_settings_flag, run_cli
from artwalk.config import add_flags, from_args, index_ranges
from artwalk.runfolder import previous_config
from super_resolution import STAGE, UpscaleConfig, run


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m super_resolution",
        description="Stage 3: upscale the unique frames of OUT/frames/ to a target size "
        "and write OUT/upscaled/ (same timeline). Reruns reuse every unchanged frame.",
    )
    p.add_argument("run_dir", type=Path, metavar="OUT", help="run folder holding frames/")
    add_flags(p, UpscaleConfig)
    p.add_argument("--restore", type=index_ranges, default=[], metavar="FRAMES",
                   help="upscale these frames again where stage 4 released them (indices into upscaled/manifest.json's "
                   "frames, as 0-99,150); `artwalk retime OUT` does this itself when a chunk must be encoded again")
    add_keep_settings_flag(p)
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> UpscaleConfig:
    base = previous_config(args.run_dir, STAGE) if args.keep_settings else None
    return from_args(UpscaleConfig, args, base=base, run_dir=args.run_dir, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda args: run(config_from_args(args), restore=args.restore), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
