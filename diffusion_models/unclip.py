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
from diffusion_models.runtime import check_range, crop_to, padded_size, to_uint8_pil
from diffusion_models.sd import SDFamilyEngine
from diffusion_models.slerp import slerp

log = logging.getLogger(__name__)


class UnclipEngine(SDFamilyEngine):
    name = "unclip"
    PIPELINE = "StableUnCLIPImg2ImgPipeline"
    LABEL = "unCLIP model"

    def __init__(self, noise_level: int | None = None, **options) -> None:
        super().__init__(**options)
        self.noise_level = int(self.spec.value("noise_level", noise_level))
        check_range("noise_level", self.noise_level, 0, 999)

    def _own_identity(self) -> dict:
        return {"noise_level": self.noise_level}

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
        with self.rt.memory(f"unclip at {pw}x{ph}"):
            ea, eb = self.embed([a, b])
            pa, pb = prompts if prompts is not None else (self.prompt, self.prompt)
            text = self.text.path(pa, pb)
            guided = self.guidance > 1.0
            negative = self.text(self.negative_prompt) if guided else None
        for t in fractions:
            with self.rt.memory(f"unclip at {pw}x{ph}"):
                out = pipe(
                    image_embeds=slerp(ea, eb, t), prompt_embeds=text(t), negative_prompt_embeds=negative,
                    noise_level=self.noise_level, height=ph, width=pw, num_inference_steps=self.steps,
                    guidance_scale=self.guidance, generator=generator(seed), output_type="np",
                ).images[0]
            yield crop_to(out.astype(np.float32), width, height)
