"""Benchmark: seconds per in-between of each keyframe engine at 1280x720.

The pipelines have the real architectures (the configs below are the hub repos'
config.json values) with random weights, so no download is needed: the timing
of a denoising step does not depend on what the weights are. Each run builds the
pipeline on the device in the asked dtype, hands it to the engine (``attach``),
makes one warm-up pair, then times ``--pairs`` pairs of ``-S`` in-betweens each::

    python bench/bench_keyframes.py --engine all --device cuda --dtype both --steps 25
    python bench/bench_keyframes.py --engine sd --device cpu --dtype bfloat16 --steps 2 --size 512x288
    python bench/bench_keyframes.py --tiny --device cpu --size 256x144    # proves it runs (tiny models)

It prints one line per (engine, dtype) and, with ``--json FILE``, writes them as
JSON. Seconds per in-between include everything the stage does per in-between
(embedding, denoising, decoding, crop); the one-off build time is reported apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench_keyframes")

# --- Kandinsky 2.2 (kandinsky-community/kandinsky-2-2-decoder, -prior) -----------------------------

KANDINSKY_UNET = dict(  # decoder/unet/config.json: 1.25 B parameters
    act_fn="silu", addition_embed_type="image", addition_embed_type_num_heads=64, attention_head_dim=64,
    block_out_channels=[384, 768, 1152, 1536], center_input_sample=False, class_embed_type=None,
    cross_attention_dim=768, down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                                               "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
    downsample_padding=1, encoder_hid_dim=1280, encoder_hid_dim_type="image_proj", flip_sin_to_cos=True,
    freq_shift=0, in_channels=4, layers_per_block=3, mid_block_scale_factor=1,
    mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_eps=1e-05, norm_num_groups=32, out_channels=8,
    resnet_time_scale_shift="scale_shift", sample_size=64, time_embedding_type="positional",
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                    "ResnetUpsampleBlock2D"],
    upcast_attention=False, use_linear_projection=False,
)
KANDINSKY_MOVQ = dict(  # decoder/movq/config.json
    in_channels=3, out_channels=3, latent_channels=4, num_vq_embeddings=16384, vq_embed_dim=4,
    block_out_channels=[128, 256, 256, 512], layers_per_block=2, norm_type="spatial",
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
)
KANDINSKY_SCHEDULER = dict(  # decoder/scheduler/scheduler_config.json (DDPMScheduler)
    beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, num_train_timesteps=1000,
    prediction_type="epsilon", steps_offset=1, thresholding=False, variance_type="fixed_small",
)
VIT_BIGG = dict(  # prior/image_encoder/config.json: OpenCLIP ViT-bigG/14, 1280-d embeddings
    hidden_size=1664, intermediate_size=8192, num_attention_heads=16, num_hidden_layers=48, patch_size=14,
    image_size=224, projection_dim=1280, hidden_act="gelu", layer_norm_eps=1e-5,
)

# --- Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5) ----------------------------

SD15_UNET = dict(  # unet/config.json: 860 M parameters
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], center_input_sample=False,
    cross_attention_dim=768, down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                               "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
)
SD_VAE = dict(  # vae/config.json (the same for SD 1.x and 2.x)
    act_fn="silu", block_out_channels=[128, 256, 512, 512], in_channels=3, latent_channels=4, layers_per_block=2,
    norm_num_groups=32, out_channels=3, sample_size=512, scaling_factor=0.18215,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
)
CLIP_L_TEXT = dict(  # text_encoder/config.json: CLIP ViT-L/14 text tower
    hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, projection_dim=768,
    hidden_act="quick_gelu", max_position_embeddings=77, vocab_size=49408,
)
PNDM = dict(  # scheduler/scheduler_config.json
    beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, num_train_timesteps=1000,
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
)

# --- Stable Diffusion 2.1 unCLIP (stabilityai/stable-diffusion-2-1-unclip, ViT-H) -------------------

SD21_UNCLIP_UNET = dict(  # unet/config.json: SD 2.1's UNet + the noise-augmented image embedding
    act_fn="silu", attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
    class_embed_type="projection", projection_class_embeddings_input_dim=2048, cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    in_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=4, sample_size=96,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    use_linear_projection=True, upcast_attention=False,
)
OPENCLIP_H_TEXT = dict(  # text_encoder/config.json: OpenCLIP ViT-H text tower (23 of 24 layers)
    hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23, projection_dim=512,
    hidden_act="gelu", max_position_embeddings=77, vocab_size=49408,
)
VIT_H = dict(  # image_encoder/config.json: OpenCLIP ViT-H/14, 1024-d embeddings
    hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32, patch_size=14,
    image_size=224, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5,
)
DDIM_V = dict(  # scheduler/scheduler_config.json
    beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085, clip_sample=False,
    num_train_timesteps=1000, prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1,
)
IMAGE_NOISING = dict(beta_schedule="squaredcos_cap_v2", num_train_timesteps=1000)  # image_noising_scheduler


def _clip_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=224, size=224, do_center_crop=True, do_normalize=True, do_resize=True,
                              image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711], resample=3)


def _tokenizer():
    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models

    return tiny_models.tokenizer()  # byte-level: enough to feed a text encoder of any vocabulary


def build_full(engine: str, device, dtype) -> dict:
    """Real-size pipelines with random weights, created on ``device`` in ``dtype``."""
    import torch
    from diffusers import (
        AutoencoderKL, DDIMScheduler, DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline,
        PNDMScheduler, StableDiffusionImg2ImgPipeline, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel, VQModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    def made(factory):
        torch.manual_seed(0)
        with torch.device(device):
            return factory().to(dtype).eval()

    if engine == "kandinsky":
        prior = KandinskyV22PriorPipeline(
            prior=None, text_encoder=None, tokenizer=None, scheduler=None, image_processor=_clip_processor(),
            image_encoder=made(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_BIGG))),
        )
        decoder = KandinskyV22Pipeline(unet=made(lambda: UNet2DConditionModel(**KANDINSKY_UNET)),
                                       movq=made(lambda: VQModel(**KANDINSKY_MOVQ)),
                                       scheduler=DDPMScheduler(**KANDINSKY_SCHEDULER))
        return {"prior": prior, "decoder": decoder}
    if engine == "sd":
        pipe = StableDiffusionImg2ImgPipeline(
            unet=made(lambda: UNet2DConditionModel(**SD15_UNET)), vae=made(lambda: AutoencoderKL(**SD_VAE)),
            text_encoder=made(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT))), tokenizer=_tokenizer(),
            scheduler=PNDMScheduler(**PNDM), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        return {"pipe": pipe}
    if engine == "unclip":
        pipe = StableUnCLIPImg2ImgPipeline(
            feature_extractor=_clip_processor(),
            image_encoder=made(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H))),
            image_normalizer=made(lambda: StableUnCLIPImageNormalizer(embedding_dim=1024)),
            image_noising_scheduler=DDPMScheduler(**IMAGE_NOISING), tokenizer=_tokenizer(),
            text_encoder=made(lambda: CLIPTextModel(CLIPTextConfig(**OPENCLIP_H_TEXT))),
            unet=made(lambda: UNet2DConditionModel(**SD21_UNCLIP_UNET)), scheduler=DDIMScheduler(**DDIM_V),
            vae=made(lambda: AutoencoderKL(**SD_VAE)),
        )
        return {"pipe": pipe}
    raise ValueError(engine)


def build_tiny(engine: str, device, dtype) -> dict:
    """The test suite's tiny pipelines (tests/tiny_models.py), to prove the bench runs anywhere."""
    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models

    from diffusers import StableDiffusionImg2ImgPipeline

    def sd_img2img():
        return StableDiffusionImg2ImgPipeline(**tiny_models.stable_diffusion().components)

    parts = {"kandinsky": {"prior": tiny_models.kandinsky_prior, "decoder": tiny_models.kandinsky_decoder},
             "sd": {"pipe": sd_img2img}, "unclip": {"pipe": tiny_models.stable_unclip}}[engine]
    return {role: make().to(device=device, dtype=dtype) for role, make in parts.items()}


def bench(engine_name: str, dtype_name: str, args) -> dict:
    import torch

    from artwalk.devices import resolve_device, resolve_dtype
    from diffusion_models.engines import ENGINES

    device = resolve_device(args.device)
    dtype = resolve_dtype(dtype_name, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    pipelines = (build_tiny if args.tiny else build_full)(engine_name, device, dtype)
    options = {"steps": args.steps, "device": str(device), "dtype": dtype_name,
               "attention_slicing": args.attention_slicing or None}
    if engine_name != "kandinsky":
        options["vae_tiling"] = args.vae_tiling or None
    if engine_name == "kandinsky" and args.strength is not None:
        options["strength"] = args.strength
    engine = ENGINES.create(engine_name, options, progress=False)
    engine.attach(**pipelines)
    build_s = time.perf_counter() - t0

    width, height = args.size
    rng = np.random.default_rng(0)
    pairs = [(rng.random((height, width, 3), dtype=np.float32), rng.random((height, width, 3), dtype=np.float32))
             for _ in range(args.pairs + 1)]
    fractions = [k / (args.S + 1) for k in range(1, args.S + 1)]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    a, b = pairs[0]
    t0 = time.perf_counter()
    out = list(engine.inbetweens(a, b, fractions, seed=0))  # warm-up: kernels, allocator, caches
    sync()
    warmup_s = time.perf_counter() - t0
    assert out[0].shape == (height, width, 3)
    t0 = time.perf_counter()
    for k, (a, b) in enumerate(pairs[1:], start=1):
        for _ in engine.inbetweens(a, b, fractions, seed=k):
            pass
    sync()
    total = time.perf_counter() - t0
    n = args.pairs * args.S
    result = {
        "engine": engine_name, "tiny": args.tiny, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": dtype_name, "size": f"{width}x{height}", "steps": args.steps, "inbetweens": n,
        "s_per_inbetween": round(total / n, 4), "warmup_s": round(warmup_s, 3), "build_s": round(build_s, 2),
    }
    if device.type == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del engine, pipelines
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", default="all", choices=["all", "kandinsky", "unclip", "sd"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="both",
                   help="float16, float32, bfloat16, auto, or both (float16 and float32; float32 only on CPU)")
    p.add_argument("--steps", type=int, default=25, help="denoising steps per in-between (default 25)")
    p.add_argument("--strength", type=float, help="kandinsky: anchoring strength (default: the engine's)")
    p.add_argument("--size", type=size, default=(1280, 720), help="W x H of the walk (default 1280x720)")
    p.add_argument("-S", type=int, default=3, help="in-betweens per pair (default 3)")
    p.add_argument("--pairs", type=int, default=2, help="timed pairs after one warm-up pair (default 2)")
    p.add_argument("--attention-slicing", action="store_true")
    p.add_argument("--vae-tiling", action="store_true")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny models instead of the real sizes")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from artwalk.devices import resolve_device

    device = resolve_device(args.device)
    if args.dtype == "both":
        dtypes = ["float16", "float32"] if device.type == "cuda" else ["float32"]
    else:
        dtypes = [args.dtype]
    engines = ["kandinsky", "unclip", "sd"] if args.engine == "all" else [args.engine]
    log.info("torch %s, %s, %d CPU thread(s)", torch.__version__, device, torch.get_num_threads())
    results = []
    for engine in engines:
        for dtype in dtypes:
            r = bench(engine, dtype, args)
            results.append(r)
            extra = f", peak {r['peak_gib']} GiB" if "peak_gib" in r else ""
            log.info("%-9s %-8s %s %s steps %d: %.3f s per in-between (warm-up pair %.1f s, build %.1f s%s)",
                     engine + (" (tiny)" if args.tiny else ""), dtype, r["device_name"], r["size"], r["steps"],
                     r["s_per_inbetween"], r["warmup_s"], r["build_s"], extra)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
