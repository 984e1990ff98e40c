"""Progress bars that a caller can switch off, and that stay quiet in logs.

On a terminal the bar redraws a few times a second; when stderr is a file or a
pipe (cron, CI) it writes a line at most every 30 seconds instead of flooding it.

A caller that shows progress itself (the studio's render jobs) wraps the work in
:func:`observed`: every bar that thread opens then draws nothing and reports each
step as ``callback(desc, n, total)`` instead.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Observer = Callable[[str, int, "int | None"], None]

_local = threading.local()


class _Silent:
    """A file that swallows what a reporting bar would draw."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Reporting(tqdm):
    """A bar that hands every step to an observer instead of drawing it."""

    def __init__(self, *args, observer: Observer, **kw) -> None:
        self._observer = observer
        super().__init__(*args, **kw)

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        self._observer(self.desc, int(self.n), self.total)
        return shown


@contextmanager
def observed(observer: Observer) -> Iterator[None]:
    """Within the block, this thread's bars report ``(desc, n, total)`` to ``observer``."""
    previous = getattr(_local, "observer", None)
    _local.observer = observer
    try:
        yield
    finally:
        _local.observer = previous


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kw) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``)."""
    observer = getattr(_local, "observer", None)
    if observer is not None and enabled:
        kw.update(mininterval=0, miniters=1, file=_Silent(), dynamic_ncols=False)
        return _Reporting(iterable, observer=observer, **kw)
    interactive = sys.stderr.isatty()
    kw.setdefault("mininterval", 0.2 if interactive else 30.0)
    kw.setdefault("dynamic_ncols", interactive)
    return tqdm(iterable, disable=not enabled, **kw)
