"""The geometry of an infinite zoom: levels, the frames between them, and how a frame is composed.

Level k is a W x H picture of a square-ish window of the world Z^k wide (Z, the zoom
factor, > 1): level k+1 holds level k shrunk by Z in its centre, with a border around it.
A frame at position p (a real number, 0 <= p <= L - 1 for L levels) shows a window Z^p
wide, so consecutive frames n = round(fps x seconds per level) apart in p differ by the
same scale ratio Z^(1/n) and share their centre::

    zoom out: p = 0, 1/n, 2/n, ..., L - 1      (L - 1) n + 1 frames
    --loop:   p = 0, ..., L - 1/n              the last level blends back into level 0
    --direction in: the same frames, reversed

A frame is composed (:func:`compose`) from every level visible in it, outermost first:
level j covers the centred rectangle Z^(j - p) of the frame, and is sampled at its own
resolution: the outermost (magnified, j = ceil(p)) with a bicubic warp, each inner one
(minified) from its mipmap, anti-alias blurred and bicubic (see :func:`sample`), and blended over what is already
there with the feathered ramp it was pasted with when the levels were made
(:func:`edge_ramp`). At p = k the frame is level k itself, up to its edges; just after it, the
next level out shows as a margin around level k, and level k's ramp is never wider than that
margin (on each axis): the seam widens with the margin, from nothing at p = k to the pasted
feather, so no frame shows a hard edge between two levels and none jumps when the outermost
level changes. Inner levels under 2 pixels are left out.

``--loop``: a last, virtual level L is level 0 again; over the last level the inner levels
fade out, so the frame at p = L would be level 0, which is frame 0: it is left out and
the video loops without a seam.

:func:`naive` is the crop-and-resize zoom others make (one level's centre crop blown up),
kept for the benchmark and the sharpness test.

Images are RGB uint8 (H, W, 3); positions are floats; rectangles are (x0, y0, x1, y1) in
pixel edges (pixel i spans [i, i + 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from artwalk.errors import ConfigError

DIRECTIONS = ("out", "in")
MIN_LEVEL_PIXELS = 2.0  # inner levels narrower than this in a frame are not drawn
FADE_FROM = 1.8  # a minification that leaves more than this after a halving fades into the next halving


def frames_per_level(fps: float, seconds: float) -> int:
    """n = round(fps x seconds): the frames from one level to the next."""
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(f"--seconds-per-level must be a positive number of seconds, got {seconds:g}")
    n = round(fps * seconds)
    if n < 1:
        raise ConfigError(f"--seconds-per-level {seconds:g} at {fps:g} fps is under one frame per level")
    return n


def check_factor(factor: float) -> None:
    if not math.isfinite(factor) or not 1.0 < factor <= 16.0:
        raise ConfigError(f"--zoom-factor must be more than 1 and at most 16, got {factor:g}")


@dataclass(frozen=True)
class ZoomTimeline:
    """The unique frames' positions (zoom-out order) and the video's frames as indices into them."""

    positions: list[float]
    timeline: list[int]
    per_level: int

    @property
    def frames(self) -> int:
        return len(self.timeline)


def zoom_timeline(levels: int, per_level: int, loop: bool = False, direction: str = "out", hold_start: int = 0,
                  hold_end: int = 0) -> ZoomTimeline:
    """Positions p = i / n of every frame, and the timeline: reversed for ``in``, the first
    frame held ``hold_start`` more frames and the last ``hold_end`` more."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"--direction must be out or in, got {direction!r}")
    if levels < 1 or (levels < 2 and not loop):
        raise ConfigError(f"a zoom needs at least 2 levels, got {levels}")
    count = levels * per_level if loop else (levels - 1) * per_level + 1
    positions = [i / per_level for i in range(count)]
    order = list(range(count))
    if direction == "in":
        order.reverse()
    timeline = [order[0]] * max(0, hold_start) + order + [order[-1]] * max(0, hold_end)
    return ZoomTimeline(positions, timeline, per_level)


def hold_frames(fps: float, seconds: float, flag: str) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{flag} must be 0 or more seconds, got {seconds:g}")
    return round(fps * seconds)


# ---------------------------------------------------------------------------------------------
# Sampling a level into a frame


class Mipmap:
    """An image and its halvings (each pixel the mean of 2 x 2), made when first asked for."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.levels = [np.ascontiguousarray(rgb)]
        self._blur: tuple | None = None

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.levels[0].shape[:2]
        return w, h

    def blurred(self, m: int, sigma: float) -> np.ndarray:
        """Halving ``m`` blurred by ``sigma`` (its pixels); the last one asked for is kept, as a
        frame asks for it once per strip."""
        if sigma <= 0.05:
            return self.get(m)
        key = (m, round(sigma, 6))
        if self._blur is None or self._blur[0] != key:
            self._blur = (key, cv2.GaussianBlur(self.get(m), (0, 0), sigma))
        return self._blur[1]

    def get(self, m: int) -> np.ndarray:
        while len(self.levels) <= m:
            last = self.levels[-1]
            h, w = last.shape[:2]
            if w < 2 and h < 2:
                return last
            even = np.pad(last, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # pads at the far side only
            self.levels.append(cv2.resize(even, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
        return self.levels[m]


def level_rect(width: int, height: int, scale: float) -> tuple[float, float, float, float]:
    """The centred rectangle a picture covers in a ``width`` x ``height`` frame at ``scale``
    (1: the whole frame)."""
    w, h = width * scale, height * scale
    return (width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2


def _roi(rect, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, math.floor(rect[0])), max(0, math.floor(rect[1]))
    x1, y1 = min(width, math.ceil(rect[2])), min(height, math.ceil(rect[3]))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _warp(src: np.ndarray, ax: float, bx: float, ay: float, by: float, roi, interpolation: int) -> np.ndarray:
    """``src`` sampled at u = ax x + bx, v = ay y + by for the frame pixels x, y of ``roi``."""
    x0, y0, x1, y1 = roi
    if abs(ax - 1) < 1e-12 and abs(ay - 1) < 1e-12:  # a whole-pixel shift (the identity): copied exactly
        u, v = bx + x0, by + y0
        if abs(u - round(u)) < 1e-9 and abs(v - round(v)) < 1e-9:
            u, v = round(u), round(v)
            h, w = src.shape[:2]
            if 0 <= u and 0 <= v and u + x1 - x0 <= w and v + y1 - y0 <= h:
                return src[v : v + y1 - y0, u : u + x1 - x0]
    matrix = np.array([[ax, 0.0, bx + ax * x0], [0.0, ay, by + ay * y0]])
    return cv2.warpAffine(src, matrix, (x1 - x0, y1 - y0), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def sample(level: Mipmap, width: int, height: int, scale: float, roi=None) -> tuple[tuple, np.ndarray]:
    """``(roi, patch)``: the part of a ``width`` x ``height`` frame that ``level`` covers at
    ``scale``, sampled at the level's own resolution (uint8). Bicubic where it is magnified;
    where it is minified by s, from the mipmap's halving m = floor(log2 s), blurred just
    enough for the rest of the minification r = s / 2^m not to alias, then bicubic; as r
    nears 2 this fades into halving m + 1, so the filter changes smoothly with s."""
    rect = level_rect(width, height, scale)
    roi = roi or _roi(rect, width, height)
    if roi is None:
        return None, None
    lw, lh = level.size
    ax, ay = lw / (width * scale), lh / (height * scale)  # level pixels per frame pixel
    # u = (x + 0.5 - width / 2) * ax + lw / 2 - 0.5 for pixel centres
    bx, by = (0.5 - width / 2) * ax + lw / 2 - 0.5, (0.5 - height / 2) * ay + lh / 2 - 0.5
    shrink = max(ax, ay)
    if shrink <= 1.0 + 1e-9:
        return roi, _warp(level.get(0), ax, bx, ay, by, roi, cv2.INTER_CUBIC)
    m = max(0, math.floor(math.log2(shrink) + 1e-9))
    rest = shrink / 2.0**m  # in [1, 2)

    def at(k: int, sigma: float) -> np.ndarray:
        f = 2.0 ** k  # mip pixel = (level pixel + 0.5) / f - 0.5
        return _warp(level.blurred(k, sigma), ax / f, (bx + 0.5) / f - 0.5, ay / f, (by + 0.5) / f - 0.5, roi,
                     cv2.INTER_CUBIC)

    patch = at(m, 0.5 * math.sqrt(rest * rest - 1.0))
    fade = (rest - FADE_FROM) / (2.0 - FADE_FROM)
    if fade > 0.0:  # into the next halving, which at rest = 2 is sampled one to one
        patch = cv2.addWeighted(patch, 1.0 - fade, at(m + 1, 0.0), fade, 0.0)
    return roi, patch


def blend(frame: np.ndarray, roi, patch: np.ndarray, weight: np.ndarray) -> None:
    """``frame[roi] = weight * patch + (1 - weight) * frame[roi]``, in place (uint8)."""
    x0, y0, x1, y1 = roi
    region = frame[y0:y1, x0:x1]
    region[...] = cv2.blendLinear(np.ascontiguousarray(patch), np.ascontiguousarray(region), weight, 1.0 - weight)


def edge_ramp(roi, rect, feather: float | tuple[float, float]) -> np.ndarray:
    """The weight of a picture pasted into ``rect``, over the pixels of ``roi``: 0 at the
    rectangle's edge, rising linearly to 1 at ``feather`` pixels inside it (float32 (h, w));
    ``feather`` may be a pair, the ramp's widths at the left and right edges and at the top
    and bottom ones."""
    fx, fy = (feather, feather) if np.isscalar(feather) else feather
    x0, y0, x1, y1 = roi
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    dx = np.minimum(xs - rect[0], rect[2] - xs)
    dy = np.minimum(ys - rect[1], rect[3] - ys)
    rx = np.clip(dx / max(float(fx), 1e-6), 0.0, 1.0).astype(np.float32)
    ry = np.clip(dy / max(float(fy), 1e-6), 0.0, 1.0).astype(np.float32)
    return np.minimum(ry[:, None], rx[None, :])


def paste(inner: np.ndarray, canvas: np.ndarray, factor: float, feather: float) -> tuple[np.ndarray, np.ndarray]:
    """``inner`` shrunk by ``factor`` into the centre of ``canvas`` (both uint8 of one size),
    blended over ``feather`` pixels: ``(image uint8, weight float32 (H, W))``, where weight is
    the inner picture's share of each pixel (the rest is the canvas's)."""
    height, width = canvas.shape[:2]
    weight = np.zeros((height, width), np.float32)
    out = np.array(canvas, dtype=np.uint8)
    roi, patch = sample(Mipmap(inner), width, height, 1.0 / factor)
    x0, y0, x1, y1 = roi
    weight[y0:y1, x0:x1] = edge_ramp(roi, level_rect(width, height, 1.0 / factor), feather)
    blend(out, roi, patch, weight[y0:y1, x0:x1])
    return out, weight


# ---------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class ZoomGeometry:
    factor: float  # Z
    feather: float  # the pasted border's ramp, as a fraction of the level's width
    levels: int  # L, the real levels (a loop adds level 0 again as level L)
    loop: bool = False


def compose(levels: Sequence[Mipmap], p: float, geometry: ZoomGeometry, size: tuple[int, int]) -> np.ndarray:
    """The frame at position ``p`` (uint8 (H, W, 3), ``size`` = (W, H)); ``levels`` are the
    L levels (a loop's level L is levels[0]). Each level is drawn outermost first, and only
    where the next one in does not cover it fully."""
    width, height = size
    z, count = geometry.factor, geometry.levels
    last = count if geometry.loop else count - 1
    if not 0.0 <= p <= last + 1e-9:
        raise ValueError(f"position {p} outside [0, {last}]")
    fade = 1.0 if not geometry.loop or p <= count - 1 else count - p  # the loop's inner levels fade out
    outer = min(last, math.ceil(p - 1e-9))
    drawn = [outer]
    while drawn[-1] > 0:
        scale = z ** (drawn[-1] - 1 - p)
        if width * scale < MIN_LEVEL_PIXELS or height * scale < MIN_LEVEL_PIXELS:
            break
        drawn.append(drawn[-1] - 1)
    frame = np.zeros((height, width, 3), np.uint8)
    for i, j in enumerate(drawn):
        scale = z ** (j - p)
        rect = level_rect(width, height, scale)
        roi = (0, 0, width, height) if i == 0 else _roi(rect, width, height)
        if roi is None:
            break
        feather = geometry.feather * width * z ** (j + 1 - p)  # its ramp, pasted at level j+1, in frame pixels
        hole = None
        if i + 1 < len(drawn) and fade == 1.0:  # where the next level in covers this one fully
            inner = level_rect(width, height, scale / z)
            inset = max(geometry.feather * width * z ** (j - p), 1e-6)  # the next level's ramp, as edge_ramp
            hole = (math.ceil(inner[0] + inset - 0.5), math.ceil(inner[1] + inset - 0.5),
                    math.floor(inner[2] - inset - 0.5) + 1, math.floor(inner[3] - inset - 0.5) + 1)
        source = levels[0] if j == count else levels[j]
        # The ramp is no wider than the margin between the level's edge and the frame's: just
        # after p = j, where level j fills the frame, the seam is as narrow as the margin of the
        # next level out that the frame shows, and widens with it (never a hard edge).
        ramp_width = (min(feather, rect[0]), min(feather, rect[1]))
        for strip in _strips(roi, hole):
            _, patch = sample(source, width, height, scale, roi=strip)
            if i == 0:
                x0, y0, x1, y1 = strip
                frame[y0:y1, x0:x1] = patch
            else:
                blend(frame, strip, patch, edge_ramp(strip, rect, ramp_width) * fade)
    return frame


def _strips(roi, hole) -> list[tuple[int, int, int, int]]:
    """``roi`` less the rectangle ``hole``, as up to four rectangles."""
    x0, y0, x1, y1 = roi
    if hole is None:
        return [roi]
    hx0, hy0 = max(x0, hole[0]), max(y0, hole[1])
    hx1, hy1 = min(x1, hole[2]), min(y1, hole[3])
    if hx1 <= hx0 or hy1 <= hy0:
        return [roi]
    parts = [(x0, y0, x1, hy0), (x0, hy1, x1, y1), (x0, hy0, hx0, hy1), (hx1, hy0, x1, hy1)]
    return [r for r in parts if r[2] > r[0] and r[3] > r[1]]


def naive(levels: Sequence[np.ndarray], p: float, factor: float, size: tuple[int, int]) -> np.ndarray:
    """The crop-and-resize zoom: the frame at ``p`` cut from the one level that holds it
    (the next one out, floor(p) + 1, the last at the end) and resized to ``size``."""
    width, height = size
    k = min(len(levels) - 1, math.floor(p) + 1)
    src = levels[k]
    lh, lw = src.shape[:2]
    scale = factor ** (p - k)  # the share of level k the frame shows
    cw, ch = lw * scale, lh * scale
    x0, y0 = (lw - cw) / 2, (lh - ch) / 2
    ax, ay = cw / width, ch / height
    matrix = np.array([[ax, 0.0, x0 + 0.5 * ax - 0.5], [0.0, ay, y0 + 0.5 * ay - 0.5]])
    return cv2.warpAffine(src, matrix, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
