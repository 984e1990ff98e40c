"""Stage 2: motion frames on an eased timeline.

::

    OUT/keyframes/manifest.json     OUT/frames/
      A1, K1..KS, A2, ...   --->      manifest.json     unique frames + the timeline
                                      units/<key>/000001.png ... 0000NN.png
                                                        the N-1 motion frames of one
                                                        segment (keyframe i -> i+1)

Between two consecutive keyframes there are exactly N - 1 motion frames at
t_k = ease(k / N); originals are held H frames as repeated references in the
timeline, never as copied files (:mod:`artwalk.timeline` has the exact maths).
A segment's cache key hashes both keyframes' bytes, the times and the engine's
identity, so a changed keyframe recomputes only its two segments.

The manifest lists the walk's unique frames (keyframes stay in OUT/keyframes/ and
are referenced there) and ``timeline``: one index into that list per video frame.

Engines: ``flow`` (default, classical), ``blend``, and ``film`` (FILM on the published
weights; its options ``model``, ``film_mode``, ``time_mode``, ``device``, ``dtype``,
``batch``, ``block_size``, ``block_overlap`` are described in :mod:`frame_interpolation.film`;
the classical engines ignore them).

``run(MotionConfig(...)) -> MotionResult``; the CLI is ``python -m frame_interpolation``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from artwalk.errors import ConfigError
from artwalk.images import read_frame, save_png
from artwalk.plan import plan_counts
from artwalk.progress import progress
from artwalk.runfolder import (
    UnitStore, cache_key, config_dict, read_manifest, sha256_file, write_manifest,
)
from artwalk.timeline import EASINGS, Keyframe, TimelineSpec, build_timeline
from frame_interpolation.engines import create_engine

log = logging.getLogger(__name__)

STAGE = "frames"


@dataclass(frozen=True)
class MotionConfig:
    run_dir: Path
    fps: float = 24.0
    sec_interpolation: float = 3.0
    sec_freeze: float = 2.0
    easing: str = "smoothstep"
    engine: str = "flow"
    loop: bool = False
    progress: bool = True
    # options of the neural engine (film); flow and blend ignore them
    model: str = "film"  # registry name or path to a weights file
    film_mode: str = "module"  # module: our network on the file's weights; torchscript: run the file
    time_mode: str = "bisect"  # bisect: recursive midpoints to the exact times; exact: dt = t
    device: str = "auto"  # auto: CUDA when available
    dtype: str = "auto"  # auto: float16 on CUDA, float32 on CPU
    batch: int = 1  # network calls per forward pass
    block_size: int = 2560  # frames with a side over this run in overlapping blocks; 0: never
    block_overlap: int = 256  # pixels shared by neighbouring blocks

    def __post_init__(self) -> None:
        if self.easing not in EASINGS:
            raise ConfigError(f"unknown easing '{self.easing}' (choose from {', '.join(EASINGS)})")
        if self.batch < 1 or self.block_size < 0 or self.block_overlap < 0:
            raise ConfigError(f"--batch must be >= 1 and --block-size, --block-overlap >= 0 "
                              f"(got {self.batch}, {self.block_size}, {self.block_overlap})")

    def engine_options(self) -> dict:
        return {"model": self.model, "mode": self.film_mode, "time_mode": self.time_mode, "device": self.device,
                "dtype": self.dtype, "batch": self.batch, "block_size": self.block_size,
                "block_overlap": self.block_overlap}

    @property
    def spec(self) -> TimelineSpec:
        return TimelineSpec(self.fps, self.sec_interpolation, self.sec_freeze, self.easing)


@dataclass
class MotionResult:
    run_dir: Path
    manifest: Path
    frames: int
    unique_frames: int
    motion_frames: int
    reused: int
    computed: int
    seconds: float


def run(config: MotionConfig) -> MotionResult:
    start = time.monotonic()
    run_dir = Path(config.run_dir)
    spec = config.spec
    keyframes_manifest = read_manifest(run_dir, "keyframes")
    engine = create_engine(config.engine, **config.engine_options())
    keys = keyframes_manifest["outputs"]
    loop = (config.loop or keyframes_manifest.get("loop", False)) and len(keys) > 1
    joins = [(i, i + 1) for i in range(len(keys) - 1)] + ([(len(keys) - 1, 0)] if loop else [])
    times = spec.segment_times()

    n_orig = sum(k["kind"] == "original" for k in keys)
    width, height = keyframes_manifest["size"]
    n_motion = len(joins) * len(times)
    plan = plan_counts(n_orig * spec.hold + len(keys) - n_orig + n_motion, len(keys) + n_motion, spec.fps,
                       (width, height))
    log.info("%s", plan.describe(run_dir))
    log.info("motion: %d segment(s) of %d frames, %s easing, engine %s, %g fps",
             len(joins), len(times), spec.easing, engine.name, spec.fps)

    store = UnitStore(run_dir / STAGE)
    frames = [{"path": k["path"], "sha256": k["sha256"], "kind": k["kind"]} for k in keys]
    segments: list[list[int]] = []
    bar = progress(total=n_motion, desc="motion frames", unit="frame", enabled=config.progress)
    for i, j in joins:
        a_sha, b_sha = keys[i]["sha256"], keys[j]["sha256"]
        key = cache_key(kind="segment", a=a_sha, b=b_sha, times=times, engine=engine.identity())
        record = store.lookup(key)
        if record is None:
            a, b = read_frame(run_dir / keys[i]["path"]), read_frame(run_dir / keys[j]["path"])
            if a.shape != b.shape:
                raise ConfigError(f"keyframes {keys[i]['path']} and {keys[j]['path']} differ in size; rerun stage 1")
            with store.build(key, a=keys[i]["path"], b=keys[j]["path"]) as (tmp, record):
                for k, rgb in enumerate(engine.interpolate(a, b, times), start=1):
                    name = f"{k:06d}.png"
                    record["files"].append({"name": name, "sha256": save_png(tmp / name, rgb)})
                    bar.update()
        else:
            bar.update(len(times))
        first = len(frames)
        frames.extend({"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"], "kind": "motion"}
                      for f in record["files"])
        segments.append(list(range(first, len(frames))))
    bar.close()

    timeline = build_timeline([Keyframe(i, k["kind"] == "original") for i, k in enumerate(keys)], segments, spec)
    manifest = write_manifest(
        run_dir / STAGE, STAGE,
        config=config_dict(config, drop=("progress", "run_dir", "batch")), engine=engine.identity(),
        upstream=sha256_file(run_dir / "keyframes" / "manifest.json"),
        inputs=[{"path": k["path"], "sha256": k["sha256"]} for k in keys],
        outputs=frames[len(keys):],
        frames=frames, timeline=timeline, fps=spec.fps, size=[width, height],
        hold=spec.hold, intervals=spec.intervals, loop=loop,
    )
    store.prune()
    log.info("motion: %d frames in the timeline, %d unique; %s", len(timeline), len(frames), store.summary())
    return MotionResult(
        run_dir=run_dir, manifest=manifest, frames=len(timeline), unique_frames=len(frames),
        motion_frames=len(frames) - len(keys), reused=store.reused, computed=store.computed,
        seconds=time.monotonic() - start,
    )
