"""The ``lanczos`` upscale engine: the core's 8-bit resize (Lanczos to enlarge, area to
shrink), :func:`artwalk.images.resize_u8`, which stage 4 also runs when it streams this engine."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from artwalk.images import resize_u8, to_uint8


class LanczosEngine:
    name = "lanczos"

    def identity(self) -> dict:
        return {"engine": "lanczos", "version": 2}  # 2: in 8 bits

    def upscale_batch(self, rgbs: Sequence[np.ndarray], width: int, height: int) -> list[np.ndarray]:
        # The frames come from 8-bit files, so to_uint8 gives their bytes back exactly.
        return [resize_u8(to_uint8(rgb), width, height).astype(np.float32) / 255.0 for rgb in rgbs]
