"""The ``zoom`` motion engine: every frame of an infinite zoom composed from its levels.

::

    OUT/levels/manifest.json          OUT/frames/
    (or OUT/keyframes/, not upscaled)   manifest.json      unique frames + the timeline
      level 0 .. L-1          --->      units/<key>/motion.mkv   the n frames from level k to
                                                           k + 1 (--keep-frames: PNGs)

The levels come from stage 1 (:mod:`diffusion_models.zoom`), brought to the output size
by stage 3 (:func:`super_resolution.run_levels`). Frame i of the zoom out sits at
position p = i / n, n = round(fps x ``--seconds-per-level``), and is composed by
:func:`artwalk.zoom.compose` from every level visible in it, each at its own resolution.
``--direction in`` plays the same frames backwards, ``--hold-start``/``--hold-end`` hold
the first and last, ``--loop`` blends the last level back into the first. A unit is one
level's n frames, keyed by the levels it shows, the positions and the geometry, so a
changed level redoes only the segments that show it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from artwalk.errors import ConfigError, StageOrderError
from artwalk.framestore import SEGMENT_FILE
from artwalk.fsutil import sha256_file
from artwalk.images import read_frame_u8
from artwalk.progress import progress
from artwalk.runfolder import MANIFEST, UnitStore, cache_key, keyframe_inputs, read_manifest
from artwalk.zoom import DIRECTIONS, MIN_LEVEL_PIXELS, Mipmap, ZoomGeometry, compose, frames_per_level, hold_frames, \
    zoom_timeline
from frame_interpolation.engines import ENGINES

log = logging.getLogger(__name__)

VERSION = 2  # bump when a composed frame's pixels change for the same levels and positions (2: seams
# feathered from a level's first frame on, artwalk.zoom.compose)


class ZoomEngine:
    """Composes zoom frames from levels (see the module docstring); it makes no in-betweens
    of two keyframes, so a walk cannot use it."""

    name = "zoom"

    def __init__(self, seconds_per_level: float | None = None, direction: str | None = None,
                 hold_start: float | None = None, hold_end: float | None = None) -> None:
        spec = ENGINES.get(self.name)  # its defaults are on its registry row
        self.seconds_per_level = float(spec.value("seconds_per_level", seconds_per_level))
        self.direction = spec.value("direction", direction)
        self.hold_start = float(spec.value("hold_start", hold_start))
        self.hold_end = float(spec.value("hold_end", hold_end))
        if not math.isfinite(self.seconds_per_level) or self.seconds_per_level <= 0:  # n >= 1 is checked at the fps
            raise ConfigError(f"--seconds-per-level must be a positive number of seconds, got "
                              f"{self.seconds_per_level:g}")
        for flag, value in (("--hold-start", self.hold_start), ("--hold-end", self.hold_end)):
            hold_frames(1.0, value, flag)
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"--direction must be out or in, got {self.direction!r}")

    def identity(self) -> dict:
        return {"engine": "zoom", "version": VERSION}

    def interpolate(self, a, b, times):
        raise ConfigError("motion engine zoom composes a zoom's levels (artwalk zoom), not a walk's keyframes")


def levels_source(run_dir: Path) -> tuple[str, dict, dict]:
    """``(stage, manifest, keyframes manifest)``: the upscaled levels when stage 3 made them
    from the current keyframes, else the keyframes themselves."""
    keyframes = read_manifest(run_dir, "keyframes")
    if "zoom" not in keyframes:
        raise ConfigError("motion engine zoom composes a zoom's levels: these keyframes are a walk's; make levels "
                          "with `artwalk zoom`")
    if not (run_dir / "levels" / MANIFEST).is_file():
        return "keyframes", keyframes, keyframes
    levels = read_manifest(run_dir, "levels")
    if levels.get("upstream") != sha256_file(run_dir / "keyframes" / MANIFEST):
        raise StageOrderError(f"{run_dir / 'levels'} is out of date: the levels changed since they were upscaled; "
                              "rerun `artwalk zoom --levels-only`")
    return "levels", levels, keyframes


def run_zoom(config, engine: ZoomEngine, run_dir: Path, store: UnitStore) -> dict:
    """Compose the frames; returns the frames manifest's body (the caller writes it)."""
    stage, source, keyframes = levels_source(run_dir)
    zoom, entries = source["zoom"], source["outputs"]
    width, height = (int(v) for v in source["size"])
    count = len(entries)
    loop = bool(config.loop)
    geometry = ZoomGeometry(float(zoom["factor"]), float(zoom["feather"]), count, loop)
    n = frames_per_level(config.fps, engine.seconds_per_level)
    timeline = zoom_timeline(count, n, loop, engine.direction, hold_frames(config.fps, engine.hold_start,
                                                                           "--hold-start"),
                             hold_frames(config.fps, engine.hold_end, "--hold-end"))
    log.info("motion: zoom %s through %d level(s) (x%g each) from %s/, %d frame(s) per level, %d frames, %dx%d, "
             "%g fps", engine.direction, count, geometry.factor, stage, n, timeline.frames, width, height, config.fps)
    depth = math.ceil(math.log(max(width, height) / MIN_LEVEL_PIXELS) / math.log(geometry.factor)) + 1
    mips: dict[int, Mipmap] = {}

    def level(j: int) -> Mipmap:
        if j not in mips:
            mips[j] = Mipmap(read_frame_u8(run_dir / entries[j]["path"]))
        return mips[j]

    units = [list(range(k * n, (k + 1) * n)) for k in range(count if loop else count - 1)]
    if not loop:
        units.append([(count - 1) * n])
    frames: list[dict] = []
    with progress(total=len(timeline.positions), desc="zoom frames", unit="frame", enabled=config.progress) as bar:
        for indices in units:
            k = indices[0] // n  # the level this unit starts at
            top = min(k + 1, count - 1)
            shown = list(range(max(0, k - depth), top + 1)) + ([0] if loop and k == count - 1 else [])
            positions = [timeline.positions[i] for i in indices]
            closing = loop and k == count - 1  # only the loop's last level depends on the count (level 0 again)
            key = cache_key(kind="zoom-segment", levels=[entries[j]["sha256"] for j in shown], positions=positions,
                            geometry=[geometry.factor, geometry.feather, *([count, loop] if closing else [])],
                            size=[width, height],
                            engine=engine.identity(), store="png" if config.keep_frames else SEGMENT_FILE)
            found = store.lookup(key)
            if found is None:
                for j in list(mips):  # keep only the levels this unit shows
                    if j not in shown:
                        del mips[j]
                views = [level(j) if j in shown else None for j in range(count)]
                made = (compose(views, p, geometry, (width, height)) for p in bar.counting(positions))
                with store.build(key, level=k, positions=[positions[0], positions[-1]]) as unit:
                    unit.add_frames(made, config.keep_frames)
                found = unit.record
            else:
                bar.update(len(indices))
            kinds = ["level" if p == int(p) else "motion" for p in positions]
            if config.keep_frames:
                frames += [{"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"], "kind": kind,
                            "position": p} for f, kind, p in zip(found["files"], kinds, positions)]
            else:
                path = store.relpath(key, SEGMENT_FILE, run_dir)
                frames += [{"path": path, "index": i, "sha256": sha, "kind": kind, "position": p}
                           for i, (sha, kind, p) in enumerate(zip(found["frames"], kinds, positions))]
    return dict(
        upstream=sha256_file(run_dir / "keyframes" / MANIFEST), inputs=keyframe_inputs(keyframes), outputs=frames,
        frames=frames, timeline=timeline.timeline, fps=config.fps, size=[width, height], loop=loop,
        zoom={**zoom, "per_level": n, "direction": engine.direction, "from": stage},
    )
