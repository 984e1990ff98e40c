"""Keyframe engines: what makes the in-betweens of a pair of artworks.

Every engine has the same small interface, so the stage's run loop (caching,
ordering, manifests) never changes when a neural engine is added:

- ``name``: the engine's name on the command line;
- ``makes_inbetweens``: False for ``none``, which only conforms the originals;
- ``takes_prompts``: True when ``inbetweens`` accepts per-image ``prompts``;
- ``identity()``: a JSON-able dict of everything that changes its output bytes
  (model ids or folders, steps, guidance, strength, dtype, ...), part of every
  pair's cache key;
- ``inbetweens(a, b, fractions, seed, prompts=None)``: yields one RGB float32
  (H, W, 3) image in [0, 1] per fraction in (0, 1), the same size as ``a`` and
  ``b``; all randomness comes from ``artwalk.devices.generator(seed)`` (one seed
  per pair). ``prompts`` is ``(prompt of a, prompt of b)`` from ``--prompts-csv``;
- ``outpaint(canvas, region, seed)`` (neural engines only; ``prompt=`` too where
  ``takes_prompts``): ``canvas`` with the boolean (H, W) ``region`` painted by the
  inpainting model; the stage keeps the original's pixels elsewhere
  (:mod:`diffusion_models.outpaint`);
- ``outpaint_identity()``: like ``identity()``, for the inpainting model; part of
  the cache key of every outpainted original;
- ``attach(...)`` (neural engines): use pipelines built elsewhere instead of
  loading them (the benchmark does).

Engines are made by ``create_engine(name, **options)`` from the stage's config;
an option an engine does not use is an error that names the flag. The neural
engines (``kandinsky``, ``unclip``, ``sd``) import PyTorch and diffusers only when
created, so the base install (engine ``none``) needs neither. Each loads its
models once, on first use: a rerun whose pairs are all cached loads nothing.

``--model`` takes a registry short name (``artwalk models list``), a hub id
(``owner/name``, from the Hugging Face cache; ``HF_HUB_OFFLINE=1`` is honoured)
or a local folder. A local folder is either one diffusers pipeline folder
(``model_index.json`` inside) or a bundle with one pipeline folder per role::

    MODEL/                       kandinsky      unclip         sd
      prior/model_index.json     the prior      -              -
      decoder/model_index.json   the decoder    -              -
      unclip/model_index.json    -              the pipeline   -
      sd/model_index.json        -              -              the pipeline
      inpaint/model_index.json   --outpaint     --outpaint     --outpaint

Missing weights raise :class:`WeightsMissingError` naming the model and the
command that fetches it.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import inspect
import logging
import math
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from artwalk.errors import ConfigError, InputError, WeightsMissingError

log = logging.getLogger(__name__)


class KeyframeEngine(Protocol):
    name: str
    makes_inbetweens: bool
    takes_prompts: bool

    def identity(self) -> dict: ...

    def inbetweens(
        self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int,
        prompts: tuple[str, str] | None = None,
    ) -> Iterator[np.ndarray]: ...


class NoneEngine:
    """No model: the walk's keyframes are the conformed originals only."""

    name = "none"
    makes_inbetweens = False
    takes_prompts = False

    def __init__(self, progress: bool = True) -> None:
        pass

    def identity(self) -> dict:
        return {"engine": "none"}

    def inbetweens(self, a, b, fractions, seed, prompts=None):
        raise ConfigError("engine 'none' makes no in-betweens; choose a diffusion engine")


# The neural engines: name -> (module, class). Listed in ENGINES only where PyTorch and
# diffusers are installed, so `--preset auto` never picks an engine that cannot run.
NEURAL = {
    "kandinsky": ("diffusion_models.kandinsky", "KandinskyEngine"),
    "unclip": ("diffusion_models.unclip", "UnclipEngine"),
    "sd": ("diffusion_models.sd", "StableDiffusionEngine"),
}
NEURAL_REQUIREMENTS = ("torch", "diffusers", "transformers")


def neural_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in NEURAL_REQUIREMENTS)


def _lazy(module: str, cls: str) -> Callable[..., KeyframeEngine]:
    def factory(**options):
        return getattr(importlib.import_module(module), cls)(**options)

    factory.target = (module, cls)  # type: ignore[attr-defined]
    return factory


ENGINES: dict[str, Callable[..., KeyframeEngine]] = {"none": NoneEngine}
if neural_installed():
    ENGINES.update({name: _lazy(*target) for name, target in NEURAL.items()})

ALL_ENGINES = ("none", *NEURAL)


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def create_engine(name: str, **options) -> KeyframeEngine:
    """The engine called ``name``, built with the options that are set (not None/False)."""
    if name in NEURAL and name not in ENGINES:
        raise ConfigError(
            f"engine '{name}' needs PyTorch and diffusers: pip install -r requirements/keyframes.txt"
        )
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(
            f"unknown keyframe engine '{name}' (available here: {', '.join(ENGINES)})"
        ) from None
    # Unset options (None) and switches left off (False) are not passed; progress always is.
    options = {k: v for k, v in options.items() if v is not None and (v is not False or k == "progress")}
    target = getattr(factory, "target", None)
    cls = getattr(importlib.import_module(target[0]), target[1]) if target else factory
    accepted = inspect.signature(cls).parameters
    unused = [k for k in options if k not in accepted]
    if unused:
        raise ConfigError(
            f"engine '{name}' does not use {', '.join(flag(k) for k in unused)}"
        )
    return cls(**options)


def engine_for_model(model: str) -> str | None:
    """The engine a model belongs to, when it can be told without loading it.

    From the pipeline class in a folder's (or a cached hub model's) model_index.json,
    from a bundle's role folders, else from the name.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if index.is_file():
            return _engine_of_index(index)
        for role, engine in (("decoder", "kandinsky"), ("unclip", "unclip"), ("sd", "sd")):
            if (path / role / "model_index.json").is_file():
                return engine
        return None
    from artwalk.errors import ArtwalkError
    from artwalk.models import hub_id

    try:
        repo = hub_id(model)
    except ArtwalkError:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "model_index.json")
    except Exception:  # not installed, or not a valid repo id: fall back to the name
        cached = None
    if isinstance(cached, str):
        return _engine_of_index(Path(cached))
    lowered = f"{model} {repo}".lower()
    for needle, engine in (("kandinsky", "kandinsky"), ("unclip", "unclip"), ("stable-diffusion", "sd")):
        if needle in lowered:
            return engine
    return "sd" if model.lower().startswith("sd") else None


def _engine_of_index(index: Path) -> str | None:
    text = index.read_text("utf-8", errors="replace")
    for needle, engine in (("Kandinsky", "kandinsky"), ("UnCLIP", "unclip"), ("StableDiffusion", "sd")):
        if needle in text:
            return engine
    return None


# ---------------------------------------------------------------------------------------------
# Prompts per image

def read_prompts_csv(path: Path | str) -> dict[str, str]:
    """``filename,prompt`` rows (a header row is optional) -> {filename: prompt}."""
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompts CSV ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the prompts CSV is not UTF-8 text") from None
    prompts: dict[str, str] = {}
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise InputError(f"{path}, line {line}: expected 'filename,prompt', got {','.join(row)!r}")
        name, prompt = row[0].strip(), ",".join(row[1:]).strip()
        if line == 1 and name.lower() in ("filename", "file", "image", "name"):
            continue
        prompts[name] = prompt
    if not prompts:
        raise InputError(f"{path}: no 'filename,prompt' rows")
    return prompts


def prompt_for(name: str, prompts: dict[str, str], default: str = "") -> str:
    """The prompt of an image file: by its name, else by its stem, else ``default``."""
    if name in prompts:
        return prompts[name]
    return prompts.get(Path(name).stem, default)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the neural engines (they import torch/diffusers lazily)

def model_source(model: str) -> tuple[str, bool]:
    """(hub id or absolute folder, is_local) for a short name, hub id or folder."""
    from artwalk.models import hub_id

    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    if model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or "\\" in model:
        raise WeightsMissingError(f"model folder {path} does not exist")
    return hub_id(model), False


def bundle_role(model: str | None, role: str) -> str | None:
    """``MODEL/<role>`` when ``model`` is a bundle folder that has that role, else None."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "model_index.json").is_file() and (path / role / "model_index.json").is_file():
        return str(path / role)
    return None


def pick_model(explicit: str | None, bundle: str | None, role: str, default: str) -> str:
    """An explicit flag, else the bundle's folder for ``role``, else the default."""
    return explicit or bundle_role(bundle, role) or default


@contextlib.contextmanager
def _loading_bars(enabled: bool):
    """diffusers/transformers show bars while loading; hide them when progress is off."""
    if enabled:
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
    """``cls.from_pretrained`` for a short name, hub id or folder; one clear line on failure."""
    from artwalk.models import hf_offline, hub_missing

    source, local = model_source(model)
    if local and not (Path(source) / "model_index.json").is_file():
        raise ConfigError(f"{source}: not a diffusers pipeline folder for the {role} (no model_index.json)")
    log.info("loading the %s: %s", role, source)
    try:
        with _loading_bars(progress):
            return cls.from_pretrained(source, local_files_only=hf_offline() or local, **kwargs)
    except OSError as exc:
        if local:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsMissingError(f"{source}: cannot load the {role}: {first}") from None
        raise hub_missing(model) from None
    except ValueError as exc:
        if type(exc).__name__ == "HFValidationError":
            raise ConfigError(f"model '{model}' is neither a folder nor a hub id (owner/name)") from None
        raise


class Runtime:
    """Device, dtype and memory settings shared by a neural engine's pipelines."""

    def __init__(self, device: str | None, dtype: str | None, attention_slicing: bool,
                 vae_tiling: bool, cpu_offload: bool, progress: bool) -> None:
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
        pipe.set_progress_bar_config(disable=not self.progress, leave=False)
        return pipe

    def identity(self) -> dict:
        out = {"dtype": self.dtype_name}
        if self.vae_tiling:
            out["vae_tiling"] = True
        return out


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
