"""Benchmark: the FILM engine's speed at full size, by dtype, batch and time mode, against the flow engine.

Run from the repository root (a CUDA machine for the real numbers)::

    .venv/bin/python bench/bench_film.py                      # 1280x720 and 2560x1440
    .venv/bin/python bench/bench_film.py --device cpu --size 128x64 --frames 3   # smoke run

Network: the official FILM configuration (pyramid_levels 7, fusion_pyramid_levels 5,
specialized_levels 3, sub_levels 4, filters 64, flow_convs [3, 3, 3, 3], flow_filters
[32, 64, 128, 256]; 34.4 M parameters) with seeded random weights: speed does not depend
on the weights' values. They are saved once as safetensors in a temporary folder and
every run loads them through ``FilmEngine`` like real weights (module mode).

Frames: a view of skimage's astronaut and the same view panned by 2% of the width, at each
``--size``. One segment is ``--frames`` in-between times ``t = k / (frames + 1)``.

Measured per (size, time mode, dtype, batch): frames per second over one segment, best of
``--repeats`` after one warm-up segment (frames copied back to the host included), and
the peak GPU memory of the measured segments. ``exact`` encodes the pair once and
decodes each batch of times; ``bisect`` runs the whole network once per frame, pairs of
different spans batched. The peer in the same run is ``frame_interpolation.flow.FlowEngine()``
(CPU, OpenCV) on the same frames and times.

Flags take comma-separated lists. Prints a Markdown table; writes no file.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artwalk.devices import resolve_device  # noqa: E402
from frame_interpolation.film import FilmEngine  # noqa: E402
from frame_interpolation.film_net import FilmConfig, FilmNet, save_film_weights  # noqa: E402
from frame_interpolation.flow import FlowEngine  # noqa: E402


def random_weights(folder: Path, seed: int = 0) -> Path:
    """The official architecture with seeded random weights, saved as safetensors."""
    net = FilmNet(FilmConfig())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            scale = (1.0 / p[0].numel()) ** 0.5 if name.endswith("weight") else 0.01
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return save_film_weights(net, folder / "film_random.safetensors")


def frame_pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    src = data.astronaut().astype(np.float32) / 255.0
    big = cv2.resize(src, (round(width * 1.2), round(height * 1.2)), interpolation=cv2.INTER_AREA)
    x0, y0 = (big.shape[1] - width) // 2, (big.shape[0] - height) // 2
    dx = max(1, round(0.02 * width))
    return (np.ascontiguousarray(big[y0:y0 + height, x0:x0 + width]),
            np.ascontiguousarray(big[y0:y0 + height, x0 + dx:x0 + dx + width]))


def time_segment(engine, a: np.ndarray, b: np.ndarray, times: list[float], repeats: int,
                 cuda: bool) -> tuple[float, float | None]:
    """(best seconds per segment, peak GPU MiB) after a warm-up segment."""
    list(engine.interpolate(a, b, times))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        frames = list(engine.interpolate(a, b, times))
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        assert len(frames) == len(times) and frames[0].shape == a.shape
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return best, peak


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--dtype", default=None,
                   help="comma list of float32,float16,bfloat16 (default: all three on CUDA, float32 on CPU)")
    p.add_argument("--batch", default="1,2,4", help="comma list of batch sizes (default 1,2,4)")
    p.add_argument("--size", default="1280x720,2560x1440", help="comma list of WxH (default 1280x720,2560x1440)")
    p.add_argument("--frames", type=int, default=8, help="in-between frames per segment (default 8)")
    p.add_argument("--time-mode", default="exact,bisect", help="comma list of exact,bisect (default both)")
    p.add_argument("--block-size", type=int, default=2560, help="FilmEngine block_size (default 2560; 0: never)")
    p.add_argument("--repeats", type=int, default=2, help="timed segments per setting; the best counts (default 2)")
    p.add_argument("--no-flow", action="store_true", help="skip the flow engine peer")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    dtypes = (args.dtype or ("float32,float16,bfloat16" if cuda else "float32")).split(",")
    batches = [int(b) for b in args.batch.split(",")]
    sizes = [parse_size(s) for s in args.size.split(",")]
    modes = args.time_mode.split(",")
    times = [k / (args.frames + 1) for k in range(1, args.frames + 1)]

    where = torch.cuda.get_device_name(device) if cuda else f"CPU x{os.cpu_count()}, {torch.get_num_threads()} threads"
    print(f"# FILM engine benchmark ({platform.node()}, torch {torch.__version__}, {where})")
    print(f"{args.frames} in-between frames per segment, best of {args.repeats}; random official-size FILM weights\n")
    print("| size | engine | time mode | dtype | batch | frames/s | s/segment | peak GPU MiB |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp))
        for width, height in sizes:
            a, b = frame_pair(width, height)
            for mode in modes:
                for dtype in dtypes:
                    for batch in batches:
                        engine = FilmEngine(weights, time_mode=mode, device=str(device), dtype=dtype, batch=batch,
                                            block_size=args.block_size)
                        try:
                            seconds, peak = time_segment(engine, a, b, times, args.repeats, cuda)
                        except Exception as exc:  # a setting this device cannot run is a row, not a crash
                            print(f"| {width}x{height} | film | {mode} | {dtype} | {batch} | failed: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]} | | |")
                            continue
                        finally:
                            del engine
                            if cuda:
                                torch.cuda.empty_cache()
                        print(f"| {width}x{height} | film | {mode} | {dtype} | {batch} | {len(times) / seconds:.2f} "
                              f"| {seconds:.2f} | {'-' if peak is None else f'{peak:.0f}'} |", flush=True)
            if not args.no_flow:
                seconds, _ = time_segment(FlowEngine(), a, b, times, args.repeats, cuda=False)
                print(f"| {width}x{height} | flow (CPU) | - | float32 | - | {len(times) / seconds:.2f} "
                      f"| {seconds:.2f} | - |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
