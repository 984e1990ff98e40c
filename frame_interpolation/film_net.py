"""FILM's network in PyTorch, and the loader for its published weights.

FILM: Frame Interpolation for Large Motion (Reda et al., ECCV 2022). Written from the
paper and the official TF2 code (google-research/frame-interpolation,
``models/film_net``); the published PyTorch export of the official weights
(dajes/frame-interpolation-pytorch, ``film_net_fp32.pt`` / ``film_net_fp16.pt``) loads
onto it by a key mapping (below). Three parts, all on pyramids listed finest level first:

1. **Feature pyramid** (:class:`FeaturePyramid`), shared by both images. A small
   U-Net-style *sub-tree* (two 3x3 convs, average pooling, ``filters << i`` channels at
   depth ``i``) runs from every level of the image pyramid; level ``i`` of the feature
   pyramid concatenates depth ``j`` of the sub-tree started at level ``i - j``
   (``j < sub_levels``). From level ``sub_levels - 1`` down, every level has the same
   channels with the same meaning, so one flow predictor serves them all.
2. **Pyramid flow estimator** (:class:`FlowPyramid`): coarse to fine, the flow so far
   is upsampled (bilinear, doubled), image B's features are warped by it, and a small
   predictor adds a residual. The ``specialized_levels`` finest levels have their own
   predictor; all coarser levels share one. It runs both ways (A to B, B to A).
3. **Fusion decoder** (:class:`Fusion`): both images and their features, backward
   warped to time ``t`` by ``t`` times the B->A flow and ``1 - t`` times the A->B flow,
   plus those two scaled flows, form the ``fusion_pyramid_levels`` finest levels of an
   aligned pyramid; a U-Net decoder (nearest upsampling, 2x2 conv, concatenation, two
   3x3 convs) turns it into RGB.

Conventions: tensors are (B, C, H, W); images RGB in [0, 1]; flows (B, 2, H, W) pixel
offsets (x, y), float32. ``warp(img, flow)[y, x] = img(x + flow_x, y + flow_y)``,
bilinear, clamped at the border (TF's ``dense_image_warp``). Activations are leaky ReLU
(0.2); TF's ``'same'`` padding of the 2x2 convs pads one pixel right and bottom.
Inputs must be a multiple of :attr:`FilmConfig.align` (64 for the official network); the
engine (:mod:`frame_interpolation.film`) pads and crops.

Precision: convolutions run in the module's dtype (float32, float16, bfloat16). Flows,
their upsampling and accumulation, and every warp run in float32: in float16 a
normalised sampling coordinate near 1 has steps of 2**-11, about 0.6 pixel across a
2560-pixel-wide frame (bfloat16: 10 pixels), so half-precision warping would smear.

:meth:`FilmNet.encode` (pyramids, features, both flow pyramids) and
:meth:`FilmNet.decode` (warp to ``t`` and fuse) split the forward pass, so that several
times of one pair cost one encode; ``forward(x0, x1, batch_dt)`` does both, with the
published export's signature (``batch_dt`` of shape (B, 1)).

Weights files (:func:`load_film_weights`), read as tensors only; nothing in a file runs:

- the port's TorchScript export (``film_net_fp32.pt``, ``film_net_fp16.pt``): its tensors
  and its ``pyramid_levels`` attribute are read out of the zip by
  :func:`artwalk.weights.read_torchscript`, which never runs the code the archive carries
  (``torch.jit.load`` would: a module's ``__setstate__`` runs as it loads). An archive
  that is more than a module of tensors (custom state, other Python names, data before
  the zip) is refused with one line;
- the port's plain state dict in a ``.pt`` (``torch.load(weights_only=True)``);
- a state dict of :class:`FilmNet` itself (:func:`save_film_weights`), ``.safetensors``
  (the config rides in the metadata) or ``.pt`` (``torch.load(weights_only=True)``).

Key mapping, port -> ours (``S`` = specialized levels, ``F`` = fusion levels; every
port conv is either ``<module>.0.weight`` (its ``Conv2d`` is an ``nn.Sequential``, v1.0.1
and later) or ``<module>.weight`` (v1.0.0's bare convs without activation)):

==========================================================  ===================================
``extract.extract_sublevels.convs.{i}.{0,1}``               ``features.stages.{i}.conv{1,2}``
``predict_flow._predictors.{j}._convs.{k}``                 ``flow.levels.{S-1-j}`` (reversed)
``predict_flow._predictor._convs.{k}``                      ``flow.shared``
  ``_convs.{k < n}``, ``_convs.{n}``, ``_convs.{n+1}``      ``convs.{k}``, ``hidden``, ``out``
``fuse.convs.{k}.{0,1,2}``                                  ``fusion.levels.{F-2-k}.{up,conv1,conv2}``
``fuse.output_conv``                                        ``fusion.to_rgb``
==========================================================  ===================================

The architecture is read from the shapes, never from the file name; ``pyramid_levels``
is not fixed by the weights (the shared predictor runs at any depth), so it comes from
the file (the export's attribute, our metadata) or defaults to the official 7. Every
key of the file must be used and every shape must match, else
:class:`UnsupportedWeightsError` names the first offenders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from artwalk.errors import ConfigError, UnsupportedWeightsError
from artwalk.weights import is_torchscript, read_torchscript, read_weights, tensors_of

log = logging.getLogger(__name__)

_SLOPE = 0.2  # leaky ReLU of every activated conv
_RGB = 3


@dataclass(frozen=True)
class FilmConfig:
    """FILM's hyper-parameters (the official ``film_net`` options); defaults: the published
    'Style' network (``training/config/film_net-Style.gin``)."""

    pyramid_levels: int = 7
    fusion_pyramid_levels: int = 5
    specialized_levels: int = 3
    sub_levels: int = 4
    filters: int = 64
    flow_convs: tuple[int, ...] = (3, 3, 3, 3)
    flow_filters: tuple[int, ...] = (32, 64, 128, 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flow_convs", tuple(int(n) for n in self.flow_convs))
        object.__setattr__(self, "flow_filters", tuple(int(n) for n in self.flow_filters))
        s = self.specialized_levels
        problems = []
        if self.filters < 1:
            problems.append(f"filters={self.filters} must be >= 1")
        if not 2 <= self.fusion_pyramid_levels <= self.pyramid_levels:
            problems.append(f"fusion_pyramid_levels={self.fusion_pyramid_levels} must be in "
                            f"[2, pyramid_levels={self.pyramid_levels}]")
        if s < 1:
            problems.append(f"specialized_levels={s} must be >= 1")
        if not 1 <= self.sub_levels <= s + 1:
            problems.append(f"sub_levels={self.sub_levels} must be in [1, specialized_levels + 1 = {s + 1}]")
        if len(self.flow_convs) != s + 1 or len(self.flow_filters) != s + 1:
            problems.append(f"flow_convs and flow_filters need specialized_levels + 1 = {s + 1} entries, "
                            f"got {list(self.flow_convs)} and {list(self.flow_filters)}")
        if any(n < 0 for n in self.flow_convs) or any(n < 2 for n in self.flow_filters):
            problems.append("flow_convs must be >= 0 and flow_filters >= 2")
        if problems:
            raise ConfigError("FILM config: " + "; ".join(problems))

    @property
    def align(self) -> int:
        """Frame sides must divide by this: one pixel at the coarsest pyramid level."""
        return 1 << (self.pyramid_levels - 1)

    def feature_channels(self, level: int) -> int:
        """Channels of feature-pyramid level ``level`` (sub-tree depths 0..min(level, sub_levels-1))."""
        return sum(self.filters << j for j in range(min(level, self.sub_levels - 1) + 1))

    def aligned_channels(self, level: int) -> int:
        """Channels of the fusion input at ``level``: two warped (RGB + features), two flows."""
        return 2 * (_RGB + self.feature_channels(level)) + 2 * 2

    def fusion_filters(self, level: int) -> int:
        return self.filters << min(level, self.specialized_levels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _SLOPE)


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out[y, x] = image(x + flow_x, y + flow_y)``, bilinear, border-clamped.

    ``flow`` is (B, 2, H, W) in pixels; ``image`` (B or 1, C, H, W). Sampling runs in
    float32 (see the module docstring); the result has ``image``'s dtype.
    """
    b, _, h, w = flow.shape
    flow = flow.float()
    xs = torch.arange(w, device=flow.device, dtype=torch.float32)
    ys = torch.arange(h, device=flow.device, dtype=torch.float32)
    # grid_sample, align_corners=False: pixel centre x sits at (2x + 1) / w - 1.
    gx = (2.0 * (xs.view(1, 1, w) + flow[:, 0]) + 1.0) / w - 1.0
    gy = (2.0 * (ys.view(1, h, 1) + flow[:, 1]) + 1.0) / h - 1.0
    if image.shape[0] != b:
        image = image.expand(b, -1, -1, -1)
    out = F.grid_sample(image.float(), torch.stack([gx, gy], dim=-1), mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out.to(image.dtype)


def image_pyramid(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``levels`` images, finest first, each a 2x2 average of the one before."""
    pyramid = [image]
    for _ in range(levels - 1):
        pyramid.append(F.avg_pool2d(pyramid[-1], 2, 2))
    return pyramid


class _ConvPair(nn.Module):
    """Two activated 3x3 convs: one depth of the feature sub-tree."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv3(cin, cout)
        self.conv2 = _conv3(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.conv2(_act(self.conv1(x))))


class FeaturePyramid(nn.Module):
    """The cascaded feature extractor (one sub-tree, shared by every pyramid level)."""

    def __init__(self, config: FilmConfig):
        super().__init__()
        f = config.filters
        self.sub_levels = config.sub_levels
        self.stages = nn.ModuleList(_ConvPair(_RGB if i == 0 else f << (i - 1), f << i)
                                    for i in range(config.sub_levels))

    def subtree(self, image: torch.Tensor, depth: int) -> list[torch.Tensor]:
        out = []
        x = image
        for i in range(depth):
            if i:
                x = F.avg_pool2d(x, 2, 2)
            x = self.stages[i](x)
            out.append(x)
        return out

    def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(images)
        subs = [self.subtree(img, min(n - i, self.sub_levels)) for i, img in enumerate(images)]
        return [torch.cat([subs[i - j][j] for j in range(min(i, self.sub_levels - 1) + 1)], dim=1)
                for i in range(n)]


class FlowHead(nn.Module):
    """Residual flow predictor of one level: ``n`` activated 3x3 convs, a 1x1 to half the
    width (activated), a 1x1 to the two flow channels (no activation)."""

    def __init__(self, cin: int, n_convs: int, width: int):
        super().__init__()
        self.convs = nn.ModuleList(_conv3(cin if k == 0 else width, width) for k in range(n_convs))
        self.hidden = nn.Conv2d(width if n_convs else cin, width // 2, 1)
        self.out = nn.Conv2d(width // 2, 2, 1)

    def forward(self, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features_a, features_b], dim=1)
        for conv in self.convs:
            x = _act(conv(x))
        return self.out(_act(self.hidden(x)))


class FlowPyramid(nn.Module):
    """Coarse-to-fine residual flow; ``levels[i]`` for the specialized levels, ``shared`` below."""

    def __init__(self, config: FilmConfig):
        super().__init__()
        s = config.specialized_levels
        self.levels = nn.ModuleList(
            FlowHead(2 * config.feature_channels(i), config.flow_convs[i], config.flow_filters[i]) for i in range(s))
        self.shared = FlowHead(2 * config.feature_channels(s), config.flow_convs[s], config.flow_filters[s])

    def head(self, level: int) -> FlowHead:
        return self.levels[level] if level < len(self.levels) else self.shared

    def forward(self, features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> list[torch.Tensor]:
        """Flows (float32) that take each pixel of A to its match in B, finest level first."""
        top = len(features_a) - 1
        v = self.head(top)(features_a[top], features_b[top]).float()
        flows = [v]
        for i in range(top - 1, -1, -1):
            v = F.interpolate(2.0 * v, size=features_a[i].shape[-2:], mode="bilinear", align_corners=False)
            v = v + self.head(i)(features_a[i], warp(features_b[i], v)).float()
            flows.append(v)
        return flows[::-1]


class _FusionLevel(nn.Module):
    def __init__(self, coarse: int, skip: int, width: int):
        super().__init__()
        self.up = nn.Conv2d(coarse, width, 2)  # after nearest x2 upsampling, no activation
        self.conv1 = _conv3(skip + width, width)
        self.conv2 = _conv3(width, width)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(coarse, size=skip.shape[-2:], mode="nearest")
        x = self.up(F.pad(x, (0, 1, 0, 1)))  # TF 'same' for an even kernel
        x = torch.cat([skip, x], dim=1)
        return _act(self.conv2(_act(self.conv1(x))))


class Fusion(nn.Module):
    """The decoder: the coarsest aligned level passes through; ``levels[i]`` refines level i."""

    def __init__(self, config: FilmConfig):
        super().__init__()
        top = config.fusion_pyramid_levels - 1
        self.levels = nn.ModuleList(
            _FusionLevel(config.aligned_channels(top) if i == top - 1 else config.fusion_filters(i + 1),
                         config.aligned_channels(i), config.fusion_filters(i))
            for i in range(top))
        self.to_rgb = nn.Conv2d(config.fusion_filters(0), _RGB, 1)

    def forward(self, aligned: list[torch.Tensor]) -> torch.Tensor:
        x = aligned[-1]
        for i in range(len(self.levels) - 1, -1, -1):
            x = self.levels[i](x, aligned[i])
        return self.to_rgb(x)


class Encoded(NamedTuple):
    """What :meth:`FilmNet.decode` needs of a pair, at the fusion levels (finest first)."""

    warp0: list[torch.Tensor]  # image A and its features
    warp1: list[torch.Tensor]  # image B and its features
    flow01: list[torch.Tensor]  # A -> B, float32
    flow10: list[torch.Tensor]  # B -> A, float32


class FilmNet(nn.Module):
    """FILM: ``forward(x0, x1, batch_dt)`` -> the frame at ``batch_dt`` (B, 1), unclamped."""

    def __init__(self, config: FilmConfig = FilmConfig()):
        super().__init__()
        self.config = config
        self.features = FeaturePyramid(config)
        self.flow = FlowPyramid(config)
        self.fusion = Fusion(config)

    def encode(self, x0: torch.Tensor, x1: torch.Tensor) -> Encoded:
        """Pyramids, features and both flow pyramids of a batch of pairs."""
        cfg = self.config
        h, w = x0.shape[-2:]
        if h % cfg.align or w % cfg.align:
            raise ValueError(f"FILM input {w}x{h} is not a multiple of {cfg.align}; pad it first")
        b = x0.shape[0]
        images = image_pyramid(torch.cat([x0, x1]), cfg.pyramid_levels)
        feats = self.features(images)
        swapped = [torch.cat([f[b:], f[:b]]) for f in feats]
        flows = self.flow(feats, swapped)  # first b: A -> B, last b: B -> A
        keep = cfg.fusion_pyramid_levels
        to_warp = [torch.cat([img, f], dim=1) for img, f in zip(images[:keep], feats[:keep])]
        return Encoded([t[:b] for t in to_warp], [t[b:] for t in to_warp],
                       [f[:b] for f in flows[:keep]], [f[b:] for f in flows[:keep]])

    def decode(self, encoded: Encoded, batch_dt: torch.Tensor) -> torch.Tensor:
        """The frames at times ``batch_dt`` (B or (B, 1)); an encoded batch of one pair is
        broadcast over B times."""
        dt = batch_dt.reshape(-1, 1, 1, 1).float()
        aligned = []
        for w0, w1, f01, f10 in zip(*encoded):
            back, fwd = f10 * dt, f01 * (1.0 - dt)
            aligned.append(torch.cat([warp(w0, back), warp(w1, fwd), back.to(w0.dtype), fwd.to(w0.dtype)], dim=1))
        return self.fusion(aligned)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, batch_dt: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x0, x1), batch_dt)


# ---------------------------------------------------------------------------- state dicts

PORT_PREFIXES = ("extract.", "predict_flow.", "fuse.")
MAX_PYRAMID_LEVELS = 12  # from a file: the official network has 7; 12 pads frames to multiples of 2048
OUR_PREFIXES = ("features.", "flow.", "fusion.")


def port_module_map(config: FilmConfig) -> list[tuple[str, str]]:
    """(port module, our module) for every conv, in the port's order (see the module docstring)."""
    pairs = []
    for i in range(config.sub_levels):
        for j in range(2):
            pairs.append((f"extract.extract_sublevels.convs.{i}.{j}", f"features.stages.{i}.conv{j + 1}"))

    def head(port: str, ours: str, n: int) -> None:
        pairs.extend((f"{port}._convs.{k}", f"{ours}.convs.{k}") for k in range(n))
        pairs.append((f"{port}._convs.{n}", f"{ours}.hidden"))
        pairs.append((f"{port}._convs.{n + 1}", f"{ours}.out"))

    s = config.specialized_levels
    head("predict_flow._predictor", "flow.shared", config.flow_convs[s])
    for j in range(s):
        head(f"predict_flow._predictors.{j}", f"flow.levels.{s - 1 - j}", config.flow_convs[s - 1 - j])
    top = config.fusion_pyramid_levels - 1
    for k in range(top):
        for m, name in enumerate(("up", "conv1", "conv2")):
            pairs.append((f"fuse.convs.{k}.{m}", f"fusion.levels.{top - 1 - k}.{name}"))
    pairs.append(("fuse.output_conv", "fusion.to_rgb"))
    return pairs


def _port_key(state: dict, module: str, param: str) -> str | None:
    for key in (f"{module}.0.{param}", f"{module}.{param}"):
        if key in state:
            return key
    return None


def config_from_state_dict(state: dict[str, torch.Tensor], layout: str,
                           pyramid_levels: int | None = None, source: str = "weights") -> FilmConfig:
    """The architecture of a state dict in the ``port`` or ``ours`` layout (read from the
    keys and shapes); ``pyramid_levels`` None: the official 7."""
    port = layout == "port"

    def weight(module: str) -> torch.Tensor | None:
        key = _port_key(state, module, "weight") if port else f"{module}.weight"
        return state.get(key) if key is not None else None

    def count(fmt: str) -> int:
        n = 0
        while weight(fmt.format(n)) is not None:
            n += 1
        return n

    if port:
        stage, conv, fusion = "extract.extract_sublevels.convs.{}.0", "{}._convs.{}", "fuse.convs.{}.0"
        n_specialized = count("predict_flow._predictors.{}._convs.0")
        # the port lists its specialized predictors coarse to fine
        heads = [f"predict_flow._predictors.{j}" for j in reversed(range(n_specialized))] + ["predict_flow._predictor"]
    else:
        stage, conv, fusion = "features.stages.{}.conv1", "{}.convs.{}", "fusion.levels.{}.up"
        n_specialized = count("flow.levels.{}.out")
        heads = [f"flow.levels.{j}" for j in range(n_specialized)] + ["flow.shared"]
    try:
        filters = int(weight(stage.format(0)).shape[0])
        convs, widths = [], []
        for head in heads:
            fmt = conv.format(head, "{}")
            n = count(fmt) - (2 if port else 0)  # the port's _convs end with the two 1x1 convs
            hidden = fmt.format(n) if port else f"{head}.hidden"
            widths.append(int(weight(fmt.format(0)).shape[0]) if n > 0 else 2 * int(weight(hidden).shape[0]))
            convs.append(n)
        config = FilmConfig(
            pyramid_levels=max(7, count(fusion) + 1) if pyramid_levels is None else int(pyramid_levels),
            fusion_pyramid_levels=count(fusion) + 1, specialized_levels=n_specialized,
            sub_levels=count(stage), filters=filters, flow_convs=tuple(convs), flow_filters=tuple(widths))
    except (AttributeError, TypeError, IndexError) as exc:
        raise UnsupportedWeightsError(
            f"{source}: not a FILM state dict in the {layout} layout ({type(exc).__name__}: {exc})") from None
    except ConfigError as exc:
        raise UnsupportedWeightsError(f"{source}: {exc}") from None
    return config


def detect_layout(state: dict[str, torch.Tensor], source: str = "weights") -> str:
    """``port`` (the published export's keys) or ``ours`` (:class:`FilmNet`'s)."""
    for layout, prefixes in (("port", PORT_PREFIXES), ("ours", OUR_PREFIXES)):
        if state and all(k.startswith(prefixes) for k in state):
            return layout
    sample = ", ".join(sorted(state)[:3])
    raise UnsupportedWeightsError(
        f"{source}: not a FILM state dict (keys start: {sample}, ...); use film_net_fp32.pt / film_net_fp16.pt "
        "of the PyTorch port of FILM, or weights saved from our FilmNet")


def port_to_ours(state: dict[str, torch.Tensor], config: FilmConfig,
                 source: str = "weights") -> dict[str, torch.Tensor]:
    """The port's state dict renamed to :class:`FilmNet`'s keys; every key must be used once."""
    out, used, missing = {}, set(), []
    for port, ours in port_module_map(config):
        for param in ("weight", "bias"):
            key = _port_key(state, port, param)
            if key is None:
                missing.append(f"{port}.0.{param}")
                continue
            used.add(key)
            out[f"{ours}.{param}"] = state[key]
    unused = sorted(set(state) - used)
    if missing or unused:
        raise UnsupportedWeightsError(
            f"{source}: does not match FILM {config}: "
            + (f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; " if missing else "")
            + (f"unused {', '.join(unused[:3])}{' ...' if len(unused) > 3 else ''}" if unused else ""))
    return out


def ours_to_port(state: dict[str, torch.Tensor], config: FilmConfig) -> dict[str, torch.Tensor]:
    """The inverse of :func:`port_to_ours`, in the layout of the port's v1.0.1+ export."""
    return {f"{port}{'' if port == 'fuse.output_conv' else '.0'}.{p}": state[f"{ours}.{p}"]
            for port, ours in port_module_map(config) for p in ("weight", "bias")}


def build_film(state: dict[str, torch.Tensor], config: FilmConfig, source: str = "weights") -> FilmNet:
    """A :class:`FilmNet` holding ``state`` (our layout); shapes must match exactly."""
    net = FilmNet(config)
    expected = net.state_dict()
    bad = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if k in state and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unused = [k for k in state if k not in expected]
    if bad or missing or unused:
        parts = [f"shape {', '.join(bad[:2])}" if bad else "", f"missing {', '.join(missing[:3])}" if missing else "",
                 f"unused {', '.join(unused[:3])}" if unused else ""]
        raise UnsupportedWeightsError(f"{source}: does not fit FILM {config}: " + "; ".join(p for p in parts if p))
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------------------- files


@dataclass
class FilmWeights:
    """What a weights file holds: the state dict (its own layout) and the architecture."""

    path: Path
    layout: str  # "port" or "ours"
    state: dict[str, torch.Tensor]
    config: FilmConfig

    def network(self) -> FilmNet:
        ours = self.state if self.layout == "ours" else port_to_ours(self.state, self.config, str(self.path))
        return build_film(ours, self.config, str(self.path))


def load_film_weights(path: Path | str, pyramid_levels: int | None = None) -> FilmWeights:
    """Read a FILM weights file (TorchScript export, ``.pt`` state dict or ``.safetensors``)
    as tensors, running nothing in it."""
    path = Path(path)
    meta_levels = None
    if is_torchscript(path):
        scripted = read_torchscript(path, "FILM weights")
        state = scripted.tensors
        meta_levels = scripted.attributes.get("pyramid_levels")
    else:
        obj, meta = read_weights(path, "FILM weights")
        if "film_config" in meta:
            try:
                config_json = json.loads(meta["film_config"])
            except ValueError:
                config_json = None
            if not isinstance(config_json, dict):
                raise UnsupportedWeightsError(f"{path}: cannot use these FILM weights: its film_config metadata "
                                              "is not a JSON object")
            meta_levels = config_json.get("pyramid_levels")
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            config_dict = obj.get("film_config")
            meta_levels = config_dict.get("pyramid_levels") if isinstance(config_dict, dict) else None
            obj = obj["state_dict"]
        state = tensors_of(obj)
    if meta_levels is not None and (type(meta_levels) is not int or not 1 <= meta_levels <= MAX_PYRAMID_LEVELS):
        raise UnsupportedWeightsError(f"{path}: cannot use these FILM weights: pyramid_levels {meta_levels!r} "
                                      f"is not an integer in [1, {MAX_PYRAMID_LEVELS}]")
    layout = detect_layout(state, str(path))
    levels = pyramid_levels if pyramid_levels is not None else meta_levels
    config = config_from_state_dict(state, layout, levels, str(path))
    return FilmWeights(path, layout, state, config)


def save_film_weights(net: FilmNet, path: Path | str) -> Path:
    """Save our network: ``.safetensors`` (config in the metadata) or ``.pt`` (a dict of
    ``state_dict`` and ``film_config``, readable with ``weights_only=True``)."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"film_config": net.config.to_json()})
    else:
        torch.save({"state_dict": state, "film_config": asdict(net.config)}, path)
    return path
