"""The ``film`` motion engine: FILM (:mod:`frame_interpolation.film_net`) with its geometry and timing.

Weights: ``model`` is a registry name (``film``: ``film_net_fp32.pt``, ``film-fp16``:
``film_net_fp16.pt``, the PyTorch port's TorchScript exports of the official 'Style'
network; ``artwalk models download film``) or a path to such an export, to the port's
plain state dict, or to weights saved from our :class:`~frame_interpolation.film_net.FilmNet`
(``.safetensors`` / ``.pt``). A missing file is one line that names it and the command
that fetches it.

Mode (``film_mode``): ``module`` (the only one): the file's state dict is mapped onto our
modules (every key used, every shape checked). Our code runs: one encode per pair for
many times, and float32 warps in half precision. The file's own code never runs: a
TorchScript export is read as tensors (:mod:`frame_interpolation.film_net`). The
``torchscript`` mode, which ran the export as it is, was removed for that reason (a
TorchScript file runs its code when loaded); asking for it is one line that says so.

Timing (``time_mode``): the timeline asks for eased times ``t_k`` in (0, 1).

- ``bisect`` (default): recursive bisection that lands on the asked times exactly. The
  span (0, 1) is split at the asked time nearest its middle, which the network makes
  from the span's two ends with ``dt`` = its relative position; each half is split the
  same way, from already-made frames, until every asked time has its frame. Each call
  bridges two neighbouring frames at ``dt`` near 0.5: exactly 0.5 whenever the times
  allow (``N`` a power of two, linear easing); for the default timeline (24 fps, 3 s,
  eased: 71 times) the 71 calls have ``dt`` in [0.33, 0.67], median 0.5, mean
  ``|dt - 0.5|`` 0.032, and the deepest frame is 7 calls away from the keyframes
  (smoothstep: [0.25, 0.75], depth 10; ``bisection_stats`` gives these numbers for
  any timeline). Frames are computed in an order that yields them as soon as all
  earlier ones are out, keeping about ``depth * batch`` frames in memory.
- ``exact``: one network call per time, ``dt = t_k``, all from the two keyframes (one
  encode of the pair, then a decode per batch of times).

Why ``bisect`` is the default: the official model was trained on triplets with the
ground truth at t = 0.5 only, and its TF graph replaces the time input by 0.5
(``models/film_net/interpolator.py``: "time: ignored by film_net. We always infer a
frame at t = 0.5"); the official ``interpolator_cli`` therefore makes every frame by
recursive midpoints. The port passes ``dt`` through, which only scales the two flows
that warp A and B towards ``t``: the fusion decoder, which decides how much of each
warped image to keep, never saw another time. So in ``exact`` mode, wherever the
warps disagree (occlusions, and everything between two different artworks that no
flow explains, which is this product's common case) the decoder mixes A and B as it
learned for the middle, at every ``t``: the look jumps from A to the halfway mix on the
first frame and back on the last. Bisection only ever asks the network for frames
near the middle of two neighbouring frames, where it was trained, so appearance
changes progress frame by frame, as in the official tool, while every frame still
sits at its asked time. The price, measured: ``bisect`` runs the whole network once
per frame, ``exact`` one encode per segment and one decode per frame; the encoder
(feature pyramids and both flow pyramids) is about 60% of a forward pass of the
official-size network (448x256, CPU, one thread), so on a long segment ``exact`` is
about 2.5x faster (``bench/bench_film.py`` measures both on a GPU). Quality cannot be
measured without the real weights, so the choice rests on how the weights were
trained, and ``exact`` stays available for models trained at arbitrary times.

Geometry (the caller passes whole frames, RGB float32 (H, W, 3) in [0, 1]):

- padding: the frame is replicate-padded, centred like the official ``_pad_to_align``,
  to a multiple of ``align`` = 2 ** (pyramid_levels - 1) (64 for the official network),
  and the result is cropped back and clamped to [0, 1];
- blocks: a padded frame with a side over ``block_size`` (default 2560, 0: never) is
  split into the fewest blocks of at most ``block_size`` a side that overlap by at least
  ``block_overlap`` pixels (default 256), on the alignment grid. Each block runs alone
  (memory is one block's); the outputs are averaged with weights that are 0 in the
  quarter of each overlap nearest a block's inner edge and ramp linearly to 1 across
  its middle half. So no output pixel comes from within ``block_overlap / 4`` of a
  block edge, where the network lacks context, and there is no hard seam. For a
  network whose receptive radius is within that margin the result equals the unsplit
  one (the tests check this); FILM's coarse flow levels see the whole block, so blocks
  lose the context beyond the block: motion larger than the overlap across a seam is
  not found. Blocks are for frames that do not fit in memory, not a default.
- batching: ``batch`` network calls run as one forward pass (times of one pair in
  ``exact`` mode, independent spans in ``bisect`` mode). It does not change the
  results beyond float rounding (not part of the identity).

Device and dtype (:mod:`artwalk.devices`): CPU and float32 by default; float16 on CUDA
with ``device=auto``; bfloat16 on request. The identity holds everything that changes
output bytes: weights hash, architecture, mode, time mode, dtype, device type, blocks.
"""

from __future__ import annotations

import heapq
import logging
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from artwalk.devices import gpu_memory, resolve_device, resolve_dtype
from artwalk.errors import ConfigError
from artwalk.models import weights_file, weights_sha256
from frame_interpolation.engines import ENGINES
from frame_interpolation.film_net import FilmConfig, FilmNet, load_film_weights
from frame_interpolation.flow import check_inputs

log = logging.getLogger(__name__)

MODES = ("module",)
TIME_MODES = ("bisect", "exact")
VERSION = 1  # bump when the output bytes of the same weights and settings change


# ---------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Step:
    """One network call of a bisection: frame ``index`` from frames ``lo`` and ``hi`` at
    relative time ``dt``. Indices: 0 is keyframe A, 1..n the asked times, n + 1 is B."""

    index: int
    lo: int
    hi: int
    dt: float


def bisection_plan(times: Sequence[float]) -> list[Step]:
    """The steps that make every time in ``times`` (rising inside (0, 1)) by splitting
    spans at the asked time nearest their middle; parents come before children."""
    points = [0.0, *times, 1.0]
    steps: list[Step] = []
    spans = [(0, len(points) - 1)]
    while spans:
        lo, hi = spans.pop()
        if hi - lo < 2:
            continue
        middle = 0.5 * (points[lo] + points[hi])
        k = min(range(lo + 1, hi), key=lambda i: (abs(points[i] - middle), i))
        steps.append(Step(k, lo, hi, (points[k] - points[lo]) / (points[hi] - points[lo])))
        spans += [(k, hi), (lo, k)]
    return steps


def bisection_stats(times: Sequence[float]) -> dict:
    """How far a bisection's calls stray from dt = 0.5, and how deep it recurses."""
    plan = bisection_plan(times)
    if not plan:
        return {"calls": 0}
    depth = {0: 0, len(times) + 1: 0}
    for s in plan:
        depth[s.index] = max(depth[s.lo], depth[s.hi]) + 1
    dts = [s.dt for s in plan]
    return {"calls": len(plan), "dt_min": min(dts), "dt_max": max(dts), "dt_median": statistics.median(dts),
            "mean_abs_dev": statistics.fmean(abs(d - 0.5) for d in dts), "depth": max(depth.values())}


# ---------------------------------------------------------------------------- geometry


def block_spans(size: int, block: int, overlap: int, unit: int) -> list[tuple[int, int]]:
    """(start, stop) of the fewest blocks of ``block`` pixels that cover ``size`` with at
    least ``overlap`` pixels in common, starts on multiples of ``unit`` (all three are)."""
    if block <= 0 or size <= block:
        return [(0, size)]
    units, step = (size - block) // unit, (block - overlap) // unit
    gaps = -(-units // step)
    return [(unit * (k * units // gaps), unit * (k * units // gaps) + block) for k in range(gaps + 1)]


def _axis_weights(size: int, spans: list[tuple[int, int]], overlap: int, device) -> list[torch.Tensor]:
    """Per block: 0 within overlap / 4 of an inner edge, a linear ramp over the next overlap / 2, then 1."""
    out = []
    for start, stop in spans:
        x = torch.arange(start, stop, device=device, dtype=torch.float32)
        d = torch.full_like(x, float("inf"))
        if start > 0:
            d = torch.minimum(d, x - start)
        if stop < size:
            d = torch.minimum(d, stop - 1 - x)
        if overlap <= 0 or len(spans) == 1:
            out.append(torch.ones_like(x))
        else:
            out.append(((d + 0.5 - overlap // 4) / (overlap / 2)).clamp(0.0, 1.0))
    return out


class FilmRunner:
    """A FILM network with its geometry: pad, blocks, dtype, crop and clamp.

    Calls take and give (B, 3, H, W) float32 tensors on ``device``; the network runs in
    ``dtype``. ``net`` is our :class:`FilmNet` (``encode``/``decode`` used).
    """

    def __init__(self, net: FilmNet, align: int, device: torch.device, dtype: torch.dtype, block_size: int = 0,
                 block_overlap: int = 0):
        if block_size < 0 or block_overlap < 0:
            raise ConfigError(f"--block-size and --block-overlap must be >= 0, got {block_size} and {block_overlap}")
        self.net = net.to(device=device, dtype=dtype).eval()
        self.align, self.device, self.dtype = align, device, dtype
        self.block_overlap = -(-block_overlap // align) * align
        self.block_size = (block_size // align) * align if block_size else 0
        if block_size and (self.block_size < 2 * align or 2 * self.block_overlap > self.block_size):
            raise ConfigError(
                f"--block-size {block_size} is too small for FILM: it must be at least {2 * align} and twice "
                f"--block-overlap ({block_overlap}, rounded to {self.block_overlap}) on the {align}-pixel grid")

    # -- pieces

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[slice, slice]]:
        h, w = x.shape[-2:]
        ph, pw = -h % self.align, -w % self.align
        top, left = ph // 2, pw // 2
        if ph or pw:
            x = F.pad(x, (left, pw - left, top, ph - top), mode="replicate")
        return x, (slice(top, top + h), slice(left, left + w))

    def _blocks(self, h: int, w: int) -> list[tuple[slice, slice, torch.Tensor | None]]:
        ys = block_spans(h, self.block_size, self.block_overlap, self.align)
        xs = block_spans(w, self.block_size, self.block_overlap, self.align)
        if len(ys) == 1 and len(xs) == 1:
            return [(slice(0, h), slice(0, w), None)]
        wy = _axis_weights(h, ys, self.block_overlap, self.device)
        wx = _axis_weights(w, xs, self.block_overlap, self.device)
        return [(slice(*y), slice(*x), ay[:, None] * ax[None, :]) for y, ay in zip(ys, wy) for x, ax in zip(xs, wx)]

    def _memory(self, shape: Sequence[int]):
        """Out of GPU memory becomes one line that says which settings to lower."""
        return gpu_memory(f"film on a {shape[-1]}x{shape[-2]} block, batch {shape[0]}",
                          f"lower --batch or --block-size (now {self.block_size or 'off'}), or use --dtype float16")

    def _net(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        dt = dt.reshape(-1, 1).to(self.device, torch.float32)
        with self._memory(x0.shape):
            return self.net(x0.to(self.dtype), x1.to(self.dtype), dt).float()

    def _blocked(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                 x1: torch.Tensor) -> torch.Tensor:
        blocks = self._blocks(*x0.shape[-2:])
        if len(blocks) == 1:
            return fn(x0, x1)
        out, total = None, torch.zeros(x0.shape[-2:], device=self.device)
        for ys, xs, weight in blocks:
            piece = fn(x0[..., ys, xs], x1[..., ys, xs])
            if out is None:
                out = torch.zeros((piece.shape[0], 3, *x0.shape[-2:]), device=self.device)
            out[..., ys, xs] += weight * piece
            total[ys, xs] += weight
        return out / total.clamp_min(1e-12)

    # -- calls

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, x1: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """Frames at ``dt`` (B,) between pairs ``x0[i]``, ``x1[i]`` (B, 3, H, W)."""
        (x0, crop), (x1, _) = self._pad(x0.to(self.device)), self._pad(x1.to(self.device))
        out = self._blocked(lambda a, b: self._net(a, b, dt), x0, x1)
        return out[..., crop[0], crop[1]].clamp_(0.0, 1.0)

    @torch.inference_mode()
    def pair(self, x0: torch.Tensor, x1: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """For one pair (1, 3, H, W): a function from times (B,) to frames (B, 3, H, W).
        In one block the pair is encoded once; otherwise each call runs the whole network."""
        (x0, crop), (x1, _) = self._pad(x0.to(self.device)), self._pad(x1.to(self.device))
        if len(self._blocks(*x0.shape[-2:])) == 1:
            with self._memory(x0.shape):
                encoded = self.net.encode(x0.to(self.dtype), x1.to(self.dtype))

            def fn(dt: torch.Tensor) -> torch.Tensor:
                with self._memory((dt.numel(), *x0.shape[1:])):
                    return self.net.decode(encoded, dt.to(self.device, torch.float32)).float()
        else:
            def fn(dt: torch.Tensor) -> torch.Tensor:
                b = dt.numel()
                return self._blocked(lambda a, c: self._net(a.expand(b, -1, -1, -1), c.expand(b, -1, -1, -1), dt),
                                     x0, x1)

        @torch.inference_mode()
        def frames(dt: torch.Tensor) -> torch.Tensor:
            return fn(dt)[..., crop[0], crop[1]].clamp_(0.0, 1.0)

        return frames


# ---------------------------------------------------------------------------- engine


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def _to_numpy(frame: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(frame.reshape(3, *frame.shape[-2:]).permute(1, 2, 0).cpu().numpy(), np.float32)


class FilmEngine:
    """FILM frame interpolation (see the module docstring for every option)."""

    name = "film"

    def __init__(self, model: str | Path | None = None, film_mode: str | None = None, time_mode: str | None = None,
                 device: str | None = None, dtype: str | None = None, batch: int | None = None,
                 block_size: int | None = None, block_overlap: int | None = None,
                 pyramid_levels: int | None = None):
        spec = ENGINES.get(self.name)  # every option's default
        model, mode, time_mode = spec.value("model", model), spec.value("film_mode", film_mode), \
            spec.value("time_mode", time_mode)
        batch, block_size = spec.value("batch", batch), spec.value("block_size", block_size)
        block_overlap = spec.value("block_overlap", block_overlap)
        if mode == "torchscript":
            raise ConfigError("--film-mode torchscript was removed: it ran the code a TorchScript file carries; "
                              "--film-mode module (the default) reads the same file's weights without running it")
        if mode not in MODES:
            raise ConfigError(f"unknown --film-mode '{mode}' (choose from {', '.join(MODES)})")
        if time_mode not in TIME_MODES:
            raise ConfigError(f"unknown --time-mode '{time_mode}' (choose from {', '.join(TIME_MODES)})")
        if int(batch) < 1:
            raise ConfigError(f"--batch must be >= 1, got {batch}")
        self.model, self.mode, self.time_mode, self.batch = str(model), mode, time_mode, int(batch)
        self.path = weights_file(self.model)
        weights = load_film_weights(self.path, pyramid_levels)
        self.config: FilmConfig = weights.config
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device, supports_half=True)
        self.runner = FilmRunner(weights.network(), self.config.align, self.device, self.dtype, int(block_size),
                                 int(block_overlap))
        log.info("film: %s (%s layout, %s mode, %s timing) on %s %s", self.path.name, weights.layout, mode,
                 time_mode, self.device, str(self.dtype).removeprefix("torch."))

    def identity(self) -> dict:
        return {
            "engine": self.name, "version": VERSION, "weights_sha256": weights_sha256(self.path),
            "config": asdict(self.config), "mode": self.mode, "time_mode": self.time_mode,
            "dtype": str(self.dtype).removeprefix("torch."), "device": self.device.type,
            "block": [self.runner.block_size, self.runner.block_overlap],
        }

    def interpolate(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> Iterator[np.ndarray]:
        a, b, times = check_inputs(a, b, times)
        x0, x1 = _to_tensor(a), _to_tensor(b)
        if self.time_mode == "exact":
            return self._exact(x0, x1, times)
        return self._bisect(x0, x1, times)

    def _exact(self, x0: torch.Tensor, x1: torch.Tensor, times: list[float]) -> Iterator[np.ndarray]:
        frames_at = self.runner.pair(x0, x1)
        for i in range(0, len(times), self.batch):
            for frame in frames_at(torch.tensor(times[i:i + self.batch], dtype=torch.float32)):
                yield _to_numpy(frame)

    def _bisect(self, x0: torch.Tensor, x1: torch.Tensor, times: list[float]) -> Iterator[np.ndarray]:
        n = len(times)
        plan = bisection_plan(times)
        frames: dict[int, torch.Tensor] = {0: x0.to(self.runner.device), n + 1: x1.to(self.runner.device)}
        users = {k: 0 for k in range(n + 2)}  # steps that still need frame k as an end
        missing: dict[int, int] = {}  # step index -> ends not made yet
        waiting: dict[int, list[Step]] = {}  # frame index -> steps that wait for it
        ready: list[tuple[int, Step]] = []
        for step in plan:
            users[step.lo] += 1
            users[step.hi] += 1
            ends = [end for end in (step.lo, step.hi) if end not in frames]
            missing[step.index] = len(ends)
            for end in ends:
                waiting.setdefault(end, []).append(step)
            if not ends:
                ready.append((step.index, step))
        heapq.heapify(ready)
        shown = 0  # frames 1..shown have been yielded

        def release(k: int) -> None:
            if 0 < k <= shown and users[k] == 0:
                frames.pop(k, None)

        while ready:
            chunk = [heapq.heappop(ready)[1] for _ in range(min(self.batch, len(ready)))]
            out = self.runner(torch.cat([frames[s.lo] for s in chunk]), torch.cat([frames[s.hi] for s in chunk]),
                              torch.tensor([s.dt for s in chunk], dtype=torch.float32))
            for step, frame in zip(chunk, out):
                frames[step.index] = frame[None]
                for end in (step.lo, step.hi):
                    users[end] -= 1
                    release(end)
                for child in waiting.pop(step.index, []):
                    missing[child.index] -= 1
                    if missing[child.index] == 0:
                        heapq.heappush(ready, (child.index, child))
            while shown < n and shown + 1 in frames:
                shown += 1
                yield _to_numpy(frames[shown])
                release(shown)
        if shown != n:  # a plan that misses a time would be a bug here, not a user error
            raise RuntimeError(f"film bisection made {shown} of {n} frames")
