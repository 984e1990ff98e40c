"""Spherical linear interpolation (SLERP) of embeddings, latents and noise.

A straight line between two high-dimensional vectors passes close to the origin:
its midpoint has a smaller norm than either end, which a diffusion model reads as
"less image" (washed-out, grey in-betweens). SLERP walks the great circle instead:

    slerp(a, b, t) = ((1 - t)|a| + t|b|) * dir(t)
    dir(t) = sin((1 - t) theta) / sin(theta) * a/|a| + sin(t theta) / sin(theta) * b/|b|

where theta is the angle between a and b. The direction moves at constant angular
speed, the norm moves linearly from |a| to |b|: ``slerp(a, b, 0) == a``,
``slerp(a, b, 1) == b``, and two vectors of equal norm keep that norm all the way.

Each argument is treated as one vector (a whole latent, a whole embedding).
The maths runs in float64 and the result is cast back to the input's dtype, so
half-precision inputs lose nothing here. Works on numpy arrays and on torch
tensors (on any device) without importing torch.
"""

from __future__ import annotations

import math

import numpy as np

# Below this angle (radians) the two directions are parallel to float precision:
# sin(theta) would divide by almost zero, and the normalised lerp is exact enough.
PARALLEL_ANGLE = 1e-4


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _norm(x64) -> float:
    return float((x64 * x64).sum()) ** 0.5


def slerp(a, b, t: float):
    """The point at fraction ``t`` in [0, 1] on the arc from ``a`` to ``b`` (same shape)."""
    if a.shape != b.shape:
        raise ValueError(f"slerp: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    t = float(t)
    if t == 0.0:
        return a.clone() if _is_torch(a) else a.copy()
    if t == 1.0:
        return b.clone() if _is_torch(b) else b.copy()
    if _is_torch(a):
        a64, b64 = a.double(), b.double()
    else:
        a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = _norm(a64), _norm(b64)
    if na == 0.0 or nb == 0.0:  # no direction to follow: a straight line is all there is
        out = a64 * (1.0 - t) + b64 * t
    else:
        ua, ub = a64 / na, b64 / nb
        cos = max(-1.0, min(1.0, float((ua * ub).sum())))
        theta = math.acos(cos)
        if theta < PARALLEL_ANGLE:
            d = ua * (1.0 - t) + ub * t
        elif math.pi - theta < PARALLEL_ANGLE:
            # Opposite directions: every great circle joins them. Take the one through
            # a fixed direction orthogonal to a, so the result is still deterministic.
            d = _half_turn(ua, t)
        else:
            s = math.sin(theta)
            d = ua * (math.sin((1.0 - t) * theta) / s) + ub * (math.sin(t * theta) / s)
        d = d / _norm(d)
        out = d * ((1.0 - t) * na + t * nb)
    return out.to(a.dtype) if _is_torch(a) else out.astype(np.asarray(a).dtype, copy=False)


def _half_turn(ua, t: float):
    """The arc from ``ua`` to ``-ua`` through a fixed unit vector orthogonal to it."""
    flat = ua.reshape(-1)
    # Gram-Schmidt on a fixed basis vector: the axis where ua is smallest.
    k = int(abs(flat).argmin()) if not _is_torch(ua) else int(flat.abs().argmin())
    e = flat * 0.0
    e[k] = 1.0
    ortho = e - flat * float(flat[k])
    ortho = (ortho / _norm(ortho)).reshape(ua.shape)
    angle = math.pi * t
    return ua * math.cos(angle) + ortho * math.sin(angle)


def angle(a, b) -> float:
    """The angle in radians between two vectors (for tests and logs)."""
    if _is_torch(a):
        a, b = a.double(), b.double()
    else:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cos = float((a * b).sum()) / (_norm(a) * _norm(b))
    return math.acos(max(-1.0, min(1.0, cos)))
