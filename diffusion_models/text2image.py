"""Text to image through any Stable Diffusion 1.x, 2.x or SDXL pipeline, with composable
prompts, long prompts and conditionings that can be mixed (prompt walks).

::

    parts (text, weight), negative --encode--> Conditioning   (diffusion_models.conditioning)
        each text in 75-token chunks, each chunk [BOS] + 75 + [EOS] through the text
        encoder(s), concatenated: a prompt of any length (SDXL: both encoders'
        penultimate states side by side, the pooled embedding of the first chunk)
    noise = randn(generator(seed))                          (1, 4, H/8, W/8), on the CPU
    Conditioning --render--> image                          one batched UNet call a step,
        the composable sum of the conditioning's rows       then the VAE

The denoising loop is written here because diffusers' pipelines take one prompt with
one weight; it follows StableDiffusionPipeline / StableDiffusionXLPipeline step by
step (scale_model_input, UNet, guidance, scheduler step: with a generator and eta only
for a scheduler whose ``step`` takes them, as their ``prepare_extra_step_kwargs``), so
one prompt of weight 1 with no negative prompt renders as those pipelines do. A prompt
of at most 75 tokens is one chunk, encoded exactly as they encode it.

SDXL's unconditional embedding is zeros when the model says so
(``force_zeros_for_empty_prompt``, as in diffusers); sequences are padded with the
empty prompt's encoding. The VAE decodes in float32 when it must (``force_upcast``).
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import torch

from artwalk.devices import generator
from diffusion_models.conditioning import Conditioning, Term, batch, layout, split_weights
from diffusion_models.runtime import crop_to, pad_to, padded_size, step_kwargs, to_numpy, to_tensor

log = logging.getLogger(__name__)


def token_chunks(tokenizer, text: str) -> list[list[int]]:
    """``text`` as 77-token rows: [BOS] + up to 75 tokens + [EOS], padded."""
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
    body = tokenizer.model_max_length - 2
    pieces = [ids[i : i + body] for i in range(0, len(ids), body)] or [[]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return [[tokenizer.bos_token_id, *p, tokenizer.eos_token_id] + [pad] * (body - len(p)) for p in pieces]


class SDText:
    """Prompt keyframes through one loaded SD-family pipeline (its components only)."""

    def __init__(self, pipe, steps: int, rt) -> None:
        self.pipe = pipe
        self.steps = steps
        self.rt = rt
        self.xl = getattr(pipe, "text_encoder_2", None) is not None
        self._texts: dict[str, dict] = {}

    @property
    def multiple(self) -> int:
        return max(8, self.pipe.vae_scale_factor)

    # --- text --------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, text: str) -> dict:
        """{'embeds': (1, 77 k, D)} (+ 'pooled' for SDXL) of ``text``, float32 on the CPU."""
        if text not in self._texts:
            pipe = self.pipe
            pairs = [(pipe.tokenizer, pipe.text_encoder)]
            if self.xl:
                pairs = [(t, e) for t, e in ((pipe.tokenizer, pipe.text_encoder),
                                             (pipe.tokenizer_2, pipe.text_encoder_2)) if e is not None]
            rows = [token_chunks(tok, text) for tok, _ in pairs]
            n = max(len(r) for r in rows)
            per_encoder, pooled = [], None
            for (tok, enc), chunks in zip(pairs, rows):
                chunks = chunks + token_chunks(tok, "") * (n - len(chunks))
                states = []
                # One chunk at a time: a batch of chunks can round differently from each chunk alone
                # (measured on an AMD EPYC), and a chunk's embedding must not depend on its neighbours.
                for k, chunk in enumerate(chunks):
                    ids = torch.tensor([chunk], device=enc.device)
                    if self.xl:
                        out = enc(ids, output_hidden_states=True)
                        if k == 0 and out[0].ndim == 2:
                            pooled = out[0]
                        states.append(out.hidden_states[-2])
                    else:
                        mask = None
                        if getattr(enc.config, "use_attention_mask", False):  # up to the first EOS
                            first_eos = (ids == tok.eos_token_id).int().argmax(dim=1, keepdim=True)
                            mask = (torch.arange(ids.shape[1], device=ids.device)[None] <= first_eos).long()
                        states.append(enc(ids, attention_mask=mask)[0])
                per_encoder.append(torch.cat(states, dim=1))
            tensors = {"embeds": torch.cat(per_encoder, dim=-1).float().cpu()}
            if self.xl:
                tensors["pooled"] = pooled.float().cpu()
            self._texts[text] = tensors
        return self._texts[text]

    def conditioning(self, parts, negative: str, seed: int, guidance: float, size: tuple[int, int],
                     identity: dict) -> Conditioning:
        """A keyframe's conditioning: its composable ``parts`` ((text, weight) items with
        ``.text``/``.weight``), the negative prompt, the seeded noise."""
        positive, negative_parts = split_weights(parts, negative)
        empty = self.encode("")
        uncond = empty
        if self.xl and self.pipe.config.get("force_zeros_for_empty_prompt", False):
            uncond = {k: torch.zeros_like(v) for k, v in empty.items()}
        return Conditioning(
            engine=identity, size=tuple(size), seed=int(seed), guidance=float(guidance),
            positive=[Term(t, w, self.encode(t)) for t, w in positive],
            negative=[Term(t, w, self.encode(t)) for t, w in negative_parts],
            uncond=uncond, pad={"embeds": empty["embeds"]}, noise=self.noise(seed, size), negative_text=negative,
        )

    def noise(self, seed: int, size: tuple[int, int]):
        """The initial latent noise of a W x H frame, drawn on the CPU from ``seed``."""
        pw, ph = padded_size(*size, self.multiple)
        factor = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, ph // factor, pw // factor)
        return torch.randn(shape, generator=generator(seed), dtype=torch.float32)

    # --- image -------------------------------------------------------------------------------

    @torch.no_grad()
    def render(self, cond: Conditioning, init: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:
        """The W x H RGB image of ``cond``: float32 (H, W, 3) in [0, 1].

        ``init`` (img2img, video init): an RGB float32 W x H image to start from. Its VAE
        latent (the posterior's mode) is noised with ``cond``'s noise to the step that
        ``strength`` says, as diffusers' img2img pipelines do, and only the rest of the
        schedule is run: at least one step, so a tiny strength still changes it a little."""
        pipe = self.pipe
        unet, scheduler = pipe.unet, pipe.scheduler
        width, height = cond.size
        pw, ph = padded_size(width, height, self.multiple)
        device, dtype = pipe._execution_device, unet.dtype
        lay = layout(cond)
        rows = len(lay.rows)
        embeds = batch(lay.rows, "embeds", cond.pad).to(device=device, dtype=dtype)
        extra = {}
        if self.xl:
            pooled = batch(lay.rows, "pooled", {}).to(device=device, dtype=dtype)
            time_ids = torch.tensor([[ph, pw, 0, 0, ph, pw]], device=device, dtype=dtype).repeat(rows, 1)
            extra = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
        noise = cond.noise.to(device=device, dtype=dtype)
        if init is None:
            scheduler.set_timesteps(self.steps, device=device)
            timesteps = scheduler.timesteps
            latents = noise * scheduler.init_noise_sigma
        else:
            steps = max(self.steps, math.ceil(1.0 / strength - 1e-9))
            scheduler.set_timesteps(steps, device=device)
            start = (steps - min(int(steps * strength), steps)) * scheduler.order
            timesteps = scheduler.timesteps[start:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start)
            with self.rt.memory(f"sd encoding an init image at {pw}x{ph}"):
                z = self.encode_image(pad_to(init, pw, ph))
            latents = scheduler.add_noise(z, noise, timesteps[:1])
        # The per-step noise of stochastic schedulers, for those whose step takes a generator.
        step_extra = step_kwargs(scheduler, generator(cond.seed))
        with self.rt.memory(f"sd text to image at {pw}x{ph}"):
            for t in pipe.progress_bar(timesteps):
                x = torch.cat([latents] * rows) if rows > 1 else latents
                x = scheduler.scale_model_input(x, t)
                eps = unet(x, t, encoder_hidden_states=embeds, return_dict=False, **extra)[0]
                latents = scheduler.step(lay.combine(eps), t, latents, return_dict=False, **step_extra)[0]
            image = self.decode(latents)
        pipe.maybe_free_model_hooks()
        return crop_to(to_numpy(image), width, height)

    def encode_image(self, rgb: np.ndarray):
        """The scaled VAE latent (the posterior's mode: no randomness) of an RGB image whose
        sides are multiples of the VAE's, in the UNet's dtype."""
        with self._vae() as vae:
            x = to_tensor(rgb, self.pipe._execution_device, vae.dtype)
            z = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
        return z.to(self.pipe.unet.dtype)

    def decode(self, latents):
        """The VAE's image of ``latents``."""
        with self._vae() as vae:
            return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]

    @contextlib.contextmanager
    def _vae(self):
        """The VAE, in float32 for a float16 VAE that needs it (SDXL's overflows in float16:
        ``force_upcast``), cast back afterwards."""
        vae = self.pipe.vae
        upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
        if upcast:
            vae.to(torch.float32)
        try:
            yield vae
        finally:
            if upcast:
                vae.to(torch.float16)
