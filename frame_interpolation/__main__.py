"""``python -m frame_interpolation OUT``: stage 2, motion frames. See the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artwalk.cli import add_common_flags, run_cli
from artwalk.devices import DTYPES
from artwalk.errors import ConfigError
from artwalk.timeline import EASINGS
from frame_interpolation import MotionConfig, run
from frame_interpolation.engines import ENGINES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m frame_interpolation",
        description="Stage 2: make the motion frames between consecutive keyframes of "
        "OUT/keyframes/ on an eased timeline, and write OUT/frames/ (unit folders and "
        "manifest.json with the timeline). Reruns reuse every unchanged segment.",
    )
    p.add_argument("run_dir", nargs="?", type=Path, help="run folder (OUT) holding keyframes/")
    p.add_argument("--input_path", help="ArtWalks form: parent of the run folder")
    p.add_argument("--folder_name", help="ArtWalks form: run folder name under --input_path")
    p.add_argument("--engine", default="flow",
                   help=f"motion engine (available: {', '.join(ENGINES)}; default flow)")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second of the video (default 24)")
    p.add_argument("--sec_interpolation", "-I", type=float, default=3.0,
                   help="I: seconds of motion between two consecutive keyframes (default 3)")
    p.add_argument("--sec_freeze", "-F", type=float, default=2.0,
                   help="F: seconds each original is held still (default 2; at least one frame)")
    p.add_argument("--easing", choices=list(EASINGS), default="smoothstep",
                   help="timing curve of each segment: linear, smoothstep (ease in and out), "
                   "alpha (ArtWalks' 34/32/34 curve) or sinh (lingers mid-way); default smoothstep")
    p.add_argument("--loop", action="store_true", help="also move from the last keyframe back to the first")
    g = p.add_argument_group("film engine")
    g.add_argument("--model", default="film",
                   help="registry name (film: film_net_fp32.pt, film-fp16: film_net_fp16.pt) or a weights file: "
                   "the PyTorch port's TorchScript export, or a .pt / .safetensors state dict (default film)")
    g.add_argument("--film-mode", choices=("module", "torchscript"), default="module",
                   help="module: our FILM network with the file's weights (default); torchscript: run the "
                   "TorchScript file as it is")
    g.add_argument("--time-mode", choices=("bisect", "exact"), default="bisect",
                   help="bisect: recursive midpoints that land on the exact times, as FILM was trained at "
                   "t = 0.5 (default); exact: ask the network for each time directly")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    g.add_argument("--dtype", default="auto", choices=("auto", *DTYPES), help="auto: float16 on CUDA, float32 on CPU")
    g.add_argument("--batch", type=int, default=1, help="network calls per forward pass (default 1)")
    g.add_argument("--block-size", type=int, default=2560,
                   help="frames with a side over this many pixels run in overlapping blocks, to bound memory "
                   "(default 2560; 0: never)")
    g.add_argument("--block-overlap", type=int, default=256,
                   help="pixels shared by neighbouring blocks, feathered (default 256)")
    add_common_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()

    def go(args: argparse.Namespace) -> None:
        run_dir = args.run_dir or (Path(args.input_path) / (args.folder_name or "") if args.input_path else None)
        if run_dir is None:
            raise ConfigError("give the run folder OUT (or --input_path/--folder_name)")
        run(MotionConfig(
            run_dir=run_dir, fps=args.fps, sec_interpolation=args.sec_interpolation,
            sec_freeze=args.sec_freeze, easing=args.easing, engine=args.engine, loop=args.loop,
            progress=not args.quiet, model=args.model, film_mode=args.film_mode, time_mode=args.time_mode,
            device=args.device, dtype=args.dtype, batch=args.batch, block_size=args.block_size,
            block_overlap=args.block_overlap,
        ))

    return run_cli(go, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
