"""Outpainting geometry: contain-fit an image, and the feathered mask of the added bars.

With ``--outpaint`` an original whose aspect differs from W x H is not cropped or
padded with a classical fill: it is scaled to fit inside W x H (``contain``), and
the bars around it are painted by the engine's inpainting model::

    +---------------------------+     mask (what the model paints):
    |  bar  |  original  |  bar |       1        in the bars (the added area)
    |       |            |      |       1 -> 0   a ramp of ``feather`` pixels just
    +---------------------------+                inside the original's edges
                                          0        everywhere else in the original

The final image is ``mask * painted + (1 - mask) * canvas``: wherever the mask is 0
the original's pixels are kept exactly, and the seam is blended over ``feather``
pixels. The canvas's bars start as the blurred fill of ``--fit contain-blur``, so a
model that peeks under the mask sees the image's own colours, not black.

All images are RGB float32 (H, W, 3) in [0, 1]; masks are float32 (H, W) in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from diffusion_models.conform import conform


def feather_pixels(width: int, height: int) -> int:
    """The seam's width: about 2% of the shorter side (15 px at 1280x720), at least 1."""
    return max(1, round(min(width, height) / 48))


def contain_box(src_width: int, src_height: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of an image of the source size scaled to fit inside width x height.

    The same rounding as ``conform``'s contain modes, so the box is where they put
    the image.
    """
    scale = min(width / src_width, height / src_height)
    w = min(max(1, round(src_width * scale)), width)
    h = min(max(1, round(src_height * scale)), height)
    return (width - w) // 2, (height - h) // 2, w, h


def outpaint_mask(width: int, height: int, box: tuple[int, int, int, int], feather: int) -> np.ndarray:
    """1 outside ``box`` (the added area), ramping to 0 over ``feather`` pixels inside it.

    A side of the box that touches the frame has no bar and no ramp: the ramp only
    runs along edges where something was added.
    """
    x, y, w, h = box
    mask = np.ones((height, width), dtype=np.float32)
    if w <= 0 or h <= 0:
        return mask
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    big = np.float32(1e9)
    # Distance (in pixels, the edge pixel being 0) from each inside pixel to each added side.
    dist = np.full((h, w), big, dtype=np.float32)
    if x > 0:
        dist = np.minimum(dist, xs)
    if x + w < width:
        dist = np.minimum(dist, (w - 1) - xs)
    if y > 0:
        dist = np.minimum(dist, ys)
    if y + h < height:
        dist = np.minimum(dist, (h - 1) - ys)
    if feather > 0:
        inside = np.clip(1.0 - (dist + 1.0) / (feather + 1.0), 0.0, 1.0)
    else:
        inside = np.zeros((h, w), dtype=np.float32)
    mask[y : y + h, x : x + w] = inside
    return mask


def prepare(rgb: np.ndarray, width: int, height: int, feather: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, mask): the image contain-fitted on a blurred fill, and what to paint.

    An image that already has the walk's aspect comes back filling the frame with
    an all-zero mask (nothing to paint).
    """
    if feather is None:
        feather = feather_pixels(width, height)
    canvas = conform(rgb, width, height, "contain-blur")
    box = contain_box(rgb.shape[1], rgb.shape[0], width, height)
    if box == (0, 0, width, height):
        return canvas, np.zeros((height, width), dtype=np.float32)
    return canvas, outpaint_mask(width, height, box, feather)


def composite(canvas: np.ndarray, painted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * painted + (1 - mask) * canvas``; exactly the canvas where the mask is 0."""
    m = mask[..., None]
    out = painted.astype(np.float32) * m + canvas.astype(np.float32) * (1.0 - m)
    out[mask == 0] = canvas[mask == 0]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def outpaint(
    rgb: np.ndarray, width: int, height: int,
    paint: Callable[[np.ndarray, np.ndarray], np.ndarray], feather: int | None = None,
) -> np.ndarray:
    """Contain-fit ``rgb`` into width x height and let ``paint(canvas, region)`` fill the bars.

    ``region`` is the boolean (H, W) array of pixels the model may repaint (the
    mask's non-zero part); ``paint`` returns a full (H, W, 3) image, of which only
    that region is used, blended over the feathered seam.
    """
    canvas, mask = prepare(rgb, width, height, feather)
    if not mask.any():
        return canvas
    painted = paint(canvas, mask > 0)
    if painted.shape != canvas.shape:
        raise ValueError(f"outpaint: the model returned {painted.shape}, expected {canvas.shape}")
    return composite(canvas, painted, mask)
