"""Engine ``sd``: latent SLERP through any Stable Diffusion 1.x/2.x checkpoint (img2img),
and what it shares with ``unclip`` (:class:`SDFamilyEngine`).

For a pair (A, B) and fractions t_1 < ... < t_S::

    z_A, z_B = VAE(A), VAE(B)                        (the posterior's mode, scaled)
    z(t) = slerp(z_A, z_B, t)                         (diffusion_models.slerp)
    x(t) = add_noise(z(t), noise, strength)           noise = randn(generator(seed)),
    K(t) = denoise(x(t), text(t))                     the same for the whole pair

``--strength`` (default 0.6) is how much of the schedule is re-run: low keeps the
blend of the two paintings, high invents more. The text condition is ``--prompt``
(empty by default), or with ``--prompts-csv`` each image's own prompt, and the
in-between's text embedding is the SLERP of its two ends' embeddings. With no
prompt and no ``--negative-prompt`` guidance has nothing to steer by, so the
unconditional half of the batch is skipped (same result, half the work).

Geometry: W x H is mirror-padded up to the VAE's multiple (8), generated, and
centre-cropped back. The safety checker is not loaded (it blanks artworks).

Video init (:meth:`StableDiffusionEngine.restyle`): each frame is img2img from its own
VAE latent with a prompt keyframe's conditioning, through the same denoising loop as
text to image (composable prompts, long prompts).

Prompt walks (text to image, :mod:`diffusion_models.text2image`): ``--model`` may
also be an SDXL checkpoint, and a registry model's own steps, guidance and scheduler
(the turbo checkpoints') are its defaults.

Models: ``--model`` any SD 1.x/2.x diffusers folder or hub id (default ``sd15``),
``--outpaint-model`` an SD inpainting model (default ``sd2-inpaint``).
"""

from __future__ import annotations

import logging
import math
from typing import Iterator, Sequence

import numpy as np
import torch

from artwalk.devices import generator
from artwalk.errors import ConfigError
from artwalk.models import model_settings, model_source
from diffusion_models.engines import ENGINES
from diffusion_models.runtime import (
    Pipelines, Runtime, check_range, crop_to, deterministic, model_index, pad_to, padded_size, to_tensor, to_uint8_pil,
)
from diffusion_models.slerp import slerp

log = logging.getLogger(__name__)

_NO_SAFETY_CHECKER = dict(safety_checker=None, requires_safety_checker=False)


class TextEmbeddings:
    """A pipeline's text embeddings, cached per prompt, and their SLERP along a pair."""

    def __init__(self, pipe_getter) -> None:
        self._pipe = pipe_getter
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, text: str) -> torch.Tensor:
        if text not in self._cache:
            pipe = self._pipe()
            self._cache[text] = pipe.encode_prompt(text, pipe._execution_device, 1, False)[0]
        return self._cache[text]

    def path(self, prompt_a: str, prompt_b: str):
        """t -> the text embedding at fraction t from A's prompt to B's."""
        ea = self(prompt_a)
        if prompt_b == prompt_a:
            return lambda t: ea
        eb = self(prompt_b)
        return lambda t: slerp(ea, eb, t)


class SDFamilyEngine:
    """What the Stable Diffusion engines (``sd``, ``unclip``) share: their options, models
    (the main pipeline and the SD inpainting model for ``--outpaint``, each loaded once on
    first use), text embeddings, identity and outpainting.

    Subclasses set ``name``, the main pipeline's diffusers class ``PIPELINE`` and its
    ``LABEL``, and ``inbetweens``. Every option's default is on the engine's row in
    :data:`diffusion_models.engines.ENGINES`.
    """

    name: str
    PIPELINE: str
    LABEL: str
    PIPELINE_KWARGS: dict = {}

    def __init__(self, model: str | None = None, outpaint_model: str | None = None, steps: int | None = None,
                 guidance: float | None = None, prompt: str | None = None, negative_prompt: str | None = None,
                 device: str | None = None, dtype: str | None = None, attention_slicing: bool = False,
                 vae_tiling: bool = False, cpu_offload: bool = False, progress: bool = True) -> None:
        self.spec = spec = ENGINES.get(self.name)
        models = {"model": model, "outpaint_model": outpaint_model}
        self.model, self.inpaint_model = spec.model_for("model", models), spec.model_for("outpaint_model", models)
        self.tuned = model_settings(self.model)  # a registry model's own steps, guidance, scheduler
        self.steps = int(spec.value("steps", steps if steps is not None else self.tuned.get("steps")))
        self.guidance = float(spec.value("guidance", guidance if guidance is not None else self.tuned.get("guidance")))
        check_range("steps", self.steps, 1, 1000)
        check_range("guidance", self.guidance, 0.0, 100.0)
        self.prompt, self.negative_prompt = prompt or "", negative_prompt or ""
        self.rt = Runtime(device, dtype, attention_slicing, vae_tiling, cpu_offload, progress)
        self.pipes = Pipelines(self.rt)
        self.pipes.add("pipe", self.PIPELINE, self.model, self.LABEL, **self.PIPELINE_KWARGS)
        self.pipes.add("inpaint", "StableDiffusionInpaintPipeline", self.inpaint_model, "SD inpainting model",
                       **_NO_SAFETY_CHECKER)
        self.pipes.add("text", "AutoPipelineForText2Image", self.model, "text-to-image model",
                       only_if_index_has="safety_checker", **_NO_SAFETY_CHECKER)
        self.text = TextEmbeddings(lambda: self.pipe)
        self._t2i = None

    @property
    def pipe(self):
        return self.pipes.get("pipe")

    def _own_identity(self) -> dict:
        """The subclass's own settings that change output bytes."""
        return {}

    def check_image_walk(self) -> None:
        """Image walks load ``PIPELINE`` from the model: an SDXL checkpoint is for prompt walks."""
        index = model_index(self.model)
        if "XL" in str(index.get("_class_name", "")):
            raise ConfigError(f"--model {self.model}: an SDXL checkpoint ({index['_class_name']}) makes prompt "
                              "walks (artwalk prompts); an image walk with engine sd needs an SD 1.x or 2.x one")

    def identity(self) -> dict:
        return {"engine": self.name, "model": model_source(self.model)[0], "steps": self.steps,
                "guidance": self.guidance, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                **self._own_identity(), **self.rt.identity()}

    def outpaint_identity(self) -> dict:
        return {"engine": self.name, "inpaint": model_source(self.inpaint_model)[0], "steps": self.steps,
                "guidance": self.guidance, "prompt": self.prompt, "negative_prompt": self.negative_prompt,
                **self.rt.identity()}

    def attach(self, pipe=None, inpaint=None, text=None) -> None:
        """Use pipelines built elsewhere instead of loading them (benchmarks, notebooks)."""
        self.pipes.attach(pipe=pipe, inpaint=inpaint, text=text)

    # --- prompt keyframes (text to image) ------------------------------------------------------

    def text_identity(self) -> dict:
        """What changes a prompt keyframe's bytes: model, steps, scheduler, dtype."""
        return {"engine": self.name, "model": model_source(self.model)[0], "steps": self.steps,
                "scheduler": dict(self.tuned.get("scheduler", {})), **self.rt.identity()}

    @property
    def text2image(self):
        if self._t2i is None:
            from diffusion_models.text2image import SDText

            pipe = self.pipes.get("text")
            scheduler = dict(self.tuned.get("scheduler", {}))
            if scheduler:
                import diffusers

                cls = getattr(diffusers, scheduler.pop("class"))
                shipped = type(pipe.scheduler).__name__
                pipe.scheduler = cls.from_config(pipe.scheduler.config, **scheduler)
                log.info("prompt walk: %s runs %s%s, as the registry says (the checkpoint ships %s)", self.model,
                         cls.__name__, "".join(f", {k} {v}" for k, v in scheduler.items()), shipped)
            pipe.scheduler = deterministic(pipe.scheduler)
            self._t2i = SDText(pipe, self.steps, self.rt)
        return self._t2i

    def conditioning(self, parts, negative: str, seed: int, guidance: float | None, size: tuple[int, int]):
        """A prompt keyframe's :class:`~diffusion_models.conditioning.Conditioning`."""
        return self.text2image.conditioning(parts, negative, seed, self.guidance if guidance is None else guidance,
                                            size, self.text_identity())

    def render(self, cond) -> np.ndarray:
        return self.text2image.render(cond)

    @torch.no_grad()
    def outpaint(self, canvas: np.ndarray, region: np.ndarray, seed: int, prompt: str | None = None,
                 negative: str | None = None) -> np.ndarray:
        """Paint ``region`` of ``canvas`` with the SD inpainting model (``prompt`` and ``negative``:
        instead of the engine's own)."""
        pipe = self.pipes.get("inpaint")
        height, width = canvas.shape[:2]
        pw, ph = padded_size(width, height, max(8, pipe.vae_scale_factor))
        mask = np.ones((ph, pw), dtype=np.float32)
        top, left = (ph - height) // 2, (pw - width) // 2
        mask[top : top + height, left : left + width] = region
        with self.rt.memory(f"{self.name} outpainting at {pw}x{ph}"):
            out = pipe(
                prompt=(prompt if prompt is not None else self.prompt) or "",
                negative_prompt=(negative if negative is not None else self.negative_prompt) or None,
                image=to_uint8_pil(pad_to(canvas, pw, ph)),
                mask_image=to_uint8_pil(np.repeat(mask[..., None], 3, axis=2)), height=ph, width=pw, strength=1.0,
                num_inference_steps=self.steps, guidance_scale=self.guidance, generator=generator(seed),
                output_type="np",
            ).images[0]
        return crop_to(out.astype(np.float32), width, height)


class StableDiffusionEngine(SDFamilyEngine):
    name = "sd"
    PIPELINE = "StableDiffusionImg2ImgPipeline"
    LABEL = "Stable Diffusion model"
    PIPELINE_KWARGS = _NO_SAFETY_CHECKER

    def __init__(self, strength: float | None = None, **options) -> None:
        super().__init__(**options)
        self.strength = float(self.spec.value("strength", strength))
        check_range("strength", self.strength, 0.0, 1.0, low_open=True)
        # img2img runs int(steps * strength) steps: at least one (a turbo model's 1 step at
        # strength 0.5 becomes 2 steps, one of them run, as its makers advise).
        self.img2img_steps = max(self.steps, math.ceil(1.0 / self.strength - 1e-9))

    def _own_identity(self) -> dict:
        return {"strength": self.strength}

    def restyle(self, cond, rgb: np.ndarray, strength: float) -> np.ndarray:
        """Video init: the W x H image ``rgb`` through img2img at ``strength``, conditioned on a
        prompt keyframe's :class:`~diffusion_models.conditioning.Conditioning` (its composable
        parts, negative, guidance, and its seeded noise)."""
        check_range("strength", strength, 0.0, 1.0, low_open=True)
        return self.text2image.render(cond, init=rgb, strength=strength)

    @torch.no_grad()
    def encode(self, rgb: np.ndarray) -> torch.Tensor:
        """The VAE latent of an image (the posterior's mode, so no randomness), scaled."""
        pipe = self.pipe
        x = to_tensor(rgb, pipe._execution_device, pipe.vae.dtype)
        return pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor

    @torch.no_grad()
    def inbetweens(self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int,
                   prompts: tuple[str, str] | None = None) -> Iterator[np.ndarray]:
        pipe = self.pipe
        height, width = a.shape[:2]
        pw, ph = padded_size(width, height, max(8, pipe.vae_scale_factor))
        with self.rt.memory(f"sd at {pw}x{ph}"):
            za, zb = self.encode(pad_to(a, pw, ph)), self.encode(pad_to(b, pw, ph))
            pa, pb = prompts if prompts is not None else (self.prompt, self.prompt)
            text = self.text.path(pa, pb)
            guided = self.guidance > 1.0 and bool(pa or pb or self.negative_prompt)
            negative = self.text(self.negative_prompt) if guided else None
        for t in fractions:
            with self.rt.memory(f"sd at {pw}x{ph}"):
                out = pipe(
                    prompt_embeds=text(t), negative_prompt_embeds=negative, image=slerp(za, zb, t),
                    strength=self.strength, num_inference_steps=self.img2img_steps,
                    guidance_scale=self.guidance if guided else 1.0, generator=generator(seed), output_type="np",
                ).images[0]
            yield crop_to(out.astype(np.float32), width, height)
