"""Engine ``unclip``: Stable Diffusion 2.1 unCLIP walks on slerped CLIP image embeddings.

For a pair (A, B) and fractions t_1 < ... < t_S::

    e_A, e_B = CLIP image encoder(A), (B)             (the pipeline's own ViT-H)
    e(t) = slerp(e_A, e_B, t)
    K(t) = StableUnCLIPImg2Img(image_embeds=e(t), text(t), noise_level, generator(seed))

unCLIP's "img2img" is an image variation: the picture enters only through its
embedding, so the generation starts from noise. A fresh ``generator(seed)`` per
in-between gives every in-between of a pair the same starting latent and the
same embedding-augmentation noise, so they differ only by e(t) and stay coherent.
``--noise-level`` (0-999, default 0) noises the image embedding before it
conditions the UNet: higher strays further from the paintings. The text
condition is ``--prompt``, or each image's own prompt from ``--prompts-csv``
(slerped like the images').

Geometry: generated at W x H rounded up to a multiple of 8, then centre-cropped back.

Models: ``--model`` (default ``sd21-unclip``), ``--outpaint-model`` an SD
inpainting model (default ``sd2-inpaint``).
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
import torch

from artwalk.devices import generator
from diffusion_models.engines import (
    Runtime, check_range, crop_to, load_pipeline, model_source, padded_size, pick_model, to_uint8_pil,
)
from diffusion_models.sd import INPAINT, SDFamilyEngine, TextEmbeddings
from diffusion_models.slerp import slerp

log = logging.getLogger(__name__)

MODEL = "sd21-unclip"


class UnclipEngine(SDFamilyEngine):
    name = "unclip"
    makes_inbetweens = True
    takes_prompts = True

    def __init__(
        self, model: str | None = None, outpaint_model: str | None = None, steps: int = 20,
        guidance: float = 10.0, noise_level: int = 0, prompt: str | None = None,
        negative_prompt: str | None = None, device: str | None = None, dtype: str | None = None,
        attention_slicing: bool = False, vae_tiling: bool = False, cpu_offload: bool = False,
        progress: bool = True,
    ) -> None:
        check_range("steps", steps, 1, 1000)
        check_range("guidance", guidance, 0.0, 100.0)
        check_range("noise_level", noise_level, 0, 999)
        self.model = pick_model(None, model, "unclip", model or MODEL)
        self.inpaint_model = pick_model(outpaint_model, model, "inpaint", INPAINT)
        self.steps, self.guidance, self.noise_level = int(steps), float(guidance), int(noise_level)
        self.prompt, self.negative_prompt = prompt or "", negative_prompt or ""
        self.rt = Runtime(device, dtype, attention_slicing, vae_tiling, cpu_offload, progress)
        self.text = TextEmbeddings(lambda: self.pipe)

    def identity(self) -> dict:
        return {"engine": self.name, "model": model_source(self.model)[0], "steps": self.steps,
                "guidance": self.guidance, "noise_level": self.noise_level, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt, **self.rt.identity()}

    @property
    def pipe(self):
        if self._pipe is None:
            from diffusers import StableUnCLIPImg2ImgPipeline

            pipe = load_pipeline(StableUnCLIPImg2ImgPipeline, self.model, "unCLIP model",
                                 progress=self.rt.progress, dtype=self.rt.dtype)
            self._pipe = self.rt.place(pipe)
        return self._pipe

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """CLIP image embeddings (1, D), one per RGB image."""
        pipe = self.pipe
        pixels = pipe.feature_extractor(images=[to_uint8_pil(im) for im in images], return_tensors="pt").pixel_values
        embeds = pipe.image_encoder(pixels.to(device=pipe._execution_device, dtype=pipe.image_encoder.dtype))
        return [e[None] for e in embeds.image_embeds]

    @torch.no_grad()
    def inbetweens(self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int,
                   prompts: tuple[str, str] | None = None) -> Iterator[np.ndarray]:
        pipe = self.pipe
        height, width = a.shape[:2]
        pw, ph = padded_size(width, height, max(8, pipe.vae_scale_factor))  # the pipeline insists on 8
        ea, eb = self.embed([a, b])
        pa, pb = prompts if prompts is not None else (self.prompt, self.prompt)
        text = self.text.path(pa, pb)
        guided = self.guidance > 1.0
        negative = self.text(self.negative_prompt) if guided else None
        for t in fractions:
            out = pipe(
                image_embeds=slerp(ea, eb, t), prompt_embeds=text(t), negative_prompt_embeds=negative,
                noise_level=self.noise_level, height=ph, width=pw, num_inference_steps=self.steps,
                guidance_scale=self.guidance, generator=generator(seed), output_type="np",
            ).images[0]
            yield crop_to(out.astype(np.float32), width, height)
