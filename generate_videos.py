"""Stage 4: one encode of the timeline into a video (mp4, webm or gif), with a soundtrack.

Reads the frames of stage 3 (``upscaled/``) when it was run, else those of stage 2
(``frames/``), and writes the video, its record and a contact sheet of the keyframes
beside it::

    OUT/                                    OUT/
      keyframes/manifest.json  ─┐             <name>.mp4             the walk (or --output)
      frames/manifest.json     ─┼──────►      <name>.mp4.json        its record: config and cache key
      upscaled/manifest.json   ─┘             <name>_keyframes.png   the keyframes in a grid
                                              chunks/units/<key>/    one encoded chunk per unit
                                              (--clean: keyframes/, frames/, upscaled/, chunks/ removed)

The manifests' ``timeline`` lists the video frame by frame as indices into their
``frames``; a held frame is a repeated index. Each unique frame is read once (a
small cache covers the repeats) and frames stream through the encoder, so memory
does not grow with the length of the video.

mp4 and webm are encoded in chunks (:func:`chunk_bounds`): each unit of the timeline, a
keyframe's hold and the motion after it, is its own closed-GOP file in
``OUT/chunks/units/<key>/``, keyed by its frames' hashes and the encode settings (every
chunk but the last is encoded ``continued``: its last frames get back the bits x264 keeps
from a file's end, so no join shows); the video is their concatenation by stream copy,
with the soundtrack encoded once. After an edit only the chunks whose frames changed are
encoded again (a gif is one pass: one palette for the whole video). The file appears
atomically: a failed or killed encode leaves nothing at the final name. A rerun whose
frames, soundtrack and settings are unchanged finds the video up to date and does
nothing; each format has its own record, so switching between mp4, webm and gif
re-encodes none of the others, and a rerun after ``--clean`` finds the video up to date
too. The encoder itself (frames in, one file out: :func:`encode_video`, :func:`concat_chunks`)
is the last part of this file; reading videos and soundtracks is the core's (:mod:`artwalk.video`).

A neural upscale's frames (an ``upscaled/`` manifest that says ``release``) are freed once
the chunks hold them, so the chunks are their only copy. When a chunk must be encoded
again (other settings, another format) and its frames were freed, stage 3 must upscale
exactly those again first: :func:`run` takes a ``restore`` from its caller (the top floor
passes stage 3 with its engine loaded); without one it is an error that names the
command (``python -m super_resolution OUT --keep-settings --restore ...``).

    python generate_videos.py OUT [--format mp4|webm|gif] [--audio song.mp3] [--clean]

ArtWalks' flags still work (in the CLI, :func:`main`): ``--input_path P --folder_name F``
names the run folder P/F. What needs other stages is composed by the top floor, never by
this stage: with ``--sec_interpolation``/``--sec_freeze`` (the motion stage again with only
those settings changed, then stage 3 when the run had one), or when freed frames must be
upscaled again, the script hands its whole command line to ``artwalk retime``
(``python -m pipeline retime``, :mod:`pipeline.retime`), which replaces this process.

``check(config)`` checks what needs no earlier stage;
``run(VideoConfig(...), walk_key=...) -> VideoResult``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import itertools
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, NoReturn, Sequence

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

import artwalk
from artwalk.cli import Parser, add_common_flags, run_cli
from artwalk.config import add_flags, from_args, key_settings, ranges_text, record, setting
from artwalk.errors import ConfigError, InputError, StageOrderError, first_line
from artwalk.executors import Executor, Unit, resolve
from artwalk.fsutil import TMP_MARK, check_writable, disk_errors, human_bytes, sha256_file, tmp_name, \
    tmp_owner_alive, write_json_once
from artwalk.framestore import FrameReader
from artwalk.images import read_frame_u8, resize_u8, save_png
from artwalk.progress import Bar, progress
from artwalk.runfolder import MANIFEST, STAGE_DIRS, UnitStore, cache_key, check_frames_current, read_manifest, \
    release, run_lock
from artwalk.video import encoder_threads, probe_audio, reformat, x264_options

log = logging.getLogger(__name__)

SOURCES = ("auto", "frames", "upscaled")
_CACHE_FRAMES = 4  # recently shown frames kept (held frames repeat consecutively)
# PNG decoding is slow next to H.264 on many cores (about 145 ms for a 2560x1440 frame
# here): a few reader threads decode the next unique frames while the encoder works.
_READERS = max(1, min(4, (os.cpu_count() or 2) // 2))
_READ_AHEAD = 2 * _READERS

# Contact sheet geometry (pixels).
THUMB_WIDTH = 320
LABEL_HEIGHT = 26
GAP = 8
MAX_COLUMNS = 8
_SHEET_BG = (24, 24, 24)
LABEL_FONT = Path(artwalk.__file__).parent / "fonts" / "DejaVuSans.ttf"


# --------------------------------------------------------------------------- encode settings


FORMATS = ("mp4", "webm", "gif")
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip

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


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class VideoConfig:
    """Everything stage 4 needs. ``output=None``: ``<run_dir>/<run_dir name>.<format>``;
    ``format=None``: from the output's extension, else mp4."""

    run_dir: Path = setting(help="the run folder written by the earlier stages", cli=False)
    output: Path | None = setting(None, "the video to write (default: OUT/<run folder name>.mp4, or .webm/.gif "
                                  "with --format)", flags=("--output", "-o"), metavar="PATH", key=False)
    format: str | None = setting(None, "mp4 (H.264 + AAC), webm (VP9 + Opus) or gif (no sound); default: from "
                                 "the video path's extension, else mp4", choices=FORMATS)
    crf: int = setting(18, "constant quality, lower is better and bigger: 0-51 for mp4, 0-63 for webm "
                       "(18 is visually lossless); ignored for gif")
    encode_preset: str = setting("medium", "encoder speed/size trade-off, x264 names from ultrafast to veryslow; "
                                 "for webm it maps to VP9 cpu-used; ignored for gif", choices=X264_PRESETS,
                                 metavar="SPEED")
    audio: Path | None = setting(None, "soundtrack (wav, mp3, flac, m4a, ogg, ...): trimmed to the video and "
                                 "faded out; AAC in mp4, Opus in webm; gif drops it with a warning", metavar="FILE")
    audio_fade: float = setting(2.0, "fade the soundtrack out over the video's last SECONDS (never longer than "
                                "the video; 0 for none)", metavar="SECONDS")
    audio_start: float = setting(0.0, "start the soundtrack SECONDS into its file (artwalk video-init sets it to "
                                 "--start for the video's own sound)", metavar="SECONDS")
    source: str = setting("auto", "frames to encode: upscaled/ (stage 3) or frames/ (stage 2); auto takes "
                          "upscaled/ when stage 3 was run", choices=SOURCES, key=False)
    contact_sheet: bool = setting(True, "write <video name>_keyframes.png, the keyframes in a grid", key=False)
    clean: bool = setting(False, "after a successful encode, delete keyframes/, levels/, frames/, upscaled/ and chunks/ from "
                          "the run folder (the video, its record, its contact sheet and walk.json stay)", key=False)
    progress: bool = setting(True, cli=False, key=False)
    wait: bool = setting(False, "if another process works in OUT, wait for it instead of stopping", control=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.output is not None:
            object.__setattr__(self, "output", Path(self.output))
        if self.audio is not None:
            object.__setattr__(self, "audio", Path(self.audio))
        self.settings(fps_fraction(1.0))  # validates format, crf, preset and fade (any rate will do)

    @property
    def video_format(self) -> str:
        if self.output is None:
            return (self.format or "mp4").lower()
        return format_for(self.output, self.format)

    @property
    def video_path(self) -> Path:
        if self.output is not None:
            return self.output
        name = self.run_dir.resolve().name or "walk"
        return self.run_dir / f"{name}.{self.video_format}"

    @property
    def record_path(self) -> Path:
        """``<video file name>.json``: the config and the key of what the video was made from."""
        return self.video_path.with_name(f"{self.video_path.name}.json")

    @property
    def sheet_path(self) -> Path:
        return self.video_path.with_name(f"{self.video_path.stem}_keyframes.png")

    def settings(self, fps) -> EncodeSettings:
        return EncodeSettings(
            format=self.video_format, fps=fps, crf=self.crf, preset=self.encode_preset,
            audio=self.audio, audio_fade=self.audio_fade, audio_start=self.audio_start, progress=self.progress,
        )  # fmt: skip


@dataclass
class VideoResult:
    """What stage 4 wrote. ``width``/``height`` are the encoded size (after any padding)."""

    path: Path
    frames: int
    duration_s: float
    width: int
    height: int
    bytes: int
    contact_sheet: Path | None
    source: str = "frames"  # the stage folder the frames came from
    fps: float = 24.0
    audio_s: float = 0.0
    seconds: float = 0.0
    reused: int = 0  # chunks (a gif: its one pass) found done
    computed: int = 0  # chunks encoded now


# --------------------------------------------------------------------------- run


def check(config: VideoConfig, fps: float | None = None) -> float | None:
    """Everything that can be checked before stage 4 starts: format and settings (done by
    the config), the soundtrack (decoded to its real end), the output paths, and with
    ``fps`` what the format allows. Returns the soundtrack's length in seconds, if any."""
    for path, what in ((config.video_path, "video"), (config.record_path, "video record"),
                       (config.sheet_path, "contact sheet")):
        if path.is_dir():
            raise InputError(f"{path}: the {what} path is a folder; pass -o with a file name")
    check_writable(config.video_path.parent, "video's folder")
    if fps is not None and config.video_format == "gif":
        check_gif_fps(fps)
    if config.audio is None:
        return None
    info = probe_audio(config.audio)  # a missing or broken file first: it is the first mistake to mend
    if config.video_format == "gif":
        raise ConfigError(f"--format gif has no sound, so --audio {config.audio} would be lost: drop --audio, or "
                          "use --format mp4 or webm")
    if config.audio_start >= info.duration_s:
        raise ConfigError(f"--audio-start {config.audio_start:g}: the soundtrack {config.audio} is only "
                          f"{info.duration_s:.1f} s long")
    log.info("soundtrack %s: %s, %d Hz, %d channel(s), %.1f s%s", info.path.name, info.codec, info.sample_rate,
             info.channels, info.duration_s, f" from {config.audio_start:.2f} s" if config.audio_start else "")
    return info.duration_s - config.audio_start


# How stage 4 gets released frames back: restore(run_dir, indices into upscaled/'s frames).
Restore = Callable[[Path, list[int]], None]


class _FramesReleased(Exception):
    """Frames this encode needs were freed into chunks it cannot use (their indices)."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__(f"{len(indices)} frame(s) released")
        self.indices = indices


def run(config: VideoConfig, executor: Executor | None = None, restore: Restore | None = None,
        walk_key: str | None = None) -> VideoResult:
    """Encode the run folder's timeline into ``config.video_path`` (see the module docstring);
    ``executor`` (:mod:`artwalk.executors`): where the chunks are encoded (default: here);
    ``restore``: how frames that an earlier encode released come back (default: an error
    that says what to run); ``walk_key``: the key of the walk the frames were made for, which
    the video's record keeps (the top floor's, so that it knows a cleaned walk is up to date).
    Without one the record keeps the key it had while the video is unchanged, else none."""
    for attempt in range(2):
        try:
            return _run(config, executor, walk_key)
        except _FramesReleased as needed:
            redo = (f"`{STAGE_DIRS['upscaled']} {config.run_dir} --keep-settings --restore "
                    f"{ranges_text(needed.indices)}`")
            if restore is None or attempt:
                raise StageOrderError(f"{config.run_dir / 'upscaled'}: {len(needed.indices)} frame(s) that this encode "
                                      f"needs were freed into the chunks of an earlier encode; run {redo} first"
                                      ) from None
            log.info("encode: %d upscaled frame(s) it needs were freed into earlier chunks: upscaling them again",
                     len(needed.indices))
            restore(config.run_dir, needed.indices)
    raise AssertionError("unreachable")


def _run(config: VideoConfig, executor: Executor | None, walk_key: str | None) -> VideoResult:
    started = time.monotonic()
    audio_s = check(config)
    with run_lock(config.run_dir, config.wait, create=False) as run_dir:
        cleaned = _cleaned_and_current(config)
        if cleaned is not None:
            return cleaned
        source, manifest = choose_source(run_dir, config.source)
        entries, timeline, (width, height), fps = check_manifest(run_dir, source, manifest)
        if config.video_format == "gif":
            check_gif_fps(fps)
        rate = fps_fraction(fps)
        output = config.video_path
        log.info("encoding %d frames (%d unique) of %dx%d at %s fps from %s/ into %s (%s)", len(timeline),
                 len(set(timeline)), width, height, _fps_text(rate), source, output, config.video_format)
        if audio_s is not None and audio_s + (0.5 + 1e-3) / float(rate) < len(timeline) / float(rate):  # > 1/2 frame
            log.warning("the soundtrack %s is %.1f s, shorter than the %.1f s video: the end will be silent",
                        config.audio, audio_s, len(timeline) / float(rate))

        # The video's record beside it: its config, and a key of everything it was made from.
        key = cache_key(
            source=source, manifest=sha256_file(run_dir / source / MANIFEST),
            audio=sha256_file(config.audio) if config.audio is not None and config.video_format != "gif" else None,
            settings=key_settings(config),
        )  # fmt: skip
        previous = _read_record(config.record_path)
        sheet_ok = not config.contact_sheet or config.sheet_path.is_file()
        if previous.get("key") == key and sheet_ok and _same_file(output, previous):
            log.info("%s is up to date with %s/ and the settings: nothing to do", output, source)
            if walk_key is None:  # the very video the record describes: still the walk it was made for
                walk_key = previous.get("walk_key")
            result_fields, encoded_seconds, joined = previous["result"], 0.0, False
            units = {"reused": 1 if config.video_format == "gif" else
                     len(chunk_bounds(entries, timeline, max(1, round(float(rate))))), "computed": 0}
        else:
            streamed = manifest.get("streamed")  # lanczos: resized here
            gif = config.video_format == "gif"
            chunks = None if gif else _chunk_plan(config, entries, timeline, (width, height), rate, streamed)
            if manifest.get("release"):  # frames an earlier encode freed: back first
                _check_not_released(run_dir, entries, timeline, chunks)
            with FrameReader(run_dir) as reader:
                if gif:  # one pass: one palette for the whole video
                    encoded = encode_video(
                        lambda: _timeline_frames(reader, entries, timeline, (width, height), bool(streamed)),
                        len(timeline), (width, height), output, config.settings(rate))
                    units, joined = {"reused": 0, "computed": 1}, False
                else:
                    encoded, units, joined = _encode_chunks(config, run_dir, reader, entries, timeline,
                                                            (width, height), rate, streamed, chunks, executor)
            if joined and manifest.get("release"):  # the chunks hold these frames now
                freed = release(run_dir, dict.fromkeys(entries[i]["path"] for i in timeline))
                if freed:
                    log.info("encode: freed %s of upscaled frames, now held in the chunks", human_bytes(freed))
            if config.contact_sheet:
                write_contact_sheet(run_dir, config.sheet_path)
            encoded_seconds = encoded.seconds
            result_fields = {"frames": encoded.frames, "duration_s": encoded.duration_s, "width": encoded.width,
                             "height": encoded.height, "bytes": encoded.bytes, "audio_s": encoded.audio_s}
        write_json_once(config.record_path, {  # unchanged when up to date: nothing written
            "stage": "video", "key": key, "config": record(config), "source": source, "video": output.name,
            "sha256": sha256_file(output), "result": result_fields, "walk_key": walk_key,
            "cleaned": config.clean,
        })  # fmt: skip
        if config.clean:
            clean_run_folder(run_dir, keep=[output, config.sheet_path, config.record_path])
    result = VideoResult(path=output, contact_sheet=config.sheet_path if config.contact_sheet else None,
                         source=source, fps=float(rate), seconds=time.monotonic() - started, **result_fields,
                         **units)
    if encoded_seconds:
        log.info(
            "wrote %s: %d frames, %.2f s at %s fps, %dx%d, %s%s (stage 4 took %.1f s%s)",
            output, result.frames, result.duration_s, _fps_text(rate), result.width, result.height,
            human_bytes(result.bytes), ", with sound" if result.audio_s else "", result.seconds,
            f"; joining its chunks {encoded_seconds:.1f} s" if joined else "",
        )  # fmt: skip
    return result


CHUNKS = "chunks"
CHUNK_VERSION = 2  # bump when a chunk's bytes change for the same frames and settings (2: continued)


def chunk_bounds(entries: Sequence[dict], timeline: Sequence[int], min_frames: int) -> list[tuple[int, int]]:
    """The timeline cut into units: each starts where a keyframe (anything but a motion
    frame) comes on screen, so a chunk is a keyframe's hold and the motion after it; a
    chunk shorter than ``min_frames`` joins the next (the last joins the one before).

    Starting a chunk, the keyframe is its first picture (an IDR) and its hold repeats it, so
    the held artworks come out better than in one pass (on the examples at 1280x720, 40.61
    against 40.47 dB). What a chunk's end loses, every chunk but the last gets back with
    ``continued`` (:data:`CONTINUED_TAIL`). Cut instead where keyframes leave
    the screen, the holds were 0.2 dB below one pass (bench/bench_chunks.py)."""
    n = len(timeline)
    starts = [0]
    for i in range(1, n):
        if timeline[i] != timeline[i - 1] and entries[timeline[i]].get("kind") != "motion" \
                and i - starts[-1] >= min_frames:
            starts.append(i)
    if len(starts) > 1 and n - starts[-1] < min_frames:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def _chunk_plan(config: VideoConfig, entries: Sequence[dict], timeline: Sequence[int], size: tuple[int, int], rate,
                streamed: dict | None) -> list[tuple[int, int, str]]:
    """The chunks of the timeline: (start, end, key) each, the key hashing the chunk's frames
    and every setting that shapes its bytes."""
    identity = {"format": config.video_format, "crf": config.crf, "preset": config.encode_preset, "fps": str(rate),
                "size": list(size), "streamed": streamed, "version": CHUNK_VERSION}
    return [(start, end, cache_key(kind="chunk", frames=[[entries[i].get("sha256"), entries[i].get("index")]
                                                         for i in timeline[start:end]],
                                   continued=_continued(config, end, timeline), **identity))
            for start, end in chunk_bounds(entries, timeline, max(1, round(float(rate))))]


def _continued(config: VideoConfig, end: int, timeline: Sequence[int]) -> bool:
    """Whether the chunk ending at ``end`` is encoded ``continued``: an mp4 chunk the video goes on after."""
    return config.video_format == "mp4" and end < len(timeline)


def _check_not_released(run_dir: Path, entries: Sequence[dict], timeline: Sequence[int],
                        chunks: list[tuple[int, int, str]] | None) -> None:
    """Raise :class:`_FramesReleased` with the frames that the chunks still to encode (or a
    gif: every frame) need and that an earlier encode freed."""
    store = UnitStore(run_dir / CHUNKS)
    needed = set(timeline) if chunks is None else \
        {i for start, end, key in chunks if not store.has(key) for i in timeline[start:end]}
    missing = sorted(i for i in needed if not (run_dir / entries[i]["path"]).is_file())
    if missing:
        raise _FramesReleased(missing)


def _encode_chunks(config: VideoConfig, run_dir: Path, reader: FrameReader, entries: list[dict], timeline: list[int],
                   size: tuple[int, int], rate, streamed: dict | None, plan: list[tuple[int, int, str]],
                   executor: Executor | None = None) -> tuple[EncodeResult, dict[str, int], bool]:
    """Encode each unit of the timeline (``plan``: :func:`_chunk_plan`) as its own closed-GOP
    chunk (``chunks/units/<key>/``, reused while its frames and the settings are unchanged),
    then join them by stream copy with the soundtrack. Chunks that cannot be joined fall back to
    one pass. Returns the video, the chunks' counts (``{"reused": r, "computed": c}``) and whether
    they were joined. ``executor``: where the chunks are encoded (:mod:`artwalk.executors`;
    default here); the join is always here."""
    settings = config.settings(rate)
    silent = dataclasses.replace(settings, audio=None, progress=False)
    store = UnitStore.open(run_dir / CHUNKS)
    name = f"chunk.{config.video_format}"
    chunks, units = [], []
    with progress(total=len(timeline), desc=f"{config.video_format} chunks", unit="frame",
                  enabled=config.progress) as bar:
        for start, end, key in plan:
            part = timeline[start:end]
            if store.lookup(key) is not None:
                bar.update(len(part))
            elif key not in {u.key for u in units}:
                used = sorted(set(part))  # the chunk's own frames, renumbered: all a worker needs to know
                local = [used.index(i) for i in part]
                sub = [entries[i] for i in used]
                units.append(Unit(key, {"frames": [start, end]}, _encode_chunk,
                                  (sub, local, size, bool(streamed),
                                   dataclasses.replace(silent, continued=_continued(config, end, timeline)), name),
                                  tuple(dict.fromkeys(e["path"] for e in sub)), len(part)))
            chunks.append((store.path(key) / name, len(part)))
        for _ in resolve(executor).build(store, run_dir, units, tick=bar.update):
            pass
    store.prune()
    log.info("encode: %d chunk(s), %s", len(chunks), store.summary())
    units = {"reused": store.reused, "computed": store.computed}
    try:
        return concat_chunks(chunks, config.video_path, settings), units, True
    except ValueError as exc:  # chunks that cannot be joined (codec headers differ): one pass instead
        log.warning("warning: the chunks could not be joined (%s): encoding the video in one pass", exc)
        return encode_video(lambda: _timeline_frames(reader, entries, timeline, size, bool(streamed)), len(timeline),
                            size, config.video_path, settings), units, False


def _encode_chunk(unit, root: Path, engine, entries: list[dict], timeline: list[int], size: tuple[int, int],
                  streamed: bool, settings: EncodeSettings, name: str, tick=lambda n=1: None) -> None:
    """One chunk's unit (here or on a worker): ``timeline`` (indices into ``entries``, frames under
    ``root``) encoded as one closed-GOP file."""
    with FrameReader(root) as reader:
        encode_video(lambda: _timeline_frames(reader, entries, timeline, size, streamed), len(timeline), size,
                     unit.folder / name, settings)
    unit.note_file(name)
    tick(len(timeline))


def video_record(config: VideoConfig, verify: bool = True) -> dict:
    """The video's record, when the file beside it is the very video it describes; else {}.
    ``verify=False`` trusts a file of the recorded size without reading it (a reused unit's check)."""
    previous = _read_record(config.record_path)
    return previous if _same_file(config.video_path, previous, verify) else {}


def _cleaned_and_current(config: VideoConfig) -> VideoResult | None:
    """After ``--clean`` the stage folders are gone: the video is up to date when its record
    says it was cleaned and the file is the one recorded (and nothing else was asked)."""
    if (config.run_dir / "frames" / MANIFEST).is_file():
        return None
    previous = video_record(config)
    if not previous.get("cleaned"):
        return None
    asked = key_settings(config)
    if asked != {k: v for k, v in previous.get("config", {}).items() if k in asked}:
        raise StageOrderError(f"{config.run_dir} was cleaned (--clean) after its video was made, so new settings "
                              "cannot be applied: rerun the whole walk")
    log.info("%s is up to date (the run folder was cleaned after it was made): nothing to do", config.video_path)
    fields = previous["result"]
    return VideoResult(path=config.video_path, contact_sheet=config.sheet_path if config.sheet_path.is_file() else None,
                       source=previous.get("source", "frames"), **fields)


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def _same_file(path: Path, record: dict, verify: bool = True) -> bool:
    """True when ``path`` is the very video the record describes (``verify``: its sha256 too)."""
    try:
        size = path.stat().st_size == record["result"]["bytes"]
        return size and (not verify or sha256_file(path) == record["sha256"])
    except (OSError, KeyError, TypeError):
        return False


def _fps_text(rate) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{float(rate):.3f}"


def choose_source(run_dir: Path, source: str) -> tuple[str, dict]:
    """Pick the frames to encode: ``upscaled`` when stage 3 was run (``auto``), else ``frames``.

    An ``upscaled/`` made from an older ``frames/`` is never encoded in its place, nor
    silently skipped for frames of the wrong size: it is an error that says what to rerun.
    """
    frames_manifest = read_manifest(run_dir, "frames")
    check_frames_current(run_dir, frames_manifest)
    if source == "frames" or (source == "auto" and not (run_dir / "upscaled" / MANIFEST).is_file()):
        return "frames", frames_manifest
    upscaled = read_manifest(run_dir, "upscaled")
    if upscaled.get("upstream") != sha256_file(run_dir / "frames" / MANIFEST):
        raise StageOrderError(f"{run_dir / 'upscaled'} is out of date (made from an older frames/ manifest); "
                              f"rerun `{STAGE_DIRS['upscaled']}`, or encode the frames as they are with "
                              "--source frames")
    return "upscaled", upscaled


def check_manifest(
    run_dir: Path, stage: str, manifest: dict
) -> tuple[list[dict], list[int], tuple[int, int], float]:
    """Validate a frames/upscaled manifest: (frame entries, timeline, (w, h), fps)."""
    where = run_dir / stage / MANIFEST
    redo = f"rerun `{STAGE_DIRS[stage]}`"
    try:
        fps = float(manifest["fps"])
        width, height = (int(v) for v in manifest["size"])
        entries = manifest["frames"]
        timeline = [int(i) for i in manifest["timeline"]]
        rels = [PurePosixPath(entry["path"]) for entry in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise StageOrderError(f"{where}: malformed manifest ({type(exc).__name__}: {exc}); {redo}") from None
    if not (fps > 0 and math.isfinite(fps)):
        raise StageOrderError(f"{where}: fps {fps} is not a positive number; {redo}")
    if width < 1 or height < 1:
        raise StageOrderError(f"{where}: size {width}x{height} is empty; {redo}")
    if not timeline:
        raise StageOrderError(f"{where}: the timeline is empty; {redo}")
    bad = next((i for i in timeline if not 0 <= i < len(rels)), None)
    if bad is not None:
        raise StageOrderError(f"{where}: timeline refers to frame {bad} of {len(rels)}; {redo}")
    for rel in rels:
        if rel.is_absolute() or ".." in rel.parts:
            raise StageOrderError(f"{where}: frame path {rel} leaves the run folder; {redo}")
    return entries, timeline, (width, height), fps


def _timeline_frames(reader: FrameReader, entries: Sequence[dict], timeline: Sequence[int], size: tuple[int, int],
                     streamed: bool = False) -> Iterator[np.ndarray]:
    """The video frame by frame; a held frame is the same (read-only) array again.

    Each run of a repeated index is read once; a few recently used frames stay cached
    (a loop back to the first frame), and the next unique frames are read ahead in a
    background thread while the encoder works (PNG decoding releases the GIL).
    ``streamed``: the frames are stage 2's, resized to ``size`` here by the core's 8-bit resize
    (stage 3's lanczos, which stored nothing), exactly as stage 3 would have written them.
    """

    def load(index: int) -> np.ndarray:
        entry = entries[index]
        path = reader.path(entry)
        rgb = resize_u8(reader.u8(entry), *size) if streamed else reader.u8(entry)
        if (rgb.shape[1], rgb.shape[0]) != size:
            raise StageOrderError(
                f"{path}: frame is {rgb.shape[1]}x{rgb.shape[0]}, the manifest says"
                f" {size[0]}x{size[1]}; rerun the stage that wrote it"
            )
        rgb.flags.writeable = False
        return rgb

    runs = [(index, sum(1 for _ in group)) for index, group in itertools.groupby(timeline)]
    cache: OrderedDict[int, Future] = OrderedDict()  # index -> its (pending) read, LRU order
    pool = ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="frame-reader")
    submitted = 0
    try:
        for k, (index, count) in enumerate(runs):
            while submitted < min(len(runs), k + 1 + _READ_AHEAD):
                ahead = runs[submitted][0]
                if ahead not in cache:
                    cache[ahead] = pool.submit(load, ahead)
                submitted += 1
            rgb = cache[index].result()
            cache.move_to_end(index)
            upcoming = {runs[j][0] for j in range(k + 1, submitted)}
            for victim in [i for i in cache if i not in upcoming and i != index]:
                if len(cache) <= _CACHE_FRAMES + _READ_AHEAD:
                    break
                del cache[victim]
            for _ in range(count):
                yield rgb
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- the encoder
#
# Frames in, one file out: where the videos a user watches are written (FFmpeg, through PyAV).
# Frames come in as RGB uint8 (H, W, 3) arrays from an iterator, one per output frame, and go
# out one at a time: nothing holds the whole video. A caller that repeats a held frame can yield
# the *same array object* again; its colour conversion is then reused.
#
#     frames (RGB uint8, one per video frame) ──► encode_video() ──► video.mp4 | .webm | .gif | chunk
#     soundtrack (wav, mp3, flac, m4a, ogg, ...) ─┘   (AAC in mp4, Opus in webm, none in gif)
#     chunks (closed-GOP mp4 or webm files) + soundtrack ──► concat_chunks() ──► video.mp4 | .webm
#
# Choices, stated once:
#
# * mp4: libx264, yuv420p, BT.709 limited range (tagged), ``+faststart`` (index first, so a
#   browser starts playing before the download ends). H.264 4:2:0 needs even sizes: an odd
#   width/height is **padded** by one column/row that repeats the edge pixels (nothing of the
#   picture is lost; the pad is invisible). VP9 takes odd sizes as they are.
# * webm: libvpx-vp9 constant quality (``crf`` with ``b=0``), row multithreading; the x264
#   preset names map to VP9 ``cpu-used`` (medium -> 4).
# * gif: one global palette in two streaming passes: pass 1 feeds every frame to
#   ``palettegen=stats_mode=full`` (so colours are weighted by screen time), pass 2 maps frames
#   with ``paletteuse`` and ordered (Bayer) dithering. Measured on a 201-frame 480x270 walk
#   against a per-frame palette (``stats_mode=single:new=1``): 5.0 MB vs 17.5 MB, 2.5x faster,
#   temporally stable dither (no crawling noise across motion), 33.5 dB vs 36.6 dB PSNR.
#   Per-frame palettes also defeat the GIF encoder's "only the changed rectangle" coding, so
#   every held frame is stored whole. The GIF loops forever. GIF timing is in 1/100 s, so frame
#   times are rounded to that.
# * Same frames, same bytes, on one machine: the core's encoder_threads() and x264_options()
#   (:mod:`artwalk.video`), and ``+bitexact`` containers.
# * Soundtrack: decoded, resampled to 48 kHz (mono stays mono, more channels become stereo),
#   trimmed to the video's duration, faded out linearly over the last ``audio_fade`` seconds of
#   the video; a shorter soundtrack just ends (no loop, no pad).
#
# The output appears atomically: it is encoded under ``<name>.tmp-<pid>-<random>`` in the same
# folder and renamed when complete; a failure removes the temporary file, and a temporary file
# left by a killed process is removed by the next encode to that name.


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
            last = reformat(av.VideoFrame.from_ndarray(np.ascontiguousarray(src), format="rgb24"),
                            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
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


# --------------------------------------------------------------------------- contact sheet


def grid_shape(n: int) -> tuple[int, int]:
    """(columns, rows) of a contact sheet of n thumbnails: square-ish, at most MAX_COLUMNS wide."""
    cols = max(1, min(MAX_COLUMNS, math.ceil(math.sqrt(n))))
    return cols, max(1, math.ceil(n / cols))


def sheet_size(n: int, frame_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) in pixels of the contact sheet of n keyframes of ``frame_size``."""
    cols, rows = grid_shape(n)
    thumb_h = max(1, round(THUMB_WIDTH * frame_size[1] / frame_size[0]))
    return GAP + cols * (THUMB_WIDTH + GAP), GAP + rows * (thumb_h + LABEL_HEIGHT + GAP)


def write_contact_sheet(run_dir: Path, path: Path) -> Path | None:
    """The keyframes in walk order, in a grid, labelled; None when there is no keyframes manifest."""
    try:
        manifest = read_manifest(run_dir, "keyframes")
        outputs = manifest["outputs"]
        frame_size = (int(manifest["size"][0]), int(manifest["size"][1]))
    except (StageOrderError, KeyError, TypeError, ValueError) as exc:
        log.warning("no contact sheet (%s)", exc)
        return None
    if any(e.get("kind") == "keyframe" for e in outputs):  # a prompt walk: its schedule's keyframes, not every
        outputs = [e for e in outputs if e.get("kind") == "keyframe"]  # diffused frame
    if not outputs:
        log.warning("no contact sheet (the keyframes manifest lists no keyframes)")
        return None
    from PIL import Image, ImageDraw, ImageFont

    width, height = sheet_size(len(outputs), frame_size)
    cols, _ = grid_shape(len(outputs))
    thumb_h = max(1, round(THUMB_WIDTH * frame_size[1] / frame_size[0]))
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    try:  # a font with accented Latin, Greek and Cyrillic: names are drawn as the user wrote them
        font = ImageFont.truetype(str(LABEL_FONT), size=14)
    except (ImportError, OSError):  # Pillow without FreeType
        font = ImageFont.load_default()
    prefix = _order_prefix([str(e.get("source") or "") for e in outputs if e.get("kind") == "original"])
    for i, entry in enumerate(outputs):
        x = GAP + (i % cols) * (THUMB_WIDTH + GAP)
        y = GAP + (i // cols) * (thumb_h + LABEL_HEIGHT + GAP)
        rel = PurePosixPath(entry["path"])
        rgb = read_frame_u8(run_dir.joinpath(*rel.parts))
        thumb = cv2.resize(rgb, (THUMB_WIDTH, thumb_h), interpolation=cv2.INTER_AREA)
        sheet.paste(Image.fromarray(thumb), (x, y))
        original = entry.get("kind") in ("original", "keyframe", "level")
        if entry.get("kind") == "keyframe":  # a prompt keyframe: its frame and prompt
            head, name = f"{entry.get('frame')}:", str(entry.get("prompt", ""))
        elif entry.get("kind") == "level":  # a zoom's level: its index, and its prompt or image
            head, name = f"level {entry.get('level')}:", str(entry.get("prompt") or entry.get("source", ""))
        else:
            head, name = f"{i + 1}", str(entry.get("source") or rel.name)[prefix:] if original else "in-between"
        label = _fit(draw, f"{head} {' '.join(name.split())}", font, THUMB_WIDTH - 4)  # one line
        draw.text((x + 2, y + thumb_h + 5), label, font=font,
                  fill=(235, 235, 235) if original else (150, 150, 150))  # fmt: skip
    save_png(path, np.asarray(sheet))
    log.info("wrote the contact sheet %s (%d keyframes, %dx%d)", path, len(outputs), width, height)
    return path


def _order_prefix(names: list[str]) -> int:
    """The length of an ordering prefix that every original's name has (``0001_`` of the
    studio's input, ``001_`` of a story): the label starts with the keyframe's number already,
    so it shows the name after it. 0 when the names have none, or not all the same width."""
    widths = {len(m.group(0)) if (m := re.match(r"\d{3,}_", n)) else 0 for n in names}
    return widths.pop() if len(widths) == 1 else 0


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


# --------------------------------------------------------------------------- clean


def clean_run_folder(run_dir: Path, keep: Sequence[Path]) -> None:
    """Delete the stage folders (keyframes/, frames/, upscaled/, chunks/) after a successful encode.

    Only those: anything else a user put in the run folder stays, and a stage folder
    that holds one of the kept files (an --output inside it) is not touched.
    """
    keep = [p.resolve() for p in keep]
    removed = []
    for name in STAGE_DIRS:
        folder = (run_dir / name).resolve()
        if not folder.is_dir():
            continue
        if any(p.is_relative_to(folder) for p in keep):
            log.warning("--clean keeps %s/, which holds the output", name)
            continue
        shutil.rmtree(folder)
        removed.append(f"{name}/")
    if removed:
        log.info("--clean: removed %s from %s", ", ".join(removed), run_dir)


# --------------------------------------------------------------------------- CLI


# What stage 4's CLI hands its whole command line to when the work needs other stages (ArtWalks'
# --sec_* flags; upscaled frames an earlier encode freed): the top floor's `artwalk retime`, which
# runs them and this encode in one process. The stage starts no other stage, and imports none.
HAND_OVER = ("pipeline", "retime")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Stage 4's flags, ArtWalks' included; ``artwalk retime`` takes the very same."""
    p.add_argument("run_dir", nargs="?", metavar="OUT", type=Path,
                   help="the run folder written by the earlier stages (or use --input_path/--folder_name)")
    p.add_argument("--input_path", type=Path, metavar="P",
                   help="ArtWalks style: the folder that holds run folders; the run folder is P/F")
    p.add_argument("--folder_name", metavar="F", help="ArtWalks style: the run folder's name inside --input_path")
    add_flags(p, VideoConfig)
    p.add_argument("--walk-key", metavar="KEY", help="the key of the walk these frames were made for, kept in the "
                   "video's record (`artwalk plan --stage-args` gives it to full_pipeline.sh's encode)")
    p.add_argument("--sec_interpolation", type=float, metavar="I",
                   help="ArtWalks style: first the motion stage again with I seconds per transition, keeping its "
                   "other settings, then the upscale as the run had it (by `artwalk retime`; unchanged work is "
                   "reused)")
    p.add_argument("--sec_freeze", type=float, metavar="F",
                   help="ArtWalks style: first the motion stage again holding each original F seconds, keeping its "
                   "other settings (by `artwalk retime`)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="generate_videos.py",
        description="Stage 4: encode a run folder's timeline into one video (mp4, webm or gif),"
        " with an optional soundtrack, and write a contact sheet of its keyframes beside it. With"
        " --sec_interpolation/--sec_freeze, or when upscaled frames an earlier encode freed are needed"
        " again, the command is handed to `artwalk retime`, which runs those stages and this encode.",
    )
    add_arguments(p)
    add_common_flags(p)
    return p


def _run_dir(args: argparse.Namespace) -> Path:
    if args.input_path is not None or args.folder_name is not None:
        if args.run_dir is not None:
            raise ConfigError("give the run folder once: OUT or --input_path/--folder_name, not both")
        return Path(args.input_path or ".") / (args.folder_name or "")
    if args.run_dir is None:
        raise ConfigError("no run folder: pass OUT (or --input_path P --folder_name F)")
    return args.run_dir


def config_from_args(args: argparse.Namespace) -> VideoConfig:
    return from_args(VideoConfig, args, run_dir=_run_dir(args), progress=not args.quiet)


def retiming(args: argparse.Namespace) -> dict[str, float]:
    """ArtWalks' ``--sec_interpolation``/``--sec_freeze`` as given (motion settings by name), checked."""
    given = {name: value for name in ("sec_interpolation", "sec_freeze")
             if (value := getattr(args, name, None)) is not None}
    for name, value in given.items():
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"--{name} must be zero or more seconds, got {value}")
    return given


def hand_over(argv: Sequence[str], why: str) -> NoReturn:
    """Replace this process with ``python -m pipeline retime ARGV`` (:data:`HAND_OVER`): the top
    floor composes the stages this command needs, in one process. Its exit code is this command's."""
    log.info("%s: handing the command to the top floor: artwalk retime %s", why, shlex.join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", *HAND_OVER, *argv])


def _main(args: argparse.Namespace, argv: Sequence[str], own: bool) -> None:
    """``own``: ``argv`` is this process's command line, which may be handed over; a caller in
    Python (``main([...])``) keeps its process, and is told what to run instead."""
    config = config_from_args(args)  # every flag checked before anything runs or is handed over
    if retiming(args):
        why = "--sec_interpolation/--sec_freeze: the motion stage runs again first"
        if not own:
            raise ConfigError(f"{why}, which is the top floor's work: run `artwalk retime {shlex.join(argv)}`")
        hand_over(argv, why)
    check(config)
    restore = None if not own else lambda run_dir, indices: hand_over(
        argv, f"{len(indices)} upscaled frame(s) must be upscaled again by stage 3 first")
    run(config, walk_key=args.walk_key, restore=restore)


def exit_on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C (so a temporary video is removed), where a signal can be set."""
    try:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    except ValueError:  # not the main thread
        pass


def _raise_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the temporary video is removed


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: flags -> :class:`VideoConfig` -> :func:`run`; errors are one line. A command line
    that needs other stages replaces this process with ``artwalk retime`` (:func:`hand_over`);
    given ``argv`` (a caller in Python), it is an error that says what to run."""
    exit_on_sigterm()
    own = argv is None
    argv = [str(a) for a in (sys.argv[1:] if own else argv)]
    return run_cli(lambda args: _main(args, argv, own), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
