"""Stage 1 from a video's frames (video init): each chosen frame restyled by img2img.

::

    VIDEO (any format PyAV decodes)     OUT/keyframes/
      frames [--start, --end)   --->      manifest.json     outputs in frame order, each with its
      every N-th, and the last              `frame` (0 = the frame at --start) and `source` (its
                                            frame in the video); `frames`: the walk's length
                                          units/<key>/000001.png   one restyled frame per unit

Each chosen frame is conformed to W x H (``--fit``) and goes through the engine's
img2img (:meth:`diffusion_models.sd.StableDiffusionEngine.restyle`) with the prompt of
the schedule key at or before its frame (composable parts and ``--neg`` as in a prompt
walk), the strength of ``--strength-schedule`` at its frame, the guidance of
``--guidance-schedule`` and the seed of ``--seed-schedule``, else the walk's ``--seed``
for every frame: the same noise on every frame keeps the restyle steady from frame to
frame. Schedules count frames from ``--start``; ``max_f`` is the walk's length.

With ``--every N`` only frames 0, N, 2N, ..., the last and each schedule key's frame are
restyled, and the motion stage fills the frames between (linear timing, as the video
moves): N times fewer diffusion runs, and no flicker between them.

A variable-rate video (a phone's) is laid out at its average rate by its pictures'
timestamps (:func:`artwalk.video.probe_video`), so its motion keeps time with its sound.

Colour coherence (``--color-match``, as Deforum's): the histogram of each restyled frame,
channel by channel in CIE Lab, is matched to a reference: ``first`` the first restyled
frame (the default), ``previous`` the restyled frame before it, ``none`` off. Diffusion
drifts in colour over hundreds of frames; this holds the palette.

Units: a frame is keyed by the video's sha256 and the frame's index in it, the size and
fit, its prompt, negative, seed, guidance and strength, the engine's identity, and its
colour reference's key. Changing a prompt recomputes the frames under it, and with
``--color-match first`` (the first frame's prompt) or ``previous`` (a chain) the frames
matched to them; a crash loses one frame at most.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artwalk.errors import ConfigError
from artwalk.fsutil import sha256_file
from artwalk.images import to_uint8
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key
from artwalk.schedule import PromptSchedule, parse_numeric, read_prompts
from artwalk.timeline import MAX_SECONDS
from artwalk.video import VideoInfo, decode_frames, probe_video
from diffusion_models.conform import conform

log = logging.getLogger(__name__)

COLOR_MATCH = ("first", "previous", "none")
DEFAULT_STRENGTH = 0.45  # GIFfusion's and Deforum's usual video-init strength
VERSION = 1  # bump when a restyled frame's bytes change for the same key


@dataclass
class VideoFrame:
    frame: int  # in the walk (0 = the frame at --start)
    source: int  # in the video
    parts: list
    text: str  # the schedule line's prompt, as written
    negative: str
    seed: int
    guidance: float
    strength: float
    keyframe: bool  # the first frame under its schedule key (the contact sheet shows these)
    key: str = ""


@dataclass
class VideoPlan:
    """What the stage's check found for a video init."""

    info: VideoInfo
    sha256: str
    first: int  # the video frame at --start
    frames: int  # the walk's length
    schedule: PromptSchedule
    keyframes: list[VideoFrame]
    color_match: str

    @property
    def unique_frames(self) -> int:
        return self.frames


def strength_schedule(text: str | None, strength: float | None) -> str:
    """The strength schedule: ``--strength-schedule`` (a plain number is a constant), else
    the engine's ``--strength``, else 0.45."""
    if text is None:
        return f"0:({DEFAULT_STRENGTH if strength is None else strength})"
    return text


def plan_video(config, identity: dict, guidance: float) -> VideoPlan:
    """Probe the video, choose its frames, and give each its prompt, strength, seed and key.
    ``identity``: the engine's text identity; ``guidance``: its guidance."""
    info = probe_video(config.video_init)
    if config.fps != type(config).fps and abs(config.fps - info.fps) > 1e-3:
        raise ConfigError(f"--fps {config.fps:g}: a video init keeps the video's frame rate ({info.fps:g} fps); "
                          "leave --fps out")
    first = round((config.start or 0.0) * info.fps)
    stop = info.frames if config.end is None else min(info.frames, round(config.end * info.fps))
    if first >= info.frames:
        raise ConfigError(f"--start {config.start:g} is frame {first}, past the last frame ({info.frames - 1}) of "
                          f"{config.video_init} ({info.frames / info.fps:.2f} s at {info.fps:g} fps)")
    if stop <= first:
        raise ConfigError(f"--start {config.start or 0:g} and --end {config.end:g} leave no frame of "
                          f"{config.video_init}")
    frames = stop - first
    if frames > MAX_SECONDS * info.fps:
        raise ConfigError(f"{frames} frames is over {MAX_SECONDS / 3600:g} hour; split the video with --start and "
                          "--end")
    if info.variable:
        log.info("%s has a variable frame rate: its pictures are laid out at %g fps by their timestamps, so the "
                 "motion keeps time with the sound", config.video_init, info.fps)
    schedule = read_prompts(config.prompts, fps=info.fps, max_frames=frames)
    # Every K-th frame, the last, and each schedule key's, so a new prompt shows on its frame.
    every = config.every or 1
    chosen = sorted(set(range(0, frames, every)) | {frames - 1} | {k.frame for k in schedule.keys})
    strengths = parse_numeric(strength_schedule(config.strength_schedule, config.strength), fps=info.fps,
                              max_frames=frames, source="the strength schedule").values(frames, config.seed)
    bad = next((f for f, s in enumerate(strengths) if not 0.0 < s <= 1.0), None)
    if bad is not None:
        raise ConfigError(f"the strength schedule gives {strengths[bad]:g} at frame {bad}; strength must be in "
                          "(0, 1]")
    guidances = [float(guidance)] * frames
    if config.guidance_schedule:
        guidances = parse_numeric(config.guidance_schedule, fps=info.fps, max_frames=frames,
                                  source="--guidance-schedule").values(frames, config.seed)
        bad = next((f for f, g in enumerate(guidances) if not 0.0 <= g <= 100.0), None)
        if bad is not None:
            raise ConfigError(f"--guidance-schedule gives {guidances[bad]:g} at frame {bad}; guidance must be in "
                              "[0, 100]")
    seeds = [config.seed] * frames
    if config.seed_schedule:
        seeds = [int(s) % 2**32 for s in parse_numeric(config.seed_schedule, fps=info.fps, max_frames=frames,
                                                       source="--seed-schedule").values(frames, config.seed)]
    from diffusion_models.prompt_walk import negative_of

    sha = sha256_file(config.video_init)
    width, height = config.size
    color = config.color_match or "first"
    plan = VideoPlan(info, sha, first, frames, schedule, [], color)
    shown = set()
    for frame in chosen:
        k, _, _ = schedule.at(frame)
        key = schedule.keys[k]
        plan.keyframes.append(VideoFrame(frame, info.sources[first + frame], list(key.parts), key.text,
                                         negative_of(config.negative_prompt, key), seeds[frame], guidances[frame],
                                         strengths[frame], keyframe=k not in shown))
        shown.add(k)
    for i, vf in enumerate(plan.keyframes):
        reference = None if color == "none" or i == 0 else plan.keyframes[0 if color == "first" else i - 1].key
        vf.key = cache_key(kind="video-frame", video=sha, source=vf.source, size=[width, height],
                           fit=config.effective_fit, parts=[[p.text, p.weight] for p in vf.parts if p.weight != 0.0],
                           negative=vf.negative, seed=vf.seed, guidance=vf.guidance, strength=vf.strength,
                           engine=identity, color=[color, reference], version=VERSION)
    return plan


def run_video(config, plan: VideoPlan, engine, store: UnitStore, run_dir: Path) -> list[dict]:
    """Restyle the chosen frames not already done, in one pass over the video; returns the
    manifest outputs, in frame order."""
    width, height = config.size
    found = {vf.key: store.lookup(vf.key) for vf in plan.keyframes}
    todo: dict[int, list[VideoFrame]] = {}  # picture -> the frames still to restyle from it
    for vf in plan.keyframes:
        if found[vf.key] is None and all(other.key != vf.key for other in todo.get(vf.source, [])):
            todo.setdefault(vf.source, []).append(vf)
    count = sum(map(len, todo.values()))
    if todo:
        log.info("video init: %d of %d frame(s) to restyle (every %d, colours matched: %s)", count,
                 len(plan.keyframes), config.every or 1, plan.color_match)
    done: dict[str, np.ndarray] = {}  # restyled frames a later one is matched to

    def reference_of(i: int) -> np.ndarray | None:
        if plan.color_match == "none" or i == 0:
            return None
        ref = plan.keyframes[0 if plan.color_match == "first" else i - 1]
        if ref.key not in done:
            from artwalk.images import read_frame

            done[ref.key] = read_frame(run_dir / store.relpath(ref.key, "000001.png", run_dir))
        return done[ref.key]

    index = {vf.key: i for i, vf in enumerate(plan.keyframes)}
    bar = progress(total=count, desc="restyling frames", unit="frame", enabled=config.progress and bool(todo))
    for source, rgb in decode_frames(plan.info.path, todo):
        init = conform(rgb.astype(np.float32) / 255.0, width, height, config.effective_fit)
        for vf in todo[source]:
            if found[vf.key] is not None:  # an equal frame from the same picture (a variable-rate video)
                continue
            i = index[vf.key]
            cond = engine.conditioning(vf.parts, vf.negative, vf.seed, vf.guidance, (width, height))
            out = engine.restyle(cond, init, vf.strength)
            reference = reference_of(i)
            if reference is not None:
                out = match_colors(out, reference)
            with store.build(vf.key, frame=vf.frame, source=vf.source, prompt=vf.text, strength=vf.strength,
                             seed=vf.seed) as unit:
                unit.save_png("000001.png", out)
            found[vf.key] = unit.record
            done[vf.key] = np.asarray(to_uint8(out), dtype=np.float32) / 255.0  # as a later frame reads it back
            if plan.color_match == "previous" and i:  # only the newest is a reference now
                done.pop(plan.keyframes[i - 1].key, None)
            bar.update()
    bar.close()
    return [{"path": store.relpath(vf.key, "000001.png", run_dir), "sha256": found[vf.key]["files"][0]["sha256"],
             "kind": "keyframe" if vf.keyframe else "restyled", "frame": vf.frame, "source": vf.source,
             "prompt": vf.text, "seed": vf.seed, "strength": vf.strength} for vf in plan.keyframes]


def match_colors(rgb: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``rgb`` with each CIE Lab channel's histogram matched to ``reference``'s (float32
    RGB in [0, 1], any sizes): the palette of the reference, the picture of ``rgb``. Lab
    is taken in float32, so nothing is lost to 8-bit Lab's rounding."""
    import cv2

    src, ref = (cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_RGB2LAB) for x in (rgb, reference))
    out = np.empty_like(src)
    for c in range(3):  # each value goes to the reference's value at the same quantile
        values, where, counts = np.unique(src[..., c], return_inverse=True, return_counts=True)
        ref_values, ref_counts = np.unique(ref[..., c], return_counts=True)
        quantiles = np.cumsum(counts) / src[..., c].size
        ref_quantiles = np.cumsum(ref_counts) / ref[..., c].size
        out[..., c] = np.interp(quantiles, ref_quantiles, ref_values)[where].reshape(src.shape[:2])
    return np.clip(cv2.cvtColor(out, cv2.COLOR_LAB2RGB), 0.0, 1.0)


def recorded_config(config, plan: VideoPlan):
    """The config as the manifest records it: at the video's frame rate (stage 2 checks it)."""
    return dataclasses.replace(config, fps=plan.info.fps)
