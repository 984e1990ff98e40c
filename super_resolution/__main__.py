"""``python -m super_resolution OUT``: stage 3, upscaling. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import add_common_flags, run_cli
from artwalk.devices import DTYPES
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
    p.add_argument("--workers", type=int, default=0,
                   help="threads reading, upscaling and writing frames (default: one per CPU core)")
    g = p.add_argument_group("realesrgan engine")
    g.add_argument("--model", default="RealESRGAN_x4plus",
                   help="registry name (RealESRGAN_x4plus, RealESRGAN_x2plus, realesr-general-x4v3, "
                   "realesr-animevideov3) or a .pth / .safetensors file (default RealESRGAN_x4plus)")
    g.add_argument("--tile", type=int, default=0,
                   help="process frames in tiles of this many input pixels a side, to bound memory (default 0: whole)")
    g.add_argument("--tile-pad", type=int, default=None,
                   help="context pixels around each tile (default: the network's receptive radius, "
                   "so tiles match whole-frame output; smaller is faster and approximate)")
    g.add_argument("--batch", type=int, default=1, help="frames per network call (default 1)")
    g.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                   help="auto: float16 on CUDA, float32 on CPU")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    g.add_argument("--denoise-strength", type=float, default=None,
                   help="realesr-general-x4v3 only: 0 keeps noise, 1 removes it (default 0.5)")
    add_common_flags(p)
    return p


def config_from_args(a: argparse.Namespace) -> UpscaleConfig:
    return UpscaleConfig(
        run_dir=a.run_dir, target=a.target, engine=a.engine, workers=a.workers, progress=not a.quiet,
        model=a.model, tile=a.tile, tile_pad=a.tile_pad, batch=a.batch, dtype=a.dtype, device=a.device,
        denoise_strength=a.denoise_strength,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda a: run(config_from_args(a)), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
