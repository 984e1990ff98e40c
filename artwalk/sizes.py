"""Frame sizes and named targets: ``2k``, ``1080p``, ``x2``, ``WxH``.

Targets are a scale (``x2``, ``1.5``), a name (``720p``, ``1080p``, ``2k`` =
2560x1440, ``1440p``, ``4k`` = 3840x2160) or ``WxH``. Names and ``WxH`` are boxes:
the frame is scaled to fit inside, keeping its aspect, so a 16:9 walk fills 2k
exactly and a square walk becomes 1440x1440. Sizes are rounded to even numbers
(video chroma needs it).
"""

from __future__ import annotations

import re

from artwalk import limits
from artwalk.errors import ConfigError

MIN_SIDE, MAX_SIDE = 16, 16384

NAMED_TARGETS = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "2k": (2560, 1440),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
}


def check_side(flag: str, value: int) -> None:
    """One line unless ``value`` is a frame side we can work with."""
    if not MIN_SIDE <= value <= MAX_SIDE:
        raise ConfigError(f"{flag} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {value}")


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def check_target(target: str) -> None:
    """One line unless ``target`` is a scale, a name or WxH (the frame size is not needed)."""
    target_size(target, 1024, 1024)  # (a scale's own range; the real frame's size is checked with it)


def target_size(target: str, width: int, height: int) -> tuple[int, int]:
    """The output (W, H) for a frame of (width, height) and a target string; at most
    :data:`artwalk.limits.MAX_FRAME_PIXELS` (8K UHD, about what H.264's highest level encodes)."""
    size = _target_size(target, width, height)
    if size[0] * size[1] > limits.MAX_FRAME_PIXELS:
        raise ConfigError(f"--target {target} makes {size[0]}x{size[1]} frames, {size[0] * size[1] / 1e6:.1f} Mpx, "
                          f"over the {limits.MAX_FRAME_PIXELS / 1e6:.1f} Mpx (7680x4320) a frame may have")
    return size


def _target_size(target: str, width: int, height: int) -> tuple[int, int]:
    check_side("the frame width", width)
    check_side("the frame height", height)
    t = str(target).strip().lower()
    if t in NAMED_TARGETS:
        box = NAMED_TARGETS[t]
    elif m := re.fullmatch(r"(\d+)\s*x\s*(\d+)", t):
        box = (int(m.group(1)), int(m.group(2)))
    elif m := re.fullmatch(r"x?(\d+(?:\.\d+)?)", t):
        scale = float(m.group(1))
        if not 0 < scale <= 16:
            raise ConfigError(f"--target: an upscale factor must be in (0, 16], got {target!r}")
        size = _even(width * scale), _even(height * scale)
        if min(size) < MIN_SIDE:
            raise ConfigError(f"--target {target} makes {size[0]}x{size[1]} frames, under {MIN_SIDE} pixels a side")
        if max(size) > MAX_SIDE:
            raise ConfigError(f"--target {target} makes {size[0]}x{size[1]} frames, over {MAX_SIDE} pixels a side")
        return size
    else:
        names = ", ".join(NAMED_TARGETS)
        raise ConfigError(f"--target: unknown target {target!r}: use a scale (x2), a name ({names}) or WxH")
    if min(box) < MIN_SIDE or max(box) > MAX_SIDE:
        raise ConfigError(f"--target {target!r} must be between {MIN_SIDE} and {MAX_SIDE} pixels a side")
    scale = min(box[0] / width, box[1] / height)
    size = min(_even(width * scale), box[0] - box[0] % 2), min(_even(height * scale), box[1] - box[1] % 2)
    if min(size) < MIN_SIDE:
        raise ConfigError(f"--target {target}: a {width}x{height} frame fits it at {size[0]}x{size[1]}, under "
                          f"{MIN_SIDE} pixels a side")
    return size
