"""The core's video and audio input, and the encoder settings every video writer shares.

What several floors read: a video init's frames (stage 1, and the top floor's plan of it),
a soundtrack's length (stage 4, the audio analysis); and what every H.264 writer tells x264
(the lossless motion store :mod:`artwalk.framestore`, and stage 4's encode)::

    video file (mp4, mov, webm, ...) ─┬─► probe_video(path) ──► VideoInfo: size, rate, has_audio, and
                                      │                        the frames laid out at that rate
                                      └─► decode_frames(path, wanted) ──► (index, RGB uint8 (H, W, 3)),
                                                                          in increasing order
    soundtrack (wav, mp3, flac, ...) ──► probe_audio(path) ──► AudioInfo: codec, rate, channels, seconds
                                                               (measured by decoding it to its end)
    encoder_threads(), x264_options() ──► the threads and x264 options every encoder gets
    reformat(frame, ...), rgb_array(frame) ──► a frame converted (size, pixel format) on this thread only

Frames come out one at a time, in one pass: nothing holds a whole video. A file that
cannot be read is one :class:`InputError` that names it. Writing videos (mp4, webm and
gif, chunks and their join, the soundtrack's encode) is stage 4's: ``generate_videos.py``.

Same frames, same bytes, on one machine: each encoder gets one thread per core of the
machine (not of the process's CPU affinity), and x264 keeps off its AVX-512 code, which
did not give the same bytes twice (:func:`x264_options`). So a frame or a chunk encoded
again, after a kill or in another process, has the bytes it had.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

from artwalk.errors import InputError, first_line
from artwalk.images import MAX_PIXELS

# A video read as input (video init) is refused before its frames are laid out or decoded if it
# would give more frames than this (timestamps far apart make a short file last for years),
# or if its pictures are larger than the images' cap.
MAX_INPUT_FRAMES = 200_000  # 2 h 19 min at 24 fps


# --------------------------------------------------------------------------- converting frames


def reformat(frame: av.VideoFrame, **options) -> av.VideoFrame:
    """``frame.reformat(**options)`` with its scaler on the calling thread only (``threads=1``).

    PyAV keeps one scaler per thread for as long as the thread lives; with its default slice
    threads, a scaler that a living thread kept (the studio's render worker, a notebook's
    thread) is freed in the child of every later fork, where its threads do not exist, and
    hangs it: Ray starting its processes, or any ``subprocess`` with a ``preexec_fn``, never
    returned. Every frame the code converts goes through here."""
    return frame.reformat(threads=1, **options)


def rgb_array(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as RGB uint8 (H, W, 3) (see :func:`reformat`)."""
    return reformat(frame, format="rgb24").to_ndarray()


# --------------------------------------------------------------------------- encoder settings


def encoder_threads() -> int:
    """Threads for an encoder: one per core of this machine.

    Never the encoders' own "auto", which counts the cores this process may run on (its CPU
    affinity): x264 and VP9 write other bytes for another thread count, so a walk under
    ``taskset`` or on a pinned worker would encode the same frames differently."""
    return os.cpu_count() or 1


@functools.cache
def x264_options() -> dict[str, str]:
    """Options every x264 encoder gets, so that the same frames give the same bytes.

    On CPUs with AVX-512, x264's AVX-512 code made the same frames encode differently from
    one run to the next (in pixels too; steady with mb-tree off, which costs 77% more bytes):
    measured on an AMD EPYC with AVX-512, 3 processes x 25 encodes of the same 24 frames,
    single-threaded, gave 3 different files; held to AVX2, one file, and at 2560x1440 the
    same bytes as its usual output and no slower. x264 takes a forced instruction set as it
    is, so AVX2 is asked for only where AVX-512 (which implies it) is there."""
    return {"x264-params": "asm=AVX2"} if _has_avx512() else {}


def _has_avx512() -> bool:
    """Whether the CPU and OS run the AVX-512 subsets x264 uses (F, CD, BW, DQ, VL): as numpy's
    runtime dispatch found them, else as Linux lists them."""
    subsets = ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL")
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:  # neither: x264 picks its own code
            return False
        return all(f.lower() in flags for f in subsets)
    return all(features.get(f, False) for f in subsets)


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    codec: str
    sample_rate: int
    channels: int
    duration_s: float  # measured by decoding, not read from the header


def probe_audio(path: Path | str) -> AudioInfo:
    """Check that ``path`` is a soundtrack PyAV can decode, and measure it by decoding it
    to its end (a truncated file's header claims more than it holds). Raise
    :class:`InputError` naming the file otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an audio file")
    if not path.is_file():
        raise InputError(f"{path}: audio file not found")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied reading the audio file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: audio file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise InputError(f"{path}: has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.sample_rate or 0
            samples = 0
            try:
                for frame in container.decode(stream):
                    samples += frame.samples
                    rate = frame.sample_rate or rate
            except av.FFmpegError:  # a damaged tail: what decoded up to here is the soundtrack
                if samples == 0:
                    raise
            if samples == 0 or rate <= 0:
                raise InputError(f"{path}: audio stream holds no decodable sound")
            return AudioInfo(path, stream.codec_context.name, rate, stream.channels or 0, samples / rate)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not an audio file this tool can read ({first_line(exc)})") from None


# --------------------------------------------------------------------------- input video


@dataclass(frozen=True)
class VideoInfo:
    """A video as a constant-rate sequence: ``frames`` frames at ``fps``, frame i showing
    the picture ``sources[i]`` (in presentation order) that is on screen at time i / fps.
    For a constant-rate video ``sources`` is 0, 1, 2, ...; a variable-rate one (a phone's)
    repeats or skips pictures, so its motion keeps time with its sound."""

    path: Path
    fps: float  # the stream's average frame rate
    width: int
    height: int
    frames: int
    has_audio: bool
    sources: tuple[int, ...]

    @property
    def variable(self) -> bool:
        return self.sources != tuple(range(len(self.sources)))


def probe_video(path: Path | str) -> VideoInfo:
    """Check that ``path`` is a video PyAV can decode (its first frame decoded), and lay
    its frames out at its average rate by their timestamps (read from its packets, not
    decoded). Raise :class:`InputError` naming the file otherwise: missing, empty, no
    video stream (audio only), no frame rate, not decodable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file")
    if not path.is_file():
        raise InputError(f"{path}: video file not found")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied reading the video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: video file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                what = "it holds only sound" if container.streams.audio else "it holds no picture"
                raise InputError(f"{path}: has no video stream ({what})")
            has_audio = bool(container.streams.audio)
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > MAX_PIXELS:
                raise InputError(f"{path}: its pictures are {width}x{height}, over the {MAX_PIXELS / 1e6:.0f} Mpx cap "
                                 "on decoded pixels")
            stamps = []
            for packet in container.demux(stream):
                if packet.size:
                    stamps.append(packet.pts)
                    if len(stamps) > MAX_INPUT_FRAMES:
                        raise InputError(f"{path}: more than {MAX_INPUT_FRAMES} frames, the most a video init "
                                         "takes; cut it shorter")
            time_base = stream.time_base
        with av.open(str(path)) as container:
            first = next(container.decode(video=0), None)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a video file this tool can read ({_reason(exc)})") from None
    if first is None or not stamps:
        raise InputError(f"{path}: the video holds no frames")
    if not rate or float(rate) <= 0:
        raise InputError(f"{path}: the video states no frame rate")
    frames, sources = _layout(stamps, time_base, float(rate), path)
    return VideoInfo(path, float(rate), first.width, first.height, frames, has_audio, sources)


def _layout(stamps: list, time_base, fps: float, path: Path | str = "the video") -> tuple[int, tuple[int, ...]]:
    """(frames, sources): the pictures with these presentation stamps, sampled at ``fps``
    from the first one on: each output frame shows the picture nearest its time (the
    earlier one of two equally near). More than :data:`MAX_INPUT_FRAMES` is one line."""
    n = len(stamps)
    if any(s is None for s in stamps) or time_base is None:
        return n, tuple(range(n))
    times = np.sort(np.array([float(s * time_base) for s in stamps]))
    times -= times[0]
    span = float(times[-1]) * fps
    if not math.isfinite(span) or span + 1 > MAX_INPUT_FRAMES:
        gap = int(np.argmax(np.diff(times))) if n > 1 else 0
        raise InputError(f"{path}: its timestamps span {float(times[-1]):.4g} s, {span + 1:.4g} frames at "
                         f"{fps:g} fps, over the {MAX_INPUT_FRAMES} a video init takes (the widest gap, "
                         f"{float(times[gap + 1] - times[gap]) if n > 1 else 0:.4g} s, is after picture {gap})")
    frames = max(n, 1) if np.allclose(times, np.arange(n) / fps, atol=0.25 / fps) else \
        max(1, round(times[-1] * fps) + 1)
    wanted = np.arange(frames) / fps
    nearest = np.clip(np.searchsorted(times, wanted + 0.5 / fps, side="left") - 1, 0, n - 1)
    return frames, tuple(int(i) for i in nearest)


def _reason(exc: Exception) -> str:
    """An FFmpeg error's reason without its errno and file name."""
    return getattr(exc, "strerror", None) or first_line(exc)


def decode_frames(path: Path | str, wanted: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB uint8 (H, W, 3))`` for each picture index in ``wanted`` (counted in
    presentation order from 0), in increasing order, in one pass that stops after the
    last one. A video that ends or breaks before it is one :class:`InputError`."""
    wanted = sorted(set(wanted))
    if not wanted:
        return
    path = Path(path)
    todo = iter(wanted)
    target = next(todo)
    index = -1
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                index += 1
                if index < target:
                    continue
                yield index, rgb_array(frame)
                target = next(todo, None)
                if target is None:
                    return
    except av.FFmpegError as exc:
        raise InputError(f"{path}: the video could not be decoded after frame {index} ({_reason(exc)})") from None
    raise InputError(f"{path}: the video ends after {index + 1} frame(s), before frame {target}; it may be truncated")
