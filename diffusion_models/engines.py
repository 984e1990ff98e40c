"""Keyframe engines: the registry, and the interface every engine has.

The stage's run loop (caching, ordering, manifests) never changes when an engine is
added. An engine has:

- ``name``; ``identity()``: a JSON-able dict of everything that changes its output
  bytes (model ids or folders, steps, guidance, strength, dtype, ...), part of every
  pair's cache key;
- ``inbetweens(a, b, fractions, seed, prompts=None)``: yields one RGB float32
  (H, W, 3) image in [0, 1] per fraction in (0, 1), the same size as ``a`` and ``b``;
  all randomness comes from ``artwalk.devices.generator(seed)`` (one seed per pair).
  ``prompts`` is ``(prompt of a, prompt of b)`` from ``--prompts-csv``;
- ``outpaint(canvas, region, seed, prompt=None)``: ``canvas`` with the boolean (H, W)
  ``region`` painted by the inpainting model (the stage keeps the original's pixels
  elsewhere, :mod:`diffusion_models.outpaint`), and ``outpaint_identity()``, part of
  the cache key of every outpainted original;
- prompt walks: ``conditioning(parts, negative, seed, guidance, size)``, a keyframe's
  :class:`~diffusion_models.conditioning.Conditioning` (``guidance`` None: the
  engine's ``guidance``); ``render(conditioning)``, its W x H image;
  ``text_identity()``, what changes those bytes;
- ``check_image_walk()``: raises one line when the engine's model cannot make
  in-betweens of images (an SDXL checkpoint for ``sd``), before any work;
- video init: ``restyle(conditioning, rgb, strength)``, a W x H frame through img2img.

What an engine can do is on its registry row (``features``): ``inbetweens``,
``prompts`` (``--prompts-csv``), ``outpaint``, ``text2image`` (prompt walks), ``video``
(video init). The
stage asks the row, never the object.

``none`` conforms the originals only. The neural engines (``kandinsky``, ``unclip``,
``sd``) import PyTorch and diffusers only when created, so the base install needs
neither; each loads its models once, on first use: a rerun whose pairs are all
cached loads nothing. Their model options take a registry short name (``artwalk
models list``), a hub id (from the Hugging Face cache, never fetched here) or a local
folder: one diffusers pipeline folder (``model_index.json`` inside), or a bundle with
one pipeline folder per role::

    MODEL/                       kandinsky      unclip         sd
      prior/model_index.json     the prior      -              -
      decoder/model_index.json   the decoder    -              -
      unclip/model_index.json    -              the pipeline   -
      sd/model_index.json        -              -              the pipeline
      inpaint/model_index.json   --outpaint     --outpaint     --outpaint
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from artwalk.engines import EngineRegistry, EngineSpec, ModelSlot
from artwalk.errors import ArtwalkError, ConfigError


class KeyframeEngine(Protocol):
    name: str

    def identity(self) -> dict: ...

    def inbetweens(self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int,
                   prompts: tuple[str, str] | None = None) -> Iterator[np.ndarray]: ...

    def outpaint_identity(self) -> dict: ...

    def outpaint(self, canvas: np.ndarray, region: np.ndarray, seed: int, prompt: str | None = None) -> np.ndarray: ...

    def check_image_walk(self) -> None: ...


class NoneEngine:
    """No model: the walk's keyframes are the conformed originals only."""

    name = "none"

    def identity(self) -> dict:
        return {"engine": "none"}

    def inbetweens(self, a, b, fractions, seed, prompts=None):
        raise ConfigError("engine 'none' makes no in-betweens; choose a diffusion engine")

    def outpaint_identity(self) -> dict:
        raise ConfigError("--outpaint needs a diffusion engine; for a classical fill use --fit contain-blur")

    def outpaint(self, canvas, region, seed, prompt=None):
        raise ConfigError("--outpaint needs a diffusion engine; for a classical fill use --fit contain-blur")

    def check_image_walk(self) -> None:
        pass


_RUNTIME = ("device", "dtype", "attention_slicing", "cpu_offload", "progress")
_NEURAL = dict(requires=("torch", "diffusers", "transformers"), install="pip install -r requirements/keyframes.txt")
KANDINSKY_DECODER = "kandinsky-2-2-decoder"

ENGINES = EngineRegistry("keyframes", [
    EngineSpec("none", "diffusion_models.engines:NoneEngine", "conform the originals only; no in-betweens"),
    EngineSpec(
        "kandinsky", "diffusion_models.kandinsky:KandinskyEngine",
        "Kandinsky 2.2: SLERP of the prior's image embeddings, one shared noise per pair; prompt walks: text "
        "to image through the prior",
        options=("model", "prior_model", "outpaint_model", "steps", "guidance", "strength", "negative_prompt",
                 *_RUNTIME),
        models=(ModelSlot("model", KANDINSKY_DECODER, "hub", "decoder"),
                ModelSlot("prior_model", "kandinsky-2-2-prior", "hub", "prior"),
                ModelSlot("outpaint_model", "kandinsky-2-2-decoder-inpaint", "hub", "inpaint", when="outpaint")),
        features=("inbetweens", "outpaint", "text2image"), defaults={"steps": 50, "guidance": 4.0, "strength": 1.0}, **_NEURAL,
    ),
    EngineSpec(
        "unclip", "diffusion_models.unclip:UnclipEngine",
        "SD 2.1 unCLIP image variations on slerped CLIP image embeddings",
        options=("model", "outpaint_model", "steps", "guidance", "noise_level", "prompt", "negative_prompt",
                 "vae_tiling", *_RUNTIME),
        models=(ModelSlot("model", "sd21-unclip", "hub", "unclip"),
                ModelSlot("outpaint_model", "sd2-inpaint", "hub", "inpaint", when="outpaint")),
        features=("inbetweens", "prompts", "outpaint"), defaults={"steps": 20, "guidance": 10.0, "noise_level": 0},
        **_NEURAL,
    ),
    EngineSpec(
        "sd", "diffusion_models.sd:StableDiffusionEngine",
        "Stable Diffusion 1.x/2.x img2img on slerped VAE latents with shared noise; prompt walks: SD 1.x/2.x/XL "
        "text to image with slerped text embeddings and noise",
        options=("model", "outpaint_model", "steps", "guidance", "strength", "prompt", "negative_prompt",
                 "vae_tiling", *_RUNTIME),
        models=(ModelSlot("model", "sd15", "hub", "sd"),
                ModelSlot("outpaint_model", "sd2-inpaint", "hub", "inpaint", when="outpaint")),
        features=("inbetweens", "prompts", "outpaint", "text2image", "video"),
        defaults={"steps": 50, "guidance": 7.5, "strength": 0.6},
        **_NEURAL,
    ),
])


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
