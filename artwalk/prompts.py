"""Prompts per image: ``desc.csv`` beside the images, or ``--prompts-csv``: ``image,prompt`` rows.

The format where the prompt makers and stage 1 meet: ``artwalk interrogate`` (and a walk's
``--interrogate``) writes desc.csv; stage 1 reads it for the engines that take prompts (``sd``,
``unclip``): each pair's in-betweens slerp its two images' prompts; an image without a row
uses ``--prompt``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

from artwalk.errors import InputError

log = logging.getLogger(__name__)

DESC = "desc.csv"  # the prompts beside the images, as the seed's CLIP Interrogator notebook names them


def read_prompts_csv(path: Path | str, allow_empty: bool = False) -> dict[str, str]:
    """``filename,prompt`` rows (a header row is optional) -> {filename: prompt}; no rows is an
    error unless ``allow_empty``."""
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompts CSV ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: the prompts CSV is not UTF-8 text") from None
    prompts: dict[str, str] = {}
    physical = re.split(r"\r\n|\r|\n", text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, first = [], 1
    try:
        for row in reader:
            rows.append((first, physical[first - 1].lstrip(), row))
            first = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}, line {reader.line_num}: not CSV ({exc})") from None
    first_row = True
    for line, raw, row in rows:
        # A comment is a line that starts with '#'; a quoted "#1.png" is a file name.
        if not row or not "".join(row).strip() or raw.startswith("#"):
            continue
        header, first_row = first_row, False
        if len(row) < 2:
            raise InputError(f"{path}, line {line}: expected 'image,prompt', got {','.join(row)!r}")
        name = row[0] if raw.startswith('"') else row[0].strip()  # a quoted name is taken as it is
        prompt = ",".join(row[1:]).strip()
        if header and name.lower() in ("filename", "file", "image", "name"):
            continue
        if header and name.lower() == "prompt" and row[1].strip().lower() in ("filename", "file", "image", "name"):
            raise InputError(f"{path}, line 1: the columns are {row[1].strip()},prompt: put the image first")
        if name in prompts and prompts[name] != prompt:
            log.warning("warning: %s, line %d: a second row for %s; the last one is used", path, line, name)
        prompts[name] = prompt
    if not prompts and not allow_empty:
        raise InputError(f"{path}: no 'filename,prompt' rows")
    return prompts


def comment_lines(path: Path | str) -> list[str]:
    """The lines of a prompts CSV that start with ``#`` (kept when the file is rewritten)."""
    try:
        text = Path(path).read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    return [line for line in re.split(r"\r\n|\r|\n", text) if line.lstrip().startswith("#")]


def prompt_for(name: str, prompts: dict[str, str], default: str | None = "") -> str | None:
    """The prompt of an image file: by its name, else by its stem, else ``default``."""
    if name in prompts:
        return prompts[name]
    return prompts.get(Path(name).stem, default)
