"""Chunked encode against one pass, on the same frames: size, PSNR, seams and time.

    python bench/bench_chunks.py [--size 1280x720] [--crf 18] [--preset medium] [--keep]

Makes the bundled examples' walk (4 images, cpu engines, README's settings) at --size, no
upscale, then encodes its timeline with stage 4's settings (H.264 crf 18, medium) four ways:

- one pass;
- chunked as stage 4 does (:func:`generate_videos.chunk_bounds`: a chunk is a keyframe's hold
  and the motion after it; every chunk but the last ``continued``, its last frames given back
  the bits x264 keeps from a file's end);
- the same chunks, not continued (stage 4 before 2026-12-07);
- cut where a keyframe leaves the screen instead (a chunk is the motion towards a keyframe and
  its hold), not continued.

For each it prints the bytes (and the ratio to one pass), the mean PSNR of the decoded video
against the frames, then of the frames on each side of its joins (a seam shows as a dip
there; one pass: stage 4's joins) and of the same frames in one pass, of the worst frame, of
the held frames (the artworks) and of the motion frames, and the seconds taken.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def decoded(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def leaving(entries, timeline, min_frames: int) -> list[tuple[int, int]]:
    """Cut where a keyframe leaves the screen (at least ``min_frames`` a chunk)."""
    starts = [0]
    for i in range(1, len(timeline)):
        if timeline[i] != timeline[i - 1] and entries[timeline[i - 1]].get("kind") != "motion" \
                and i - starts[-1] >= min_frames:
            starts.append(i)
    if len(starts) > 1 and len(timeline) - starts[-1] < min_frames:
        starts.pop()
    return list(zip(starts, starts[1:] + [len(timeline)]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="1280x720", help="the walk's size, WxH (default 1280x720)")
    p.add_argument("--crf", type=int, default=18, help="H.264 crf, as stage 4 (default 18)")
    p.add_argument("--preset", default="medium", help="x264 preset, as stage 4 (default medium)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    import diffusion_models
    import frame_interpolation
    import generate_videos as gv
    from artwalk.framestore import FrameReader
    from generate_videos import EncodeSettings, concat_chunks, encode_video
    from diffusion_models import KeyframeConfig
    from frame_interpolation import MotionConfig

    tmp = Path(tempfile.mkdtemp(prefix="bench-chunks-"))
    try:
        out = tmp / "walk"
        diffusion_models.run(KeyframeConfig(REPO / "examples", out, width=width, height=height, progress=False))
        frame_interpolation.run(MotionConfig(out, progress=False))
        manifest = gv.read_manifest(out, "frames")
        entries, timeline, size, fps = gv.check_manifest(out, "frames", manifest)
        rate = Fraction(fps).limit_denominator(1001)
        with FrameReader(out) as reader:
            frames = list(gv._timeline_frames(reader, entries, timeline, size))
        settings = EncodeSettings(fps=rate, crf=args.crf, preset=args.preset, progress=False)
        chunks = gv.chunk_bounds(entries, timeline, max(1, round(fps)))
        ways = {"one pass": ([(0, len(frames))], False),
                "chunked (stage 4)": (chunks, True),
                "chunked, not continued": (chunks, False),
                "cut where keyframes leave": (leaving(entries, timeline, max(1, round(fps))), False)}
        print(f"{len(frames)} frames of {size[0]}x{size[1]} at {fps:g} fps; crf {args.crf}, {args.preset}")
        for name, (bounds, _) in ways.items():
            print(f"  {name}: joins at {', '.join(str(start) for start, _ in bounds[1:]) or 'none'}")

        results = {}
        for name, (bounds, continued) in ways.items():
            started = time.perf_counter()
            path = tmp / f"{len(results)}.mp4"
            if len(bounds) == 1:
                encode_video(lambda: iter(frames), len(frames), size, path, settings)
            else:
                parts = []
                for k, (start, end) in enumerate(bounds):
                    part = tmp / f"{len(results)}-{k}.mp4"
                    chunk = replace(settings, continued=continued and end < len(frames))
                    encode_video(lambda s=start, e=end: iter(frames[s:e]), end - start, size, part, chunk)
                    parts.append((part, end - start))
                concat_chunks(parts, path, settings)
            results[name] = (path, time.perf_counter() - started)

        base = results["one pass"][0].stat().st_size
        held = np.array([entries[i].get("kind") != "motion" for i in timeline])
        scores = {}
        for name, (path, _) in results.items():
            video = decoded(path)
            assert len(video) == len(frames), (name, len(video))
            scores[name] = np.array([psnr(a, b) for a, b in zip(video, frames)])
        print(f"{'':26} {'bytes':>9} {'/ one pass':>10} {'PSNR dB':>8} {'at joins':>9} {'one pass':>9} {'worst':>6} "
              f"{'held':>6} {'motion':>6} {'seconds':>8}")
        for name, (path, seconds) in results.items():
            score = scores[name]
            bounds = ways[name][0] if len(ways[name][0]) > 1 else chunks  # one pass: at stage 4's joins
            joins = [j + d for j, _ in bounds[1:] for d in (-1, 0)]  # the frames either side of the row's joins
            print(f"{name:26} {path.stat().st_size:>9} {path.stat().st_size / base:>10.3f} {score.mean():>8.2f} "
                  f"{score[joins].mean():>9.2f} {scores['one pass'][joins].mean():>9.2f} {score.min():>6.2f} "
                  f"{score[held].mean():>6.2f} {score[~held].mean():>6.2f} {seconds:>8.1f}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
