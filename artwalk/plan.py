"""What a walk will cost before it is rendered: frames, duration, disk space.

Disk estimates, measured on the bundled examples' default walk (4 images, 1280x720
to 2560x1440, 405 frames; 1.07 GB written): our fast-level PNG takes 1.28-1.34 bytes
per pixel for keyframes and motion frames, 0.99 for Lanczos-upscaled frames (smoother,
so they compress better), and the H.264 video 0.007 bytes per pixel per frame. The
figures below round those up a little; the plan's total came within 2% of the run.
Smaller walks take more bytes per pixel (a downscaled picture is denser): 1.71 for
frames at 640x360, 1.80 at 320x180; all figures are scaled by (921600 / pixels)^0.15,
which meets both within 15%. The contact sheet adds about half a megabyte. A lanczos
upscale stores nothing (it runs during the encode), so it adds no intermediates. Motion
frames in lossless segment files take 0.81 bytes per pixel on the examples and up to 1.7
on noisy pictures (0.95 here), and the encoded chunks, kept for reruns, about the video
again. The plan came within 12% (intermediates) and 17% (video) of the examples' run.
A neural upscale's frames are stored only until stage 4 holds them in its chunks: they
count while the walk runs (``transient_bytes``), not in what stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from artwalk import limits
from artwalk.errors import InputError
from artwalk.fsutil import free_bytes, human_bytes
from artwalk.timeline import TimelineSpec, total_frames

PNG_BYTES_PER_PIXEL = 1.35  # keyframes (and --keep-frames motion frames) at the walk's size
SEGMENT_BYTES_PER_PIXEL = 0.95  # motion frames in lossless segment files (0.81 on the examples, 1.7 on noise)
UPSCALED_BYTES_PER_PIXEL = 1.0  # the same frames upscaled
VIDEO_BYTES_PER_PIXEL = 0.0075  # H.264 crf 18, per pixel of each video frame (0.007 measured)
REFERENCE_PIXELS = 1280 * 720  # the walk size the figures were measured at
SHEET_BYTES = 450_000


@dataclass(frozen=True)
class WalkPlan:
    frames: int
    unique_frames: int
    duration_s: float
    intermediate_bytes: int  # what stays in the stage folders: keyframes, motion frames, chunks, kept frames
    video_bytes: int  # the video and its contact sheet
    transient_bytes: int = 0  # upscaled frames stored until the chunks hold them, then freed

    @property
    def disk_bytes(self) -> int:
        """The most the walk holds on disk at once."""
        return self.intermediate_bytes + self.video_bytes + self.transient_bytes

    def describe(self, where: Path) -> str:
        meanwhile = f", and {human_bytes(self.transient_bytes)} of upscaled frames until they are encoded" \
            if self.transient_bytes else ""
        return (
            f"plan: {self.frames} frames ({self.unique_frames} unique), {self.duration_s:.1f} s of video; "
            f"needs about {human_bytes(self.disk_bytes)} of disk ({human_bytes(self.intermediate_bytes)} of "
            f"intermediates, {human_bytes(self.video_bytes)} of video{meanwhile}; {human_bytes(free_bytes(where))} "
            "free)"
        )


def plan_counts(
    frames: int, unique: int, fps: float, size: tuple[int, int], upscaled_size: tuple[int, int] | None = None,
    stored_upscale: bool = True, keyframes: int | None = None, motion_pngs: bool = False, chunked: bool = True,
    released_upscale: bool = False,
) -> WalkPlan:
    """Disk for ``unique`` frames, ``keyframes`` of them PNG keyframes (default all) and the
    rest motion frames in segment files (PNGs with ``motion_pngs``), again upscaled by an
    upscale that stores its frames (only while the walk runs with ``released_upscale``),
    plus the video of ``frames`` (twice when ``chunked``: its chunks stay for the next rerun).
    More than :data:`artwalk.limits.MAX_FRAMES` frames is one line."""
    limits.check_frames(frames)
    pixels = size[0] * size[1]
    out_pixels = upscaled_size[0] * upscaled_size[1] if upscaled_size else pixels
    density = min(2.0, max(0.7, (REFERENCE_PIXELS / pixels) ** 0.15))
    keyframes = unique if keyframes is None else min(keyframes, unique)
    motion = (unique - keyframes) * (PNG_BYTES_PER_PIXEL if motion_pngs else SEGMENT_BYTES_PER_PIXEL)
    intermediates = (keyframes * PNG_BYTES_PER_PIXEL + motion) * pixels
    transient = 0.0
    if upscaled_size is not None and stored_upscale:
        upscaled = unique * out_pixels * UPSCALED_BYTES_PER_PIXEL
        if released_upscale and chunked:
            transient = upscaled
        else:
            intermediates += upscaled
    video = frames * out_pixels * VIDEO_BYTES_PER_PIXEL
    if chunked:
        intermediates += video / density  # the same bytes again, not scaled twice
    return WalkPlan(frames=frames, unique_frames=unique, duration_s=frames / fps,
                    intermediate_bytes=int(intermediates * density), video_bytes=int(video * density + SHEET_BYTES),
                    transient_bytes=int(transient * density))


def plan_walk(
    originals: int,
    inbetweens: int,
    spec: TimelineSpec,
    loop: bool,
    size: tuple[int, int],
    upscaled_size: tuple[int, int] | None = None,
    stored_upscale: bool = True,
    motion_pngs: bool = False,
    chunked: bool = True,
    released_upscale: bool = False,
) -> WalkPlan:
    """The plan of a whole walk from the timeline formula (see :mod:`artwalk.timeline`)."""
    frames = total_frames(originals, inbetweens, spec, loop)
    unique = frames - originals * (spec.hold - 1)
    pairs = originals if loop and originals > 1 else max(0, originals - 1)
    return plan_counts(frames, unique, spec.fps, size, upscaled_size, stored_upscale,
                       keyframes=originals + pairs * inbetweens, motion_pngs=motion_pngs, chunked=chunked,
                       released_upscale=released_upscale)


def state_plan(plan: WalkPlan, run_dir: Path, fps: float, audio_s: float | None, what: str,
               check_disk: bool = True) -> None:
    """Log the plan line; warn of a short soundtrack; refuse a run that the disk cannot hold
    (with ``check_disk``: a walk whose video is current writes nothing new)."""
    log = logging.getLogger("artwalk")
    log.info("%s", plan.describe(run_dir))
    if audio_s is not None and audio_s + 0.5 / fps + 1e-3 < plan.duration_s:  # > half a frame
        log.warning("warning: the soundtrack is %.1f s, shorter than the %.1f s video: the end will be silent",
                    audio_s, plan.duration_s)
    if not check_disk:
        return
    # What a rerun finds in OUT already (units it reuses, or rewrites in place) needs no new space.
    there = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else 0
    if plan.disk_bytes - there > free_bytes(run_dir):
        raise InputError(f"{run_dir}: not enough disk: the {what} needs about {human_bytes(plan.disk_bytes - there)} "
                         f"more, {human_bytes(free_bytes(run_dir))} free")
