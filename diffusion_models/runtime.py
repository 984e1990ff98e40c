"""The diffusers runtime the neural keyframe engines share (they import torch/diffusers lazily).

- :func:`load_pipeline`: ``from_pretrained`` of a registry name, hub id or folder, always
  from local files (the Hugging Face cache or the folder; nothing is ever fetched
  here), with one clear line when the model is missing;
- :class:`Runtime`: device, dtype and the memory switches (attention slicing, VAE
  tiling, CPU offload) applied to every pipeline of an engine, and out-of-memory as
  one line;
- geometry: models work at multiples of their size factor, callers pass any W x H
  (:func:`padded_size`, :func:`pad_to`, :func:`crop_to`);
- conversions between our RGB float32 (H, W, 3) images and the pipelines' tensors.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
from pathlib import Path

import numpy as np

from artwalk.engines import option_flag as flag
from artwalk.errors import ConfigError, WeightsMissingError, first_line
from artwalk.models import hub_missing, model_source
from artwalk.progress import drawing
from artwalk.weights import refused_by_weights_only

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _loading_bars(enabled: bool):
    """diffusers/transformers show bars while loading; hide them when progress is off, or
    when they would draw into a log (see :mod:`artwalk.progress`)."""
    if enabled and drawing():
        yield
        return
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    d_on, t_on = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if d_on:
            dlog.enable_progress_bar()
        if t_on:
            tlog.enable_progress_bar()


def load_pipeline(cls, model: str, role: str, *, progress: bool = True, **kwargs):
    """``cls.from_pretrained`` of a short name, hub id or folder, from local files only."""
    source, local = model_source(model)
    if local and not (Path(source) / "model_index.json").is_file():
        raise ConfigError(f"{source}: not a diffusers pipeline folder for the {role} (no model_index.json)")
    log.info("loading the %s: %s", role, source)
    try:
        with _loading_bars(progress):
            return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as exc:
        if local:
            raise WeightsMissingError(
                f"{source}: cannot load the {role}: {refused_by_weights_only(exc) or first_line(exc)}") from None
        raise hub_missing(model) from None
    except ValueError as exc:
        if type(exc).__name__ == "HFValidationError":
            raise ConfigError(f"model '{model}' is neither a folder nor a hub id (owner/name)") from None
        raise


class Runtime:
    """Device, dtype and memory settings shared by a neural engine's pipelines."""

    def __init__(self, device: str | None = None, dtype: str | None = None, attention_slicing: bool = False,
                 vae_tiling: bool = False, cpu_offload: bool = False, progress: bool = True) -> None:
        from artwalk.devices import resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.dtype_name = str(self.dtype).removeprefix("torch.")
        if cpu_offload and self.device.type != "cuda":
            raise ConfigError("--cpu-offload moves models between CPU and GPU; it needs a CUDA --device")
        self.attention_slicing = attention_slicing
        self.vae_tiling = vae_tiling
        self.cpu_offload = cpu_offload
        self.progress = progress

    def place(self, pipe, vae_attr: str | None = "vae"):
        """Move ``pipe`` to the device (or set up CPU offload) and apply the memory flags."""
        if self.attention_slicing:
            pipe.enable_attention_slicing()
        if self.vae_tiling and vae_attr:
            vae = getattr(pipe, vae_attr, None)
            if vae is None or not hasattr(vae, "tiled_decode"):
                raise ConfigError(f"--vae-tiling: this model's {vae_attr} has no tiled decoding; drop the flag")
            vae.enable_tiling()
        if self.cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=not (self.progress and drawing()), leave=False)
        return pipe

    def identity(self) -> dict:
        out = {"dtype": self.dtype_name}
        if self.vae_tiling:
            out["vae_tiling"] = True
        return out

    def memory(self, what: str):
        """A block in which running out of GPU memory is one line naming ``what``."""
        from artwalk.devices import gpu_memory

        return gpu_memory(what, "try --attention-slicing, --vae-tiling or --cpu-offload, a smaller --w/--h, "
                                "or --dtype float16")


class Pipelines:
    """An engine's diffusers pipelines by role, each loaded once, on first use, and placed
    by the engine's :class:`Runtime`; ``attach`` hands in pipelines built elsewhere."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._recipes: dict[str, tuple] = {}
        self._loaded: dict[str, object] = {}

    def add(self, role: str, cls_name: str, model: str, label: str, vae_attr: str | None = "vae", **kwargs) -> None:
        """How to load ``role``: the diffusers class ``cls_name`` from ``model``. A keyword
        given as ``only_if_index_has`` names the components the others apply to."""
        self._recipes[role] = (cls_name, model, label, vae_attr, kwargs)

    def get(self, role: str):
        if role not in self._loaded:
            import diffusers

            cls_name, model, label, vae_attr, kwargs = self._recipes[role]
            kwargs = dict(kwargs)
            needs = kwargs.pop("only_if_index_has", None)
            index = model_index(model)
            if needs is not None and needs not in index:
                kwargs = {}  # a pipeline without that component (SDXL has no safety checker)
            if index.get("add_watermarker"):
                # SDXL's model_index asks for a watermarker, whose package (invisible-watermark) is optional;
                # our loops decode the latents themselves and never apply it.
                kwargs["add_watermarker"] = False
            pipe = load_pipeline(getattr(diffusers, cls_name), model, label, progress=self.rt.progress,
                                 dtype=self.rt.dtype, **kwargs)
            self._loaded[role] = self.rt.place(pipe, vae_attr=vae_attr)
        return self._loaded[role]

    def attach(self, **pipes) -> None:
        for role, pipe in pipes.items():
            if pipe is not None:
                if role not in self._recipes:
                    raise ValueError(f"no pipeline role {role!r} here (roles: {', '.join(self._recipes)})")
                self._loaded[role] = self.rt.place(pipe, vae_attr=self._recipes[role][3])


def model_index(model: str) -> dict:
    """The model_index.json of a pipeline folder or cached hub model ({} when not found)."""
    import json

    source, local = model_source(model)
    path = Path(source) / "model_index.json" if local else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "model_index.json")
        except Exception:  # no hub library, or not a repo id: nothing to read
            cached = None
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return json.loads(path.read_text("utf-8")) if path is not None else {}
    except (OSError, ValueError):
        return {}


# Schedulers that draw fresh noise at every step, and their deterministic counterparts. A
# prompt walk's in-between at t is rendered from a mix of two keyframes' conditionings; with
# per-step noise from one keyframe's seed or the other's, the frames would jump where the
# seed changes. Without it, a frame is a smooth function of t.
_DETERMINISTIC = {"DDPMScheduler": "DDIMScheduler", "EulerAncestralDiscreteScheduler": "EulerDiscreteScheduler",
                  "KDPM2AncestralDiscreteScheduler": "KDPM2DiscreteScheduler"}


def deterministic(scheduler):
    """``scheduler``, or the deterministic scheduler of the same family built from its config."""
    name = _DETERMINISTIC.get(type(scheduler).__name__)
    if name is None:
        return scheduler
    import diffusers

    log.info("prompt walk: %s draws noise at every step; using %s so the in-betweens move smoothly",
             type(scheduler).__name__, name)
    return getattr(diffusers, name).from_config(scheduler.config)


@functools.lru_cache(maxsize=None)
def _step_parameters(cls) -> frozenset:
    return frozenset(inspect.signature(cls.step).parameters)


def step_kwargs(scheduler, generator, eta: float = 0.0) -> dict:
    """The keywords of ``scheduler.step`` beyond (output, t, sample) that this scheduler takes:
    ``generator`` (per-step noise) and ``eta`` (DDIM's), only where its ``step`` has them, as
    diffusers' ``prepare_extra_step_kwargs`` does. PNDM, LMS, Heun, UniPC, DEIS and KDPM2 take
    neither."""
    accepted = _step_parameters(type(scheduler))
    extra = {}
    if "eta" in accepted:
        extra["eta"] = eta
    if "generator" in accepted:
        extra["generator"] = generator
    return extra


def check_range(option: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{flag(option)} must be in {bracket}{low}, {high}], got {value}")


# ---------------------------------------------------------------------------------------------
# Geometry: models work on multiples of their size factor; callers pass any W x H.

def padded_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """W x H rounded up to the model's multiple."""
    return math.ceil(width / multiple) * multiple, math.ceil(height / multiple) * multiple


def _pads(size: int, padded: int) -> tuple[int, int]:
    before = (padded - size) // 2
    return before, padded - size - before


def pad_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mirror-pad an (H, W, C) image, centred, to ``width`` x ``height``."""
    h, w = rgb.shape[:2]
    pads = [_pads(h, height), _pads(w, width)] + [(0, 0)] * (rgb.ndim - 2)
    return np.pad(rgb, pads, mode="symmetric") if any(sum(p) for p in pads) else rgb


def crop_to(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centre ``width`` x ``height`` of an image padded by :func:`pad_to`."""
    h, w = rgb.shape[:2]
    if h < height or w < width:
        raise ValueError(f"crop_to: a {w}x{h} image has no {width}x{height} centre")
    top, left = _pads(height, h)[0], _pads(width, w)[0]
    return np.ascontiguousarray(rgb[top : top + height, left : left + width])


def to_uint8_pil(rgb: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))


def to_tensor(rgb: np.ndarray, device, dtype):
    """(H, W, 3) in [0, 1] -> (1, 3, H, W) in [-1, 1] on ``device``."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].float()
    return (t * 2.0 - 1.0).to(device=device, dtype=dtype)


def to_numpy(image) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) float32 in [0, 1] (float32 maths)."""
    x = (image[0].float() / 2.0 + 0.5).clamp(0.0, 1.0)
    return x.permute(1, 2, 0).cpu().numpy().astype(np.float32)
