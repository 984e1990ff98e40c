"""Engine ``kandinsky``: Kandinsky 2.2 image-embedding walks (diffusers).

For a pair (A, B) and fractions t_1 < ... < t_S::

    A, B --prior's CLIP image encoder--> e_A, e_B        (one embedding each)
    e(t) = slerp(e_A, e_B, t)                             (diffusion_models.slerp)
    noise = randn(generator(seed))                        (one latent for the whole pair)
    K(t) = decoder(e(t), negative, noise)                 (classifier-free guidance)

Every in-between of a pair starts from the same noise latent (and draws the same
per-step noise), so they differ only by their embedding and stay coherent as t
moves. The negative embedding is the prior's zero-image embedding, or with
``--negative-prompt`` the prior's embedding of that text.

``--strength s`` below 1 anchors each in-between to the nearer real painting: the
denoising starts from that endpoint's latent noised to strength s (img2img), not
from pure noise. 1 (the default) is a free walk.

Geometry: the decoder works at multiples of 64 pixels; W x H is mirror-padded up to
the next multiple, generated, and centre-cropped back, so any W x H works.

The denoising loop is written here (it follows diffusers' KandinskyV22Pipeline and
KandinskyV22Img2ImgPipeline) because the latter swaps width and height when it
preprocesses a non-square image, and neither lets a pair share one noise latent
in img2img mode. Outpainting uses diffusers' KandinskyV22InpaintPipeline.

Prompt walks (text to image): each composable part's text goes through the prior
(seeded by the keyframe) to a CLIP image embedding, and the decoder renders the
composable sum over those embeddings (:mod:`diffusion_models.conditioning`); the
unconditional embedding is the prior's zero-image embedding. The prior reads 77
tokens: a longer prompt is cut at a word, with one warning naming the words dropped.

Models: ``--model`` the decoder (default ``kandinsky-2-2-decoder``), ``--prior-model``
(default ``kandinsky-2-2-prior``), ``--outpaint-model`` (default
``kandinsky-2-2-decoder-inpaint``); or a bundle folder with prior/, decoder/, inpaint/.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
import torch

from artwalk.devices import generator
from artwalk.errors import ConfigError
from artwalk.models import model_source
from diffusion_models.engines import ENGINES
from diffusion_models.runtime import Pipelines, Runtime, check_range, crop_to, deterministic, pad_to, padded_size, \
    step_kwargs, to_numpy, to_tensor, to_uint8_pil
from diffusion_models.slerp import slerp

log = logging.getLogger(__name__)

PRIOR_STEPS = 25  # prior denoising steps for a --negative-prompt embedding
PRIOR_GUIDANCE = 4.0


class KandinskyEngine:
    """Defaults of every option: the engine's row in :data:`diffusion_models.engines.ENGINES`."""

    name = "kandinsky"

    def __init__(
        self, model: str | None = None, prior_model: str | None = None, outpaint_model: str | None = None,
        steps: int | None = None, guidance: float | None = None, strength: float | None = None,
        negative_prompt: str | None = None, device: str | None = None, dtype: str | None = None,
        attention_slicing: bool = False, cpu_offload: bool = False, progress: bool = True,
    ) -> None:
        spec = ENGINES.get(self.name)
        self.steps = int(spec.value("steps", steps))
        self.guidance = float(spec.value("guidance", guidance))
        self.strength = float(spec.value("strength", strength))
        check_range("steps", self.steps, 1, 1000)
        check_range("guidance", self.guidance, 0.0, 100.0)
        check_range("strength", self.strength, 0.0, 1.0, low_open=True)
        if self.strength < 1.0 and int(self.steps * self.strength) < 1:
            raise ConfigError(f"--strength {self.strength} with --steps {self.steps} leaves no denoising step; "
                              "raise either")
        models = {"model": model, "prior_model": prior_model, "outpaint_model": outpaint_model}
        self.decoder_model = spec.model_for("model", models)
        self.prior_model = spec.model_for("prior_model", models)
        self.inpaint_model = spec.model_for("outpaint_model", models)
        self.negative_prompt = negative_prompt
        self.rt = Runtime(device, dtype, attention_slicing, False, cpu_offload, progress)
        self.pipes = Pipelines(self.rt)
        # Only the prior's image encoder is needed, unless a negative prompt asks for the prior itself.
        skip = {} if negative_prompt else dict(prior=None, text_encoder=None, tokenizer=None, scheduler=None)
        self.pipes.add("prior", "KandinskyV22PriorPipeline", self.prior_model, "Kandinsky prior", None, **skip)
        self.pipes.add("prior_text", "KandinskyV22PriorPipeline", self.prior_model, "Kandinsky prior", None)
        self.pipes.add("decoder", "KandinskyV22Pipeline", self.decoder_model, "Kandinsky decoder", None)
        self.pipes.add("inpaint", "KandinskyV22InpaintPipeline", self.inpaint_model, "Kandinsky inpainting decoder",
                       None)
        self._negative = None
        self._texts: dict[tuple[str, int], dict] = {}
        self._text_scheduler = None

    # --- identity -------------------------------------------------------------------------

    def identity(self) -> dict:
        out = {
            "engine": self.name, "decoder": model_source(self.decoder_model)[0],
            "prior": model_source(self.prior_model)[0], "steps": self.steps, "guidance": self.guidance,
            "strength": self.strength, **self.rt.identity(),
        }
        return {**out, **self._negative_identity()}

    def outpaint_identity(self) -> dict:
        return {"engine": self.name, "inpaint": model_source(self.inpaint_model)[0],
                "prior": model_source(self.prior_model)[0], "steps": self.steps,
                "guidance": self.guidance, **self.rt.identity(), **self._negative_identity()}

    def _negative_identity(self) -> dict:
        if not self.negative_prompt:
            return {}
        return {"negative_prompt": self.negative_prompt, "prior_steps": PRIOR_STEPS, "prior_guidance": PRIOR_GUIDANCE}

    # --- models, loaded once on first use -------------------------------------------------

    @property
    def prior(self):
        return self.pipes.get("prior")

    @property
    def decoder(self):
        return self.pipes.get("decoder")

    def attach(self, prior=None, decoder=None, inpaint=None) -> None:
        """Use pipelines built elsewhere instead of loading them (benchmarks, notebooks)."""
        self.pipes.attach(prior=prior, decoder=decoder, inpaint=inpaint)

    # --- embeddings -----------------------------------------------------------------------

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """CLIP image embeddings (1, D), one per RGB image, from the prior's image encoder."""
        prior = self.prior
        device = prior._execution_device
        pixels = prior.image_processor(images=[to_uint8_pil(im) for im in images], return_tensors="pt").pixel_values
        embeds = prior.image_encoder(pixels.to(device=device, dtype=prior.image_encoder.dtype)).image_embeds
        prior.maybe_free_model_hooks()
        return [e[None] for e in embeds]

    @torch.no_grad()
    def negative(self) -> torch.Tensor:
        """The negative image embedding: the zero image's, or the prior's for --negative-prompt."""
        if self._negative is None:
            prior = self.prior
            if self.negative_prompt:
                # One negative embedding for the whole walk, from a fixed seed: every pair shares it.
                out = prior(self.negative_prompt, num_inference_steps=PRIOR_STEPS, guidance_scale=PRIOR_GUIDANCE,
                            generator=generator(0))
                self._negative = out.image_embeds
            else:
                self._negative = prior.get_zero_embed(1, device=prior._execution_device)
                prior.maybe_free_model_hooks()
        return self._negative

    # --- in-betweens ----------------------------------------------------------------------

    def multiple(self) -> int:
        """Pixels per side that the decoder needs a multiple of (64 for the real model)."""
        return 2 ** (2 * (len(self.decoder.movq.config.block_out_channels) - 1))

    @torch.no_grad()
    def inbetweens(self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int,
                   prompts=None) -> Iterator[np.ndarray]:
        if prompts is not None:
            raise ConfigError("engine kandinsky takes no prompts; use --engine sd or unclip for --prompts-csv")
        with self.rt.memory(f"kandinsky at {a.shape[1]}x{a.shape[0]}"):
            yield from self._inbetweens(a, b, fractions, seed)

    def _inbetweens(self, a: np.ndarray, b: np.ndarray, fractions: Sequence[float], seed: int) -> Iterator[np.ndarray]:
        height, width = a.shape[:2]
        pw, ph = padded_size(width, height, self.multiple())
        emb_a, emb_b = self.embed([a, b])
        negative = self.negative()
        decoder = self.decoder
        device, dtype = decoder._execution_device, decoder.unet.dtype
        pair_gen = generator(seed)
        noise = torch.randn(self.latent_shape(width, height), generator=pair_gen, dtype=torch.float32)
        noise = noise.to(device=device, dtype=dtype)
        step_state = pair_gen.get_state()  # every in-between draws the same per-step noise too
        anchors = None
        if self.strength < 1.0:
            anchors = [self._encode(pad_to(x, pw, ph)) for x in (a, b)]
        for t in fractions:
            emb = slerp(emb_a, emb_b, t)
            init = None if anchors is None else anchors[0 if t <= 0.5 else 1]
            step_gen = generator(seed)
            step_gen.set_state(step_state)
            latents = self._denoise(emb, negative, noise, init, step_gen)
            image = decoder.movq.decode(latents, force_not_quantize=True).sample
            yield crop_to(to_numpy(image), width, height)
        decoder.maybe_free_model_hooks()

    def _encode(self, rgb: np.ndarray) -> torch.Tensor:
        movq = self.decoder.movq
        return movq.encode(to_tensor(rgb, self.decoder._execution_device, movq.dtype)).latents

    def _denoise(self, emb, negative, noise, init, gen):
        decoder = self.decoder
        unet, scheduler = decoder.unet, decoder.scheduler
        device = decoder._execution_device
        scheduler.set_timesteps(self.steps, device=device)
        timesteps = scheduler.timesteps
        if init is not None:
            start = self.steps - min(int(self.steps * self.strength), self.steps)
            timesteps = timesteps[start * scheduler.order :]
            latents = scheduler.add_noise(init, noise, timesteps[:1])
        else:
            latents = noise * scheduler.init_noise_sigma
        guided = self.guidance > 1.0
        embeds = torch.cat([negative, emb]) if guided else emb
        embeds = embeds.to(device=device, dtype=unet.dtype)
        channels = latents.shape[1]
        learned = getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")
        step_extra = step_kwargs(scheduler, gen)
        for t in decoder.progress_bar(timesteps):
            model_in = torch.cat([latents] * 2) if guided else latents
            pred = unet(sample=model_in, timestep=t, encoder_hidden_states=None,
                        added_cond_kwargs={"image_embeds": embeds}, return_dict=False)[0]
            if guided:
                eps, var = pred.split(channels, dim=1)
                eps_uncond, eps_cond = eps.chunk(2)
                pred = torch.cat([eps_uncond + self.guidance * (eps_cond - eps_uncond), var.chunk(2)[1]], dim=1)
            if not learned:
                pred = pred[:, :channels]
            latents = scheduler.step(pred, t, latents, **step_extra).prev_sample
        return latents

    def check_image_walk(self) -> None:
        pass

    # --- prompt keyframes (text to image) ------------------------------------------------------

    def text_identity(self) -> dict:
        """What changes a prompt keyframe's bytes (the decoder runs DDIM there: deterministic steps)."""
        return {"engine": self.name, "decoder": model_source(self.decoder_model)[0], "sampler": "deterministic",
                "prior": model_source(self.prior_model)[0], "steps": self.steps, "prior_steps": PRIOR_STEPS,
                "prior_guidance": PRIOR_GUIDANCE, **self.rt.identity()}

    def fit_prompt(self, text: str) -> str:
        """``text`` cut, at a word, to what the prior's tokenizer reads; warns what is dropped."""
        tok = self.pipes.get("prior_text").tokenizer
        limit = tok.model_max_length - 2
        if len(tok(text, add_special_tokens=False, verbose=False).input_ids) <= limit:
            return text
        words = text.split()
        lo, hi = 0, len(words)
        while lo < hi:  # the most words that fit
            mid = (lo + hi + 1) // 2
            if len(tok(" ".join(words[:mid]), add_special_tokens=False, verbose=False).input_ids) <= limit:
                lo = mid
            else:
                hi = mid - 1
        dropped = words[lo:]
        shown = " ".join(dropped[:12]) + (f" ... ({len(dropped)} words)" if len(dropped) > 12 else "")
        log.warning("warning: kandinsky's prior reads %d tokens; the prompt is cut after %r, dropping: %s",
                    limit + 2, " ".join(words[max(0, lo - 3):lo]), shown)
        return " ".join(words[:lo])

    @torch.no_grad()
    def encode_text(self, text: str, seed: int) -> dict:
        """{'image_embeds': (1, D)}: the prior's image embedding of ``text``, seeded."""
        if (text, seed) not in self._texts:
            prior = self.pipes.get("prior_text")
            out = prior(self.fit_prompt(text), num_inference_steps=PRIOR_STEPS, guidance_scale=PRIOR_GUIDANCE,
                        generator=generator(seed))
            self._texts[text, seed] = {"image_embeds": out.image_embeds.float().cpu()}
        return self._texts[text, seed]

    @torch.no_grad()
    def conditioning(self, parts, negative: str, seed: int, guidance: float | None, size: tuple[int, int]):
        """A prompt keyframe's :class:`~diffusion_models.conditioning.Conditioning`."""
        from diffusion_models.conditioning import Conditioning, Term, split_weights

        positive, negative_parts = split_weights(parts, negative)
        prior = self.pipes.get("prior_text")
        zero = prior.get_zero_embed(1, device=prior._execution_device).float().cpu()
        return Conditioning(
            engine=self.text_identity(), size=tuple(size), seed=int(seed),
            guidance=float(self.guidance if guidance is None else guidance),
            positive=[Term(t, w, self.encode_text(t, seed)) for t, w in positive],
            negative=[Term(t, w, self.encode_text(t, seed)) for t, w in negative_parts],
            uncond={"image_embeds": zero}, noise=self.noise(seed, size), negative_text=negative,
        )

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The decoder's latent (1, C, h, w) of a W x H frame, padded to the decoder's multiple."""
        movq = self.decoder.movq.config
        pw, ph = padded_size(width, height, self.multiple())
        factor = 2 ** (len(movq.block_out_channels) - 1)
        return 1, movq.latent_channels, ph // factor, pw // factor

    def noise(self, seed: int, size: tuple[int, int]):
        """A prompt keyframe's initial noise, drawn on the CPU from its seed."""
        return torch.randn(self.latent_shape(*size), generator=generator(seed), dtype=torch.float32)

    @torch.no_grad()
    def render(self, cond) -> np.ndarray:
        """The W x H image of ``cond``: the decoder's composable sum over image embeddings."""
        from diffusion_models.conditioning import batch, layout

        decoder = self.decoder
        if self._text_scheduler is None:  # the image walks' scheduler stays as it is
            self._text_scheduler = deterministic(type(decoder.scheduler).from_config(decoder.scheduler.config))
        unet, scheduler = decoder.unet, self._text_scheduler
        device, dtype = decoder._execution_device, unet.dtype
        width, height = cond.size
        lay = layout(cond)
        rows = len(lay.rows)
        embeds = batch(lay.rows, "image_embeds", {}).to(device=device, dtype=dtype)
        channels = cond.noise.shape[1]
        learned = getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range")
        scheduler.set_timesteps(self.steps, device=device)
        latents = cond.noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma
        step_extra = step_kwargs(scheduler, generator(cond.seed))
        with self.rt.memory(f"kandinsky text to image at {width}x{height}"):
            for t in decoder.progress_bar(scheduler.timesteps):
                x = torch.cat([latents] * rows) if rows > 1 else latents
                pred = unet(sample=x, timestep=t, encoder_hidden_states=None,
                            added_cond_kwargs={"image_embeds": embeds}, return_dict=False)[0]
                eps, var = pred.split(channels, dim=1)
                pred = torch.cat([lay.combine(eps), var[-1:]], dim=1) if learned else lay.combine(eps)
                latents = scheduler.step(pred, t, latents, **step_extra).prev_sample
            image = decoder.movq.decode(latents, force_not_quantize=True).sample
        decoder.maybe_free_model_hooks()
        return crop_to(to_numpy(image), width, height)

    # --- outpainting ----------------------------------------------------------------------

    @torch.no_grad()
    def outpaint(self, canvas: np.ndarray, region: np.ndarray, seed: int, prompt: str | None = None) -> np.ndarray:
        """``canvas`` with ``region`` (boolean H x W) painted by the inpainting decoder (no prompts)."""
        with self.rt.memory(f"kandinsky outpainting at {canvas.shape[1]}x{canvas.shape[0]}"):
            return self._outpaint(canvas, region, seed)

    def _outpaint(self, canvas: np.ndarray, region: np.ndarray, seed: int) -> np.ndarray:
        height, width = canvas.shape[:2]
        pipe = self.pipes.get("inpaint")
        multiple = 2 ** (2 * (len(pipe.movq.config.block_out_channels) - 1))
        pw, ph = padded_size(width, height, multiple)
        emb = self.embed([canvas])[0]
        negative = self.negative()
        # The padding is not part of the picture: the model paints it too, and it is cut away.
        mask = pad_to(region.astype(np.float32), pw, ph)
        top, left = (ph - height) // 2, (pw - width) // 2
        full = np.ones((ph, pw), dtype=np.float32)
        full[top : top + height, left : left + width] = mask[top : top + height, left : left + width]
        device = pipe._execution_device
        out = pipe(
            image_embeds=emb, negative_image_embeds=negative,
            image=to_tensor(pad_to(canvas, pw, ph), device, torch.float32),
            mask_image=torch.from_numpy(full)[None, None], height=ph, width=pw,
            num_inference_steps=self.steps, guidance_scale=self.guidance, generator=generator(seed),
            output_type="np",
        ).images[0]
        return crop_to(out.astype(np.float32), width, height)
