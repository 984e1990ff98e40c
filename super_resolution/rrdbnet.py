"""RRDBNet, the generator of ESRGAN / Real-ESRGAN (RealESRGAN_x4plus, RealESRGAN_x2plus).

Module names follow the official checkpoints (BasicSR's layout), so their state dicts
load as they are::

    conv_first                         3 * u * u -> F   (u: pixel-unshuffle factor)
    body.{0..B-1}.rdb{1,2,3}.conv{1..5} residual dense blocks, G channels of growth
    conv_body                          F -> F
    conv_up1, conv_up2                 F -> F, each after a x2 nearest upsample
    conv_hr, conv_last                 F -> F -> 3

The trunk always upsamples x4; the x2 and x1 models first fold each 2x2 (4x4) block
of pixels into channels (pixel-unshuffle), so their input sides must be multiples of
u. :func:`detect` reads F, B, G and u from a state dict's keys and shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

_BLOCK_KEY = re.compile(r"body\.(\d+)\.rdb1\.conv1\.weight")
_REQUIRED = ("conv_first.weight", "conv_body.weight", "conv_up1.weight", "conv_up2.weight",
             "conv_hr.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")


@dataclass(frozen=True)
class RRDBParams:
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    scale: int = 4  # 4, 2 (pixel-unshuffle by 2) or 1 (by 4)

    @property
    def unshuffle(self) -> int:
        return 4 // self.scale

    @property
    def context(self) -> int:
        """Receptive radius in input pixels (an upper bound): how far an output pixel sees.

        Every 3x3 conv reaches one pixel further: at the trunk's resolution 2 + 15 per
        block, each worth ``unshuffle`` input pixels; the four convs after upsampling
        each reach at most one trunk pixel.
        """
        return self.unshuffle * (2 + 15 * self.num_block + 4)


def detect(state_dict: dict[str, torch.Tensor]) -> RRDBParams | None:
    """The parameters of the RRDBNet this state dict belongs to; None when it is not one."""
    if not all(k in state_dict for k in _REQUIRED):
        return None
    first = state_dict["conv_first.weight"]
    blocks = sorted(int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.fullmatch(k)))
    if blocks != list(range(len(blocks))) or first.ndim != 4:
        return None
    unshuffle = {3: 1, 12: 2, 48: 4}.get(int(first.shape[1]))
    if unshuffle is None or int(state_dict["conv_last.weight"].shape[0]) != 3:
        return None
    return RRDBParams(num_feat=int(first.shape[0]), num_block=len(blocks),
                      num_grow_ch=int(state_dict["body.0.rdb1.conv1.weight"].shape[0]),
                      scale=4 // unshuffle)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; the result is added back scaled by 0.2."""

    def __init__(self, num_feat: int, grow: int):
        super().__init__()
        self.conv1 = _conv(num_feat, grow)
        self.conv2 = _conv(num_feat + grow, grow)
        self.conv3 = _conv(num_feat + 2 * grow, grow)
        self.conv4 = _conv(num_feat + 3 * grow, grow)
        self.conv5 = _conv(num_feat + 4 * grow, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Three residual dense blocks inside one more scaled residual."""

    def __init__(self, num_feat: int, grow: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, grow)
        self.rdb2 = ResidualDenseBlock(num_feat, grow)
        self.rdb3 = ResidualDenseBlock(num_feat, grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """(B, 3, H, W) -> (B, 3, H * scale, W * scale); H and W multiples of ``params.unshuffle``."""

    def __init__(self, params: RRDBParams = RRDBParams()):
        super().__init__()
        if params.scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {params.scale}")
        self.params = params
        nf, u = params.num_feat, params.unshuffle
        self.conv_first = _conv(3 * u * u, nf)
        self.body = nn.Sequential(*(RRDB(nf, params.num_grow_ch) for _ in range(params.num_block)))
        self.conv_body = _conv(nf, nf)
        self.conv_up1 = _conv(nf, nf)
        self.conv_up2 = _conv(nf, nf)
        self.conv_hr = _conv(nf, nf)
        self.conv_last = _conv(nf, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.params.unshuffle
        feat = self.conv_first(F.pixel_unshuffle(x, u) if u > 1 else x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2.0, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
