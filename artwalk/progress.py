"""Progress bars that a caller can switch off, and that stay quiet in logs.

On a terminal the bar redraws a few times a second; when stderr is a file or a
pipe (cron, CI) it writes a line at most every 30 seconds instead of flooding it.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kw) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``)."""
    interactive = sys.stderr.isatty()
    kw.setdefault("mininterval", 0.2 if interactive else 30.0)
    kw.setdefault("dynamic_ncols", interactive)
    return tqdm(iterable, disable=not enabled, **kw)
