"""Benchmark: the realesrgan engine's two architectures against Lanczos, frames per second.

Run from the repository root::

    .venv/bin/python bench/bench_upscale.py --device cuda --dtype float16 --batch 4
    .venv/bin/python bench/bench_upscale.py --device cpu --size 128x72 --frames 4   # a smoke run

Networks, at full official size with seeded random weights (speed does not depend on
the values), saved as safetensors and loaded through the engine's real loader:

- ``RealESRGAN_x4plus``: RRDBNet, 64 features, 23 blocks, growth 32 (x4);
- ``realesr-general-x4v3``: SRVGGNetCompact, 64 features, 32 convs (x4).

Each frame goes ``--size`` (default 1280x720) -> network x4 -> Lanczos/area to
``--target`` (default x2, i.e. 2560x1440 from 720p), numpy in and out, as in the stage.
``frames/s`` is end to end (host -> device -> network -> host -> Lanczos to the exact
size); ``net frames/s`` is the network alone on a batch already on the device
(synchronised). One batch is run first to warm up and is not timed. Lanczos is the peer:
``cv2.resize`` of one frame at a time on one thread.

The script prints a table and writes nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artwalk.devices import resolve_device, resolve_dtype  # noqa: E402
from artwalk.sizes import target_size  # noqa: E402
from super_resolution.lanczos import LanczosEngine  # noqa: E402
from super_resolution.realesrgan import RealESRGANEngine  # noqa: E402
from super_resolution.rrdbnet import RRDBNet, RRDBParams  # noqa: E402
from super_resolution.srvgg import SRVGGNetCompact, SRVGGParams  # noqa: E402

NETWORKS = {
    "RealESRGAN_x4plus": lambda: RRDBNet(RRDBParams(num_feat=64, num_block=23, num_grow_ch=32, scale=4)),
    "realesr-general-x4v3": lambda: SRVGGNetCompact(SRVGGParams(num_feat=64, num_conv=32, scale=4)),
}


@dataclass
class Row:
    method: str
    params_m: float | None
    frames: int
    seconds: float
    net_fps: float | None = None
    peak_gib: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def frames(n: int, w: int, h: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_network(name: str, folder: Path, args: argparse.Namespace, inputs: list[np.ndarray],
                  target: tuple[int, int]) -> Row:
    torch.manual_seed(0)
    net = NETWORKS[name]()
    path = folder / f"random-{len(list(folder.iterdir()))}.safetensors"  # no official name: no denoise companion
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    engine = RealESRGANEngine(model=str(path), device=args.device, dtype=args.dtype, tile=args.tile)
    device = engine.upscaler.device
    batches = [inputs[i:i + args.batch] for i in range(0, len(inputs), args.batch)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    engine.upscale_batch(batches[0], *target)  # warm-up
    start = time.perf_counter()
    for batch in batches:
        engine.upscale_batch(batch, *target)
    seconds = time.perf_counter() - start

    x = torch.from_numpy(np.stack(batches[0])).permute(0, 3, 1, 2).to(device)
    sync(device)
    start = time.perf_counter()
    repeats = max(1, len(batches))
    for _ in range(repeats):
        engine.upscaler(x)
    sync(device)
    net_fps = repeats * len(batches[0]) / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    params = sum(p.numel() for p in net.parameters()) / 1e6
    return Row(name, params, len(inputs), seconds, net_fps, peak)


def bench_lanczos(inputs: list[np.ndarray], target: tuple[int, int]) -> Row:
    engine = LanczosEngine()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the row says one thread: cv2.resize is parallel otherwise
    try:
        engine.upscale_batch([inputs[0]], *target)
        start = time.perf_counter()
        for rgb in inputs:
            engine.upscale_batch([rgb], *target)
        seconds = time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)
    return Row("lanczos (1 thread)", None, len(inputs), seconds)


def table(rows: list[Row], header: str) -> str:
    lines = [header, "",
             "| method | params (M) | frames | seconds | frames/s | net frames/s | peak GPU GiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in rows:
        lines.append(f"| {r.method} | {fmt(r.params_m, '.2f')} | {r.frames} | {r.seconds:.2f} | {r.fps:.2f} "
                     f"| {fmt(r.net_fps, '.2f')} | {fmt(r.peak_gib, '.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (float16 on CUDA, float32 on CPU), float32, float16, bfloat16")
    p.add_argument("--batch", type=int, default=1, help="frames per network call")
    p.add_argument("--frames", type=int, default=8, help="timed frames per method")
    p.add_argument("--size", default="1280x720", help="input frame size WxH")
    p.add_argument("--target", default="x2", help="output target as the stage takes it (x2: 2560x1440 from 720p)")
    p.add_argument("--tile", type=int, default=0, help="engine tile size (0: whole frames)")
    p.add_argument("--only", choices=tuple(NETWORKS), action="append", help="bench only these networks")
    args = p.parse_args(argv)

    w, h = parse_size(args.size)
    target = target_size(args.target, w, h)
    inputs = frames(args.frames, w, h)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only or NETWORKS:
            rows.append(bench_network(name, Path(folder), args, inputs, target))
            print(f"{name}: {rows[-1].fps:.2f} frames/s", file=sys.stderr)
    rows.append(bench_lanczos(inputs, target))

    device = resolve_device(args.device)
    dtype = str(resolve_dtype(args.dtype, device)).removeprefix("torch.")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    header = (f"Upscale {w}x{h} -> {target[0]}x{target[1]} (x4 network + Lanczos), device {device}, "
              f"dtype {dtype}, batch {args.batch}, tile {args.tile}; torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads, GPU {gpu}")
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
