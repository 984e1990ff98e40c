"""``python -m frame_interpolation OUT``: stage 2, motion frames. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import Parser, add_common_flags, add_keep_settings_flag, run_cli
from artwalk.config import add_flags, from_args
from artwalk.errors import ConfigError
from artwalk.runfolder import previous_config
from frame_interpolation import STAGE, MotionConfig, run


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m frame_interpolation",
        description="Stage 2: make the motion frames between consecutive keyframes of "
        "OUT/keyframes/ on an eased timeline, and write OUT/frames/ (unit folders and "
        "manifest.json with the timeline). Reruns reuse every unchanged segment.",
    )
    p.add_argument("run_dir", nargs="?", type=Path, metavar="OUT", help="run folder holding keyframes/")
    p.add_argument("--input_path", help="ArtWalks form: parent of the run folder")
    p.add_argument("--folder_name", help="ArtWalks form: run folder name under --input_path")
    add_flags(p, MotionConfig)
    add_keep_settings_flag(p)
    add_common_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> MotionConfig:
    run_dir = args.run_dir or (Path(args.input_path) / (args.folder_name or "") if args.input_path else None)
    if run_dir is None:
        raise ConfigError("give the run folder OUT (or --input_path/--folder_name)")
    base = previous_config(run_dir, STAGE) if args.keep_settings else None
    return from_args(MotionConfig, args, base=base, run_dir=run_dir, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda args: run(config_from_args(args)), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
