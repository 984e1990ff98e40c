"""What a walk will cost before it is rendered: frames, duration, disk space.

Disk estimates are deliberately generous: 8-bit RGB PNG at the fast compression
level we write takes about 1.1-1.6 bytes per pixel on photographs and paintings
(measured on the bundled examples at 1280x720); we count 1.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artwalk.fsutil import free_bytes, human_bytes
from artwalk.timeline import TimelineSpec, total_frames

PNG_BYTES_PER_PIXEL = 1.6
VIDEO_BYTES_PER_PIXEL = 0.05  # H.264 crf 18 on slow camera-like motion, per frame, generous


@dataclass(frozen=True)
class WalkPlan:
    frames: int
    unique_frames: int
    duration_s: float
    disk_bytes: int

    def describe(self, where: Path) -> str:
        return (
            f"plan: {self.frames} frames ({self.unique_frames} unique), {self.duration_s:.1f} s of video; "
            f"needs about {human_bytes(self.disk_bytes)} of disk ({human_bytes(free_bytes(where))} free)"
        )


def plan_counts(
    frames: int, unique: int, fps: float, size: tuple[int, int], upscaled_size: tuple[int, int] | None = None
) -> WalkPlan:
    """Disk for ``unique`` PNG frames (twice with upscaling) plus the video of ``frames``."""
    pixels = size[0] * size[1]
    out_pixels = upscaled_size[0] * upscaled_size[1] if upscaled_size else pixels
    disk = unique * pixels * PNG_BYTES_PER_PIXEL
    if upscaled_size is not None:
        disk += unique * out_pixels * PNG_BYTES_PER_PIXEL
    disk += frames * out_pixels * VIDEO_BYTES_PER_PIXEL
    return WalkPlan(frames=frames, unique_frames=unique, duration_s=frames / fps, disk_bytes=int(disk))


def plan_walk(
    originals: int,
    inbetweens: int,
    spec: TimelineSpec,
    loop: bool,
    size: tuple[int, int],
    upscaled_size: tuple[int, int] | None = None,
) -> WalkPlan:
    """The plan of a whole walk from the timeline formula (see :mod:`artwalk.timeline`)."""
    frames = total_frames(originals, inbetweens, spec, loop)
    unique = frames - originals * (spec.hold - 1)
    return plan_counts(frames, unique, spec.fps, size, upscaled_size)
