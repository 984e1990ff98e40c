"""Motion engines: what makes the frames between two keyframes.

Every engine has the same small interface:

- ``name``: the engine's name on the command line;
- ``identity()``: a JSON-able dict of everything that changes its output bytes
  (algorithm version, settings, weights hash), part of every segment's cache key;
- ``interpolate(a, b, times)``: ``a`` and ``b`` are RGB float32 (H, W, 3) in [0, 1];
  yields one frame of the same shape per time in (0, 1), in order, as a generator.

``create_engine(name, **options)`` passes the neural engine's options (model, mode,
time mode, device, dtype, batch, blocks) to its factory; the classical engines ignore
them. Classical engines (``flow``, ``blend``) need no weights and are the CPU default;
``film`` (:mod:`frame_interpolation.film`) is imported only when asked for, so PyTorch
is not needed for the others.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from artwalk.errors import ConfigError


class MotionEngine(Protocol):
    name: str

    def identity(self) -> dict: ...

    def interpolate(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> Iterator[np.ndarray]: ...


def _flow(**options) -> MotionEngine:
    from frame_interpolation.flow import FlowEngine

    return FlowEngine()


def _blend(**options) -> MotionEngine:
    from frame_interpolation.blend import BlendEngine

    return BlendEngine()


def _film(**options) -> MotionEngine:
    try:
        from frame_interpolation.film import FilmEngine
    except ImportError as exc:
        raise ConfigError(f"engine film needs PyTorch ({exc}): pip install torch") from None

    return FilmEngine(**options)


ENGINES: dict[str, Callable[..., MotionEngine]] = {"flow": _flow, "blend": _blend, "film": _film}


def create_engine(name: str, **options) -> MotionEngine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown motion engine '{name}' (available here: {', '.join(ENGINES)})") from None
    return factory(**options)
