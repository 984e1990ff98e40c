"""Typed errors: each one is a single line a user can act on.

The CLIs catch :class:`ArtwalkError`, print ``error: <message>`` on one line and
exit with the error's ``exit_code``, without a traceback. Anything else is a bug and
keeps its traceback. Every error class of the project lives here.
"""

from __future__ import annotations


class ArtwalkError(Exception):
    """Base class: the message names the offending value and says what to do."""

    exit_code = 1


class InputError(ArtwalkError):
    """An input file or folder cannot be used (missing, empty, corrupt, not an image, unreadable)."""


class ConfigError(ArtwalkError):
    """A setting is out of range or settings contradict each other."""

    exit_code = 2


class StageOrderError(ArtwalkError):
    """A stage was asked to run before the stage it reads from has finished, or on its
    outdated output (an earlier stage was rerun since)."""


class DiskFullError(ArtwalkError):
    """The disk (or a file-size limit) refused a write; nothing half-written is kept."""


class WeightsMissingError(ArtwalkError):
    """A model's weights are not on this machine; the message says how to fetch them."""

    exit_code = 2


class UnsupportedWeightsError(InputError):
    """A weights file that loads, but is not a network the engine knows (or not weights at all)."""


class GpuMemoryError(ArtwalkError):
    """The GPU ran out of memory; the message says which settings to lower."""


class RunFolderBusyError(ArtwalkError):
    """Another process is working in the run folder (it holds the folder's lock)."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class DownloadError(ArtwalkError):
    """A transfer failed (network, HTTP status); a partial file is kept for a resume."""


class ChecksumError(ArtwalkError):
    """What arrived is not the file the registry names; the partial file was deleted."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class ScheduleError(InputError):
    """A prompt or numeric schedule that cannot be read or evaluated; the one-line message names
    the schedule (its file, or the flag that carried it), the line and the column, what was found
    there and what was expected."""
