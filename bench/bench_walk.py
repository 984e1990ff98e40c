"""Benchmark: the example walk end to end, against the bare encode of its own frames.

Runs README's main walk (the bundled examples, the cpu engines, 1280x720 upscaled to
2560x1440) stage by stage into a fresh run folder, and prints:

- the wall time of each stage;
- the whole walk against a bare encode of its output frames: the same frames, already in
  memory, through PyAV with the same codec settings, measured in the same run;
- the intermediates (keyframes/, frames/, upscaled/) in bytes per unique frame, and the chunks;
- reruns after one image of the walk is changed (the third, then the last), each as a
  fraction of the fresh run, with the share of the video in the chunks it had to encode again.

::

    python bench/bench_walk.py                   # the examples, as README's first command walks them
    python bench/bench_walk.py --keep-frames     # PNG motion frames and stored upscaled frames, to compare
    python bench/bench_walk.py --repeats 3       # the median of three runs, for a shared machine
    python bench/bench_walk.py --five            # a fifth image: the first example upside down
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

    from generate_videos import EncodeSettings, encode_video

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


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def changed_rerun(inp: Path, out: Path, which: int, keep_frames: bool) -> tuple[dict[str, float], int]:
    """Mirror image ``which`` (of the sorted images) and rerun the walk: its stage times, and how
    many video frames the chunks it encoded anew hold (what any rerun must encode again)."""
    from PIL import Image

    before = {p.name for p in (out / "chunks" / "units").iterdir()}
    image = images_in(inp)[which]
    with Image.open(image) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    times = stage_times(inp, out, keep_frames)
    redone = 0
    for unit in (out / "chunks" / "units").iterdir():
        if unit.name not in before:
            start, end = json.loads((unit / "unit.json").read_text())["frames"]
            redone += end - start
    return times, redone


def one_run(keep_frames: bool, five: bool) -> dict:
    """A fresh walk, the bare encode of its frames, and reruns after one image changed: the
    third (its two segments and their chunks change), then the last (one). ``five``: a fifth
    image after the examples, the first one upside down."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="bench-walk-") as tmp:
        inp, out = Path(tmp) / "examples", Path(tmp) / "walk"
        shutil.copytree(REPO / "examples", inp)
        if five:
            with Image.open(images_in(inp)[0]) as im:
                im.transpose(Image.Transpose.ROTATE_180).save(inp / "05_upside_down.png")
        fresh = stage_times(inp, out, keep_frames)
        bare_s = bare_encode(out)
        manifest = json.loads((out / "frames" / "manifest.json").read_text())
        intermediates = folder_bytes(out / "keyframes", out / "frames", out / "upscaled")
        chunks = folder_bytes(out / "chunks")
        reruns = {name: changed_rerun(inp, out, which, keep_frames) for name, which in (("third", 2), ("last", -1))}
    walk_s = sum(fresh.values())
    return {"stages": fresh, "walk_s": walk_s, "bare_encode_s": bare_s, "ratio": walk_s / bare_s,
            "unique_frames": len(manifest["frames"]), "video_frames": len(manifest["timeline"]),
            "intermediate_bytes": intermediates, "chunk_bytes": chunks,
            "reruns": {name: {"stages": times, "fraction": sum(times.values()) / walk_s, "redone_frames": redone}
                       for name, (times, redone) in reruns.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep-frames", action="store_true", help="PNG motion frames and stored upscaled frames")
    p.add_argument("--repeats", type=int, default=1, help="run it N times and print the median of each figure "
                   "(timings on a shared machine vary by 20%% from one run to the next)")
    p.add_argument("--five", action="store_true", help="walk five images: the examples and the first one upside "
                   "down (issue 12 states its rerun target for one image changed among five)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    runs = [one_run(args.keep_frames, args.five) for _ in range(args.repeats)]
    median = lambda key, sub=None: statistics.median(r[key][sub] if sub else r[key] for r in runs)  # noqa: E731
    r = runs[0]
    ratios = ", ".join(f"{x['ratio']:.2f}" for x in runs)
    per_frame = r["intermediate_bytes"] / r["unique_frames"] / 1e6
    print(f"example walk ({r['unique_frames']} unique frames, {r['video_frames']} in the video), "
          f"{'--keep-frames' if args.keep_frames else 'default storage'}, median of {len(runs)} run(s)")
    for name in r["stages"]:
        print(f"  {name:9s} {median('stages', name):7.2f} s")
    print(f"  walk {median('walk_s'):.1f} s, bare encode of its frames {median('bare_encode_s'):.1f} s: "
          f"{median('ratio'):.2f}x the encode (runs: {ratios})")
    print(f"  intermediates {r['intermediate_bytes'] / 1e6:.1f} MB, {per_frame:.2f} MB per unique frame "
          f"(and the chunks, {r['chunk_bytes'] / 1e6:.1f} MB)")
    for name, rerun in r["reruns"].items():
        fractions = [x["reruns"][name]["fraction"] for x in runs]
        stages = ", ".join(f"{k} {statistics.median(x['reruns'][name]['stages'][k] for x in runs):.1f} s"
                           for k in rerun["stages"])
        print(f"  the {name} image of {4 + args.five} changed: rerun {statistics.median(fractions):.2f} of a fresh run "
              f"(runs: {', '.join(f'{f:.2f}' for f in fractions)}; {stages}); the chunks it encoded again hold "
              f"{rerun['redone_frames']} of the {r['video_frames']} video frames "
              f"({rerun['redone_frames'] / r['video_frames']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
