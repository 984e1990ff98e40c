"""Plain cross-fade: frame ``t`` is ``(1 - t) * a + t * b``; no motion at all.

The fallback, and the reference the flow engine is measured against. RGB float32 in
[0, 1], (H, W, 3), in and out.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from frame_interpolation.flow import check_inputs


class BlendEngine:
    """Cross-fade between two keyframes (same interface as ``FlowEngine``)."""

    name = "blend"
    version = 1

    def identity(self) -> dict:
        return {"engine": self.name, "version": self.version}

    def interpolate(self, a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> Iterator[np.ndarray]:
        a, b, times = check_inputs(a, b, times)
        for t in times:
            yield (1.0 - t) * a + t * b
