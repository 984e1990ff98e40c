"""``artwalk story``: a seeded random subset of a big collection, as a walk's input folder.

    artwalk story COLLECTION OUT_FOLDER [-n 10] [--seed S] [--order random|similar] [--copy]

OUT_FOLDER gets ``001_<name>``, ``002_<name>``, ... (relative links into COLLECTION, or
copies) and story.json; ``artwalk run OUT_FOLDER OUT`` walks through them in that order.
The library is :mod:`artwalk.story`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artwalk.cli import add_common_flags
from artwalk.config import add_flags, from_args
from artwalk.story import STORY, StoryConfig, make_story


def story_command(args: argparse.Namespace) -> None:
    result = make_story(from_args(StoryConfig, args, collection=args.collection, out=args.out))
    print(result.folder)


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``story`` on the ``artwalk`` command's subparsers."""
    p = subparsers.add_parser(
        "story", help="pick a seeded random subset of a big collection into a walk's input folder",
        description="Draw N images at random from COLLECTION and its sub-folders (at any depth; hidden and "
        "non-image files are skipped) and lay them out in OUT_FOLDER as 001_<name>, 002_<name>, ...: relative "
        f"symbolic links into the collection, or copies with --copy, and {STORY} (the collection, seed, order "
        "and each pick's path, sha256 and name). The same collection and seed give the same story. --order "
        "similar chains the picks by visual similarity so the walk flows. A file among the picks that is no "
        "image stops the story with one line naming it. OUT_FOLDER must be new, empty or a previous story "
        "(which is replaced whole), and outside COLLECTION. Prints OUT_FOLDER; then `artwalk run OUT_FOLDER "
        "OUT` walks it.")
    p.add_argument("collection", type=Path, metavar="COLLECTION", help="folder of images, with sub-folders")
    p.add_argument("out", type=Path, metavar="OUT_FOLDER", help="the story folder to write (a walk's input)")
    add_flags(p, StoryConfig)
    add_common_flags(p)
    p.set_defaults(func=story_command)
    return p
