"""SRVGGNetCompact, Real-ESRGAN's small VGG-style upscaler (realesr-general-x4v3,
realesr-animevideov3).

Module names follow the official checkpoints, so their state dicts load as they are::

    body.0            conv 3 -> F             body.1            PReLU(F)
    body.2k           conv F -> F             body.2k+1         PReLU(F)     k = 1..C
    body.2C+2         conv F -> 3 * s * s     then pixel-shuffle by s, plus the input
                                              upsampled by s (nearest)

All convs run at the input resolution; the network learns a residual over the nearest
upsample. general-x4v3 has C = 32 body convs, animevideov3 C = 16, both F = 64, s = 4.
:func:`detect` reads F, C and s from a state dict's keys and shapes (PReLU layouts only:
ReLU variants leave no weights to tell them apart).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

_BODY_KEY = re.compile(r"body\.(\d+)\.(weight|bias)")


@dataclass(frozen=True)
class SRVGGParams:
    num_feat: int = 64
    num_conv: int = 32
    scale: int = 4

    @property
    def context(self) -> int:
        """Receptive radius in input pixels: one per 3x3 conv."""
        return self.num_conv + 2


def detect(state_dict: dict[str, torch.Tensor]) -> SRVGGParams | None:
    """The parameters of the SRVGGNetCompact this state dict belongs to; None when it is not one."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = _BODY_KEY.fullmatch(key)
        if m is None:
            return None
        layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
    last = max(layers, default=-1)
    if last < 2 or last % 2 or sorted(layers) != list(range(last + 1)):
        return None
    first = layers[0].get("weight")
    if first is None or first.ndim != 4 or first.shape[1] != 3:
        return None
    nf = int(first.shape[0])
    for i in range(last + 1):
        w = layers[i].get("weight")
        if i % 2:  # PReLU: one slope per channel, no bias
            ok = w is not None and tuple(w.shape) == (nf,) and "bias" not in layers[i]
        else:
            cin = 3 if i == 0 else nf
            ok = w is not None and w.ndim == 4 and tuple(w.shape[1:]) == (cin, 3, 3) and "bias" in layers[i]
            ok = ok and (i == last or w.shape[0] == nf)
        if not ok:
            return None
    out = int(layers[last]["weight"].shape[0])
    scale = math.isqrt(out // 3)
    if out % 3 or scale * scale * 3 != out:
        return None
    return SRVGGParams(num_feat=nf, num_conv=(last - 2) // 2, scale=scale)


class SRVGGNetCompact(nn.Module):
    """(B, 3, H, W) -> (B, 3, H * scale, W * scale), any H and W."""

    def __init__(self, params: SRVGGParams = SRVGGParams()):
        super().__init__()
        self.params = params
        nf = params.num_feat
        layers: list[nn.Module] = [nn.Conv2d(3, nf, 3, 1, 1), nn.PReLU(nf)]
        for _ in range(params.num_conv):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(nf)]
        layers.append(nn.Conv2d(nf, 3 * params.scale**2, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.params.scale
        return F.pixel_shuffle(self.body(x), s) + F.interpolate(x, scale_factor=float(s), mode="nearest")
