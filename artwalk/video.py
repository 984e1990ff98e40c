"""Encoding frames into a video file: mp4 (H.264), webm (VP9) or gif, plus a soundtrack.

The one place that talks to FFmpeg (through PyAV). Frames come in as RGB uint8
(H, W, 3) numpy arrays from an iterator, one per output frame, and go out one at a
time: nothing holds the whole video. A caller that repeats a held frame can yield
the *same array object* again; its colour conversion is then reused.

    frames (RGB uint8, one per video frame) ──► encode_video() ──► video.mp4 | .webm | .gif
    soundtrack (wav, mp3, flac, m4a, ogg, ...) ─┘   (AAC in mp4, Opus in webm, none in gif)

Choices, stated once:

* mp4: libx264, yuv420p, BT.709 limited range (tagged), ``+faststart`` (index first,
  so a browser starts playing before the download ends). H.264 4:2:0 needs even sizes:
  an odd width/height is **padded** by one column/row that repeats the edge pixels
  (nothing of the picture is lost; the pad is invisible). VP9 takes odd sizes as they are.
* webm: libvpx-vp9 constant quality (``crf`` with ``b=0``), row multithreading; the
  x264 preset names map to VP9 ``cpu-used`` (medium -> 4).
* gif: one global palette in two streaming passes: pass 1 feeds every frame to
  ``palettegen=stats_mode=full`` (so colours are weighted by screen time), pass 2 maps
  frames with ``paletteuse`` and ordered (Bayer) dithering. Measured on a 201-frame
  480x270 walk against a per-frame palette (``stats_mode=single:new=1``): 5.0 MB vs
  17.5 MB, 2.5x faster, temporally stable dither (no crawling noise across motion),
  33.5 dB vs 36.6 dB PSNR. Per-frame palettes also defeat the GIF encoder's
  "only the changed rectangle" coding, so every held frame is stored whole. The GIF
  loops forever. GIF timing is in 1/100 s, so frame times are rounded to that.
* Same frames, same bytes, on one machine: each encoder gets one thread per core of the
  machine (not of the process's CPU affinity), and x264 keeps off its AVX-512 code, which
  did not give the same bytes twice (:func:`x264_options`). So a chunk encoded again, after
  a kill or in another process, has the bytes it had.
* Soundtrack: decoded, resampled to 48 kHz (mono stays mono, more channels become
  stereo), trimmed to the video's duration, faded out linearly over the last
  ``audio_fade`` seconds of the video; a shorter soundtrack just ends (no loop, no pad).

The output appears atomically: it is encoded under ``<name>.tmp-<pid>-<random>`` in
the same folder and renamed when complete; a failure removes the temporary file, and
a temporary file left by a killed process is removed by the next encode to that name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import logging
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from artwalk.errors import ConfigError, InputError, first_line
from artwalk.fsutil import TMP_MARK, disk_errors, tmp_name, tmp_owner_alive
from artwalk.images import MAX_PIXELS
from artwalk.progress import Bar, progress

log = logging.getLogger(__name__)

FORMATS = ("mp4", "webm", "gif")
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip


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


# x264 gives the last frames of a file fewer bits, as nothing after them refers to them (its
# mb-tree rate control). A chunk that the video goes on after showed it at every join: on the
# examples at 1280x720, the frames either side of a join 0.8 dB below the same frames in one
# pass, the worst frame 1.2 dB. An x264 zone giving a continued chunk's last 8 frames 1.75 times
# their bits puts the joins within 0.05 dB of one pass, for 0.7% more bytes (bench_chunks.py).
CONTINUED_TAIL, CONTINUED_BITS = 8, 1.75


# x264 preset name -> libvpx-vp9 cpu-used in "good" mode (0 slowest/best .. 5 fastest;
# libvpx treats anything above 5 as 5 there).
_VP9_CPU_USED = dict(zip(X264_PRESETS, (5, 5, 5, 5, 5, 4, 3, 2, 1, 0), strict=True))
_CRF_MAX = {"mp4": 51, "webm": 63, "gif": 63}

AUDIO_RATE = 48_000
_AUDIO = {  # format -> (encoder, sample format, samples per frame, bit rate per channel)
    "mp4": ("aac", "fltp", 1024, 96_000),
    "webm": ("libopus", "flt", 960, 64_000),
}
_GIF_PALETTE = "stats_mode=full"
_PALETTE_PIXELS = 640 * 360  # frames are reduced to this size for the palette statistics
_GIF_DITHER = "dither=bayer:bayer_scale=3:diff_mode=rectangle"

FrameSource = Callable[[], Iterable[np.ndarray]]


# --------------------------------------------------------------------------- settings


def fps_fraction(fps: float) -> Fraction:
    """The exact frame rate of a float: 24.0 -> 24, 29.97 -> 30000/1001, 23.976 -> 24000/1001.

    A rate within 0.002 of an NTSC rate n*1000/1001 (a float written with 2-3 decimals)
    is that rate; any other is ``Fraction(fps).limit_denominator(1001)``.
    """
    if not (isinstance(fps, (int, float, Fraction)) and fps > 0 and math.isfinite(fps)):
        raise ConfigError(f"frame rate must be a positive number, got {fps!r}")
    n = round(fps * 1001 / 1000)
    if n >= 1 and float(fps) != n and abs(fps - Fraction(n * 1000, 1001)) < 0.002:
        return Fraction(n * 1000, 1001)
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ConfigError(f"frame rate {fps!r} is too small")
    return rate


GIF_MAX_FPS = 100.0  # GIF frame delays are whole 1/100 s
# A video read as input (video init) is refused before its frames are laid out or decoded if it
# would give more frames than this (timestamps far apart make a short file last for years),
# or if its pictures are larger than the images' cap.
MAX_INPUT_FRAMES = 200_000  # 2 h 19 min at 24 fps


def check_gif_fps(fps: float) -> None:
    if fps > GIF_MAX_FPS:
        raise ConfigError(f"a gif cannot play {fps:g} fps: its frame delays are whole 1/100 s, so at most "
                          f"{GIF_MAX_FPS:g} fps; lower --fps or use mp4 or webm")


def format_for(output: Path, fmt: str | None) -> str:
    """The container format: ``fmt`` if given, else the output's extension.

    A given format and a known, different extension contradict each other.
    """
    ext = output.suffix.lower().lstrip(".")
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise ConfigError(f"unknown video format '{fmt}' (choose from {', '.join(FORMATS)})")
        if ext in FORMATS and ext != fmt:
            raise ConfigError(f"--format {fmt} contradicts the output name {output.name}; change one")
        return fmt
    if ext in FORMATS:
        return ext
    raise ConfigError(
        f"cannot tell the video format from '{output.name}': name it .mp4, .webm or .gif,"
        " or pass --format"
    )


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode. ``crf`` and ``preset`` apply to mp4 and webm; gif ignores them."""

    format: str = "mp4"
    fps: Fraction = Fraction(24)
    crf: int = 18
    preset: str = "medium"
    audio: Path | None = None
    audio_fade: float = 2.0
    audio_start: float = 0.0  # seconds of the soundtrack skipped (a video's own sound, from --start)
    progress: bool = True
    continued: bool = False  # mp4: a chunk that the video goes on after (see CONTINUED_TAIL)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown video format '{self.format}' (choose from {', '.join(FORMATS)})")
        if not isinstance(self.fps, Fraction) or self.fps <= 0:
            raise ConfigError(f"fps must be a positive Fraction, got {self.fps!r}")
        crf_max = _CRF_MAX[self.format]
        if not (isinstance(self.crf, int) and 0 <= self.crf <= crf_max):
            raise ConfigError(f"--crf {self.crf} is out of range for {self.format} (0..{crf_max}; lower is better)")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"unknown --encode-preset '{self.preset}' (choose from {', '.join(X264_PRESETS)})")
        if not (self.audio_fade >= 0 and math.isfinite(self.audio_fade)):
            raise ConfigError(f"--audio-fade must be zero or more seconds, got {self.audio_fade}")
        if not (self.audio_start >= 0 and math.isfinite(self.audio_start)):
            raise ConfigError(f"--audio-start must be zero or more seconds, got {self.audio_start}")
        if self.format == "gif":
            check_gif_fps(float(self.fps))


@dataclass
class EncodeResult:
    """What was written."""

    path: Path
    frames: int
    duration_s: float
    width: int
    height: int
    bytes: int
    audio_s: float = 0.0  # seconds of soundtrack in the file
    seconds: float = 0.0  # wall-clock time of the encode


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


def _audio_frames(
    path: Path, fmt: str, layout: str, frame_size: int, total: int, fade: int, skip: int = 0
) -> Iterator[av.AudioFrame]:
    """The soundtrack as encoder-ready frames at AUDIO_RATE: ``total`` samples at
    most, after the first ``skip``, the last ``fade`` of those (counted from ``total``)
    faded out linearly."""
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=AUDIO_RATE, frame_size=frame_size)
    planar = av.AudioFormat(fmt).is_planar
    channels = av.AudioLayout(layout).nb_channels
    done = 0

    def shape(frame: av.AudioFrame) -> Iterator[av.AudioFrame]:
        nonlocal done, skip
        data = frame.to_ndarray()  # planar (C, n); packed (1, n * C)
        samples = frame.samples
        if skip:
            dropped = min(skip, samples)
            skip -= dropped
            samples -= dropped
            data = data[:, dropped:] if planar else data[:, dropped * channels :]
        n = min(samples, total - done)
        if n <= 0:
            return
        data = data[:, :n] if planar else data[:, : n * channels]
        if fade > 0 and done + n > total - fade:
            pos = np.arange(done, done + n, dtype=np.float64)
            gain = np.clip((total - pos) / fade, 0.0, 1.0).astype(np.float32)
            data = data * gain if planar else (data.reshape(n, channels) * gain[:, None]).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=np.float32), format=fmt, layout=layout)
        out.sample_rate = AUDIO_RATE
        out.pts = done
        out.time_base = Fraction(1, AUDIO_RATE)
        done += n
        yield out

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames, None)
                except av.FFmpegError:
                    if done == 0:
                        raise
                    frame = None  # a damaged tail (probe_audio measured the sound before it): stop there
                if frame is None:
                    break
                frame.pts = None  # the resampler counts samples itself
                for chunk in resampler.resample(frame):
                    yield from shape(chunk)
                if done >= total:
                    return
            for chunk in resampler.resample(None):
                yield from shape(chunk)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: audio could not be decoded ({first_line(exc)})") from None


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
                yield index, frame.to_ndarray(format="rgb24")
                target = next(todo, None)
                if target is None:
                    return
    except av.FFmpegError as exc:
        raise InputError(f"{path}: the video could not be decoded after frame {index} ({_reason(exc)})") from None
    raise InputError(f"{path}: the video ends after {index + 1} frame(s), before frame {target}; it may be truncated")


# --------------------------------------------------------------------------- output file


def remove_stale_outputs(final: Path) -> int:
    """Delete ``<final>.tmp-<pid>-*`` files whose process is gone; return how many."""
    count = 0
    prefix = final.name + TMP_MARK
    for entry in final.parent.glob(glob.escape(prefix) + "*"):
        if tmp_owner_alive(entry.name):
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            count += 1
    return count


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; it becomes ``final`` if the block succeeds.

    Disk-full errors (also from FFmpeg) become :class:`DiskFullError`; on any error,
    KeyboardInterrupt and SystemExit included, the temporary file is removed.
    """
    final = Path(final)
    with disk_errors(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        if remove_stale_outputs(final):
            log.info("removed an unfinished %s left by an interrupted run", final.name)
    tmp = tmp_name(final)
    try:
        with disk_errors(final):
            yield tmp
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# --------------------------------------------------------------------------- video


@contextlib.contextmanager
def _opened(frames: FrameSource) -> Iterator[Iterator[np.ndarray]]:
    """A fresh pass over the frames, closed afterwards (a generator's readers stop)."""
    it = iter(frames())
    try:
        yield it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _even(n: int) -> int:
    return n + (n & 1)


def _drain(graph: av.filter.Graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            yield graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return


class _Muxer:
    """An open output container with one video stream and maybe one audio stream."""

    def __init__(self, tmp: Path, size: tuple[int, int], s: EncodeSettings, audio_total: int, bar: Bar,
                 template: av.video.stream.VideoStream | None = None, frames: int = 0) -> None:
        """``template``: copy encoded packets of streams like it (chunks) instead of encoding.
        ``frames``: how many frames will be encoded (for a continued chunk's last ones)."""
        self.frames = frames
        self.s = s
        self.bar = bar
        self.frame_tb = Fraction(1) / s.fps
        width, height = size
        options = {"fflags": "+bitexact"}  # same frames and settings: same bytes (no random UIDs)
        if s.format == "mp4":
            options["movflags"] = "+faststart"
        if s.format == "gif":
            options["loop"] = "0"  # loop forever
        self.audio = None
        self.audio_frames: Iterator[av.AudioFrame] | None = None
        self.container = av.open(str(tmp), "w", format=s.format, options=options)
        try:
            if template is None:
                self._add_video(width, height)
            else:
                self.video = self.container.add_stream_from_template(template)
            if s.audio is not None and audio_total > 0:
                self._add_audio(audio_total)
        except BaseException:
            self.abort()
            raise
        self.next_audio_pts = 0
        self.audio_samples = 0

    def _add_video(self, width: int, height: int) -> None:
        s = self.s
        if s.format == "mp4":
            params = [x264_options()["x264-params"]] if x264_options() else []
            if s.continued and self.frames > 1:
                params.append(f"zones={max(0, self.frames - CONTINUED_TAIL)},{self.frames - 1},b={CONTINUED_BITS}")
            options = {"crf": str(s.crf), "preset": s.preset, **({"x264-params": ":".join(params)} if params else {})}
            codec, pix_fmt = "libx264", "yuv420p"
        elif s.format == "webm":
            options = {
                "crf": str(s.crf), "b": "0", "deadline": "good", "row-mt": "1",
                "cpu-used": str(_VP9_CPU_USED[s.preset]),
            }  # fmt: skip
            codec, pix_fmt = "libvpx-vp9", "yuv420p"
        else:
            options, codec, pix_fmt = {}, "gif", "pal8"
        stream = self.container.add_stream(codec, rate=s.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        cc = stream.codec_context
        cc.time_base = self.frame_tb
        if pix_fmt == "yuv420p":
            cc.thread_count = encoder_threads()
            cc.color_primaries = cc.color_trc = cc.colorspace = 1  # BT.709
            cc.color_range = int(ColorRange.MPEG)
        self.video = stream

    def _add_audio(self, total: int) -> None:
        s = self.s
        assert s.audio is not None
        codec, fmt, frame_size, rate_per_channel = _AUDIO[s.format]
        with av.open(str(s.audio)) as probe:
            channels = probe.streams.audio[0].channels or 2
        layout = "mono" if channels == 1 else "stereo"
        stream = self.container.add_stream(codec, rate=AUDIO_RATE, layout=layout)
        cc = stream.codec_context
        cc.format = fmt
        cc.bit_rate = rate_per_channel * av.AudioLayout(layout).nb_channels
        cc.open()
        frame_size = cc.frame_size or frame_size
        fade = round(min(s.audio_fade, total / AUDIO_RATE) * AUDIO_RATE)
        self.audio = stream
        self.audio_frames = _audio_frames(s.audio, fmt, layout, frame_size, total, fade,
                                          skip=round(s.audio_start * AUDIO_RATE))

    def feed_audio(self, until: int | None) -> None:
        """Encode soundtrack up to sample ``until`` (all of it when None)."""
        if self.audio_frames is None:
            return
        while until is None or self.next_audio_pts < until:
            frame = next(self.audio_frames, None)
            if frame is None:
                self.audio_frames = None
                return
            self.next_audio_pts = frame.pts + frame.samples
            self.audio_samples += frame.samples
            self.container.mux(self.audio.encode(frame))

    def write(self, frame: av.VideoFrame, index: int) -> None:
        frame.pts = index
        frame.time_base = self.frame_tb
        frame.duration = 1
        packets = self.video.encode(frame)
        self.container.mux(packets)
        self.bar.update(len(packets))  # frames out of the encoder (x264 lags its input)
        if self.audio_frames is not None:
            self.feed_audio(math.ceil((index + 1) * self.frame_tb * AUDIO_RATE))

    def close(self) -> None:
        for packet in self.video.encode_lazy(None):  # the encoder's look-ahead, drained
            self.container.mux(packet)
            self.bar.update()
        if self.audio is not None:
            self.feed_audio(None)
            self.container.mux(self.audio.encode(None))
        self.container.close()

    def abort(self) -> None:
        if self.audio_frames is not None:
            self.audio_frames.close()
        with contextlib.suppress(Exception):
            self.container.close()


def _yuv_frames(frames: Iterable[np.ndarray], size: tuple[int, int], pad: tuple[int, int]) -> Iterator[av.VideoFrame]:
    """RGB arrays -> BT.709 yuv420p frames; a repeated array object reuses its conversion."""
    last_rgb, last = None, None
    width, height = size
    for rgb in frames:
        if rgb is not last_rgb:
            _check_frame(rgb, width, height)
            src = rgb
            if pad != (0, 0):
                src = cv2.copyMakeBorder(rgb, 0, pad[1], 0, pad[0], cv2.BORDER_REPLICATE)
            last = av.VideoFrame.from_ndarray(np.ascontiguousarray(src), format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
            last_rgb = rgb
        yield last


def _rgb_frames(frames: Iterable[np.ndarray], size: tuple[int, int]) -> Iterator[av.VideoFrame]:
    width, height = size
    for rgb in frames:
        _check_frame(rgb, width, height)
        yield av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


def _check_frame(rgb: np.ndarray, width: int, height: int) -> None:
    if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3):
        raise ValueError(f"frame of shape {rgb.shape} {rgb.dtype}; expected ({height}, {width}, 3) uint8")


def _gif_palette(frames: Iterable[np.ndarray], size: tuple[int, int], bar: Bar) -> av.VideoFrame:
    """Pass 1: one palette for the whole video, colours weighted by screen time.

    The statistics are taken on frames reduced to at most _PALETTE_PIXELS (area
    averaging): a colour histogram barely changes, and 2560x1440 costs 16x less.
    """
    width, height = size
    scale = min(1.0, math.sqrt(_PALETTE_PIXELS / (width * height)))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    graph = av.filter.Graph()
    src = graph.add_buffer(width=small_size[0], height=small_size[1], format="rgb24", time_base=Fraction(1, 1))
    gen = graph.add("palettegen", _GIF_PALETTE)
    sink = graph.add("buffersink")
    src.link_to(gen)
    gen.link_to(sink)
    graph.configure()
    last_rgb, small = None, None
    for i, rgb in enumerate(frames):
        if rgb is not last_rgb:
            _check_frame(rgb, width, height)
            last_rgb = rgb
            small = rgb if scale == 1.0 else cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
            small = np.ascontiguousarray(small)
        frame = av.VideoFrame.from_ndarray(small, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 1)
        src.push(frame)
        bar.update()
    src.push(None)
    palette = next(_drain(graph), None)
    if palette is None:
        raise ValueError("palettegen returned no palette (no frames?)")
    return palette


def _encode_gif(mux: _Muxer, frames: FrameSource, n_frames: int, size: tuple[int, int], bar: Bar) -> int:
    bar.set_description("gif palette")
    with _opened(frames) as first_pass:
        palette = _gif_palette(first_pass, size, bar)
    bar.reset()
    bar.set_description("gif")
    graph = av.filter.Graph()
    src = graph.add_buffer(width=size[0], height=size[1], format="rgb24", time_base=mux.frame_tb)
    pal = graph.add_buffer(width=palette.width, height=palette.height, format=palette.format.name,
                           time_base=Fraction(1, 1), name="palette")
    use = graph.add("paletteuse", _GIF_DITHER)
    sink = graph.add("buffersink")
    src.link_to(use, 0, 0)
    pal.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    palette.pts = 0
    pal.push(palette)
    pal.push(None)  # paletteuse keeps the last palette for every later frame
    written = 0
    with _opened(frames) as second_pass:
        for i, frame in enumerate(_rgb_frames(second_pass, size)):
            frame.pts, frame.time_base = i, mux.frame_tb
            src.push(frame)
            for out in _drain(graph):
                mux.write(out, written)
                written += 1
    src.push(None)
    for out in _drain(graph):
        mux.write(out, written)
        written += 1
    return written


def concat_chunks(chunks: Sequence[tuple[Path, int]], output: Path | str, settings: EncodeSettings) -> EncodeResult:
    """Join encoded chunks (``(file, frames)`` each: closed-GOP mp4 or webm files that
    :func:`encode_video` made with these settings and no sound) into ``output`` by stream
    copy, each chunk's timestamps moved on by the frames before it, and the soundtrack
    encoded once, interleaved chunk by chunk. Atomic like :func:`encode_video`. Raises
    ValueError when the chunks cannot be joined (their codec headers differ)."""
    output = Path(output)
    s = settings
    n_frames = sum(count for _, count in chunks)
    if not chunks or n_frames < 1:
        raise ValueError("a video needs at least one frame")
    audio = s.audio if s.format != "gif" else None
    audio_total = round(float(n_frames / s.fps) * AUDIO_RATE) if audio is not None else 0
    started = time.monotonic()
    bar = progress(total=n_frames, unit="frame", enabled=s.progress, desc=f"{s.format} (joining)", leave=False)
    with contextlib.ExitStack() as stack, atomic_output(output) as tmp:
        stack.enter_context(bar)
        first = stack.enter_context(av.open(str(chunks[0][0])))
        template = first.streams.video[0]
        header = bytes(template.codec_context.extradata or b"")
        width, height = template.codec_context.width, template.codec_context.height
        mux = _Muxer(tmp, (width, height), s, audio_total, bar, template=template)
        try:
            done = 0
            for path, count in chunks:
                with av.open(str(path)) as container:
                    stream = container.streams.video[0]
                    if bytes(stream.codec_context.extradata or b"") != header:
                        raise ValueError(f"{path}: its codec header differs from the first chunk's")
                    shift = int(round(Fraction(done) / s.fps / stream.time_base))
                    packets = 0
                    for packet in container.demux(stream):
                        if packet.size == 0:
                            continue
                        packet.pts = None if packet.pts is None else packet.pts + shift
                        packet.dts = None if packet.dts is None else packet.dts + shift
                        packet.stream = mux.video
                        mux.container.mux(packet)
                        packets += 1
                    if packets != count:
                        raise ValueError(f"{path}: holds {packets} frame(s), not {count}")
                done += count
                bar.update(count)
                mux.feed_audio(math.ceil(done * mux.frame_tb * AUDIO_RATE))
            if mux.audio is not None:
                mux.feed_audio(None)
                mux.container.mux(mux.audio.encode(None))
            mux.container.close()
        except BaseException:
            mux.abort()
            raise
        nbytes = tmp.stat().st_size
    return EncodeResult(path=output, frames=n_frames, duration_s=float(n_frames / s.fps), width=width, height=height,
                        bytes=nbytes, audio_s=mux.audio_samples / AUDIO_RATE, seconds=time.monotonic() - started)


def encode_video(
    frames: FrameSource,
    n_frames: int,
    size: tuple[int, int],
    output: Path | str,
    settings: EncodeSettings,
) -> EncodeResult:
    """Encode ``n_frames`` RGB frames of ``size`` (w, h) into ``output``, atomically.

    ``frames()`` returns a fresh iterable of the frames in order; it is called once,
    or twice for a gif (palette pass, then encode pass). The soundtrack, if any,
    should have been checked with :func:`probe_audio` first.
    """
    output = Path(output)
    s = settings
    width, height = size
    if n_frames < 1:
        raise ValueError("a video needs at least one frame")
    out_w, out_h = (_even(width), _even(height)) if s.format == "mp4" else (width, height)
    if (out_w, out_h) != (width, height):
        log.info(
            "%dx%d has an odd side; H.264 4:2:0 needs even sides, so it is padded to %dx%d"
            " by repeating the last %s",
            width, height, out_w, out_h,
            " and ".join(x for x, odd in (("column", width % 2), ("row", height % 2)) if odd),
        )  # fmt: skip
    duration = float(n_frames / s.fps)
    audio = s.audio if s.format != "gif" else None
    if s.audio is not None and audio is None:
        log.warning("gif has no sound: the soundtrack %s is dropped", s.audio)
    if s.format == "gif" and s.fps > 50:
        log.warning("gif at %.3g fps: GIF frame delays are whole 1/100 s and most viewers slow"
                    " delays under 2/100 s down, so it will play slower; use mp4 or webm", float(s.fps))
    audio_total = round(duration * AUDIO_RATE) if audio is not None else 0
    enc = dataclasses.replace(s, audio=audio)

    started = time.monotonic()
    bar = progress(total=n_frames, unit="frame", enabled=s.progress, desc=s.format, leave=False)
    with atomic_output(output) as tmp, bar:
        mux = _Muxer(tmp, (out_w, out_h), enc, audio_total, bar, frames=n_frames)
        try:
            if s.format == "gif":
                written = _encode_gif(mux, frames, n_frames, size, bar)
            else:
                written = 0
                pad = (out_w - width, out_h - height)
                with _opened(frames) as source:
                    for frame in _yuv_frames(source, size, pad):
                        mux.write(frame, written)
                        written += 1
            if written != n_frames:
                raise ValueError(f"encoded {written} frames, expected {n_frames}")
            mux.close()
        except BaseException:
            mux.abort()
            raise
        nbytes = tmp.stat().st_size
    return EncodeResult(
        path=output, frames=n_frames, duration_s=duration, width=out_w, height=out_h,
        bytes=nbytes, audio_s=mux.audio_samples / AUDIO_RATE, seconds=time.monotonic() - started,
    )  # fmt: skip
