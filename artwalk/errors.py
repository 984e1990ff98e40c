"""Typed errors: each one is a single line a user can act on.

The CLIs catch :class:`ArtwalkError`, print ``error: <message>`` on one line and
exit non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ArtwalkError(Exception):
    """Base class: the message names the offending value and says what to do."""

    exit_code = 1


class InputError(ArtwalkError):
    """An input file or folder cannot be used (missing, empty, corrupt, not an image)."""


class ConfigError(ArtwalkError):
    """A setting is out of range or settings contradict each other."""

    exit_code = 2


class StageOrderError(ArtwalkError):
    """A stage was asked to run before the stage it reads from has finished."""


class DiskFullError(ArtwalkError):
    """The disk (or a file-size limit) refused a write; nothing half-written is kept."""


class WeightsMissingError(ArtwalkError):
    """A model's weights are not on this machine; the message says how to fetch them."""
