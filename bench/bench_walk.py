"""Benchmark: the example walk end to end, against the bare encode of its own frames.

Runs README's main walk (the bundled examples, the cpu engines, 1280x720 upscaled to
2560x1440) stage by stage into a fresh run folder, and prints:

- the wall time of each stage;
- the whole walk against a bare encode of its output frames: the same frames, already in
  memory, through PyAV with the same codec settings, measured in the same run;
- the intermediates (keyframes/, frames/, upscaled/) in bytes per unique frame, and the chunks;
- a rerun after one image of the walk is changed, as a fraction of the fresh run.

::

    python bench/bench_walk.py                   # the examples, as README's first command walks them
    python bench/bench_walk.py --keep-frames     # PNG motion frames and stored upscaled frames, to compare
    python bench/bench_walk.py --repeats 3       # the median of three runs, for a shared machine
    python bench/bench_walk.py --json out.json

Nothing here is a test: the figures depend on the machine. bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def stage_times(inp: Path, out: Path, keep_frames: bool) -> dict[str, float]:
    import diffusion_models
    import frame_interpolation
    import generate_videos
    import super_resolution
    from diffusion_models import KeyframeConfig
    from frame_interpolation import MotionConfig
    from generate_videos import VideoConfig
    from super_resolution import UpscaleConfig

    times = {}
    for name, run in (
        ("keyframes", lambda: diffusion_models.run(KeyframeConfig(inp, out, progress=False))),
        ("motion", lambda: frame_interpolation.run(MotionConfig(out, keep_frames=keep_frames, progress=False))),
        ("upscale", lambda: super_resolution.run(UpscaleConfig(out, keep_frames=keep_frames, progress=False))),
        ("video", lambda: generate_videos.run(VideoConfig(out, progress=False))),
    ):
        started = time.perf_counter()
        run()
        times[name] = time.perf_counter() - started
    return times


def bare_encode(out: Path) -> float:
    """The walk's own output frames, decoded into memory first, encoded again with the same settings."""
    import av

    from artwalk.video import EncodeSettings, encode_video

    video = next(out.glob("*.mp4"))
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        rate = Fraction(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    height, width = frames[0].shape[:2]
    started = time.perf_counter()
    encode_video(lambda: iter(frames), len(frames), (width, height), out.parent / "bare.mp4",
                 EncodeSettings(fps=rate, progress=False))
    return time.perf_counter() - started


def folder_bytes(*folders: Path) -> int:
    return sum(p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file())


def one_run(keep_frames: bool) -> dict:
    """A fresh walk, the bare encode of its frames, and the rerun after one image changed."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="bench-walk-") as tmp:
        inp, out = Path(tmp) / "examples", Path(tmp) / "walk"
        shutil.copytree(REPO / "examples", inp)
        fresh = stage_times(inp, out, keep_frames)
        bare_s = bare_encode(out)
        manifest = json.loads((out / "frames" / "manifest.json").read_text())
        intermediates = folder_bytes(out / "keyframes", out / "frames", out / "upscaled")
        chunks = folder_bytes(out / "chunks")
        before = {p.name for p in (out / "chunks" / "units").iterdir()}
        # One image of the walk changed: a mirrored third image.
        third = sorted(p for p in inp.iterdir() if p.suffix.lower() in (".png", ".jpg"))[2]
        with Image.open(third) as im:
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(third)
        rerun = stage_times(inp, out, keep_frames)
        # The share of the video in the chunks the change made anew: what the rerun had to encode.
        redone = 0
        for unit in (out / "chunks" / "units").iterdir():
            if unit.name not in before:
                start, end = json.loads((unit / "unit.json").read_text())["frames"]
                redone += end - start
    walk_s, rerun_s = sum(fresh.values()), sum(rerun.values())
    return {"stages": fresh, "walk_s": walk_s, "bare_encode_s": bare_s, "ratio": walk_s / bare_s,
            "unique_frames": len(manifest["frames"]), "video_frames": len(manifest["timeline"]),
            "intermediate_bytes": intermediates, "chunk_bytes": chunks, "rerun": rerun,
            "rerun_fraction": rerun_s / walk_s, "redone_frames": redone}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep-frames", action="store_true", help="PNG motion frames and stored upscaled frames")
    p.add_argument("--repeats", type=int, default=1, help="run it N times and print the median of each figure "
                   "(timings on a shared machine vary by 20%% from one run to the next)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    runs = [one_run(args.keep_frames) for _ in range(args.repeats)]
    median = lambda key, sub=None: statistics.median(r[key][sub] if sub else r[key] for r in runs)  # noqa: E731
    r = runs[0]
    ratios = ", ".join(f"{x['ratio']:.2f}" for x in runs)
    fractions = ", ".join(f"{x['rerun_fraction']:.2f}" for x in runs)
    rerun_stages = ", ".join(f"{k} {median('rerun', k):.1f} s" for k in r["rerun"])
    per_frame = r["intermediate_bytes"] / r["unique_frames"] / 1e6
    print(f"example walk ({r['unique_frames']} unique frames, {r['video_frames']} in the video), "
          f"{'--keep-frames' if args.keep_frames else 'default storage'}, median of {len(runs)} run(s)")
    for name in r["stages"]:
        print(f"  {name:9s} {median('stages', name):7.2f} s")
    print(f"  walk {median('walk_s'):.1f} s, bare encode of its frames {median('bare_encode_s'):.1f} s: "
          f"{median('ratio'):.2f}x the encode (runs: {ratios})")
    print(f"  intermediates {r['intermediate_bytes'] / 1e6:.1f} MB, {per_frame:.2f} MB per unique frame "
          f"(and the chunks, {r['chunk_bytes'] / 1e6:.1f} MB)")
    print(f"  one image of four changed: rerun {median('rerun_fraction'):.2f} of a fresh run (runs: {fractions}; "
          f"{rerun_stages}); the chunks it encoded again hold {r['redone_frames']} of the {r['video_frames']} "
          f"video frames ({r['redone_frames'] / r['video_frames']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
