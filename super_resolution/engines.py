"""Upscaling engines and target sizes.

Engine interface:

- ``name``; ``identity()``: JSON-able dict of what changes output bytes;
- ``upscale(rgb, width, height)``: RGB float32 (H, W, 3) in [0, 1] to exactly
  (height, width, 3). A neural engine runs its network (x2/x4) and finishes with
  Lanczos to the exact size;
- optionally ``upscale_batch(rgbs, width, height)``: the same for a list of frames at
  once (the stage uses it when ``batch`` > 1).

``create_engine(name, **options)`` passes the engine's options (model, tile, dtype,
device, ...) to its factory; the classical ``lanczos`` ignores them. Neural engines are
imported only when asked for (PyTorch is not needed for ``lanczos``).

Targets: a scale (``x2``, ``1.5``), a name (``720p``, ``1080p``, ``2k`` = 2560x1440,
``1440p``, ``4k`` = 3840x2160) or ``WxH``. Names and ``WxH`` are boxes: the frame is
scaled to fit inside, keeping its aspect, so a 16:9 walk fills 2k exactly and a square
walk becomes 1440x1440. Sizes are rounded to even numbers (video chroma needs it).
"""

from __future__ import annotations

import re
from typing import Callable, Protocol

import cv2
import numpy as np

from artwalk.errors import ConfigError

NAMED_TARGETS = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2k": (2560, 1440),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def target_size(target: str, width: int, height: int) -> tuple[int, int]:
    """The output (W, H) for a frame of (width, height) and a target string."""
    t = target.strip().lower()
    if t in NAMED_TARGETS:
        box = NAMED_TARGETS[t]
    elif m := re.fullmatch(r"(\d+)\s*x\s*(\d+)", t):
        box = (int(m.group(1)), int(m.group(2)))
    elif m := re.fullmatch(r"x?(\d+(?:\.\d+)?)", t):
        scale = float(m.group(1))
        if not 0 < scale <= 16:
            raise ConfigError(f"upscale factor must be in (0, 16], got {target!r}")
        return _even(width * scale), _even(height * scale)
    else:
        names = ", ".join(NAMED_TARGETS)
        raise ConfigError(f"unknown target {target!r}: use a scale (x2), a name ({names}) or WxH")
    if min(box) < 16 or max(box) > 16384:
        raise ConfigError(f"target {target!r} must be between 16 and 16384 pixels a side")
    scale = min(box[0] / width, box[1] / height)
    return min(_even(width * scale), box[0] - box[0] % 2), min(_even(height * scale), box[1] - box[1] % 2)


class UpscaleEngine(Protocol):
    name: str

    def identity(self) -> dict: ...

    def upscale(self, rgb: np.ndarray, width: int, height: int) -> np.ndarray: ...


class LanczosEngine:
    """Lanczos (8x8 kernel) to enlarge, area averaging to shrink."""

    name = "lanczos"

    def identity(self) -> dict:
        return {"engine": "lanczos", "version": 1}

    def upscale(self, rgb: np.ndarray, width: int, height: int) -> np.ndarray:
        h, w = rgb.shape[:2]
        if (w, h) == (width, height):
            return rgb
        interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LANCZOS4
        return np.clip(cv2.resize(rgb, (width, height), interpolation=interp), 0.0, 1.0)


def _lanczos(**options) -> UpscaleEngine:
    return LanczosEngine()


def _realesrgan(**options) -> UpscaleEngine:
    try:
        from super_resolution.realesrgan import RealESRGANEngine
    except ImportError as exc:
        raise ConfigError(f"engine realesrgan needs PyTorch and safetensors ({exc}): "
                          "pip install torch safetensors") from None

    return RealESRGANEngine(**options)


ENGINES: dict[str, Callable[..., UpscaleEngine]] = {"lanczos": _lanczos, "realesrgan": _realesrgan}


def create_engine(name: str, **options) -> UpscaleEngine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown upscale engine '{name}' (available here: {', '.join(ENGINES)})") from None
    return factory(**options)
