"""Benchmark: seconds per output frame of a prompt walk, --diffuse every against keyframes + flow.

A 10-second walk at 24 fps: six prompt keyframes at 0, 2, 4, 6, 8 and 10 s (241 frames).
``every`` diffuses all 241 frames (stage 2 has nothing to fill); ``keyframes`` diffuses
the 6 keyframes and the flow engine makes the other 235. Stages 1 and 2 run as a walk
runs them (:func:`diffusion_models.run`, :func:`frame_interpolation.run`) into a fresh
run folder each; the encode is the same for both and left out::

    python bench/bench_prompts.py                        # tiny random SD (tests/tiny_models.py), CPU
    python bench/bench_prompts.py --size 256x144 --steps 4
    python bench/bench_prompts.py --full --device cuda --dtype float16 --steps 25 --size 512x512

``--full`` builds Stable Diffusion 1.5's real architecture with random weights (the
configs of bench/bench_keyframes.py) and hands it to the engine, so nothing is
downloaded; the timing of a denoising step does not depend on the weights. On a CPU a
full ``every`` walk takes hours: ``--project`` times one diffused frame and the flow
frames of one segment instead, and states the ratio from those.

It prints one line per density and the ratio keyframes / every; ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

log = logging.getLogger("bench_prompts")

SCHEDULE = "\n".join(f"{s}s: {p}" for s, p in zip(range(0, 11, 2), (
    "a lighthouse on a cliff, oil painting", "a red house | a lightning storm:0.8", "a corgi in a field of flowers",
    "a lion at dusk, watercolour", "a sunken ship, linocut print", "a lantern-lit night market")))


def build_engine(args):
    from diffusion_models.engines import ENGINES

    options = {"steps": args.steps, "device": args.device, "dtype": args.dtype}
    if args.full:
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel

        from bench_keyframes import CLIP_L_TEXT, SD15_UNET, SD_VAE, _tokenizer

        engine = ENGINES.create("sd", {**options, "model": "sd15"}, progress=False)
        dtype = engine.rt.dtype
        torch.manual_seed(0)
        pipe = StableDiffusionPipeline(
            unet=UNet2DConditionModel(**SD15_UNET).to(dtype), vae=AutoencoderKL(**SD_VAE).to(dtype),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT)).to(dtype), tokenizer=_tokenizer(),
            scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        engine.attach(text=pipe)
        return engine, "sd15 architecture, random weights"
    import tiny_models

    folder = tiny_models.save_all(Path(tempfile.mkdtemp(prefix="bench-prompts-")), names=("sd",))["sd"]
    return ENGINES.create("sd", {**options, "model": str(folder)}, progress=False), "tiny random sd"


def walk(engine, density: str, args, root: Path) -> dict:
    """Stages 1 and 2 of the walk in a fresh run folder; seconds of each."""
    import diffusion_models
    import frame_interpolation
    from diffusion_models import KeyframeConfig, KeyframePlan
    from diffusion_models.prompt_walk import plan_prompts
    from frame_interpolation import MotionConfig

    out = root / density
    width, height = args.size
    config = KeyframeConfig(prompts=SCHEDULE, run_dir=out, engine="sd", diffuse=density, width=width, height=height,
                            fps=24.0, progress=False)
    plan = KeyframePlan([], [], diffusion_models.ENGINES.get("sd"), engine, 0, [],
                        prompt_walk=plan_prompts(config, engine.text_identity(), engine.guidance))
    started = time.perf_counter()
    diffusion_models.run(config, plan=plan)
    keyframes_s = time.perf_counter() - started
    motion = MotionConfig(run_dir=out, fps=24.0, engine="none" if density == "every" else "flow", progress=False)
    started = time.perf_counter()
    result = frame_interpolation.run(motion)
    motion_s = time.perf_counter() - started
    return {"density": density, "frames": result.frames, "diffused": len(plan.prompt_walk.keyframes)
            + plan.prompt_walk.inbetweens, "keyframes_s": keyframes_s, "motion_s": motion_s,
            "s_per_frame": (keyframes_s + motion_s) / result.frames}


def project(engine, args, root: Path) -> dict:
    """One diffused frame and one flow segment, timed; the two walks' cost from them."""
    import numpy as np

    from artwalk.schedule import parse_prompts
    from artwalk.timeline import gap_times
    from frame_interpolation.flow import FlowEngine

    keys = parse_prompts(SCHEDULE, fps=24.0).keys
    cond = engine.conditioning(keys[0].parts, "", 1, None, args.size)
    engine.render(cond)  # warm-up
    started = time.perf_counter()
    a = engine.render(cond)
    diffuse_s = time.perf_counter() - started
    b = engine.render(engine.conditioning(keys[1].parts, "", 2, None, args.size))
    times = gap_times(48, "eased")
    started = time.perf_counter()
    for _ in FlowEngine().interpolate(np.asarray(a), np.asarray(b), times):
        pass
    flow_s = (time.perf_counter() - started) / len(times)
    frames, diffused = 241, len(keys)
    every = frames * diffuse_s
    keyframes = diffused * diffuse_s + (frames - diffused) * flow_s
    return {"diffuse_s": diffuse_s, "flow_s": flow_s,
            "rows": [{"density": "every", "frames": frames, "diffused": frames, "s_per_frame": every / frames},
                     {"density": "keyframes", "frames": frames, "diffused": diffused,
                      "s_per_frame": keyframes / frames}]}


def size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="SD 1.5's real architecture (random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--steps", type=int, default=2, help="denoising steps per diffused frame (default 2)")
    p.add_argument("--size", type=size, default=(128, 72), help="W x H (default 128x72)")
    p.add_argument("--project", action="store_true", help="time one diffused frame and one flow segment, and "
                   "project the two walks from them (full models on a CPU)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    engine, what = build_engine(args)
    with tempfile.TemporaryDirectory(prefix="bench-prompts-") as tmp:
        if args.project:
            measured = project(engine, args, Path(tmp))
            rows = measured["rows"]
            print(f"one diffused frame {measured['diffuse_s']:.3f} s, one flow frame {measured['flow_s']:.4f} s")
        else:
            walk(engine, "keyframes", args, Path(tmp) / "warm-up")
            rows = [walk(engine, d, args, Path(tmp)) for d in ("every", "keyframes")]
    print(f"{what}, {args.size[0]}x{args.size[1]}, {args.steps} steps, {args.device} {args.dtype}; "
          "10 s at 24 fps, 6 prompt keyframes")
    for row in rows:
        print(f"  {row['density']:9s}  {row['frames']} frames, {row['diffused']:3d} diffused: "
              f"{row['s_per_frame']:.4f} s per output frame")
    ratio = rows[1]["s_per_frame"] / rows[0]["s_per_frame"]
    print(f"  keyframes + flow / every: {ratio:.3f} ({1 / ratio:.1f}x faster)")
    if args.json:
        args.json.write_text(json.dumps({"setup": what, "size": args.size, "steps": args.steps, "rows": rows,
                                         "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
