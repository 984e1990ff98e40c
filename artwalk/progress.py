"""Progress bars that a caller can switch off, and that stay out of logs.

On a terminal (or in a Jupyter notebook) a bar redraws a few times a second
(``ARTWALK_PROGRESS_INTERVAL`` seconds apart, default 0.2; ``0`` redraws on every step, which
is how the tests drive every command in a pseudo-terminal). When stderr is a file or a pipe
(cron, CI, ``2> log``) bars draw nothing at all: no carriage returns, no half-drawn lines. Each stage logs
one line when it ends instead.

A bar's methods return nothing, so a progress call can never stand in for data (tqdm's
own ``update()`` returns True when it redraws: ``bar.update() or frame`` once fed a
bool to the encoder, only on terminals). Count with ``for x in bar`` or call
``bar.update(n)`` on a line of its own, or hand ``bar.update`` as a callback.

A caller that shows progress itself (the studio's render jobs) wraps the work in
:func:`observed`: every bar that thread opens then draws nothing and reports each
step as ``callback(desc, n, total)`` instead, terminal or not.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Observer = Callable[[str, int, "int | None"], None]

INTERVAL_ENV = "ARTWALK_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 0.2

_local = threading.local()


class _Silent:
    """A file that swallows what a reporting bar would draw."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Reporting(tqdm):
    """A tqdm that hands every step to an observer instead of drawing it."""

    def __init__(self, *args, observer: Observer, **kw) -> None:
        self._observer = observer
        super().__init__(*args, **kw)

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        self._observer(self.desc, int(self.n), self.total)
        return shown


class Bar(Generic[T]):
    """One progress bar. Iterate it to count the items of its iterable, or call
    :meth:`update`; no method returns a value."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def __iter__(self) -> Iterator[T]:
        return iter(self._bar)

    def __enter__(self) -> "Bar[T]":
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more steps done."""
        self._bar.update(n)

    def counting(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` as they come, each counted as one step once it is made."""
        return counted(items, self.update)

    def set_description(self, desc: str) -> None:
        self._bar.set_description(desc)

    def reset(self, total: int | None = None) -> None:
        """Start counting again from zero (of ``total``, when given)."""
        self._bar.reset(total=total)

    def close(self) -> None:
        self._bar.close()


def counted(items: Iterable[T], tick: Callable[[], None]) -> Iterator[T]:
    """``items`` as they come, calling ``tick()`` once for each (after it is made)."""
    for item in items:
        tick()
        yield item


@contextmanager
def observed(observer: Observer) -> Iterator[None]:
    """Within the block, this thread's bars report ``(desc, n, total)`` to ``observer``."""
    previous = getattr(_local, "observer", None)
    _local.observer = observer
    try:
        yield
    finally:
        _local.observer = previous


def drawing() -> bool:
    """Whether bars draw here: stderr is a terminal or a Jupyter notebook's (and no observer
    takes the steps)."""
    return getattr(_local, "observer", None) is None and _is_terminal(sys.stderr)


def _is_terminal(stream) -> bool:
    """A terminal, or a notebook's output (which redraws a line on a carriage return)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def redraw_interval() -> float:
    """Seconds between two redraws of a bar on a terminal (``ARTWALK_PROGRESS_INTERVAL``)."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **kw) -> Bar[T]:
    """A bar over ``iterable`` (or a manual one with ``total=``), with tqdm's keywords
    (``desc``, ``unit``, ``leave``, ``initial``...)."""
    observer = getattr(_local, "observer", None)
    if observer is not None and enabled:
        kw.update(mininterval=0, miniters=1, file=_Silent(), dynamic_ncols=False)
        return Bar(_Reporting(iterable, observer=observer, **kw))
    interval = redraw_interval()
    if interval == 0:
        kw.update(miniters=1)
    kw.update(mininterval=interval)
    if _columns(sys.stderr):
        kw.update(dynamic_ncols=True)  # follows the window as it is resized
    else:
        kw.update(ncols=80, nrows=24)  # a terminal that states no size (`script` with no terminal above it)
    return Bar(tqdm(iterable, disable=not (enabled and _is_terminal(sys.stderr)), **kw))


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0
