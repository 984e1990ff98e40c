"""The ``realesrgan`` upscale engine: Real-ESRGAN's networks on official weights.

Weights: a registry name (``RealESRGAN_x4plus``, ``RealESRGAN_x2plus``,
``realesr-general-x4v3``, ``realesr-animevideov3``; see :mod:`artwalk.models`) or a path
to a ``.pth`` (read with ``torch.load(weights_only=True)``; the ``params_ema`` entry is
preferred to ``params``, a bare state dict also works) or a ``.safetensors`` file.

The architecture is read from the state dict, never from the file name:

- RRDBNet (:mod:`super_resolution.rrdbnet`): keys ``conv_first``, ``body.N.rdb1..3``,
  ``conv_up1/2``, ``conv_hr``, ``conv_last``; ``conv_first``'s input channels give the
  scale (3: x4, 12: x2 by pixel-unshuffle, 48: x1);
- SRVGGNetCompact (:mod:`super_resolution.srvgg`): only ``body.N`` convs with a PReLU
  between each two; the last conv's 3 * s * s outputs give the scale s.

Anything else raises :class:`~artwalk.errors.UnsupportedWeightsError`. Files are read by
:mod:`artwalk.weights` (never an unrestricted pickle).

Geometry is the wrapper's job: frames are reflect-padded to the network's multiple,
run whole or in tiles, cropped, clamped to [0, 1] and brought to the exact target size
by Lanczos (area when shrinking). A tile is computed with ``tile_pad`` pixels of real
context around it and only its centre kept; by default that context is the network's
receptive radius, so tiled output equals untiled output (to float rounding) and the
tile size is not part of the engine's identity. A smaller ``tile_pad`` is faster and
approximate, and then is part of the identity.

``realesr-general-x4v3`` takes a denoise strength d in [0, 1] (default 0.5, as upstream):
its weights become ``d * x4v3 + (1 - d) * wdn-x4v3`` (deep network interpolation with
the companion ``realesr-general-wdn-x4v3`` file, looked up by the same registry or
next to the given file).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from artwalk.devices import gpu_memory, resolve_device, resolve_dtype
from artwalk.errors import ConfigError, InputError, UnsupportedWeightsError, WeightsMissingError, first_line
from artwalk.images import resize
from artwalk.models import REGISTRY, download_hint, weights_file, weights_sha256
from artwalk.weights import read_weights, tensors_of
from super_resolution import rrdbnet, srvgg
from super_resolution.engines import ENGINES

log = logging.getLogger(__name__)

GENERAL = "realesr-general-x4v3"
GENERAL_WDN = "realesr-general-wdn-x4v3"
VERSION = 1  # bump when the output bytes of the same weights and settings change


# ---------------------------------------------------------------------------- weights


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pth`` (``params_ema``, else ``params``, else the dict itself)
    or ``.safetensors`` file, on the CPU (:func:`artwalk.weights.read_weights`)."""
    path = Path(path)
    obj, _ = read_weights(path, "Real-ESRGAN weights")
    if isinstance(obj, dict):
        for entry in ("params_ema", "params"):
            if isinstance(obj.get(entry), dict):
                obj = obj[entry]
                break
    tensors = tensors_of(obj)
    if not tensors:
        raise UnsupportedWeightsError(f"{path}: no state dict of tensors in this file (nor under params_ema/params)")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def interpolate_state_dicts(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], weight_a: float,
                            source: str = "the two models") -> dict[str, torch.Tensor]:
    """Deep network interpolation: ``weight_a * a + (1 - weight_a) * b``, key by key, in float32."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise UnsupportedWeightsError(f"{source}: different layouts, cannot interpolate their weights")
    return {k: weight_a * a[k].float() + (1.0 - weight_a) * b[k].float() for k in a}


def build_network(state_dict: dict[str, torch.Tensor], source: str = "weights") -> tuple[nn.Module, str, object]:
    """(network with these weights, architecture name, its parameters) for a state dict."""
    for arch, detect, cls in (("RRDBNet", rrdbnet.detect, rrdbnet.RRDBNet),
                              ("SRVGGNetCompact", srvgg.detect, srvgg.SRVGGNetCompact)):
        params = detect(state_dict)
        if params is None:
            continue
        net = cls(params)
        try:
            net.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise UnsupportedWeightsError(
                f"{source}: looks like {arch} {params} but its weights do not fit ({first_line(exc)})"
            ) from None
        return net, arch, params
    sample = ", ".join(sorted(state_dict)[:4])
    raise UnsupportedWeightsError(
        f"{source}: not a Real-ESRGAN RRDBNet or SRVGGNetCompact state dict (keys start: {sample}, ...); "
        "use an official Real-ESRGAN .pth or a safetensors export of one"
    )


def _model_files(model: str, denoise_strength: float | None) -> tuple[Path, Path | None, float | None]:
    """(weights file, wdn companion or None, denoise strength applied or None)."""
    main = weights_file(model)
    is_general = model == GENERAL or (model not in REGISTRY and GENERAL in main.name and GENERAL_WDN not in main.name)
    if not is_general:
        if denoise_strength is not None:
            raise ConfigError(f"--denoise-strength applies only to {GENERAL}, not to model {model}")
        return main, None, None
    strength = float(ENGINES.get("realesrgan").value("denoise_strength", denoise_strength))
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"--denoise-strength must be in [0, 1], got {denoise_strength}")
    if strength == 1.0:
        return main, None, strength
    if model == GENERAL:
        try:
            return main, weights_file(GENERAL_WDN), strength
        except WeightsMissingError as exc:
            raise WeightsMissingError(f"denoise strength {strength} needs the wdn companion: {exc}; "
                                      "or use --denoise-strength 1") from None
    wdn = main.with_name(main.name.replace(GENERAL, GENERAL_WDN))
    if not wdn.is_file():
        hint = download_hint(GENERAL_WDN) if GENERAL_WDN in REGISTRY else "fetch it from the Real-ESRGAN releases"
        raise WeightsMissingError(
            f"denoise strength {strength} needs {wdn.name} next to {main.name}: {hint}, or use --denoise-strength 1"
        )
    return main, wdn, strength


# ---------------------------------------------------------------------------- geometry


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right by reflection (replication when too small) to a multiple."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _spans(size: int, tile: int, pad: int) -> list[tuple[int, int, int, int]]:
    """(start, end, context start, context end) of the tiles along one side."""
    return [(s, min(s + tile, size), max(s - pad, 0), min(s + tile + pad, size)) for s in range(0, size, tile)]


class Upscaler:
    """A network with its geometry: (B, 3, H, W) float32 in [0, 1] -> (B, 3, sH, sW), clamped.

    ``tile`` 0 runs whole frames; otherwise tiles of ``tile`` pixels, each computed with
    ``tile_pad`` pixels of context (default: the receptive radius, exact). Both are
    rounded up to the network's multiple. One forward pass at a time (thread-safe).
    """

    def __init__(self, net: nn.Module, scale: int, multiple: int, context: int, device: torch.device,
                 dtype: torch.dtype, tile: int = 0, tile_pad: int | None = None):
        if tile < 0 or (tile_pad is not None and tile_pad < 0):
            raise ConfigError(f"--tile and --tile-pad must be >= 0, got {tile} and {tile_pad}")
        up = lambda n: -(-n // multiple) * multiple  # noqa: E731
        self.net = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.scale, self.multiple, self.context = scale, multiple, context
        self.device, self.dtype = device, dtype
        self.tile = up(tile) if tile else 0
        self.tile_pad = up(context if tile_pad is None else tile_pad)
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        """True when tiling cannot change the output (beyond float rounding)."""
        return self.tile == 0 or self.tile_pad >= self.context

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        advice = (f"lower --batch, or pass --tile (now {self.tile or 'off'}; try 256), or use --dtype float16")
        with gpu_memory(f"realesrgan on a {x.shape[-1]}x{x.shape[-2]} input, batch {x.shape[0]}", advice):
            return self.net(x.to(self.dtype)).float()

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s = self.scale
        x = _pad_to_multiple(x.to(self.device, torch.float32), self.multiple)
        hp, wp = x.shape[-2:]
        with self._lock:
            if not self.tile or (hp <= self.tile and wp <= self.tile):
                out = self._forward(x)
            else:
                out = torch.empty((b, 3, hp * s, wp * s), dtype=torch.float32, device=self.device)
                for y0, y1, cy0, cy1 in _spans(hp, self.tile, self.tile_pad):
                    for x0, x1, cx0, cx1 in _spans(wp, self.tile, self.tile_pad):
                        piece = self._forward(x[:, :, cy0:cy1, cx0:cx1])
                        out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = piece[
                            :, :, (y0 - cy0) * s:(y1 - cy0) * s, (x0 - cx0) * s:(x1 - cx0) * s]
        return out[:, :, :h * s, :w * s].clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------- engine


class RealESRGANEngine:
    """Real-ESRGAN x2/x4 network, then Lanczos to the exact target size."""

    name = "realesrgan"

    def __init__(self, model: str | None = None, tile: int | None = None, tile_pad: int | None = None,
                 dtype: str | None = None, device: str | None = None, denoise_strength: float | None = None):
        spec = ENGINES.get(self.name)  # every option's default
        model, tile = str(spec.value("model", model)), int(spec.value("tile", tile))
        path, wdn, strength = _model_files(model, denoise_strength)
        state = load_state_dict(path)
        if wdn is not None:
            state = interpolate_state_dicts(state, load_state_dict(wdn), strength, f"{path.name} and {wdn.name}")
        net, self.arch, self.params = build_network(state, str(path) + (f" + {wdn.name}" if wdn else ""))
        self.model, self.path, self.wdn_path, self.denoise_strength = model, path, wdn, strength
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device, supports_half=True)
        multiple = getattr(self.params, "unshuffle", 1)
        self.upscaler = Upscaler(net, self.params.scale, multiple, self.params.context, torch_device,
                                 torch_dtype, tile, tile_pad)
        log.info("realesrgan: %s (%s x%d) on %s %s%s", path.name, self.arch, self.params.scale, torch_device,
                 str(torch_dtype).removeprefix("torch."),
                 f", denoise strength {strength}" if strength is not None else "")

    @property
    def scale(self) -> int:
        return self.params.scale

    def identity(self) -> dict:
        up = self.upscaler
        ident = {
            "engine": self.name, "version": VERSION, "arch": self.arch, "params": asdict(self.params),
            "scale": self.params.scale, "weights_sha256": weights_sha256(self.path),
            "dtype": str(up.dtype).removeprefix("torch."),
        }
        if self.denoise_strength is not None:
            ident["denoise_strength"] = self.denoise_strength
            if self.wdn_path is not None:
                ident["wdn_weights_sha256"] = weights_sha256(self.wdn_path)
        if not up.exact:
            ident["tile"], ident["tile_pad"] = up.tile, up.tile_pad
        return ident

    def upscale_batch(self, rgbs: Sequence[np.ndarray], width: int, height: int) -> list[np.ndarray]:
        """Each RGB float32 (H, W, 3) in [0, 1] to exactly (height, width, 3); frames of one
        size go through the network together."""
        out: list[np.ndarray | None] = [None] * len(rgbs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(rgbs):
            if rgb.ndim != 3 or rgb.shape[2] != 3:
                raise InputError(f"realesrgan: expected an RGB image (H, W, 3), got shape {rgb.shape}")
            groups.setdefault(rgb.shape, []).append(i)
        for members in groups.values():
            batch = torch.from_numpy(np.stack([np.asarray(rgbs[i], dtype=np.float32) for i in members]))
            result = self.upscaler(batch.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).cpu().numpy()
            for i, frame in zip(members, result):
                out[i] = resize(np.ascontiguousarray(frame), width, height)
        return out
