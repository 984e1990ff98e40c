"""Prompts per image: ``desc.csv`` beside the images, or ``--prompts-csv``: ``image,prompt`` rows.

Read by the stage for the engines that take prompts (``sd``, ``unclip``): each pair's
in-betweens slerp its two images' prompts; an image without a row uses ``--prompt``.
``artwalk interrogate`` writes desc.csv (:mod:`diffusion_models.interrogate`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from artwalk.errors import InputError

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
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise InputError(f"{path}, line {reader.line_num}: not CSV ({exc})") from None
    for line, row in rows:
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise InputError(f"{path}, line {line}: expected 'filename,prompt', got {','.join(row)!r}")
        name, prompt = row[0].strip(), ",".join(row[1:]).strip()
        if line == 1 and name.lower() in ("filename", "file", "image", "name"):
            continue
        prompts[name] = prompt
    if not prompts and not allow_empty:
        raise InputError(f"{path}: no 'filename,prompt' rows")
    return prompts


def prompt_for(name: str, prompts: dict[str, str], default: str = "") -> str:
    """The prompt of an image file: by its name, else by its stem, else ``default``."""
    if name in prompts:
        return prompts[name]
    return prompts.get(Path(name).stem, default)
