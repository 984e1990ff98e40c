"""Stage 2: motion frames on an eased timeline.

::

    OUT/keyframes/manifest.json     OUT/frames/
      A1, K1..KS, A2, ...   --->      manifest.json     unique frames + the timeline
                                      units/<key>/motion.mkv   the N-1 motion frames of one
                                                        segment (keyframe i -> i+1), in one
                                                        lossless file (--keep-frames: a PNG
                                                        each, 000001.png ...)

Between two consecutive keyframes there are exactly N - 1 motion frames at
t_k = ease(k / N); originals are held H frames as repeated references in the
timeline, never as copied files (:mod:`artwalk.timeline` has the exact maths).
A segment's cache key hashes both keyframes' bytes, the times and the engine's
identity, so a changed keyframe recomputes only its two segments.

Keyframes at explicit frames (a prompt walk's manifest has ``frames``, the walk's
length, and each keyframe its ``frame``): each keyframe stays at its frame, the L - 1
frames between keyframes L frames apart are motion frames at ease(k / L), frames
before the first keyframe show it and frames after the last hold it. Where every
frame was diffused (``--diffuse every``) no segment has a gap, and nothing runs;
engine ``none`` makes that explicit and refuses a gap.

The manifest lists the walk's unique frames (keyframes stay in OUT/keyframes/ and
are referenced there; a motion frame is ``{path, index}`` in its segment file, read by
:class:`artwalk.framestore.FrameReader`) and ``timeline``: one index into that list
per video frame.

Engines (:mod:`frame_interpolation.engines`): ``flow`` (the default, classical),
``blend``, ``zoom`` (an infinite zoom's frames from its levels: :mod:`frame_interpolation.zoom`),
and ``film`` (FILM on the published weights; its options are described in
:mod:`frame_interpolation.film`).

``check(config)`` checks what needs no earlier stage (timeline, engine, options,
weights) and returns the engine; ``run(MotionConfig(...), engine=None) -> MotionResult``. The CLI is
``python -m frame_interpolation``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from artwalk import limits
from artwalk.config import record, setting
from artwalk.errors import ConfigError, StageOrderError
from artwalk.executors import Executor, Unit, resolve
from artwalk.framestore import SEGMENT_FILE
from artwalk.fsutil import sha256_file
from artwalk.images import read_frame
from artwalk.progress import counted, progress
from artwalk.runfolder import UnitStore, cache_key, keyframe_inputs, read_manifest, run_lock, write_manifest
from artwalk.timeline import AUDIO_EASING, AUDIO_EASING_HELP, DEFAULT_EASING, EASING_NAMES, EASINGS, Keyframe, \
    TimelineSpec, build_timeline, energy_times, gap_times, positioned_timeline, total_frames
from frame_interpolation.engines import ENGINES, MotionEngine

log = logging.getLogger(__name__)

STAGE = "frames"


@dataclass(frozen=True)
class MotionConfig:
    run_dir: Path = setting(help="run folder (OUT) holding keyframes/", cli=False)
    fps: float = setting(24.0, "frames per second of the video")
    sec_interpolation: float = setting(3.0, "I: seconds of motion between two consecutive keyframes",
                                       flags=("--sec_interpolation", "-I"), metavar="I")
    sec_freeze: float = setting(2.0, "F: seconds each original is held still (at least one frame)",
                                flags=("--sec_freeze", "-F"), metavar="F")
    easing: str = setting(DEFAULT_EASING, "timing curve of each segment: " + "; ".join(
        [*(f"{name}: {curve.__doc__}" for name, curve in EASINGS.items()), f"audio: {AUDIO_EASING_HELP}"]),
        choices=EASING_NAMES)
    audio: Path | None = setting(None, "with --easing audio: the song whose energy moves the picture (default: "
                                 "the song of stage 1's --sync-audio)", metavar="SONG")
    engine: str = setting("flow", f"motion engine: {', '.join(ENGINES.names)}", choices=ENGINES.names)
    loop: bool = setting(False, "also move from the last keyframe back to the first")
    keep_frames: bool = setting(False, "store each motion frame as a PNG file, instead of each segment's frames in "
                                "one lossless video file (smaller and faster; the same pixels)")
    progress: bool = setting(True, cli=False, key=False)
    verify: bool = setting(False, "check every reused frame's sha256, not only its size", control=True)
    wait: bool = setting(False, "if another process works in OUT, wait for it instead of stopping", control=True)
    # film's options; None: the engine's default
    model: str | None = setting(None, "film: registry name (film: film_net_fp32.pt, film-fp16: film_net_fp16.pt) "
                                "or a weights file: the PyTorch port's TorchScript export, or a .pt / .safetensors "
                                f"state dict ({ENGINES.defaults_text('model')})", engine=True, metavar="NAME|FILE")
    film_mode: str | None = setting(None, "film: module runs our FILM network with the file's weights, the only "
                                    "mode (torchscript, which ran the file's own code, was removed: a weights file "
                                    f"never runs code) ({ENGINES.defaults_text('film_mode')})", engine=True,
                                    choices=("module", "torchscript"))
    time_mode: str | None = setting(None, "film: bisect makes recursive midpoints that land on the exact times, "
                                    "as FILM was trained at t = 0.5; exact asks the network for each time "
                                    f"({ENGINES.defaults_text('time_mode')})", engine=True, choices=("bisect", "exact"))
    device: str | None = setting(None, "film: auto (CUDA when there), cpu, cuda, cuda:1, ...", engine=True)
    dtype: str | None = setting(None, "film: float32, float16 or bfloat16 (default float16 on CUDA, float32 on "
                                "CPU)", engine=True, choices=("auto", "float32", "float16", "bfloat16"))
    batch: int | None = setting(None, f"film: network calls per forward pass ({ENGINES.defaults_text('batch')})",
                                engine=True, key=False, metavar="N")
    block_size: int | None = setting(None, "film: frames with a side over this many pixels run in overlapping "
                                     f"blocks, to bound memory; 0: never ({ENGINES.defaults_text('block_size')})",
                                     engine=True, metavar="PX")
    block_overlap: int | None = setting(None, "film: pixels shared by neighbouring blocks "
                                        f"({ENGINES.defaults_text('block_overlap')})", engine=True, metavar="PX")
    # zoom's options
    seconds_per_level: float | None = setting(None, "zoom: seconds from one level to the next; frames per level = "
                                              "round(fps x seconds) "
                                              f"({ENGINES.defaults_text('seconds_per_level')})", engine=True,
                                              metavar="SEC")
    direction: str | None = setting(None, "zoom: out (from level 0 outwards) or in (the same frames backwards) "
                                    f"({ENGINES.defaults_text('direction')})", engine=True, choices=("out", "in"))
    hold_start: float | None = setting(None, "zoom: seconds the first frame is held "
                                       f"({ENGINES.defaults_text('hold_start')})", engine=True, metavar="SEC")
    hold_end: float | None = setting(None, "zoom: seconds the last frame is held "
                                     f"({ENGINES.defaults_text('hold_end')})", engine=True, metavar="SEC")

    def __post_init__(self) -> None:
        spec = self.spec  # validates fps, seconds and easing
        limits.check_frames(spec.hold, "a hold of --sec_freeze seconds")
        limits.check_frames(spec.intervals, "a segment of --sec_interpolation seconds")

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


def check(config: MotionConfig) -> MotionEngine:
    """Everything that can be checked before stage 2 starts: the engine, its options and weights;
    returns the engine, made (its constructor checks the option values and reads the weights)."""
    ENGINES.check_config(config)
    return ENGINES.create_for(config)


def run(config: MotionConfig, engine: MotionEngine | None = None, executor: Executor | None = None) -> MotionResult:
    """Stage 2. ``executor`` (:mod:`artwalk.executors`): where the segments are made (default: here)."""
    start = time.monotonic()
    engine = engine or check(config)
    spec = config.spec
    if "levels" in ENGINES.get(engine.name).features:
        return _run_zoom(config, engine, start)
    with run_lock(config.run_dir, config.wait, create=False) as run_dir:
        keyframes = read_manifest(run_dir, "keyframes")
        if "zoom" in keyframes:
            raise ConfigError(f"{run_dir / 'keyframes'} holds a zoom's levels: compose its frames with "
                              "--motion-engine zoom (artwalk zoom OUT --render)")
        keys = keyframes["outputs"]
        positioned = "frames" in keyframes  # keyframes at explicit frames (a prompt walk)
        loop = (config.loop or keyframes.get("loop", False)) and len(keys) > 1 and not positioned
        joins = [(i, i + 1) for i in range(len(keys) - 1)] + ([(len(keys) - 1, 0)] if loop else [])
        if positioned:
            _check_positioned(config, keyframes)
        energy = _song_energy(config, keyframes, keys, positioned, loop)
        if positioned:
            positions = [int(k["frame"]) for k in keys]
            times = [gap_times(positions[j] - positions[i], spec.easing) if energy is None else
                     energy_times(energy, positions[i], positions[j] - positions[i]) for i, j in joins]
            log.info("motion: %d keyframe(s) at their frames, %d motion frame(s), %s easing, engine %s, %g fps",
                     len(keys), sum(map(len, times)), spec.easing, engine.name, spec.fps)
        elif energy is not None:
            starts = spec.segment_starts([k["kind"] == "original" for k in keys], len(joins))
            times = [energy_times(energy, start, spec.intervals) for start in starts]
            log.info("motion: %d segment(s) of %d frames, timed by the song, engine %s, %g fps", len(joins),
                     spec.intervals - 1, engine.name, spec.fps)
        else:
            times = [spec.segment_times()] * len(joins)
            log.info("motion: %d segment(s) of %d frames, %s easing, engine %s, %g fps",
                     len(joins), len(times[0]) if joins else 0, spec.easing, engine.name, spec.fps)
        gap = next(((keys[i], keys[j]) for (i, j), ts in zip(joins, times) if ts), None)
        if engine.name == "none" and gap is not None:
            raise ConfigError(f"motion engine none makes no motion frames, but {gap[0]['path']} and {gap[1]['path']} "
                              "have frames between them: use --motion-engine flow or film, or --diffuse every")

        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        frames = [{"path": k["path"], "sha256": k["sha256"], "kind": k["kind"]} for k in keys]
        segments: list[list[int]] = []
        with progress(total=sum(map(len, times)), desc="motion frames", unit="frame",
                      enabled=config.progress) as bar:
            made = _segments(config, engine, executor, store, run_dir, [(keys[i], keys[j], ts) for (i, j), ts
                                                                         in zip(joins, times) if ts], bar)
            for ts in times:
                if not ts:
                    segments.append([])
                    continue
                first = len(frames)
                frames.extend(next(made))
                segments.append(list(range(first, len(frames))))

        if positioned:
            timeline = positioned_timeline(list(range(len(keys))), positions, segments, int(keyframes["frames"]))
        else:
            timeline = build_timeline([Keyframe(i, k["kind"] == "original") for i, k in enumerate(keys)],
                                      segments, spec)
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(config), engine=engine.identity(),
            upstream=sha256_file(run_dir / "keyframes" / "manifest.json"),
            inputs=keyframe_inputs(keyframes),
            outputs=frames[len(keys):], frames=frames, timeline=timeline, fps=spec.fps, size=keyframes["size"],
            **({} if positioned else {"hold": spec.hold, "intervals": spec.intervals}), loop=loop,
        )
        store.prune()
    log.info("motion: %d frames in the timeline, %d unique; %s", len(timeline), len(frames), store.summary())
    return MotionResult(
        run_dir=run_dir, manifest=manifest, frames=len(timeline), unique_frames=len(frames),
        motion_frames=len(frames) - len(keys), reused=store.reused, computed=store.computed,
        seconds=time.monotonic() - start,
    )


def _run_zoom(config: MotionConfig, engine, start: float) -> MotionResult:
    from frame_interpolation.zoom import run_zoom

    with run_lock(config.run_dir, config.wait, create=False) as run_dir:
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        body = run_zoom(config, engine, run_dir, store)
        manifest = write_manifest(run_dir / STAGE, STAGE, config=record(config), engine=engine.identity(), **body)
        store.prune()
    frames = body["frames"]
    log.info("motion: %d frames in the timeline, %d unique; %s", len(body["timeline"]), len(frames), store.summary())
    return MotionResult(run_dir=run_dir, manifest=manifest, frames=len(body["timeline"]), unique_frames=len(frames),
                        motion_frames=len(frames), reused=store.reused, computed=store.computed,
                        seconds=time.monotonic() - start)


def _song_energy(config: MotionConfig, keyframes: dict, keys: list[dict], positioned: bool, loop: bool):
    """``--easing audio``: the song's cumulative energy at every frame of the walk, else None."""
    if config.easing != AUDIO_EASING:
        if config.audio is not None:
            log.warning("warning: --audio does nothing here: it is the song of --easing audio")
        return None
    song = config.audio or (keyframes.get("song") or {}).get("path")
    if song is None:
        raise ConfigError("--easing audio moves with a song: give --audio SONG (or make the keyframes with "
                          "--sync-audio SONG)")
    from artwalk import audio

    frames = int(keyframes["frames"]) if positioned else total_frames(
        int(keyframes.get("originals", 0)), int(keyframes.get("inbetweens_per_pair", 0)), config.spec, loop)
    frames = max(frames, len(keys) * config.spec.intervals + len(keys) * config.spec.hold)  # room for every start
    log.info("motion: timed by the energy of %s", song)
    return audio.cumulative_energy(audio.load_mono(song), config.fps, frames)


def _check_positioned(config: MotionConfig, keyframes: dict) -> None:
    """Keyframes at explicit frames: refuse another frame rate than the one that placed them
    (a schedule's 2s would no longer be 2 s); say which settings do nothing here."""
    made_at = (keyframes.get("config") or {}).get("fps")
    if made_at is not None and float(made_at) != config.fps:
        raise ConfigError(f"the keyframes were placed at {float(made_at):g} fps (a schedule's seconds), so the video "
                          f"must be too: give --fps {float(made_at):g} (or rerun stage 1 with --fps {config.fps:g})")
    unused = [flag for flag, name in (("--sec_interpolation", "sec_interpolation"), ("--sec_freeze", "sec_freeze"),
                                      ("--loop", "loop"))
              if getattr(config, name) != MotionConfig.__dataclass_fields__[name].default]
    if unused:
        log.warning("warning: %s do nothing here: the keyframes sit at their scheduled frames", ", ".join(unused))


def _segments(config: MotionConfig, engine, executor, store: UnitStore, run_dir: Path,
              joins: list[tuple[dict, dict, list[float]]], bar) -> Iterator[list[dict]]:
    """The frame entries of each segment (keyframe ``ka`` to ``kb`` at ``times``), in order:
    reused, or made now by the executor (one unit each): frames of one lossless segment file,
    or with ``--keep-frames`` one PNG each."""
    pngs = config.keep_frames
    keys = [cache_key(kind="segment", a=ka["sha256"], b=kb["sha256"], times=ts, engine=engine.identity(),
                      store="png" if pngs else SEGMENT_FILE) for ka, kb, ts in joins]
    records: dict[str, dict | None] = {}
    for key, (_, _, ts) in zip(keys, joins):
        if key not in records:
            records[key] = store.lookup(key)
            if records[key] is not None:
                bar.update(len(ts))
    todo = {key: join for key, join in zip(keys, joins) if records[key] is None}
    executor = resolve(executor)
    recipe = None if executor.name == "local" else ENGINES.recipe_for(config)
    units = [Unit(key, {"a": ka["path"], "b": kb["path"]}, _build_segment, (ka["path"], kb["path"], ts, pngs),
                  (ka["path"], kb["path"]), len(ts)) for key, (ka, kb, ts) in todo.items()]
    built = zip(todo, executor.build(store, run_dir, units, engine, recipe, tick=bar.update))
    for key in keys:
        while records[key] is None:  # made in the order asked: take the next until this one is there
            done, record = next(built)
            records[done] = record
        found = records[key]
        if pngs:
            yield [{"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"], "kind": "motion"}
                   for f in found["files"]]
        else:
            path = store.relpath(key, SEGMENT_FILE, run_dir)
            yield [{"path": path, "index": k, "sha256": sha, "kind": "motion"} for k, sha in enumerate(found["frames"])]


def _build_segment(unit, root: Path, engine, a_path: str, b_path: str, times: list[float], pngs: bool,
                   tick=lambda n=1: None) -> None:
    """One segment's unit (run here or on a worker): the motion frames from keyframe ``a_path`` to
    ``b_path`` (files under ``root``) at ``times``."""
    a, b = read_frame(root / a_path), read_frame(root / b_path)
    if a.shape != b.shape:
        raise StageOrderError(f"keyframes {a_path} and {b_path} differ in size; rerun `python -m diffusion_models`")
    unit.add_frames(counted(engine.interpolate(a, b, times), tick), pngs)
