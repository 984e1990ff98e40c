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
too.

A neural upscale's frames (an ``upscaled/`` manifest that says ``release``) are freed once
the chunks hold them, so the chunks are their only copy. When a chunk must be encoded
again (other settings, another format) and its frames were freed, stage 3 is asked to
upscale exactly those again first (``python -m super_resolution OUT --keep-settings
--restore ...``; the walk does it in its own process, with the engine it has loaded).

    python generate_videos.py OUT [--format mp4|webm|gif] [--audio song.mp3] [--clean]

ArtWalks' flags still work (in the CLI, :func:`main`): ``--input_path P --folder_name
F`` names the run folder P/F, and ``--sec_interpolation``/``--sec_freeze`` first rerun
the motion stage with only those settings changed (then stage 3 when the run had one),
each reusing whatever has not changed.

``check(config)`` checks what needs no earlier stage; ``run(VideoConfig(...)) -> VideoResult``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

import artwalk
from artwalk.cli import Parser, add_common_flags, run_cli
from artwalk.config import add_flags, from_args, key_settings, ranges_text, record, setting
from artwalk.errors import ConfigError, InputError, StageOrderError
from artwalk.executors import Executor, Unit, resolve
from artwalk.fsutil import check_writable, human_bytes, sha256_file, write_json_once
from artwalk.framestore import FrameReader
from artwalk.progress import progress
from artwalk.images import read_frame_u8, resize_u8, save_png
from artwalk.runfolder import MANIFEST, STAGE_DIRS, UnitStore, cache_key, check_frames_current, read_manifest, \
    release, run_lock
from artwalk.video import (
    FORMATS,
    X264_PRESETS,
    EncodeResult,
    EncodeSettings,
    check_gif_fps,
    concat_chunks,
    encode_video,
    format_for,
    fps_fraction,
    probe_audio,
)

log = logging.getLogger(__name__)

SOURCES = ("auto", "frames", "upscaled")
_REPO_ROOT = Path(__file__).resolve().parent
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


def run(config: VideoConfig, executor: Executor | None = None, restore: Restore | None = None) -> VideoResult:
    """Encode the run folder's timeline into ``config.video_path`` (see the module docstring);
    ``executor`` (:mod:`artwalk.executors`): where the chunks are encoded (default: here);
    ``restore``: how frames that an earlier encode released come back (default: an error
    that says what to run)."""
    for attempt in range(2):
        try:
            return _run(config, executor)
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


def _run(config: VideoConfig, executor: Executor | None) -> VideoResult:
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
            "sha256": sha256_file(output), "result": result_fields, "walk_key": _walk_key(run_dir),
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
    ``continued`` (:data:`artwalk.video.CONTINUED_TAIL`). Cut instead where keyframes leave
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


def _walk_key(run_dir: Path) -> str | None:
    """The walk's key from OUT/walk.json (its plan), so a cleaned walk can be found up to date."""
    return _read_record(run_dir / "walk.json").get("walk_key")


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


# --------------------------------------------------------------------------- ArtWalks' re-timing


def retime(run_dir: Path, sec_interpolation: float | None, sec_freeze: float | None) -> None:
    """ArtWalks' ``--sec_interpolation``/``--sec_freeze``: rerun the motion stage with only
    those settings changed (``--keep-settings``), then stage 3 if the run had one, so that
    the video is made at the run's own size. Each reuses every unchanged unit."""
    given = [("--sec_interpolation", sec_interpolation), ("--sec_freeze", sec_freeze)]
    _stage(["frame_interpolation", str(run_dir), "--keep-settings"]
           + [f"{flag}={value!r}" for flag, value in given if value is not None], "motion")
    if (run_dir / "upscaled" / MANIFEST).is_file():
        _stage(["super_resolution", str(run_dir), "--keep-settings"], "upscale")


def restore_with_stage_3(run_dir: Path, indices: list[int], quiet: bool = False) -> None:
    """Stage 3 run again on ``run_dir`` with its own settings, to upscale the released
    frames ``indices`` once more (the CLI's :data:`Restore`)."""
    _stage(["super_resolution", str(run_dir), "--keep-settings", "--restore", ranges_text(indices)]
           + (["-q"] if quiet else []), "upscale")


def _stage(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", *args]
    shown = " ".join(["python", "-m", *args])
    log.info("running the %s stage first: %s", what, shown)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code != 0:  # it has said why, in its one line: exit with its code and add none
        raise SystemExit(code if 0 < code < 256 else 1)


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


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="generate_videos.py",
        description="Stage 4: encode a run folder's timeline into one video (mp4, webm or gif),"
        " with an optional soundtrack, and write a contact sheet of its keyframes beside it.",
    )
    p.add_argument("run_dir", nargs="?", metavar="OUT", type=Path,
                   help="the run folder written by the earlier stages (or use --input_path/--folder_name)")
    p.add_argument("--input_path", type=Path, metavar="P",
                   help="ArtWalks style: the folder that holds run folders; the run folder is P/F")
    p.add_argument("--folder_name", metavar="F", help="ArtWalks style: the run folder's name inside --input_path")
    add_flags(p, VideoConfig)
    p.add_argument("--sec_interpolation", type=float, metavar="I",
                   help="ArtWalks style: first rerun the motion stage with I seconds per transition, keeping its "
                   "other settings (unchanged work is reused)")
    p.add_argument("--sec_freeze", type=float, metavar="F",
                   help="ArtWalks style: first rerun the motion stage holding each original F seconds, keeping its "
                   "other settings")
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


def _main(args: argparse.Namespace) -> None:
    config = config_from_args(args)  # every flag checked before the motion stage reruns
    for flag, value in (("--sec_interpolation", args.sec_interpolation), ("--sec_freeze", args.sec_freeze)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{flag} must be zero or more seconds, got {value}")
    check(config)
    if args.sec_interpolation is not None or args.sec_freeze is not None:
        retime(config.run_dir, args.sec_interpolation, args.sec_freeze)
    run(config, restore=lambda run_dir, indices: restore_with_stage_3(run_dir, indices, args.quiet))


def _raise_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the temporary video is removed


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: flags -> :class:`VideoConfig` -> :func:`run`; errors are one line."""
    try:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    except ValueError:  # not the main thread
        pass
    return run_cli(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
