"""Upscale engines: the registry, and the interface every engine has.

- ``name``; ``identity()``: a JSON-able dict of what changes output bytes (part of
  every frame's cache key);
- ``upscale_batch(rgbs, width, height)``: RGB float32 (H, W, 3) images in [0, 1] to
  exactly (height, width, 3) each. A neural engine runs its network (x2/x4) on the
  frames together and finishes with the core's Lanczos resize to the exact size.

An engine with the ``streamed`` feature is the core's resize, cheap enough to run while
the video is encoded: stage 3 then stores no frames (see :mod:`super_resolution`).

Engines: ``lanczos`` (:mod:`super_resolution.lanczos`, classical, no weights) and
``realesrgan`` (:mod:`super_resolution.realesrgan`, imported only when asked for,
so PyTorch is not needed for ``lanczos``).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from artwalk.engines import EngineRegistry, EngineSpec, ModelSlot


class UpscaleEngine(Protocol):
    name: str

    def identity(self) -> dict: ...

    def upscale_batch(self, rgbs: Sequence[np.ndarray], width: int, height: int) -> list[np.ndarray]: ...


ENGINES = EngineRegistry("upscale", [
    EngineSpec("lanczos", "super_resolution.lanczos:LanczosEngine", "Lanczos resize (classical, no weights)",
               features=("streamed",)),
    EngineSpec(
        "realesrgan", "super_resolution.realesrgan:RealESRGANEngine",
        "Real-ESRGAN RRDBNet / SRVGG-compact on the official weights, then Lanczos to the exact size",
        options=("model", "tile", "tile_pad", "dtype", "device", "denoise_strength"),
        requires=("torch", "safetensors"), install="pip install -r requirements/upscale.txt",
        models=(ModelSlot("model", "RealESRGAN_x4plus"),),
        defaults={"tile": 0, "denoise_strength": 0.5},
    ),
])
