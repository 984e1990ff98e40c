"""Stage 4: one encode of the timeline into a video (mp4, webm or gif), with a soundtrack.

Reads the frames of stage 3 (``upscaled/``) when they are up to date with stage 2,
else those of stage 2 (``frames/``), and writes the video and a contact sheet of the
keyframes beside it::

    OUT/                                    OUT/
      keyframes/manifest.json  ─┐             <name>.mp4             the walk (or --output)
      frames/manifest.json     ─┼──────►      <name>_keyframes.png   the keyframes in a grid
      upscaled/manifest.json   ─┘             <name>.video.json      its config and cache key
                                              (--clean: keyframes/, frames/, upscaled/ removed)

The manifests' ``timeline`` lists the video frame by frame as indices into their
``frames``; a held frame is a repeated index. Each unique frame is read once (a
small cache covers the repeats) and frames stream through the encoder, so memory
does not grow with the length of the video. The file appears atomically: a failed
or killed encode leaves nothing at the final name. A rerun whose frames, soundtrack
and settings are unchanged finds the video up to date and does nothing.

    python generate_videos.py OUT [--format mp4|webm|gif] [--audio song.mp3] [--clean]

ArtWalks' flags still work: ``--input_path P --folder_name F`` names the run folder
P/F, and ``--sec_interpolation``/``--sec_freeze`` first (re)run the motion stage,
``python -m frame_interpolation``, which reuses whatever has not changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import cv2
import numpy as np

from artwalk.cli import add_common_flags, run_cli
from artwalk.errors import ConfigError, StageOrderError
from artwalk.fsutil import atomic_write_json, human_bytes
from artwalk.images import read_frame_u8, save_png
from artwalk.runfolder import (
    MANIFEST, STAGE_DIRS, cache_key, check_frames_current, config_dict, read_manifest, sha256_file,
)
from artwalk.video import (
    FORMATS,
    X264_PRESETS,
    EncodeSettings,
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


@dataclass(frozen=True)
class VideoConfig:
    """Everything stage 4 needs. ``output=None``: ``<run_dir>/<run_dir name>.<format>``;
    ``format=None``: from the output's extension, else mp4."""

    run_dir: Path
    output: Path | None = None
    format: str | None = None
    crf: int = 18
    preset: str = "medium"
    audio: Path | None = None
    audio_fade: float = 2.0
    source: str = "auto"
    contact_sheet: bool = True
    clean: bool = False
    progress: bool = True
    # When either is set, the motion stage runs first (as a subprocess) with these.
    sec_interpolation: float | None = None
    sec_freeze: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.output is not None:
            object.__setattr__(self, "output", Path(self.output))
        if self.audio is not None:
            object.__setattr__(self, "audio", Path(self.audio))
        if self.source not in SOURCES:
            raise ConfigError(f"unknown --source '{self.source}' (choose from {', '.join(SOURCES)})")
        for name in ("sec_interpolation", "sec_freeze"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"--{name} must be zero or more seconds, got {value}")
        self.settings(fps_fraction(24.0))  # validates format, crf, preset, fade

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
        """``<video stem>.video.json``: the config and the key of what the video was made from."""
        return self.video_path.with_name(f"{self.video_path.stem}.video.json")

    @property
    def sheet_path(self) -> Path:
        return self.video_path.with_name(f"{self.video_path.stem}_keyframes.png")

    def settings(self, fps) -> EncodeSettings:
        return EncodeSettings(
            format=self.video_format, fps=fps, crf=self.crf, preset=self.preset,
            audio=self.audio, audio_fade=self.audio_fade, progress=self.progress,
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


# --------------------------------------------------------------------------- run


def run(config: VideoConfig) -> VideoResult:
    """Encode the run folder's timeline into ``config.video_path`` (see the module docstring)."""
    started = time.monotonic()
    run_dir = config.run_dir
    output, fmt = config.video_path, config.video_format
    if not run_dir.is_dir():
        raise StageOrderError(f"{run_dir}: run folder does not exist")
    if config.audio is not None and fmt != "gif":
        info = probe_audio(config.audio)
        log.info("soundtrack %s: %s, %d Hz, %d channel(s)%s", info.path.name, info.codec,
                 info.sample_rate, info.channels,
                 f", {info.duration_s:.1f} s" if info.duration_s else "")  # fmt: skip
    if config.sec_interpolation is not None or config.sec_freeze is not None:
        run_motion_stage(run_dir, config.sec_interpolation, config.sec_freeze)

    source, manifest = choose_source(run_dir, config.source)
    frame_paths, timeline, (width, height), fps = check_manifest(run_dir, source, manifest)
    rate = fps_fraction(fps)
    log.info(
        "encoding %d frames (%d unique) of %dx%d at %s fps from %s/ into %s (%s)",
        len(timeline), len(set(timeline)), width, height, _fps_text(rate), source, output, fmt,
    )  # fmt: skip

    def frames() -> Iterator[np.ndarray]:
        return _timeline_frames(frame_paths, timeline, (width, height))

    # The video's record beside it: its config, and a key of everything it was made from.
    record_path = config.record_path
    key = cache_key(
        source=source, manifest=sha256_file(run_dir / source / MANIFEST),
        audio=sha256_file(config.audio) if config.audio is not None and fmt != "gif" else None,
        settings={k: str(v) for k, v in config_dict(config, drop=_NOT_IN_KEY).items()},
    )  # fmt: skip
    previous = _read_record(record_path)
    sheet_ok = not config.contact_sheet or config.sheet_path.is_file()
    if previous.get("key") == key and sheet_ok and _same_file(output, previous):
        log.info("%s is up to date with %s/ and the settings: nothing to do", output, source)
        sheet = config.sheet_path if config.contact_sheet else None
        encoded_seconds, result_fields = 0.0, previous["result"]
    else:
        encoded = encode_video(frames, len(timeline), (width, height), output, config.settings(rate))
        sheet = write_contact_sheet(run_dir, config.sheet_path) if config.contact_sheet else None
        encoded_seconds = encoded.seconds
        result_fields = {"frames": encoded.frames, "duration_s": encoded.duration_s, "width": encoded.width,
                         "height": encoded.height, "bytes": encoded.bytes, "audio_s": encoded.audio_s}
        atomic_write_json(record_path, {
            "stage": "video", "key": key, "config": config_dict(config), "source": source,
            "video": output.name, "sha256": sha256_file(output), "result": result_fields,
        })  # fmt: skip
    if config.clean:
        clean_run_folder(run_dir, keep=[output, config.sheet_path, record_path])

    result = VideoResult(
        path=output, contact_sheet=sheet, source=source, fps=float(rate),
        seconds=time.monotonic() - started, **result_fields,
    )  # fmt: skip
    if encoded_seconds:
        log.info(
            "wrote %s: %d frames, %.2f s at %s fps, %dx%d, %s%s (encoded in %.1f s)",
            output, result.frames, result.duration_s, _fps_text(rate), result.width, result.height,
            human_bytes(result.bytes), ", with sound" if result.audio_s else "", encoded_seconds,
        )  # fmt: skip
    return result


# Settings that do not change the video's bytes.
_NOT_IN_KEY = ("run_dir", "progress", "clean", "contact_sheet", "sec_interpolation", "sec_freeze", "source")


def _read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def _same_file(path: Path, record: dict) -> bool:
    """True when ``path`` is the very video the record describes."""
    try:
        return path.stat().st_size == record["result"]["bytes"] and sha256_file(path) == record["sha256"]
    except (OSError, KeyError, TypeError):
        return False


def _fps_text(rate) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{float(rate):.3f}"


def choose_source(run_dir: Path, source: str) -> tuple[str, dict]:
    """Pick the frames to encode: ``upscaled`` when its manifest was made from the
    current ``frames`` manifest (for ``auto``), else ``frames``."""
    frames_manifest = read_manifest(run_dir, "frames")
    check_frames_current(run_dir, frames_manifest)
    if source == "frames":
        return "frames", frames_manifest
    upscaled_path = run_dir / "upscaled" / MANIFEST
    if source == "auto" and not upscaled_path.is_file():
        return "frames", frames_manifest
    try:
        upscaled = read_manifest(run_dir, "upscaled")
    except StageOrderError as exc:
        if source == "upscaled":
            raise
        log.warning("ignoring upscaled/: %s", exc)
        return "frames", frames_manifest
    if upscaled.get("upstream") == sha256_file(run_dir / "frames" / MANIFEST):
        return "upscaled", upscaled
    why = f"{upscaled_path.parent} is out of date (made from an older frames/ manifest)"
    if source == "upscaled":
        raise StageOrderError(f"{why}; rerun `{STAGE_DIRS['upscaled']}` or use --source frames")
    log.warning("ignoring %s; encoding frames/ instead (rerun `%s` to upscale)",
                why, STAGE_DIRS["upscaled"])  # fmt: skip
    return "frames", frames_manifest


def check_manifest(
    run_dir: Path, stage: str, manifest: dict
) -> tuple[list[Path], list[int], tuple[int, int], float]:
    """Validate a frames/upscaled manifest: (frame paths, timeline, (w, h), fps)."""
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
    return [run_dir.joinpath(*rel.parts) for rel in rels], timeline, (width, height), fps


def _timeline_frames(paths: Sequence[Path], timeline: Sequence[int], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The video frame by frame; a held frame is the same (read-only) array again.

    Each run of a repeated index is read once; a few recently used frames stay cached
    (a loop back to the first frame), and the next unique frames are read ahead in a
    background thread while the encoder works (PNG decoding releases the GIL).
    """

    def load(index: int) -> np.ndarray:
        path = paths[index]
        rgb = read_frame_u8(path)
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


# --------------------------------------------------------------------------- motion stage


def run_motion_stage(run_dir: Path, sec_interpolation: float | None, sec_freeze: float | None) -> None:
    """Run ``python -m frame_interpolation RUN_DIR ...`` (it reuses unchanged work)."""
    cmd = [sys.executable, "-m", "frame_interpolation", str(run_dir)]
    if sec_interpolation is not None:
        cmd += ["--sec_interpolation", _number(sec_interpolation)]
    if sec_freeze is not None:
        cmd += ["--sec_freeze", _number(sec_freeze)]
    shown = " ".join(["python"] + cmd[1:])
    log.info("running the motion stage first: %s", shown)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code != 0:
        err = StageOrderError(f"the motion stage failed (exit {code}): `{shown}`; see its message above")
        err.exit_code = code if 0 < code < 256 else 1
        raise err


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


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
    if not outputs:
        log.warning("no contact sheet (the keyframes manifest lists no keyframes)")
        return None
    from PIL import Image, ImageDraw, ImageFont

    width, height = sheet_size(len(outputs), frame_size)
    cols, _ = grid_shape(len(outputs))
    thumb_h = max(1, round(THUMB_WIDTH * frame_size[1] / frame_size[0]))
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=15)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType
        font = ImageFont.load_default()
    for i, entry in enumerate(outputs):
        x = GAP + (i % cols) * (THUMB_WIDTH + GAP)
        y = GAP + (i // cols) * (thumb_h + LABEL_HEIGHT + GAP)
        rel = PurePosixPath(entry["path"])
        rgb = read_frame_u8(run_dir.joinpath(*rel.parts))
        thumb = cv2.resize(rgb, (THUMB_WIDTH, thumb_h), interpolation=cv2.INTER_AREA)
        sheet.paste(Image.fromarray(thumb), (x, y))
        original = entry.get("kind") == "original"
        name = str(entry.get("source") or rel.name) if original else "in-between"
        label = _fit(draw, f"{i + 1}  {name}", font, THUMB_WIDTH - 4)
        draw.text((x + 2, y + thumb_h + 5), label, font=font,
                  fill=(235, 235, 235) if original else (150, 150, 150))  # fmt: skip
    save_png(path, np.asarray(sheet))
    log.info("wrote the contact sheet %s (%d keyframes, %dx%d)", path, len(outputs), width, height)
    return path


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


# --------------------------------------------------------------------------- clean


def clean_run_folder(run_dir: Path, keep: Sequence[Path]) -> None:
    """Delete the stage folders (keyframes/, frames/, upscaled/) after a successful encode.

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
    p = argparse.ArgumentParser(
        prog="generate_videos.py",
        description="Stage 4: encode a run folder's timeline into one video (mp4, webm or gif),"
        " with an optional soundtrack, and write a contact sheet of its keyframes beside it.",
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", type=Path,
                   help="the run folder written by the earlier stages (or use --input_path/--folder_name)")
    p.add_argument("--input_path", type=Path, metavar="P",
                   help="ArtWalks style: the folder that holds run folders; the run folder is P/F")
    p.add_argument("--folder_name", metavar="F", help="ArtWalks style: the run folder's name inside --input_path")
    p.add_argument("-o", "--output", type=Path, metavar="PATH",
                   help="the video to write (default: RUN_DIR/<run folder name>.mp4, or .webm/.gif with --format)")
    p.add_argument("--format", choices=FORMATS, type=str.lower,
                   help="mp4 (H.264 + AAC), webm (VP9 + Opus) or gif (no sound); default: from"
                   " --output's extension, else mp4")
    p.add_argument("--crf", type=int, default=18,
                   help="constant quality, lower is better and bigger: 0-51 for mp4, 0-63 for webm"
                   " (default 18, visually lossless); ignored for gif")
    p.add_argument("--preset", default="medium", choices=X264_PRESETS, metavar="PRESET",
                   help="speed/size trade-off, x264 names from ultrafast to veryslow (default"
                   " medium); for webm it maps to VP9 cpu-used; ignored for gif")
    p.add_argument("--audio", type=Path, metavar="FILE",
                   help="soundtrack (wav, mp3, flac, m4a, ogg, ...): trimmed to the video and faded"
                   " out; AAC in mp4, Opus in webm; gif drops it with a warning")
    p.add_argument("--audio-fade", type=float, default=2.0, metavar="SECONDS",
                   help="fade the soundtrack out over the video's last SECONDS (default 2.0;"
                   " never longer than the video; 0 for none)")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="frames to encode: upscaled/ (stage 3) or frames/ (stage 2); auto (default)"
                   " takes upscaled/ when it is up to date with frames/")
    p.add_argument("--no-contact-sheet", dest="contact_sheet", action="store_false",
                   help="do not write <video name>_keyframes.png, the keyframes in a grid")
    p.add_argument("--sec_interpolation", type=float, metavar="I",
                   help="ArtWalks style: first (re)run the motion stage with I seconds per"
                   " transition (unchanged work is reused)")
    p.add_argument("--sec_freeze", type=float, metavar="F",
                   help="ArtWalks style: first (re)run the motion stage holding each original F seconds")
    p.add_argument("--clean", action="store_true",
                   help="after a successful encode, delete keyframes/, frames/ and upscaled/ from the"
                   " run folder (the video, its contact sheet, its .video.json and walk.json stay)")
    add_common_flags(p)  # --quiet, --verbose
    return p


def config_from_args(args: argparse.Namespace) -> VideoConfig:
    if args.input_path is not None or args.folder_name is not None:
        if args.run_dir is not None:
            raise ConfigError("give the run folder once: RUN_DIR or --input_path/--folder_name, not both")
        run_dir = Path(args.input_path or ".") / (args.folder_name or "")
    elif args.run_dir is not None:
        run_dir = args.run_dir
    else:
        raise ConfigError("no run folder: pass RUN_DIR (or --input_path P --folder_name F)")
    return VideoConfig(
        run_dir=run_dir, output=args.output, format=args.format, crf=args.crf,
        preset=args.preset, audio=args.audio, audio_fade=args.audio_fade, source=args.source,
        contact_sheet=args.contact_sheet, clean=args.clean, progress=not args.quiet,
        sec_interpolation=args.sec_interpolation, sec_freeze=args.sec_freeze,
    )  # fmt: skip


def _raise_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the temporary video is removed


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: flags -> :class:`VideoConfig` -> :func:`run`; errors are one line."""
    try:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
    except ValueError:  # not the main thread
        pass
    return run_cli(lambda args: run(config_from_args(args)), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
