"""``artwalk inspire``: write a prompt schedule about a topic.

    artwalk inspire [TOPIC ...] [-n 6] [--every 2s|48] [--out FILE] [--seed N]
                    [--engine auto|phrases|magicprompt] [--model NAME|ID|DIR] [--max-words N]

One ``KEY: prompt`` line per prompt, ``--every`` apart from 0 (``0s: ...``, ``2s: ...``;
or frames with ``--every 48``: ``0: ...``, ``48: ...``), on stdout or atomically into
FILE. The prompts come from :func:`pipeline.inspire.inspire`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artwalk.cli import add_common_flags
from artwalk.errors import InputError
from artwalk.fsutil import atomic_write_bytes, make_dir
import pipeline.inspire as lib


def inspire_command(args: argparse.Namespace) -> None:
    """Check every flag, make the prompts, print the schedule or write it to --out."""
    lib.parse_every(args.every)
    lib.check_settings(args.n, args.max_words)
    if args.out is not None and args.out.is_dir():
        raise InputError(f"--out {args.out}: is a folder; give a file path for the schedule")
    prompts = lib.inspire(args.topics, args.n, seed=args.seed, engine=args.engine, model=args.model,
                          max_words=args.max_words, progress=not args.quiet)
    text = lib.schedule_text(prompts, args.every)
    if args.out is None:
        print(text, end="")
        return
    make_dir(args.out.parent, "folder of --out")
    atomic_write_bytes(args.out, text.encode("utf-8"))
    lib.log.info("inspire: %d prompt(s) written to %s", len(prompts), args.out)


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``inspire`` on the ``artwalk`` command's subparsers."""
    p = subparsers.add_parser(
        "inspire", help="write a prompt schedule about a topic (phrase lists, or the MagicPrompt model)",
        description="Write N prompts about TOPIC (the words are joined into one phrase; none: a drawn subject "
        "per prompt), one 'KEY: prompt' line each, --every apart. Engine phrases draws a medium, style, light "
        "and palette from artwalk's phrase lists (no weights); magicprompt continues the topic with a GPT-2 "
        "prompt model (`artwalk models download magicprompt`); auto uses magicprompt when its weights are "
        "here, else phrases. The same seed gives the same schedule.")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="what the prompts are about, e.g. \"a lighthouse\"")
    p.add_argument("-n", type=int, default=6, metavar="N", help=f"number of prompts, 1 to {lib.MAX_PROMPTS} "
                   "(default 6)")
    p.add_argument("--every", default="2s", metavar="2s|48", help="step between prompts: seconds (2s, 2.5s) or "
                   "a whole number of frames (48); the lines use the same unit (default 2s)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the schedule to FILE (default: stdout)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the same seed gives the same prompts "
                   "(default 0)")
    p.add_argument("--engine", choices=lib.ENGINES, default="auto", help="auto (default: magicprompt when its "
                   "weights are here, else phrases), phrases or magicprompt")
    p.add_argument("--model", metavar="NAME|ID|DIR", help="magicprompt's model: registry name, hub id or "
                   f"folder (default {lib.DEFAULT_MODEL})")
    p.add_argument("--max-words", type=int, default=40, metavar="N", help="words per prompt at most (default 40)")
    add_common_flags(p)
    p.set_defaults(func=inspire_command)
    return p
