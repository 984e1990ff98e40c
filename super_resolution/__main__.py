"""``python -m super_resolution OUT``: stage 3, upscaling. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import add_common_flags, run_cli
from super_resolution import UpscaleConfig, run
from super_resolution.engines import ENGINES, NAMED_TARGETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m super_resolution",
        description="Stage 3: upscale the unique frames of OUT/frames/ to a target size "
        "and write OUT/upscaled/ (same timeline). Reruns reuse every unchanged frame.",
    )
    p.add_argument("run_dir", type=Path, help="run folder (OUT) holding frames/")
    p.add_argument("--target", "-t", default="2k",
                   help=f"output size: a scale (x2, 1.5), a name ({', '.join(NAMED_TARGETS)}) or WxH; "
                   "names and WxH are boxes the frame fits inside keeping its aspect (default 2k = 2560x1440)")
    p.add_argument("--engine", default="lanczos", help=f"upscale engine (available: {', '.join(ENGINES)})")
    p.add_argument("--workers", type=int, default=0, help="frames processed at once (default: one per CPU core)")
    add_common_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda a: run(UpscaleConfig(a.run_dir, a.target, a.engine, a.workers, not a.quiet)), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
