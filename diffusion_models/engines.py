"""Keyframe engines: what makes the in-betweens of a pair of artworks.

Every engine has the same small interface, so the stage's run loop (caching,
ordering, manifests) never changes when a neural engine is added:

- ``name``: the engine's name on the command line;
- ``makes_inbetweens``: False for ``none``, which only conforms the originals;
- ``identity()``: a JSON-able dict of everything that changes its output bytes
  (model id, weights hash, steps, guidance, ...), part of every cache key;
- ``inbetweens(a, b, fractions, seed)``: yields one RGB float32 (H, W, 3) image in
  [0, 1] per fraction in (0, 1), the same size as ``a`` and ``b``; all randomness
  comes from a ``torch.Generator`` seeded with ``seed`` (one per pair).
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from artwalk.errors import ConfigError


class KeyframeEngine(Protocol):
    name: str
    makes_inbetweens: bool

    def identity(self) -> dict: ...

    def inbetweens(
        self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int
    ) -> Iterator[np.ndarray]: ...


class NoneEngine:
    """No model: the walk's keyframes are the conformed originals only."""

    name = "none"
    makes_inbetweens = False

    def identity(self) -> dict:
        return {"engine": "none"}

    def inbetweens(self, a, b, fractions, seed):
        raise ConfigError("engine 'none' makes no in-betweens; choose a diffusion engine")


ENGINES: dict[str, Callable[..., KeyframeEngine]] = {"none": NoneEngine}


def create_engine(name: str) -> KeyframeEngine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(
            f"unknown keyframe engine '{name}' (available here: {', '.join(ENGINES)})"
        ) from None
    return factory()
