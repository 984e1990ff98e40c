"""Benchmark: infinite zoom frames per second at 2560x1440, against the naive crop-and-resize zoom.

Run from the repository root::

    .venv/bin/python bench/bench_zoom.py                    # 2560x1440, 6 levels, 48 frames each
    .venv/bin/python bench/bench_zoom.py --size 640x360 --frames 8   # a smoke run
    .venv/bin/python bench/bench_zoom.py --outpaint --device cuda    # + seconds per outpainted level

The levels are scale-invariant 1/f noise, each the one before shrunk by ``--factor`` (2) and
pasted into a new noise with the feathered ramp (:func:`artwalk.zoom.paste`), at the output
size, as stage 3 leaves them. Timed, on the same positions (every level, ``--frames`` per
level, zoom out) and one thread of the caller each (OpenCV uses its own threads in both):

- ``composed``: :func:`artwalk.zoom.compose`, every frame from all the levels it shows, each
  at its own resolution (what the ``zoom`` motion engine does);
- ``naive``: :func:`artwalk.zoom.naive`, one level's centre cropped and resized (bicubic);
- ``composed + lossless store``: composed frames written into the stage's lossless segment
  file, as stage 2 stores them.

The sharpness each buys is in tests/test_zoom.py (the naive zoom's level frames reach 26 dB,
the composed ones are exact). With ``--outpaint`` the script also times the outpainting of
levels with full-size SD inpainting (UNet, VAE, text encoder at SD 2's published sizes,
seeded random weights, built from config: no download), at ``--outpaint-size`` (1280x720),
``--steps`` (25) steps, after one warm-up level; it needs torch and diffusers, and a GPU to be
quick.

The script prints a table and writes nothing outside a temporary folder.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from artwalk.framestore import write_segment  # noqa: E402
from artwalk.zoom import Mipmap, ZoomGeometry, compose, naive, paste  # noqa: E402


def pink(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spectrum = np.fft.fft2(rng.standard_normal((height, width)).astype(np.float32))
    f = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]).astype(np.float32)
    f[0, 0] = 1.0
    img = np.real(np.fft.ifft2(spectrum / f))
    img = (img - img.mean()) / img.std() * 45 + 128
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def make_levels(width: int, height: int, count: int, factor: float, feather: float) -> list[np.ndarray]:
    levels = [pink(width, height, 0)]
    for k in range(1, count):
        levels.append(paste(levels[-1], pink(width, height, k), factor, feather)[0])
    return levels


def timed(fn, positions) -> float:
    start = time.perf_counter()
    for p in positions:
        fn(p)
    return time.perf_counter() - start


def outpaint_seconds(size: tuple[int, int], steps: int, device: str, levels: int) -> float:
    """Seconds per outpainted level with a full-size, random-weight SD 2 inpainting pipeline."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(REPO / "tests"))
    import tiny_models  # the offline tokenizer

    from diffusion_models.zoom import ZoomLevel, outpaint_level
    from diffusion_models.sd import StableDiffusionEngine

    torch.manual_seed(0)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet = UNet2DConditionModel(sample_size=96, in_channels=9, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                                attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=768)
    tokenizer: CLIPTokenizer = tiny_models.tokenizer()
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=1024, intermediate_size=4096,
                                        num_hidden_layers=23, num_attention_heads=16, projection_dim=512,
                                        hidden_act="gelu"))
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    engine = StableDiffusionEngine(steps=steps, device=device, progress=False)
    engine.attach(inpaint=pipe)
    width, height = size
    inner = pink(width, height, 0)
    level = ZoomLevel(1, (), "", 1)
    outpaint_level(engine, inner, 2.0, 15, level)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for k in range(levels):
        inner = outpaint_level(engine, inner, 2.0, 15, ZoomLevel(k + 1, (), "", k))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / levels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="2560x1440", help="frame size WxH (default 2560x1440)")
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--frames", type=int, default=48, help="frames per level (default 48: 2 s at 24 fps)")
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--outpaint", action="store_true", help="also time outpainting with full-size random SD")
    ap.add_argument("--outpaint-size", default="1280x720")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    feather = round(min(width, height) / 48)
    levels = make_levels(width, height, args.levels, args.factor, feather)
    mips = [Mipmap(lv) for lv in levels]
    geometry = ZoomGeometry(args.factor, feather / width, args.levels)
    positions = [i / args.frames for i in range((args.levels - 1) * args.frames + 1)]
    compose(mips, 0.5, geometry, (width, height))  # builds the mipmaps; not timed
    composed = timed(lambda p: compose(mips, p, geometry, (width, height)), positions)
    plain = timed(lambda p: naive(levels, p, args.factor, (width, height)), positions)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_segment(Path(tmp) / "motion.mkv", (compose(mips, p, geometry, (width, height)) for p in positions))
        stored = time.perf_counter() - start
    n = len(positions)
    print(f"# {platform.machine()} {platform.processor() or ''}, {cv2.getNumThreads()} OpenCV threads, "
          f"OpenCV {cv2.__version__}; {width}x{height}, {args.levels} levels x{args.factor:g}, {n} frames")
    print("| method | frames/s | ms/frame | vs naive |")
    print("|---|---|---|---|")
    for name, seconds in (("naive crop-and-resize", plain), ("composed", composed),
                          ("composed + lossless store", stored)):
        print(f"| {name} | {n / seconds:.2f} | {1000 * seconds / n:.0f} | {seconds / plain:.2f}x the time |")
    if args.outpaint:
        ow, oh = (int(v) for v in args.outpaint_size.lower().split("x"))
        print(f"outpainting: {outpaint_seconds((ow, oh), args.steps, args.device, 3):.1f} s per level at "
              f"{ow}x{oh}, {args.steps} steps, {args.device}")


if __name__ == "__main__":
    main()
