"""Classical motion interpolation: bidirectional DIS optical flow, occlusion-aware warping.

Once per segment, at a reduced "flow resolution" (flows are smooth; this is speed):

1. DIS optical flow (OpenCV, coarse-to-fine) both ways on greyscale: ``F01`` takes a pixel
   of ``a`` to its match in ``b``, ``F10`` the reverse.
2. Reliability of every vector: forward-backward consistency
   (``F01(x) + F10(x + F01(x)) ~ 0``), brightness constancy, a target inside the frame.
3. Camera motion: a similarity (pan, zoom, rotation) fitted robustly to the reliable
   vectors. DIS drifts by pixels in flat areas and near the borders, while the fit pools
   thousands of vectors; so a vector keeps its own deviation from the camera (the
   *residual*) only where it is reliable and the images clearly favour it over the
   camera. Where they cannot tell the two apart (flat areas), or the vector is
   unreliable, the residual is interpolated from reliable neighbours (push-pull): content
   that leaves the frame or gets covered keeps a plausible motion instead of DIS's guess.
4. Occlusion: the checks of step 2 repeated on the completed motions; a pixel of ``a``
   that fails has content that ``b`` does not show (covered, or out of the frame).
5. Confidence: the share of nearby pixels whose motion is reliable, among those whose
   match the images can check: textured around the pixel and around its match (a flat
   area matches any motion), and landing inside the frame (a pixel that leaves it has no
   match to check); where few nearby pixels can be checked, the share leans on the whole
   frame's. (Counting flat matches and pixels leaving the frame as explained made
   confident motion out of nothing between a flat-coloured drawing and a photo: flat
   colours that happened to match the photo's greys, and a camera fitted to them that
   pushed the borders out of the frame.) Where the share is low, as between two
   unrelated pictures, motion and occlusion fade out and the engine degrades smoothly to
   a cross-fade instead of tearing.

Per time ``t``, cheaply, so that a segment streams:

6. Each pixel ``x`` of ``a`` has moved by ``D_t(x) = S_t(x) - x + t r(x)``, times its
   confidence: the camera ``S`` with its centre panning at constant speed and zoom and
   rotation at a constant rate (``z ** t``: a 1.06x zoom is sqrt(1.06)x at t = 0.5), the
   residual ``r`` at constant velocity. Backward warping needs the inverse, the offset
   ``g`` with ``y + g(y)`` the source in ``a`` of output pixel ``y``:
   ``g(y) = -D_t(y + g(y))``, solved by fixed-point iteration. Likewise ``b`` with ``1 - t``.
7. ``a`` and ``b`` are sampled at full resolution (``cv2.remap``) and blended with
   weights ``1 - t`` and ``t``, except that a source outside its frame has no weight,
   and content occluded in one keyframe takes over from the other as time leaves that
   keyframe: ``a``'s weight is ``(1 - t) (1 - t o)`` where ``b``'s source is content ``a``
   does not show (occlusion ``o``), likewise ``b``'s with ``1 - t``. So each frame tends
   to its keyframe as ``t`` nears it, and the change per frame follows the timing: no
   jump into the first motion frame or out of the last one. (Suppressing a keyframe
   whole wherever the other shows content it does not, as before, made the frame at
   ``t`` = 0.02 already show that content in full.)

Images are RGB float32 in [0, 1], (H, W, 3) (greyscale for DIS, never BGR); flows and
offsets are (h, w, 2) float32 (x, y) pixel offsets at flow resolution.
"""

from __future__ import annotations

import cmath
import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Forward-backward consistency (Sundaram et al. 2010): |F01 + F10w|^2 <= a(|F01|^2 + |F10w|^2) + b.
_FB_ALPHA = 0.01
_FB_BETA = 0.5
# Brightness constancy: largest grey difference (of 1) between a pixel and its match.
_MAX_GREY_ERROR = 0.08
# Robust similarity fit: Cauchy scale (flow pixels) and share of inliers it must explain.
_FIT_SCALE = 1.0
_FIT_MIN_INLIERS = 0.5
# Camera or DIS: windowed grey errors compared, and the least mean grey difference that
# tells the two hypotheses apart.
_MATCH_WINDOW = 7
_MIN_TELLING = 0.01
# Confidence: Gaussian window (share of the image diagonal) and the ramp from "no motion
# at all" to "full motion" over the local share of reliable pixels among those that count.
_CONF_SIGMA = 0.08
_CONF_LOW, _CONF_HIGH = 0.3, 0.7
# A pixel counts fully where the grey gradient (per pixel) around it and around its match is
# this steep: a match 2 px off then misses by _MAX_GREY_ERROR. Where few pixels count, the
# local share leans on the whole frame's: this share of counting pixels in the window weighs
# as much as the whole frame's verdict.
_TEXTURE_GRADIENT = _MAX_GREY_ERROR / 2
_PRIOR = 0.1
# Blend weights sum to this (see _Segment.frame).
_BLEND_SCALE = 1000.0
# Fixed-point iterations that invert a displacement field.
_INVERT_ITERS = 2
# Flow resolution: a long side of at least _MIN_FLOW_SIDE and a short side of at least
# _MIN_SIDE (two DIS patches), or the frame's own size; frames with a short side under
# _MIN_SIDE are cross-faded.
_MIN_FLOW_SIDE = 64
_MIN_SIDE = 16


def check_inputs(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Check the engine contract (raises ValueError); returns float32 keyframes and the times as floats."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"keyframe a has shape {a.shape}; expected (H, W, 3) RGB")
    if a.shape != b.shape:
        raise ValueError(f"keyframes differ in shape: a {a.shape}, b {b.shape}; resize them to one size first")
    if not (np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating)):
        raise ValueError(f"keyframes are {a.dtype} and {b.dtype}; expected float RGB in [0, 1] (divide uint8 by 255)")
    times = [float(t) for t in times]
    for prev, t in zip([0.0] + times, times):
        if not 0.0 < t < 1.0 or t <= prev:
            raise ValueError(f"times must rise strictly inside (0, 1); got {t} after {prev}")
    return np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32), times


def _grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 pixel coordinates (x, y): a remap map that samples nothing moved."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([xs, ys])


def _inside(pos: np.ndarray, lo: tuple[float, float] = (0.0, 0.0), hi: tuple[float, float] | None = None) -> np.ndarray:
    """1 where an (x, y) position map points inside [lo, hi] (default: its own frame), else 0 (float32)."""
    if hi is None:
        hi = (pos.shape[1] - 1.0, pos.shape[0] - 1.0)
    return cv2.inRange(pos, lo, hi).astype(np.float32) / 255.0


def _norm2(field: np.ndarray) -> np.ndarray:
    """Squared length of each vector of an (h, w, 2) field."""
    return field[..., 0] ** 2 + field[..., 1] ** 2


def _complex(field: np.ndarray) -> np.ndarray:
    """Vectors (x, y) as complex numbers x + iy (float64)."""
    return field[..., 0].astype(np.float64) + 1j * field[..., 1]


def _fill(field: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Push-pull interpolation: ``field`` where ``known`` is 1, a smooth fill elsewhere.

    Normalised convolution on a Gaussian pyramid: each level averages the known values;
    going back up, a pixel keeps its own level's average where enough of its neighbours
    are known (a quarter suffices) and takes the coarser level's value where few are.
    """
    num, den = cv2.pyrDown(field * known[..., None]), cv2.pyrDown(known)
    levels = []
    while min(den.shape) > 8:
        levels.append((num, den))
        num, den = cv2.pyrDown(num), cv2.pyrDown(den)
    est = num / np.maximum(den, 1e-6)[..., None]
    for num, den in reversed(levels):
        up = cv2.pyrUp(est, dstsize=(den.shape[1], den.shape[0]))
        trust = np.minimum(den * 4.0, 1.0)[..., None]
        est = trust * (num / np.maximum(den, 1e-6)[..., None]) + (1.0 - trust) * up
    up = cv2.pyrUp(est, dstsize=(known.shape[1], known.shape[0]))
    return np.where(known[..., None] > 0, field, up)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large ``sigma`` (pixels), done on a downscaled copy for speed."""
    h, w = img.shape[:2]
    f = min(1.0, 4.0 / sigma)  # keep about 4 samples per sigma
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma * f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class _Similarity:
    """A camera motion: zoom and rotation ``z`` about the frame centre ``o``, then a pan ``pan``.

    Points are complex numbers ``x + iy``: ``S(p) = o + z (p - o) + pan``.
    """

    o: complex
    z: complex = 1.0
    pan: complex = 0.0

    @staticmethod
    def fit(o: complex, p: np.ndarray, q: np.ndarray) -> _Similarity | None:
        """Robust least squares (IRLS, Cauchy weights) for ``q ~ S(p)``; None if it explains too little."""
        if len(p) < 16:
            return None
        wts = np.ones(len(p))
        for _ in range(6):
            pm = np.sum(wts * p) / np.sum(wts)
            qm = np.sum(wts * q) / np.sum(wts)
            z = np.sum(wts * np.conj(p - pm) * (q - qm)) / max(np.sum(wts * np.abs(p - pm) ** 2), 1e-12)
            res = np.abs(q - qm - z * (p - pm))
            wts = 1.0 / (1.0 + (res / _FIT_SCALE) ** 2)
        if np.mean(res < _FIT_SCALE) < _FIT_MIN_INLIERS or abs(z) < 1e-3:
            return None
        return _Similarity(o, complex(z), complex(qm + z * (o - pm) - o))

    def at(self, t: float) -> _Similarity:
        """The motion run for time ``t`` of 1: the centre pans at constant speed, zoom and
        rotation go at a constant rate (``z ** t``: a 1.06x zoom is sqrt(1.06)x at t = 0.5)."""
        return _Similarity(self.o, cmath.exp(t * cmath.log(self.z)), t * self.pan)

    def displacement(self, grid: np.ndarray) -> np.ndarray:
        """``S(p) - p = (z - 1) p + pan - (z - 1) o`` at every (x, y) of ``grid``, (h, w, 2) float32."""
        zm, shift = self.z - 1.0, self.pan - (self.z - 1.0) * self.o
        return cv2.transform(grid, np.array([[zm.real, -zm.imag, shift.real], [zm.imag, zm.real, shift.imag]]))


def _reliable(flow: np.ndarray, back: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """1 where a vector of ``flow`` (src -> dst) is trustworthy, given ``back`` (dst -> src).

    Trustworthy: forward-backward consistent, brightness-constant and landing inside the frame.
    """
    target = grid + flow
    back_at_target = cv2.remap(back, target, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fb_error = _norm2(flow + back_at_target)
    fb_bound = _FB_ALPHA * (_norm2(flow) + _norm2(back_at_target)) + _FB_BETA
    consistent = (fb_error <= fb_bound) & (_grey_error(flow, src, dst, grid) <= _MAX_GREY_ERROR)
    return consistent.astype(np.float32) * _inside(target)


def _grey_error(flow: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """|src(x) - dst(x + flow(x))| per pixel."""
    return np.abs(src - cv2.remap(dst, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def _camera_and_residual(
    flow: np.ndarray, back: np.ndarray, src: np.ndarray, dst: np.ndarray, grid: np.ndarray
) -> tuple[_Similarity, np.ndarray]:
    """Split ``flow`` (src -> dst) into a camera similarity and a completed residual (step 3)."""
    reliable = _reliable(flow, back, src, dst, grid)
    step = max(1, round(math.sqrt(reliable.size / 20000)))
    pick = reliable[::step, ::step] > 0
    p = _complex(grid[::step, ::step][pick])
    q = p + _complex(flow[::step, ::step][pick])
    h, w = reliable.shape
    centre = complex((w - 1) / 2, (h - 1) / 2)
    camera = _Similarity.fit(centre, p, q) or _Similarity(centre)

    camera_flow = camera.displacement(grid)
    residual = flow - camera_flow

    def local_mean(x: np.ndarray) -> np.ndarray:
        return cv2.blur(x, (_MATCH_WINDOW, _MATCH_WINDOW))

    def match(f: np.ndarray) -> np.ndarray:
        return cv2.remap(dst, grid + f, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # Camera or DIS? Each hypothesis predicts what dst shows at a pixel's match. Where the
    # predictions hardly differ though the residual is over a pixel (a flat area), the images
    # cannot tell: that is left to the fill. Elsewhere the smaller grey error wins, judged
    # relative to the difference between the predictions (|gain| <= telling). Where the
    # camera moves a pixel out of the frame, its error says nothing: keep the camera.
    by_camera, by_dis = match(camera_flow), match(flow)
    telling = local_mean(np.abs(by_camera - by_dis))
    gain = local_mean(np.abs(src - by_camera)) - local_mean(np.abs(src - by_dis))
    own = np.clip(2.0 * gain / np.maximum(telling, 1e-6) - 0.5, 0.0, 1.0) * _inside(grid + camera_flow)
    known = reliable * ((telling > _MIN_TELLING) | (_norm2(residual) <= 1.0))
    return camera, _fill(residual * own[..., None], known)


@dataclass
class _Motion:
    """One keyframe's motion towards the other, at flow resolution."""

    camera: _Similarity  # global part
    residual: np.ndarray  # (h, w, 2): the rest of the flow, times confidence
    confidence: np.ndarray  # (h, w, 2) in [0, 1], equal channels: 0 fades motion out (cross-fade)
    occluded: np.ndarray  # (h, w) in [0, 1]: content not in the other keyframe (times confidence)

    def displacement(self, t: float, grid: np.ndarray) -> np.ndarray:
        """How far each pixel has moved by time ``t`` (0 = this keyframe, 1 = the other)."""
        camera = cv2.multiply(self.camera.at(t).displacement(grid), self.confidence)
        return cv2.scaleAdd(self.residual, t, camera)


def _textured(grey: np.ndarray) -> np.ndarray:
    """In [0, 1]: how well a match at each pixel can be checked, from the mean grey gradient
    around it (0 in a flat area, where any motion matches; 1 from _TEXTURE_GRADIENT up)."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    gradient = cv2.blur(cv2.magnitude(gx, gy), (_MATCH_WINDOW, _MATCH_WINDOW))
    return np.clip(gradient / (8.0 * _TEXTURE_GRADIENT), 0.0, 1.0)  # Sobel weighs a unit gradient 8


def _motions(
    f01: np.ndarray, f10: np.ndarray, grey_a: np.ndarray, grey_b: np.ndarray, grid: np.ndarray
) -> tuple[_Motion, _Motion]:
    """Both keyframes' motions from the raw DIS flows (a -> b and b -> a)."""
    cam0, res0 = _camera_and_residual(f01, f10, grey_a, grey_b, grid)
    cam1, res1 = _camera_and_residual(f10, f01, grey_b, grey_a, grid)
    full0 = cam0.displacement(grid) + res0
    full1 = cam1.displacement(grid) + res1
    motions = []
    for camera, residual, flow, back, src, dst in (
        (cam0, res0, full0, full1, grey_a, grey_b),
        (cam1, res1, full1, full0, grey_b, grey_a),
    ):
        reliable = _reliable(flow, back, src, dst, grid)
        # The share of reliable pixels among those whose match can be checked (step 5).
        target = grid + flow
        dst_textured = cv2.remap(_textured(dst), target, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        counted = _textured(src) * dst_textured * _inside(target)
        sigma = _CONF_SIGMA * math.hypot(*reliable.shape)
        votes = reliable * counted
        overall = float(votes.sum()) / max(float(counted.sum()), 1e-6)
        share = (_blur(votes, sigma) + _PRIOR * overall) / (_blur(counted, sigma) + _PRIOR)
        confidence = np.clip((share - _CONF_LOW) / (_CONF_HIGH - _CONF_LOW), 0.0, 1.0)
        confidence2 = np.dstack([confidence, confidence])
        motions.append(_Motion(camera, residual * confidence2, confidence2, (1.0 - reliable) * confidence))
    return motions[0], motions[1]


def _invert(displacement: np.ndarray) -> np.ndarray:
    """Backward-warp offsets ``g`` with ``g(y) = -D(y + g(y))``: the source of each output pixel.

    Fixed-point iteration ``g <- -D(y + g)`` from ``g = -D(y)``; it converges where the
    motion is smooth (``t |grad D| < 1``). Across a motion boundary the equation has no
    solution or two, and the iterates alternate between the motions on either side.
    """
    back = -displacement
    g = back
    for _ in range(_INVERT_ITERS):
        g = cv2.remap(back, g, None, cv2.INTER_LINEAR | cv2.WARP_RELATIVE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return g


class FlowEngine:
    """Occlusion-aware bidirectional optical-flow interpolation (see the module docstring).

    ``preset``: DIS optical-flow preset, "ultrafast", "fast" or "medium".
    ``levels``: coarsest pyramid level of DIS (a 2**levels downscale; more levels follow
    larger motions), capped to what the frame size allows; None picks it from the size.
    ``flow_scale``: flow resolution as a share of the frame size (flows are smooth; this is speed).
    ``cubic``: sample the keyframes bicubically: sharper on detailed frames (no half-pixel
    blur), at about two thirds of the speed; False: bilinearly.
    """

    name = "flow"
    version = 2  # 2: confidence from the pixels whose match can be checked; occlusion takes over with time

    def __init__(self, preset: str = "medium", levels: int | None = None, flow_scale: float = 0.5, cubic: bool = False):
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; use one of {', '.join(_DIS_PRESETS)}")
        if levels is not None and not 0 <= levels <= 10:
            raise ValueError(f"levels={levels} is out of range; use 0..10 or None for automatic")
        if not 0.0 < flow_scale <= 1.0:
            raise ValueError(f"flow_scale={flow_scale} is out of range; use (0, 1]")
        self.preset = preset
        self.levels = levels
        self.flow_scale = flow_scale
        self.cubic = cubic

    def identity(self) -> dict:
        return {
            "engine": self.name,
            "version": self.version,
            "preset": self.preset,
            "levels": self.levels,
            "flow_scale": self.flow_scale,
            "cubic": self.cubic,
            "opencv": cv2.__version__,
        }

    def _flows(self, grey_a: np.ndarray, grey_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DIS flows a -> b and b -> a between two uint8 greyscale images."""
        dis = cv2.DISOpticalFlow.create(_DIS_PRESETS[self.preset])
        h, w = grey_a.shape
        patch = dis.getPatchSize()
        # OpenCV's own choice of coarsest level, but capped so that that level still spans
        # two patches across the short side: OpenCV 5.0 crashes on long thin images otherwise.
        levels = self.levels if self.levels is not None else int(math.log2(max(w, h) / (4 * patch)) + 0.5)
        levels = max(0, min(levels, int(math.log2(min(w, h) / (2 * patch)))))
        dis.setCoarsestScale(levels)
        dis.setFinestScale(min(dis.getFinestScale(), levels))
        return dis.calc(grey_a, grey_b, None), dis.calc(grey_b, grey_a, None)

    def interpolate(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> Iterator[np.ndarray]:
        a, b, times = check_inputs(a, b, times)
        if np.array_equal(a, b):  # nothing moves; skip the flow (and its rounding)
            for _ in times:
                yield a.copy()
            return
        if min(a.shape[:2]) < _MIN_SIDE:
            logger.debug("flow: %dx%d is too small for optical flow; cross-fading", a.shape[1], a.shape[0])
            for t in times:
                yield (1.0 - t) * a + t * b
            return
        segment = _Segment(self, a, b)
        for t in times:
            yield segment.frame(t)


class _Segment:
    """The per-segment state (motions at flow resolution) and the per-time warp and blend."""

    def __init__(self, engine: FlowEngine, a: np.ndarray, b: np.ndarray):
        h, w = a.shape[:2]
        scale = min(1.0, max(engine.flow_scale, _MIN_FLOW_SIDE / max(w, h), _MIN_SIDE / min(w, h)))
        fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
        self.resized = (fw, fh) != (w, h)

        def grey(img: np.ndarray) -> np.ndarray:
            g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            return cv2.resize(g, (fw, fh), interpolation=cv2.INTER_AREA) if self.resized else g

        grey_a, grey_b = grey(a), grey(b)
        f01, f10 = engine._flows(*(np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8) for g in (grey_a, grey_b)))
        self.grid = _grid(fh, fw)
        self.m0, self.m1 = _motions(f01, f10, grey_a, grey_b, self.grid)
        logger.debug(
            "flow: camera zoom/rotation a->b %s, b->a %s; mean confidence %.2f, %.2f",
            self.m0.camera.z, self.m1.camera.z, float(self.m0.confidence.mean()), float(self.m1.confidence.mean()),
        )
        self.a, self.b, self.size = a, b, (w, h)
        self.scale = (w / fw, h / fh, 0.0, 0.0)  # flow-resolution offsets to full-resolution pixels
        # The full frame, x in [0, w - 1] and y in [0, h - 1], in flow-resolution coordinates.
        self.frame_lo = tuple(0.5 / s - 0.5 for s in self.scale[:2])
        self.frame_hi = tuple((n - 0.5) / s - 0.5 for n, s in zip((w, h), self.scale[:2]))
        self.interp = cv2.INTER_CUBIC if engine.cubic else cv2.INTER_LINEAR

    def _upsample(self, field: np.ndarray) -> np.ndarray:
        return cv2.resize(field, self.size, interpolation=cv2.INTER_LINEAR) if self.resized else field

    def _sample(self, img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``img`` at the full-resolution positions ``y + offsets(y)`` (offsets at flow resolution)."""
        offsets = self._upsample(cv2.multiply(offsets, self.scale))
        return cv2.remap(img, offsets, None, self.interp | cv2.WARP_RELATIVE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def _weight(self, side: float, offsets: np.ndarray, other: _Motion, other_offsets: np.ndarray) -> np.ndarray:
        """A keyframe's blend weight: ``side`` (1 - t or t), but zero where its source lies
        outside its frame; and where the other keyframe's source is a pixel that this
        keyframe does not show (occluded: that content exists in the other one alone), that
        content takes over as time leaves this keyframe, in full at the other one (step 7)."""
        inside = _inside(cv2.add(self.grid, offsets), self.frame_lo, self.frame_hi)
        occluded = cv2.remap(
            other.occluded, other_offsets, None, cv2.INTER_LINEAR | cv2.WARP_RELATIVE_MAP,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        return side * inside * (1.0 - (1.0 - side) * occluded)

    def frame(self, t: float) -> np.ndarray:
        g0 = _invert(self.m0.displacement(t, self.grid))
        g1 = _invert(self.m1.displacement(1.0 - t, self.grid))
        w0 = self._weight(1.0 - t, g0, self.m1, g1)
        w1 = self._weight(t, g1, self.m0, g0)
        total = cv2.add(w0, w1)
        # a's share, scaled so that the weights sum to _BLEND_SCALE: cv2.blendLinear divides
        # by (w_a + w_b + 1e-5), a bias that this makes negligible. Where neither keyframe
        # is usable, cross-fade.
        weight_a = cv2.divide(w0, total, scale=_BLEND_SCALE)
        np.copyto(weight_a, (1.0 - t) * _BLEND_SCALE, where=total < 1e-6)
        weight_a = self._upsample(weight_a)
        weight_b = cv2.subtract(_BLEND_SCALE, weight_a)
        out = cv2.blendLinear(self._sample(self.a, g0), self._sample(self.b, g1), weight_a, weight_b)
        return np.clip(out, 0.0, 1.0, out=out)
