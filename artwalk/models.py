"""The model registry: short names for every model the engines use.

Two kinds of entry:

- ``hub``: a diffusers folder on the Hugging Face hub (``source`` is the repo id).
  It lives in the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE`` are respected)
  and is always loaded from there, never fetched by an engine (only ``artwalk models
  download`` fetches).
- ``file``: one weights file fetched by URL (``source``) into the artwalk cache
  (``$ARTWALK_CACHE``, else ``$XDG_CACHE_HOME/artwalk``, else ``~/.cache/artwalk``)
  by :func:`artwalk.download.download`.

Checksums of file models::

    <cache>/
        RealESRGAN_x4plus.pth          the weights, placed only once verified
        RealESRGAN_x4plus.pth.sha256   "<sha256>  RealESRGAN_x4plus.pth" (sha256sum format)
        RealESRGAN_x4plus.pth.part     an interrupted download, resumed by the next one

A ``sha256`` pinned here was taken from a public source that checks the same
release file (named beside each entry). A file with no pinned checksum is
trusted on first use: the checksum of the first download is recorded beside it
(``<file>.sha256``) and :func:`weights_file` refuses the file if it later differs.

A user may always pass a hub id or a local path instead of a short name. A model
that is not on this machine raises :class:`WeightsMissingError` with one line that
names it and the command that fetches it (``artwalk models download NAME``);
:func:`check_present` asks without loading anything, so a walk's plan can refuse
before any work starts.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from artwalk.errors import ConfigError, WeightsMissingError
from artwalk.fsutil import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "hub" or "file"
    source: str  # hub repo id, or URL of the file
    stage: str  # keyframes | motion | upscale
    licence: str
    description: str
    filename: str | None = None  # file kind: its name in the cache
    sha256: str | None = None  # file kind: pinned checksum, when known
    # What the model needs to run as it was made to (few-step checkpoints): default steps,
    # guidance, and the scheduler class with its settings.
    settings: Mapping[str, Any] = field(default_factory=dict)
    # hub kind: the file that marks a complete copy (a transformers model has config.json)
    index: str = "model_index.json"


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.kind not in ("hub", "file"):
        raise ValueError(f"model {spec.name}: kind must be hub or file")
    if spec.kind == "file" and not spec.filename:
        raise ValueError(f"model {spec.name}: a file model needs a filename")
    if spec.sha256 is not None and (len(spec.sha256) != 64 or spec.sha256.strip("0123456789abcdef")):
        raise ValueError(f"model {spec.name}: sha256 must be 64 lower-case hex digits")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}' (see `artwalk models list`)") from None


def model_settings(model: str | None) -> Mapping[str, Any]:
    """The registry's run settings of ``model`` (a short name or its hub id), else none."""
    if model is None:
        return {}
    spec = REGISTRY.get(model) or next((s for s in REGISTRY.values() if s.source == model), None)
    return spec.settings if spec is not None else {}


def cache_dir() -> Path:
    """Where file-kind weights are kept."""
    if os.environ.get("ARTWALK_CACHE"):
        return Path(os.environ["ARTWALK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "artwalk"


def download_hint(name: str) -> str:
    return f"run `artwalk models download {name}` on a machine with network"


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not when huggingface_hub was imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


# ---------------------------------------------------------------------------------------------
# Checksums

def checksum_path(path: Path) -> Path:
    """The file beside ``path`` that records its sha256."""
    return path.with_name(path.name + ".sha256")


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_sha256(path: Path | str) -> str:
    """The sha256 of a weights file, hashed once per process (per path, size and mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def recorded_sha256(path: Path) -> str | None:
    """The checksum recorded beside ``path`` at its first download, if any."""
    try:
        text = checksum_path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return text[0].lower() if text else None


def record_sha256(path: Path, digest: str) -> None:
    atomic_write_bytes(checksum_path(path), f"{digest}  {path.name}\n".encode("ascii"))


# ---------------------------------------------------------------------------------------------
# Lookups

def weights_file(name_or_path: str | Path) -> Path:
    """The local weights file for a registry name or a path; one clear line if missing.

    A registered file is checked against its pinned sha256, or else against the one
    recorded at its first download (trust on first use; recorded now if there is none).
    """
    candidate = Path(name_or_path)
    if str(name_or_path) not in REGISTRY:
        if candidate.is_file():
            return candidate
        raise WeightsMissingError(
            f"weights file {candidate} not found (give a registry name from `artwalk models list` or an existing file)"
        )
    spec = REGISTRY[str(name_or_path)]
    if spec.kind != "file":
        raise ConfigError(f"model {spec.name} is a hub folder, not a weights file")
    path = cache_dir() / spec.filename
    if not path.is_file():
        raise WeightsMissingError(f"weights for {spec.name} ({spec.filename}) are not in {cache_dir()}: "
                                  f"{download_hint(spec.name)}")
    expected = spec.sha256 or recorded_sha256(path)
    got = weights_sha256(path)
    if expected is None:
        log.warning("%s: no checksum pinned or recorded; recording sha256 %s (trust on first use)", path, got)
        record_sha256(path, got)
    elif got != expected:
        raise WeightsMissingError(
            f"weights for {spec.name} ({path}) do not match their checksum (expected {expected}, got {got}):"
            f" run `artwalk models download {spec.name} --force`"
        )
    return path


def hub_id(name_or_id: str) -> str:
    """A registry short name becomes its hub id; a hub id or local folder passes through."""
    spec = REGISTRY.get(name_or_id)
    if spec is None:
        return name_or_id
    if spec.kind != "hub":
        raise ConfigError(f"model {spec.name} is a weights file, not a hub folder")
    return spec.source


def hub_missing(name_or_id: str) -> WeightsMissingError:
    """The one-line error for a hub model that is not in the Hugging Face cache.

    Engines never download: only ``artwalk models download`` fetches. They raise this
    when ``from_pretrained(..., local_files_only=True)`` finds no local copy::

        except OSError:
            raise hub_missing(name) from None
    """
    spec = REGISTRY.get(name_or_id)
    repo = spec.source if spec else name_or_id
    label = f"model {spec.name} ({repo})" if spec else f"model {repo}"
    hint = download_hint(spec.name if spec else repo)
    return WeightsMissingError(f"{label} is not in the Hugging Face cache: {hint}")


def model_source(model: str) -> tuple[str, bool]:
    """(hub id or absolute folder, is_local) for a short name, hub id or folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    if path.is_file():
        raise WeightsMissingError(f"{path} is a file, not a model: give a diffusers pipeline folder (with "
                                  "model_index.json), a hub id or a registry name (see `artwalk models list`)")
    if model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or "\\" in model:
        raise WeightsMissingError(f"model folder {path} does not exist")
    return hub_id(model), False


def bundle_role(model: str | None, role: str | None) -> str | None:
    """``MODEL/<role>`` when ``model`` is a bundle folder that has that role, else None.

    A bundle is a folder with one diffusers pipeline folder per role (prior/, decoder/,
    sd/, unclip/, inpaint/, ...) instead of a model_index.json of its own.
    """
    if not model or not role:
        return None
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "model_index.json").is_file() and (path / role / "model_index.json").is_file():
        return str(path / role)
    return None


def pick_model(option: str, options: dict, role: str | None, default: str) -> str:
    """The model a slot of an engine uses, from the engine's options.

    The ``model`` option itself: its bundle's ``role`` folder, else the model, else the
    default. Any other (``prior_model``, ``outpaint_model``): the option, else the
    ``model`` bundle's ``role`` folder, else the default.
    """
    value, bundle = options.get(option), options.get("model")
    if option == "model":
        return bundle_role(value, role) or value or default
    return value or bundle_role(bundle, role) or default


def check_present(model: str, kind: str) -> None:
    """Raise :class:`WeightsMissingError` (one line, with the fetch command) unless the
    weights of ``model`` are on this machine. Nothing is loaded or downloaded."""
    if kind == "file":
        weights_file(model)
        return
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise WeightsMissingError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
        return
    repo, _ = model_source(model)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        raise hub_missing(model) from None
    try:
        cached = try_to_load_from_cache(repo, "model_index.json")
    except ValueError:  # not a valid repo id
        raise ConfigError(f"model '{model}' is neither a folder nor a hub id (owner/name)") from None
    if not isinstance(cached, str):
        raise hub_missing(model)


# ---------------------------------------------------------------------------------------------
# The models the engines use

_KANDINSKY = "Apache-2.0"
_SD2 = "CreativeML Open RAIL++-M (use restrictions apply)"
_SD1 = "CreativeML OpenRAIL-M (use restrictions apply)"
_ESRGAN = "BSD-3-Clause"
_ESRGAN_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_FILM_URL = "https://github.com/dajes/frame-interpolation-pytorch/releases/download/v1.0.2"

for _name, _repo, _licence, _what in [
    ("kandinsky-2-2-prior", "kandinsky-community/kandinsky-2-2-prior", _KANDINSKY,
     "Kandinsky 2.2 prior: text/image to CLIP image embeddings (keyframes engine kandinsky)"),
    ("kandinsky-2-2-decoder", "kandinsky-community/kandinsky-2-2-decoder", _KANDINSKY,
     "Kandinsky 2.2 decoder: image embeddings to pixels (keyframes engine kandinsky)"),
    ("kandinsky-2-2-decoder-inpaint", "kandinsky-community/kandinsky-2-2-decoder-inpaint", _KANDINSKY,
     "Kandinsky 2.2 inpainting decoder (keyframes engine kandinsky, fills letterbox borders)"),
    # Stability AI withdrew its SD 2.x repositories from the hub in November 2025; the
    # sd2-community organisation keeps the same files (same licence).
    ("sd21-unclip", "sd2-community/stable-diffusion-2-1-unclip", _SD2,
     "Stable Diffusion 2.1 unCLIP (ViT-H) img2img, mirror of stabilityai/stable-diffusion-2-1-unclip"
     " (keyframes engine unclip)"),
    ("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", _SD1,
     "Stable Diffusion 1.5, maintained mirror of runwayml/stable-diffusion-v1-5 (keyframes engine sd)"),
    ("sd2-inpaint", "sd2-community/stable-diffusion-2-inpainting", _SD2,
     "Stable Diffusion 2 inpainting, mirror of stabilityai/stable-diffusion-2-inpainting"
     " (keyframes, fills letterbox borders)"),
]:
    register(ModelSpec(_name, "hub", _repo, "keyframes", _licence, _what))

# MagicPrompt: a GPT-2 fine-tuned on about 80,000 prompts from Lexica.art (MIT, per its model
# card); `artwalk inspire` continues a topic with it. A transformers folder, not a diffusers one.
register(ModelSpec(
    "magicprompt", "hub", "Gustavosta/MagicPrompt-Stable-Diffusion", "keyframes", "MIT (credit: Gustavosta)",
    "MagicPrompt, GPT-2 prompt generator for Stable Diffusion (artwalk inspire --engine magicprompt)",
    index="config.json"))

# Interrogation (`artwalk interrogate`): BLIP writes a caption, CLIP ranks phrase lists against
# the image. Transformers folders (config.json at the top), loaded by transformers itself.
for _name, _repo, _licence, _what in [
    ("blip-large", "Salesforce/blip-image-captioning-large", "BSD-3-Clause",
     "BLIP image captioning, ViT-L (artwalk interrogate: the caption; about 1.9 GB)"),
    ("blip-base", "Salesforce/blip-image-captioning-base", "BSD-3-Clause",
     "BLIP image captioning, ViT-B, for small machines (artwalk interrogate --caption-model blip-base)"),
    ("clip-vit-l-14", "openai/clip-vit-large-patch14", "MIT",
     "OpenAI CLIP ViT-L/14, the text encoder of SD 1.x (artwalk interrogate: ranks phrases; about 1.7 GB)"),
    ("clip-vit-h-14", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "MIT",
     "LAION OpenCLIP ViT-H/14, the text encoder of SD 2.x (artwalk interrogate --for sd2; about 3.9 GB)"),
]:
    register(ModelSpec(_name, "hub", _repo, "keyframes", _licence, _what, index="config.json"))

# Text to image for prompt walks (keyframes engine sd). The turbo checkpoints are distilled
# for one to four steps without classifier-free guidance, on Euler with trailing timesteps.
_TURBO = {"steps": 1, "guidance": 0.0, "scheduler": {"class": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}}
_SAI_NC = "Stability AI Non-Commercial Research Community License (no commercial use)"
register(ModelSpec("sdxl", "hub", "stabilityai/stable-diffusion-xl-base-1.0", "keyframes",
                   "CreativeML Open RAIL++-M (use restrictions apply)",
                   "Stable Diffusion XL 1.0 base, 1024x1024 (keyframes engine sd: prompt walks)"))
register(ModelSpec("sd-turbo", "hub", "stabilityai/sd-turbo", "keyframes", _SAI_NC,
                   "SD-Turbo: SD 2.1 distilled to 1-4 steps, 512x512, guidance off (keyframes engine sd: prompt "
                   "walks)", settings=_TURBO))
register(ModelSpec("sdxl-turbo", "hub", "stabilityai/sdxl-turbo", "keyframes", _SAI_NC,
                   "SDXL-Turbo: SDXL distilled to 1-4 steps, 512x512, guidance off (keyframes engine sd: prompt "
                   "walks)", settings=_TURBO))

# FILM: the official TF2 weights (Google Research, Apache-2.0) exported to a TorchScript
# archive by the PyTorch port dajes/frame-interpolation-pytorch. No public checksum found:
# trusted on first use.
register(ModelSpec(
    "film", "file", f"{_FILM_URL}/film_net_fp32.pt", "motion", "Apache-2.0 (FILM weights, Google Research)",
    "FILM 'Style' network, float32 TorchScript export (motion engine film)", filename="film_net_fp32.pt"))
register(ModelSpec(
    "film-fp16", "file", f"{_FILM_URL}/film_net_fp16.pt", "motion", "Apache-2.0 (FILM weights, Google Research)",
    "FILM 'Style' network, float16 TorchScript export (motion engine film on GPU)", filename="film_net_fp16.pt"))

# Real-ESRGAN official release files. Checksums as pinned by the Arch Linux AUR package
# python-realesrgan 0.3.0 (PKGBUILD sha256sums, checked by makepkg against these URLs) and
# matching several independent projects that pin the same release files.
for _name, _file, _tag, _sha, _what in [
    ("RealESRGAN_x4plus", "RealESRGAN_x4plus.pth", "v0.1.0",
     "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", "RRDBNet x4, general photos (67 MB)"),
    ("RealESRGAN_x2plus", "RealESRGAN_x2plus.pth", "v0.2.1",
     "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", "RRDBNet x2, general photos (67 MB)"),
    ("realesr-general-x4v3", "realesr-general-x4v3.pth", "v0.2.5.0",
     "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", "SRVGG compact x4, general (4.9 MB)"),
    ("realesr-general-wdn-x4v3", "realesr-general-wdn-x4v3.pth", "v0.2.5.0",
     "1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca",
     "SRVGG compact x4, general, weak denoise; blended with x4v3 for denoise strength (4.9 MB)"),
    ("realesr-animevideov3", "realesr-animevideov3.pth", "v0.2.5.0",
     "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d", "SRVGG compact x4, anime video (2.5 MB)"),
]:
    register(ModelSpec(_name, "file", f"{_ESRGAN_URL}/{_tag}/{_file}", "upscale", _ESRGAN,
                       f"Real-ESRGAN {_what}", filename=_file, sha256=_sha))

del _name, _repo, _licence, _what, _file, _tag, _sha
