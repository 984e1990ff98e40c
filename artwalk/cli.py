"""Command-line plumbing shared by every stage: logging setup and error handling.

Only CLIs configure logging. A known error (:class:`ArtwalkError`) becomes one line
``error: ...`` on stderr and a non-zero exit; Ctrl-C says how to resume.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from artwalk.errors import ArtwalkError

log = logging.getLogger("artwalk")


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors; no progress bars")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run_cli(main: Callable[[argparse.Namespace], object], parser: argparse.ArgumentParser,
            argv: Sequence[str] | None = None) -> int:
    """Parse flags, set up logging, call ``main(args)``; map errors to exit codes."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        main(args)
    except ArtwalkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume where it stopped", file=sys.stderr)
        return 130
    return 0


def artwalks_paths(args: argparse.Namespace, default_output: str = "output") -> tuple[Path | None, Path | None]:
    """Resolve ArtWalks' --input_path/--folder_name/--output_path into (input, run folder).

    ``--input_path P --folder_name F`` reads P/F and writes to ``--output_path``/F.
    """
    folder = getattr(args, "folder_name", None) or ""
    inp = Path(args.input_path) / folder if getattr(args, "input_path", None) else None
    out_root = getattr(args, "output_path", None)
    out = Path(out_root or default_output) / folder if (out_root or (inp and folder)) else None
    return inp, out
