"""Command-line plumbing shared by every entry point: parser, logging, error handling.

Only CLIs configure logging. A known error (:class:`ArtwalkError`) becomes one line
``error: ...`` on stderr and its exit code; so does a bad flag (exit 2), instead of
argparse's usage block. Ctrl-C says how to resume.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from artwalk.errors import ArtwalkError

log = logging.getLogger("artwalk")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, and option values that may start with ``-``.

    ``--input -odd-name`` is read as ``--input=-odd-name`` when ``-odd-name`` is not one
    of the parser's own flags (a path, a negative number), so such values need no ``=``.
    A flag spelt with underscores (ArtWalks' ``--sec_interpolation``) also takes its dash
    form (``--sec-interpolation``). An unknown flag is one line that names the command
    (``artwalk run``, not ``artwalk``) and the nearest flag it has.
    """

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._chosen(parsed)
            command.error(command.unknown(extras))
        return parsed

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._join_dash_values(self._dash_forms(args)), namespace)

    def unknown(self, extras: list[str]) -> str:
        """What to say of arguments this command does not take: the first flag among them,
        and the nearest flag this command has."""
        flag = next((a.split("=", 1)[0] for a in extras if a.startswith("-") and a != "--"), None)
        if flag is None:
            return f"unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        plain = {s.replace("_", "-"): s for s in known}
        near = difflib.get_close_matches(flag.replace("_", "-"), list(plain), n=1, cutoff=0.75)
        hint = f": did you mean {plain[near[0]]}?" if near else ""
        return f"unknown flag {flag}{hint}"

    def _chosen(self, parsed: argparse.Namespace) -> "Parser":
        """The (sub)command the arguments chose: ``artwalk run``'s parser for ``artwalk run ...``."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, Parser):
                    return chosen._chosen(parsed)
        return self

    def _dash_forms(self, args: list[str]) -> list[str]:
        """``--sec-interpolation`` as ``--sec_interpolation`` where only the latter is a flag here."""
        known = {s for a in self._actions for s in a.option_strings}
        out = []
        for i, tok in enumerate(args):
            if tok == "--":
                return out + args[i:]
            name, eq, value = tok.partition("=")
            if name.startswith("--") and name not in known:
                underscored = "--" + name[2:].replace("-", "_")
                if underscored in known:
                    tok = underscored + eq + value
            out.append(tok)
        return out

    def _join_dash_values(self, args: list[str]) -> list[str]:
        takes_one = {s for a in self._actions if a.nargs is None and a.option_strings for s in a.option_strings}
        known = {s for a in self._actions for s in a.option_strings}
        out, i = [], 0
        while i < len(args):
            tok = args[i]
            if tok == "--":
                out.extend(args[i:])
                break
            nxt = args[i + 1] if i + 1 < len(args) else None
            if tok in takes_one and nxt is not None and nxt.startswith("-") and nxt.split("=", 1)[0] not in known:
                out.append(f"{tok}={nxt}")
                i += 2
                continue
            out.append(tok)
            i += 1
        return out


def _not_torchvision(record: logging.LogRecord) -> bool:
    """transformers warns on every run that torchvision is missing and it uses its PIL image
    processors instead: that is this project's choice (see requirements/keyframes.txt)."""
    return "requires torchvision (not installed)" not in record.getMessage()


class _Stderr(logging.StreamHandler):
    """A handler on ``sys.stderr`` as it is when each record comes, not as it was when logging
    was set up: a command called in a process that later swaps stderr (a test's capture, a
    notebook's cell) must not write to a stream since closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", handlers=[_Stderr()], force=True)
    noisy = logging.getLogger("transformers.utils.import_utils")
    if _not_torchvision not in noisy.filters:
        noisy.addFilter(_not_torchvision)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors; no progress bars")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def add_keep_settings_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-settings", action="store_true",
                        help="flags you leave out keep the values this stage last used in OUT (from its "
                        "manifest.json) instead of the defaults")


def run_cli(main: Callable[[argparse.Namespace], object], parser: argparse.ArgumentParser,
            argv: Sequence[str] | None = None) -> int:
    """Parse flags, set up logging, call ``main(args)``; map errors to exit codes. A ``main``
    that returns an ``int`` chooses the exit code itself (``artwalk batch``: 1 when a walk
    failed); any other result is success."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        result = main(args)
    except ArtwalkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except PermissionError as exc:  # a place that did not name it better
        where = exc.filename or "a file"
        print(f"error: {where}: permission denied ({exc.strerror or exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume where it stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`artwalk schedule ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and quiet at exit's flush too
        return 0
    return result if type(result) is int else 0


def artwalks_paths(args: argparse.Namespace, default_output: str = "output") -> tuple[Path | None, Path | None]:
    """Resolve ArtWalks' --input_path/--folder_name/--output_path into (input, run folder).

    ``--input_path P --folder_name F`` reads P/F and writes to ``--output_path``/F.
    """
    folder = getattr(args, "folder_name", None) or ""
    inp = Path(args.input_path) / folder if getattr(args, "input_path", None) else None
    out_root = getattr(args, "output_path", None)
    out = Path(out_root or default_output) / folder if (out_root or (inp and folder)) else None
    return inp, out
