"""Fit an input image to the walk's W x H.

Fit modes:

- ``cover``: scale to cover W x H, centre-crop the overflow (nothing added).
- ``contain-blur``: scale to fit inside; the bars are a blurred, dimmed cover of the
  same image (no hard edges, no black).
- ``contain-mirror``: scale to fit inside; the bars mirror the image's edges.

(``--square_crop`` is a walk of size min(W, H) square with ``cover``.)
"""

from __future__ import annotations

import cv2
import numpy as np

from artwalk.images import resize

FIT_MODES = ("cover", "contain-blur", "contain-mirror")


def _scaled(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return resize(rgb, max(1, round(w * scale)), max(1, round(h * scale)))


def cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    big = _scaled(rgb, max(width / w, height / h))
    bh, bw = big.shape[:2]
    bw, bh = max(bw, width), max(bh, height)  # rounding can leave one pixel short
    big = resize(big, bw, bh)
    y, x = (bh - height) // 2, (bw - width) // 2
    return np.ascontiguousarray(big[y : y + height, x : x + width])


def _inner(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = _scaled(rgb, min(width / w, height / h))
    sh, sw = small.shape[:2]
    return resize(small, min(sw, width), min(sh, height))


def contain_blur(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    inner = _inner(rgb, width, height)
    # Blur at a small size (fast, and the radius scales with the frame), then enlarge.
    bg = cover(rgb, max(8, width // 8), max(8, height // 8))
    bg = cv2.GaussianBlur(bg, (0, 0), sigmaX=max(bg.shape[:2]) / 24)
    out = resize(bg, width, height) * 0.7
    ih, iw = inner.shape[:2]
    y, x = (height - ih) // 2, (width - iw) // 2
    out[y : y + ih, x : x + iw] = inner
    return out.astype(np.float32)


def contain_mirror(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    inner = _inner(rgb, width, height)
    ih, iw = inner.shape[:2]
    top, left = (height - ih) // 2, (width - iw) // 2
    pad = ((top, height - ih - top), (left, width - iw - left), (0, 0))
    # 'symmetric' repeats as often as needed, so a thin panorama can fill a tall frame.
    return np.pad(inner, pad, mode="symmetric")


def conform(rgb: np.ndarray, width: int, height: int, fit: str) -> np.ndarray:
    """An RGB float image of exactly (height, width, 3)."""
    if fit == "cover":
        return cover(rgb, width, height)
    if fit == "contain-blur":
        return contain_blur(rgb, width, height)
    if fit == "contain-mirror":
        return contain_mirror(rgb, width, height)
    raise ValueError(f"unknown fit mode {fit!r}")
