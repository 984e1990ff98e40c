"""Benchmark: the studio's "replace one keyframe" to the new video, against a full render.

Run from the repository root::

    .venv/bin/python bench/bench_studio.py                  # 10 keyframes, 640x360 -> 720p, CPU engines
    .venv/bin/python bench/bench_studio.py --keyframes 4 --w 320 --h 180 --target 640x360   # a smoke run

A project of ``--keyframes`` images (the bundled examples, and crops and mirror images of
them when more are asked for) is made through the studio's HTTP API (FastAPI's
TestClient, the same routes the page calls), with the classical engines (keyframes none,
motion flow, upscale lanczos). Timed, each from the request to the finished job:

- ``full``: the first render of the project;
- ``replace middle``: the middle keyframe's image replaced (its hold and its two
  segments change), then a render;
- ``replace last``: the last keyframe's image replaced (its hold and one segment).

Each edit's time is printed as a fraction of the full render, with the job's reused and
recomputed units per stage. The script writes nothing outside a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def images(count: int, seed_images: list[Path]) -> list[bytes]:
    """``count`` distinct PNGs: the examples, then crops and mirror images of them."""
    out = []
    for i in range(count):
        with Image.open(seed_images[i % len(seed_images)]) as im:
            im = im.convert("RGB")
            variant = i // len(seed_images)
            if variant % 2:
                im = ImageOps.mirror(im)
            if variant >= 1:
                w, h = im.size
                cut = 0.1 * variant
                im = im.crop((round(w * cut / 2), round(h * cut / 2), round(w * (1 - cut / 2)), round(h * (1 - cut / 2))))
            buf = io.BytesIO()
            im.save(buf, "PNG")
            out.append(buf.getvalue())
    return out


def render(client, pid: str) -> tuple[float, dict]:
    start = time.perf_counter()
    job = client.post(f"/api/projects/{pid}/render").json()["job"]
    while (state := client.get(f"/api/jobs/{job}").json())["state"] not in ("done", "failed"):
        time.sleep(0.05)
    if state["state"] != "done":
        raise SystemExit(f"render failed: {state['error']}")
    return time.perf_counter() - start, state["stages"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keyframes", type=int, default=10)
    p.add_argument("--w", type=int, default=640)
    p.add_argument("--h", type=int, default=360)
    p.add_argument("--target", default="1280x720")
    p.add_argument("--I", type=float, default=2.0, help="seconds of motion per segment")
    p.add_argument("--F", type=float, default=1.0, help="seconds of hold per keyframe")
    p.add_argument("--fps", type=float, default=24)
    args = p.parse_args()

    from fastapi.testclient import TestClient

    from studio.app import create_app

    examples = sorted((REPO / "examples").glob("0*"))
    pictures = images(args.keyframes + 2, examples)
    settings = {"S": 0, "I": args.I, "F": args.F, "fps": args.fps, "w": args.w, "h": args.h, "target": args.target,
                "engines": {"keyframes": "none", "motion": "flow", "upscale": "lanczos"}}
    with tempfile.TemporaryDirectory() as tmp, TestClient(create_app(Path(tmp) / "studio")) as client:
        pid = client.post("/api/projects", json={"name": "bench"}).json()["id"]
        ids = []
        for i, data in enumerate(pictures[:args.keyframes]):
            ids.append(client.post(f"/api/projects/{pid}/keyframes",
                                   files={"file": (f"{i}.png", data, "image/png")}).json()["id"])
        client.put(f"/api/projects/{pid}/settings", json=settings)
        frames = client.get(f"/api/projects/{pid}/frames").json()["frames"]
        rows = [("full", *render(client, pid))]
        for label, index, data in (("replace middle", args.keyframes // 2, pictures[-2]),
                                   ("replace last", args.keyframes - 1, pictures[-1])):
            start = time.perf_counter()
            client.patch(f"/api/projects/{pid}/keyframes/{ids[index]}", files={"file": ("new.png", data, "image/png")})
            stages = render(client, pid)[1]
            rows.append((label, time.perf_counter() - start, stages))

    print(f"# studio: {args.keyframes} keyframes, {args.w}x{args.h} -> {args.target}, I={args.I:g} s, "
          f"F={args.F:g} s, {args.fps:g} fps, {frames} frames; engines none/flow/lanczos")
    print(f"# machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}")
    print("| render | seconds | fraction of full | keyframes r/c | motion r/c | video chunks r/c |")
    print("|---|---|---|---|---|---|")
    full = rows[0][1]
    for label, seconds, stages in rows:
        def rc(name):
            s = stages.get(name, {"reused": 0, "recomputed": 0})
            return f"{s['reused']}/{s['recomputed']}"
        print(f"| {label} | {seconds:.1f} | {seconds / full:.2f} | {rc('keyframes')} | {rc('motion')} | {rc('video')} |")


if __name__ == "__main__":
    main()
