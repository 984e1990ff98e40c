"""Benchmark: video init, output frames per second with every frame restyled (--every 1)
against every 4th restyled and the flow engine filling between (--every 4).

A generated 4-second clip at 24 fps (96 frames, a moving square on a changing
background) at ``--size``. Stages 1 and 2 run as a walk runs them
(:func:`diffusion_models.run`, :func:`frame_interpolation.run`) into a fresh run folder
each; the encode is the same for both and left out::

    python bench/bench_video_init.py                       # tiny random SD (tests/tiny_models.py), CPU
    python bench/bench_video_init.py --full --device cuda --dtype float16 --steps 25 --size 512x512

``--full`` builds Stable Diffusion 1.5's real architecture with random weights (the
configs of bench/bench_keyframes.py), so nothing is downloaded; a denoising step costs
the same whatever the weights. With ``--full`` on a CPU, ``--project`` times one
restyled frame and the flow frames of one gap instead, and projects both from those.

It prints one line per setting and the ratio; ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench_prompts import build_engine, size  # noqa: E402

SCHEDULE = "0: a watercolour of a harbour | ink:0.4\n2s: an oil painting, impasto --neg blur\n"
FPS, FRAMES = 24, 96


def write_clip(path: Path, width: int, height: int) -> Path:
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=FPS, options={"crf": "12"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        y, x = np.mgrid[0:height, 0:width]
        for i in range(FRAMES):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (x * 255 // max(1, width - 1) + 2 * i) % 256
            img[..., 1] = y * 255 // max(1, height - 1)
            img[..., 2] = 120
            left = i * (width - width // 4) // FRAMES
            img[height // 3 : height // 3 + height // 4, left : left + width // 4] = (250, 220, 30)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    return path


def walk(engine, every: int, clip: Path, args, root: Path) -> dict:
    import diffusion_models
    import frame_interpolation
    from diffusion_models import KeyframeConfig, KeyframePlan
    from diffusion_models.video_init import plan_video
    from frame_interpolation import MotionConfig

    out = root / f"every-{every}"
    width, height = args.size
    config = KeyframeConfig(video_init=clip, prompts=SCHEDULE, run_dir=out, engine="sd", every=every,
                            strength_schedule=str(args.strength), width=width, height=height, fps=FPS,
                            progress=False)
    plan = KeyframePlan([], [], diffusion_models.ENGINES.get("sd"), engine, 0, [],
                        video=plan_video(config, engine.text_identity(), engine.guidance))
    started = time.perf_counter()
    diffusion_models.run(config, plan=plan)
    keyframes_s = time.perf_counter() - started
    motion = MotionConfig(run_dir=out, fps=FPS, engine="none" if every == 1 else "flow", easing="linear",
                          progress=False)
    started = time.perf_counter()
    result = frame_interpolation.run(motion)
    motion_s = time.perf_counter() - started
    return {"every": every, "frames": result.frames, "restyled": len(plan.video.keyframes),
            "keyframes_s": keyframes_s, "motion_s": motion_s,
            "fps": result.frames / (keyframes_s + motion_s)}


def project(engine, args) -> dict:
    """One restyled frame and one gap of flow frames, timed; both settings projected."""
    from artwalk.schedule import parse_prompts
    from artwalk.timeline import gap_times
    from frame_interpolation.flow import FlowEngine

    keys = parse_prompts(SCHEDULE, fps=FPS).keys
    width, height = args.size
    init = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    cond = engine.conditioning(keys[0].parts, "", 0, None, args.size)
    engine.restyle(cond, init, args.strength)  # warm-up
    started = time.perf_counter()
    a = engine.restyle(cond, init, args.strength)
    restyle_s = time.perf_counter() - started
    b = engine.restyle(cond, np.roll(init, 8, axis=1), args.strength)
    started = time.perf_counter()
    for _ in FlowEngine().interpolate(a, b, gap_times(4, "linear")):
        pass
    flow_s = (time.perf_counter() - started) / 3
    restyled4 = len(set(range(0, FRAMES, 4)) | {FRAMES - 1})
    return {"restyle_s": restyle_s, "flow_s": flow_s, "rows": [
        {"every": 1, "frames": FRAMES, "restyled": FRAMES, "fps": 1 / restyle_s},
        {"every": 4, "frames": FRAMES, "restyled": restyled4,
         "fps": FRAMES / (restyled4 * restyle_s + (FRAMES - restyled4) * flow_s)}]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="SD 1.5's real architecture (random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--steps", type=int, default=2, help="denoising steps of a full schedule (default 2; img2img "
                   "runs strength x steps of them)")
    p.add_argument("--strength", type=float, default=0.45, help="img2img strength (default 0.45)")
    p.add_argument("--size", type=size, default=(128, 72), help="W x H (default 128x72)")
    p.add_argument("--project", action="store_true", help="time one restyled frame and one gap of flow frames, "
                   "and project both settings from them (full models on a CPU)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    engine, what = build_engine(args)
    with tempfile.TemporaryDirectory(prefix="bench-video-init-") as tmp:
        if args.project:
            measured = project(engine, args)
            rows = measured["rows"]
            print(f"one restyled frame {measured['restyle_s']:.3f} s, one flow frame {measured['flow_s']:.4f} s")
        else:
            clip = write_clip(Path(tmp) / "clip.mp4", *args.size)
            walk(engine, 4, clip, args, Path(tmp) / "warm-up")
            rows = [walk(engine, every, clip, args, Path(tmp)) for every in (1, 4)]
    print(f"{what}, {args.size[0]}x{args.size[1]}, {args.steps} steps at strength {args.strength:g}, {args.device} "
          f"{args.dtype}; {FRAMES} frames at {FPS} fps")
    for row in rows:
        print(f"  --every {row['every']}: {row['restyled']:3d} of {row['frames']} restyled, "
              f"{row['fps']:.2f} output frames per second")
    ratio = rows[1]["fps"] / rows[0]["fps"]
    print(f"  --every 4 / --every 1: {ratio:.2f}x the frames per second")
    if args.json:
        args.json.write_text(json.dumps({"setup": what, "size": args.size, "steps": args.steps,
                                         "strength": args.strength, "rows": rows, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
