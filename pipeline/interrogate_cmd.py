"""``artwalk interrogate``: a prompt for each image, into FOLDER/desc.csv.

    artwalk interrogate FOLDER [--mode classic|fast|best|caption] [--out FOLDER/desc.csv]
                        [--max-tokens 75] [--for sd1|sd2] [--caption-model M] [--clip-model M]
                        [--tokenizer M] [--force]

The library is :mod:`pipeline.interrogate`; the sd and unclip engines read the
CSV beside the images, and ``artwalk prompts --from-images FOLDER`` makes a schedule of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artwalk.cli import add_common_flags
from artwalk.config import add_flags, from_args
from pipeline.interrogate import DESC, InterrogateConfig, interrogate


def interrogate_command(args: argparse.Namespace) -> None:
    interrogate(from_args(InterrogateConfig, args, folder=args.folder, progress=not args.quiet))


def add_command(subparsers) -> argparse.ArgumentParser:
    """Register ``interrogate`` on the ``artwalk`` command's subparsers."""
    p = subparsers.add_parser(
        "interrogate", help=f"write a prompt for each image into FOLDER/{DESC} (BLIP caption + CLIP ranking)",
        description=f"Write FOLDER/{DESC}: an 'image,prompt' row per image, in the walk's order. BLIP captions "
        "each image; CLIP ranks artwalk's phrase lists (mediums, artists, movements, flavours, trending) against "
        "it; the mode builds the prompt, at most --max-tokens tokens by the target model's tokenizer. The sd and "
        f"unclip engines read {DESC} beside the images. A rerun makes only the rows of new or changed images and "
        "keeps rows edited by hand (--force makes them all again); phrase embeddings are cached. Models: "
        "`artwalk models download blip-large` (or blip-base) and clip-vit-l-14 (clip-vit-h-14 for --for sd2).")
    p.add_argument("folder", type=Path, metavar="FOLDER", help="folder of images (every type the walk reads)")
    add_flags(p, InterrogateConfig)
    add_common_flags(p)
    p.set_defaults(func=interrogate_command)
    return p
