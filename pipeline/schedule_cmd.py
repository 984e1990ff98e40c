"""``artwalk schedule``: how every frame of a schedule is understood.

    artwalk schedule [FILE_OR_TEXT] [--frames N] [--fps F] [--seed S]
                     [--numeric SCHED ...] [--guidance SCHED] [--seed-schedule SCHED] [--json]

FILE_OR_TEXT is a prompt schedule (a file, or the schedule itself); ``--numeric`` (any
number of times), ``--guidance`` and ``--seed-schedule`` are numeric schedules. For each
frame 0..N-1 it prints the two keyframes around it and the blend between them, the mix
of prompts with their weights, the negative prompt and the seed (the nearer keyframe's),
and every numeric schedule's value: a table, or with ``--json`` a JSON list with one
object per frame (README, "Schedules"). N defaults to the last keyframe + 1. The
language itself lives in :mod:`artwalk.schedule`; a bad schedule is one ``error:`` line.
"""

from __future__ import annotations

import argparse
import json

from artwalk.cli import add_common_flags
from artwalk.config import finite_float, integer
from artwalk.errors import ConfigError
from artwalk.schedule import NumericSchedule, PromptKey, PromptSchedule, keyframe_seed, parse_numeric, read_prompts


def add_command(subparsers) -> None:
    """Register ``schedule`` on the ``artwalk`` command line."""
    p = subparsers.add_parser(
        "schedule", help="show how a prompt or numeric schedule is read, frame by frame",
        description="Print, for each frame, the keyframes around it and their blend, the prompt mix with its "
        "weights, the negative prompt, the seed, and every numeric schedule's value. Prompt lines are "
        "'FRAME: text' (FRAME an integer, seconds like 2.5s, or a quoted max_f expression; 'a | b:0.5' mixes "
        "prompts; '--neg text' is the negative); numeric schedules are Deforum's '0:(7.5), 30:(12 + sin(t))'.")
    p.add_argument("schedule", nargs="?", metavar="FILE_OR_TEXT",
                   help="a prompt schedule: a file, or the schedule's text itself")
    p.add_argument("--frames", type=integer, metavar="N",
                   help="how many frames (default: the last keyframe + 1; needed for max_f and numeric-only)")
    p.add_argument("--fps", type=finite_float, default=24.0, help="frames per second, for keys in seconds "
                   "(default 24)")
    p.add_argument("--seed", type=integer, default=0, help="the walk's seed (the variable s; default 0)")
    p.add_argument("--numeric", action="append", default=[], metavar="SCHED",
                   help="a numeric schedule to show; may be given several times")
    p.add_argument("--guidance", metavar="SCHED", help="the guidance scale's schedule")
    p.add_argument("--seed-schedule", metavar="SCHED",
                   help="the keyframes' seeds: its value at each keyframe, as an integer, instead of the seed "
                   "drawn from --seed and the prompt's text")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per frame")
    add_common_flags(p)
    p.set_defaults(func=show_schedule)


def show_schedule(args: argparse.Namespace) -> None:
    """Parse every schedule the flags give and print each frame, as a table or as JSON."""
    if args.fps <= 0:
        raise ConfigError(f"--fps must be above 0, got {args.fps}")
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be at least 1, got {args.frames}")
    prompts = None
    if args.schedule is not None:
        prompts = read_prompts(args.schedule, fps=args.fps, max_frames=args.frames)
    elif not (args.numeric or args.guidance or args.seed_schedule):
        raise ConfigError("nothing to show: give a prompt schedule FILE_OR_TEXT or a --numeric schedule")
    frames = args.frames
    if frames is None and prompts is not None:
        frames = prompts.last_frame + 1
    if frames is None:
        raise ConfigError("--frames N is needed to show numeric schedules without a prompt schedule")

    def numeric(text: str, source: str) -> NumericSchedule:
        return parse_numeric(text, fps=args.fps, max_frames=frames, source=source)

    several = len(args.numeric) > 1
    numerics = [numeric(text, f"--numeric #{i}" if several else "--numeric") for i, text in enumerate(args.numeric, 1)]
    guidance = numeric(args.guidance, "--guidance") if args.guidance is not None else None
    seeds = numeric(args.seed_schedule, "--seed-schedule") if args.seed_schedule is not None else None
    rows = frame_rows(frames, args.fps, args.seed, prompts, numerics, guidance, seeds)
    if args.json:
        print("[\n" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n]")  # a frame a line
    else:
        width = len(str(frames - 1))
        print("\n".join(format_row(row, width) for row in rows))


def frame_rows(frames: int, fps: float, seed: int, prompts: PromptSchedule | None, numerics: list[NumericSchedule],
               guidance: NumericSchedule | None, seeds: NumericSchedule | None) -> list[dict]:
    """One JSON-ready object per frame (the shape is in README, "Schedules")."""
    values = [n.values(frames, seed) for n in numerics]
    guide = guidance.values(frames, seed) if guidance else None
    seed_values = seeds.values(frames, seed) if seeds else None

    def seed_of(key: PromptKey) -> int:
        return keyframe_seed(seed, key) if seed_values is None else _as_seed(seed_values[key.frame])

    def keyframe(key: PromptKey) -> dict:
        return {"frame": key.frame, "prompts": [{"text": p.text, "weight": p.weight} for p in key.parts],
                "negative": key.negative, "seed": seed_of(key)}

    rows = []
    for i in range(frames):
        row: dict = {"frame": i, "time": i / fps}
        if prompts is not None:
            a, b, blend = prompts.at(i)
            nearer = prompts.keys[a if blend < 0.5 else b]
            row.update({"from": keyframe(prompts.keys[a]), "to": keyframe(prompts.keys[b]), "blend": blend,
                        "prompts": [{"text": p.text, "weight": p.weight} for p in prompts.mix(i)],
                        "negative": nearer.negative, "seed": seed_of(nearer)})
        elif seed_values is not None:
            row["seed"] = _as_seed(seed_values[i])
        if guide is not None:
            row["guidance"] = guide[i]
        if values:
            row["value"] = values[0][i]
            row["values"] = [v[i] for v in values]
        rows.append(row)
    return rows


def _as_seed(value: float) -> int:
    """A seed schedule's value as a seed: truncated to an integer (as Deforum's ``integer=True``),
    wrapped into [0, 2**32)."""
    return int(value) % 2**32


def format_row(row: dict, width: int) -> str:
    """One frame as a line of the table."""
    cells = [f"{row['frame']:>{width + 2}}", f"{row['time']:.2f}s"]
    if "from" in row:
        mix = " | ".join(f"{p['text']}:{p['weight']:.2f}" for p in row["prompts"]) or "(no prompt)"
        cells += [f"{row['from']['frame']} -> {row['to']['frame']}", f"blend {row['blend']:.3f}", mix]
        if row["negative"]:
            cells.append(f"neg: {row['negative']}")
    if "seed" in row:
        cells.append(f"seed {row['seed']}")
    if "guidance" in row:
        cells.append(f"guidance {row['guidance']:.6g}")
    if "values" in row:
        cells.append(("value " if len(row["values"]) == 1 else "values ")
                     + " ".join(f"{v:.6g}" for v in row["values"]))
    return "  ".join(cells)
