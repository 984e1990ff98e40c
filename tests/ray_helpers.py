"""Test-only engines for tests/test_ray.py, importable by Ray's worker processes (the test puts
tests/ on their PYTHONPATH) and registered in the motion registry by the test alone.

``TestEngine`` is a cross-fade (a blend's identity, so a blend's bytes) with two test hooks,
both owned by the test through folders it names in the environment before the cluster starts:

- ``ARTWALK_TEST_KILL_DIR``: while the file ``armed`` is in it, the first worker to reach the
  second frame of a segment takes the file (renames it ``killed-<pid>``: one winner) and kills
  its own process there, in the middle of the unit;
- ``ARTWALK_TEST_LOADS``: each construction of the engine (a "model load") leaves a file there.

Registered once without a model slot (``killonce``: its units are Ray tasks) and once with one
(``counted``, standing for a neural engine: its units go to actors).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from frame_interpolation.blend import BlendEngine

KILL_DIR = "ARTWALK_TEST_KILL_DIR"
LOADS = "ARTWALK_TEST_LOADS"


class TestEngine(BlendEngine):
    name = "killonce"
    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        folder = os.environ.get(LOADS)
        if folder:
            (Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex}").write_text("loaded")

    def identity(self) -> dict:
        return {"engine": "blend", "version": self.version}

    def interpolate(self, a, b, times):
        for k, rgb in enumerate(super().interpolate(a, b, times)):
            folder = os.environ.get(KILL_DIR)
            if k == 1 and folder and (Path(folder) / "armed").exists():
                try:
                    os.rename(Path(folder) / "armed", Path(folder) / f"killed-{os.getpid()}")
                except FileNotFoundError:  # another worker took it
                    pass
                else:
                    os._exit(1)  # dies mid-unit: part of a segment written, nothing committed
            yield rgb


class MixKeyframes:
    """A test keyframe engine: in-betweens are seeded, noisy cross-fades (so their bytes depend on
    the pair's seed, as a diffusion engine's do). Stands for a neural engine: its row has a model
    slot, so its pairs go to actors."""

    name = "mix"

    def identity(self) -> dict:
        return {"engine": "mix", "version": 1}

    def check_image_walk(self) -> None:
        return None

    def inbetweens(self, a, b, fractions, seed, prompts=None):
        import numpy as np

        rng = np.random.default_rng(seed)
        for f in fractions:
            noise = rng.random(a.shape, dtype=np.float32) * 0.1
            yield np.clip((1 - f) * a + f * b + noise - 0.05, 0, 1)
