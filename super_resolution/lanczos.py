"""The ``lanczos`` upscale engine: the core's resize (Lanczos to enlarge, area to shrink)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from artwalk.images import resize


class LanczosEngine:
    name = "lanczos"

    def identity(self) -> dict:
        return {"engine": "lanczos", "version": 1}

    def upscale_batch(self, rgbs: Sequence[np.ndarray], width: int, height: int) -> list[np.ndarray]:
        return [resize(rgb, width, height) for rgb in rgbs]
