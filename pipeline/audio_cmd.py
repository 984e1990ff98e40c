"""``artwalk audio``: a song's keyframe events, for a frame rate.

    artwalk audio SONG [--fps 24] [--component percussive|harmonic|both] [--on onsets|beats]
                       [--json] [--schedule OUT.txt]

One line per event, ``FRAME: timestamp: SECONDS``, from frame 0; ``--json`` prints them
as a list of {frame, time, strength}; ``--schedule`` writes a prompt-schedule skeleton
with a line on each event's frame. The analysis is :mod:`artwalk.audio`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from artwalk import audio
from artwalk.cli import add_common_flags
from artwalk.config import finite_float
from artwalk.errors import ConfigError, InputError
from artwalk.fsutil import atomic_write_bytes, check_writable, make_dir
from artwalk.timeline import MAX_FPS


def skeleton(events: list[audio.Event], song: Path) -> str:
    """A schedule with a placeholder prompt on each event's frame, ready to fill in."""
    lines = [f"# keyframes on {song.name}; write a prompt on each line (see `artwalk schedule`)"]
    lines += [f"{e.frame}: prompt {i + 1}    # {e.time:.3f} s, strength {e.strength:.2f}" for i, e in enumerate(events)]
    return "\n".join(lines) + "\n"


def audio_command(args: argparse.Namespace) -> None:
    if not 0 < args.fps <= MAX_FPS:
        raise ConfigError(f"--fps must be a number in (0, {MAX_FPS:g}], got {args.fps:g}")
    if args.schedule is not None:  # before the analysis: a schedule that cannot be written is one line
        if args.schedule.is_dir():
            raise InputError(f"--schedule {args.schedule}: is a folder; give a file path")
        make_dir(args.schedule.parent, "folder of --schedule")
        check_writable(args.schedule.parent, "folder of --schedule")
    events = audio.song_events(args.song, args.fps, args.component, args.on)
    if args.schedule is not None:
        try:
            atomic_write_bytes(args.schedule, skeleton(events, args.song).encode("utf-8"))
        except OSError as exc:
            raise InputError(f"--schedule {args.schedule}: cannot write it ({exc.strerror or exc})") from None
    if args.json:
        print(json.dumps([{"frame": e.frame, "time": round(e.time, 6), "strength": e.strength} for e in events]))
    else:
        print("".join(f"{e.frame}: timestamp: {e.time:.3f}\n" for e in events), end="")


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``audio`` on the ``artwalk`` command's subparsers."""
    p = subparsers.add_parser(
        "audio", help="print a song's onsets or beats as keyframe frames for a frame rate",
        description="Find keyframe events in SONG (any format PyAV decodes): separate its percussive and harmonic "
        "parts (HPSS), then detect onsets, or track beats, in the chosen part. One line per event, 'FRAME: "
        "timestamp: SECONDS', from frame 0; an event's frame is round(time * fps), from its absolute time, so "
        "a long song never drifts.")
    p.add_argument("song", type=Path, metavar="SONG", help="the audio file (mp3, m4a, ogg, flac, wav, ...)")
    p.add_argument("--fps", type=finite_float, default=24.0, help="frames per second of the video (default 24)")
    p.add_argument("--component", choices=audio.COMPONENTS, default=audio.DEFAULT_COMPONENT,
                   help=f"which part of the sound to follow (default {audio.DEFAULT_COMPONENT}, as --sync-audio)")
    p.add_argument("--on", choices=audio.ON, default=audio.DEFAULT_ON, help="onsets (every attack) or beats (the "
                   f"tracked tempo) (default {audio.DEFAULT_ON}, as --sync-audio)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {frame, time, strength} instead")
    p.add_argument("--schedule", type=Path, metavar="OUT.txt", help="also write a prompt-schedule skeleton with "
                   "a line on each event's frame")
    add_common_flags(p)
    p.set_defaults(func=audio_command)
    return p
