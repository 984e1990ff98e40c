"""Motion engines: the registry, and the interface every engine has.

- ``name``; ``identity()``: a JSON-able dict of everything that changes its output
  bytes (algorithm version, settings, weights hash), part of every segment's cache key;
- ``interpolate(a, b, times)``: ``a`` and ``b`` are RGB float32 (H, W, 3) in [0, 1];
  yields one frame of the same shape per time in (0, 1), in order, as a generator.

Engines: ``flow`` (:mod:`frame_interpolation.flow`, the CPU default), ``blend``
(:mod:`frame_interpolation.blend`), ``zoom`` (:mod:`frame_interpolation.zoom`: an infinite
zoom's frames from its levels, the ``levels`` feature) and ``none`` (no motion: every frame
was diffused) need no weights; ``film``
(:mod:`frame_interpolation.film`) is imported only when asked for, so PyTorch is not
needed for the others.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

import numpy as np

from artwalk.engines import EngineRegistry, EngineSpec, ModelSlot
from artwalk.errors import ConfigError


class MotionEngine(Protocol):
    name: str

    def identity(self) -> dict: ...

    def interpolate(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> Iterator[np.ndarray]: ...


class NoneEngine:
    """No motion: for walks whose every frame was diffused (``--diffuse every``)."""

    name = "none"

    def identity(self) -> dict:
        return {"engine": "none"}

    def interpolate(self, a, b, times):
        raise ConfigError("motion engine none makes no motion frames: use --motion-engine flow or film")


ENGINES = EngineRegistry("motion", [
    EngineSpec("flow", "frame_interpolation.flow:FlowEngine",
               "bidirectional DIS optical flow, occlusion-aware warp and blend (classical, no weights)"),
    EngineSpec("blend", "frame_interpolation.blend:BlendEngine", "a plain cross-fade"),
    EngineSpec("zoom", "frame_interpolation.zoom:ZoomEngine",
               "an infinite zoom's frames, each composed from every level it shows at that level's resolution "
               "(artwalk zoom)", options=("seconds_per_level", "direction", "hold_start", "hold_end"),
               features=("levels",), defaults={"seconds_per_level": 2.0, "direction": "out", "hold_start": 0.0,
                                               "hold_end": 0.0}),
    EngineSpec("none", "frame_interpolation.engines:NoneEngine",
               "no motion frames: for prompt walks whose every frame was diffused (--diffuse every)"),
    EngineSpec(
        "film", "frame_interpolation.film:FilmEngine", "FILM frame interpolation (our PyTorch network)",
        options=("model", "film_mode", "time_mode", "device", "dtype", "batch", "block_size", "block_overlap"),
        requires=("torch", "safetensors"), install="pip install -r requirements/motion.txt",
        models=(ModelSlot("model", "film"),),
        defaults={"film_mode": "module", "time_mode": "bisect", "batch": 1, "block_size": 2560, "block_overlap": 256},
    ),
])
