"""Stage configs: frozen dataclasses whose fields carry their default, help and flags.

Each stage has one config dataclass. Its fields are made with :func:`setting`, so a
field's default, its help text, its command-line spelling and whether it shapes the
output are written once, on the field::

    width: int = setting(1280, "walk width before upscaling", flags=("--w", "--width"))

From those fields this module builds what every entry point needs:

- :func:`add_flags`: one argparse flag per field. A flag the user leaves out is not
  set at all (``argparse.SUPPRESS``), so a CLI knows exactly which flags were given;
- :func:`from_args`: a config from the given flags, else an earlier record (the
  stage's manifest, for ``--keep-settings``), else the field defaults;
- :func:`to_argv`: values back into flags (``full_pipeline.sh`` forwards them);
- :func:`record`: a config as JSON for a manifest; :func:`key_settings`: only the
  fields that change output bytes (``key=True``, the default);
  :func:`engine_options`: the fields that are options of the stage's engine
  (``engine=True``; ``None`` means "the engine's own default").

Field metadata: ``help``, ``flags`` (default ``--name-with-dashes``), ``key``,
``engine``, ``choices``, ``metavar``, ``cli`` (False: set by the CLI itself, like
the run folder) and ``control`` (how to run, not what to make: ``--wait``, ``--verify``;
never recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

_MISSING = dataclasses.MISSING


def setting(default: Any = _MISSING, help: str = "", *, flags: tuple[str, ...] | None = None, key: bool = True,
            engine: bool = False, choices: Iterable[str] | None = None, metavar: str | None = None,
            cli: bool = True, control: bool = False) -> Any:
    """A config field with its default and everything a CLI and a cache key need to know."""
    meta = {"help": help, "flags": flags, "key": key and not control, "engine": engine,
            "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
            "cli": cli, "control": control}
    return dataclasses.field(default=default, metadata=meta)


def _fields(cls) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def _meta(f: dataclasses.Field, name: str, default: Any = None) -> Any:
    return f.metadata.get(name, default)


def _types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``Path`` -> Path."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def flag_names(f: dataclasses.Field) -> tuple[str, ...]:
    return _meta(f, "flags") or ("--" + f.name.replace("_", "-"),)


def flag_of(cls, name: str) -> str:
    """The long command-line spelling of field ``name`` of config class ``cls``."""
    for f in _fields(cls):
        if f.name == name:
            return next((s for s in flag_names(f) if s.startswith("--")), flag_names(f)[0])
    return "--" + name.replace("_", "-")


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def index_ranges(text: str) -> list[int]:
    """argparse type: indices written as ``0-99,150,200-210`` (as :func:`ranges_text` writes them)."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not an index or a range like 3-7") from None
        if lo < 0 or hi < lo:
            raise argparse.ArgumentTypeError(f"{part!r} is not an index or a range like 3-7")
        out.extend(range(lo, hi + 1))
    return out


def ranges_text(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


_PARSERS = {int: integer, float: finite_float, str: str, Path: Path}


def _default_text(f: dataclasses.Field) -> str:
    """How a flag's help states its default: the value; a switch, on or off; nothing where the
    help words it itself, or there is none (None: the help says what happens)."""
    if "default" in (_meta(f, "help") or "") or f.default is _MISSING or f.default is None:
        return ""
    if isinstance(f.default, bool):
        return f" (default {'on' if f.default else 'off'})"
    return f" (default {f.default})"


def add_flags(parser, cls, *, names: Iterable[str] | None = None, exclude: Iterable[str] = (),
              flags: Mapping[str, tuple[str, ...]] | None = None, dests: Mapping[str, str] | None = None,
              helps: Mapping[str, str] | None = None, seen: set[str] | None = None) -> list[str]:
    """Add a flag for each CLI field of ``cls`` (or of ``names``) to ``parser`` (or a group).

    ``flags`` respells fields, ``dests`` renames where their value lands in the
    namespace (default: the field name). A dest already in ``seen`` is not added again
    (fields shared by several stages of one walk); ``helps`` words a flag for such a
    command, as it is (no default added). Returns the dests added.
    """
    hints = _types(cls)
    wanted = set(names) if names is not None else None
    skip, flags, dests, helps = set(exclude), dict(flags or {}), dict(dests or {}), dict(helps or {})
    added = []
    for f in _fields(cls):
        if not _meta(f, "cli", True) or f.name in skip or (wanted is not None and f.name not in wanted):
            continue
        dest = dests.get(f.name, f.name)
        if seen is not None:
            if dest in seen:
                continue
            seen.add(dest)
        spellings = flags.get(f.name) or flag_names(f)
        kind = _base_type(hints[f.name])
        kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS,
                              "help": helps[f.name] if f.name in helps else (_meta(f, "help") or "") + _default_text(f)}
        if kind is bool:
            # A control switch is only ever turned on; a setting can be turned off too (--no-loop),
            # so that a flag given to --keep-settings or forwarded by a driver can say either.
            # (A switch whose name already starts with --no has no opposite.)
            plain = _meta(f, "control") or spellings[0].startswith("--no")
            kw["action"] = "store_true" if plain else argparse.BooleanOptionalAction
        else:
            kw["type"] = _PARSERS.get(kind, str)
            if _meta(f, "choices"):
                kw["choices"] = _meta(f, "choices")
            kw["metavar"] = _meta(f, "metavar") or (None if _meta(f, "choices") else f.name.upper())
        parser.add_argument(*spellings, **kw)
        added.append(dest)
    return added


def given(args: argparse.Namespace | Mapping[str, Any], cls, dests: Mapping[str, str] | None = None,
          flags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """{field: value} for the fields of ``cls`` whose flag the user gave (``args``: parsed
    flags, or plain settings keyed as the flags' destinations ``dests``), each value typed
    and checked as its flag would be (:func:`typed`; ``flags``: a field's spelling where the
    command spells it otherwise)."""
    dests, flags = dests or {}, flags or {}
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    return {f.name: typed(cls, f.name, values[dests.get(f.name, f.name)], flags.get(f.name)) for f in _fields(cls)
            if _meta(f, "cli", True) and dests.get(f.name, f.name) in values}


def typed(cls, name: str, value: Any, flag: str | None = None) -> Any:
    """``value`` for field ``name`` of ``cls``, typed as its flag's parser would type text
    (a number, a path) and checked against its choices; a :class:`ConfigError` naming the
    flag otherwise. None stays None (the field's "not given"). Settings that come as plain
    values (the studio's JSON, a Python caller) get the command line's checks this way."""
    from artwalk.errors import ConfigError

    field = next((f for f in _fields(cls) if f.name == name), None)
    if field is None or value is None:
        return value
    kind, flag = _base_type(_types(cls)[name]), flag or flag_of(cls, name)
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not true or false")
        elif kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"{value!r} is not a number")
            value = _PARSERS[kind](value) if isinstance(value, str) else value
            if kind is int and not float(value).is_integer():
                raise ValueError(f"{value!r} is not a whole number")
            value = kind(value)
            if kind is float and not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        elif kind is Path:
            if not isinstance(value, (str, Path)) or not str(value):
                raise ValueError(f"{value!r} is not a path")
            value = Path(value)
        elif kind is str and not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, (Path, int, float)):
                raise ValueError(f"{value!r} is not text")
            value = str(value)  # a folder for a model, a number for a schedule: as the command line has them
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{flag}: {exc}") from None
    choices = _meta(field, "choices")
    if choices and value not in choices:
        raise ConfigError(f"{flag}: invalid choice: {value!r} (choose from {', '.join(map(str, choices))})")
    return value


def from_record(cls, rec: Mapping[str, Any] | None) -> dict[str, Any]:
    """{field: value} from a recorded config (a manifest's ``config``), typed again."""
    if not isinstance(rec, Mapping):
        return {}
    hints = _types(cls)
    out = {}
    for f in _fields(cls):
        if f.name not in rec or not _meta(f, "cli", True) or _meta(f, "control"):
            continue
        value, kind = rec[f.name], _base_type(hints[f.name])
        out[f.name] = Path(value) if kind is Path and value is not None else value
    return out


def from_args(cls, args: argparse.Namespace, *, dests: Mapping[str, str] | None = None,
              base: Mapping[str, Any] | None = None, **fixed: Any):
    """A ``cls`` from the given flags, over ``base`` (an earlier record), over the defaults.

    ``fixed`` sets fields the CLI decides itself (the run folder, progress).
    """
    values = {**from_record(cls, base), **given(args, cls, dests), **fixed}
    return cls(**values)


def to_argv(cls, values: Mapping[str, Any]) -> list[str]:
    """Flags that give ``values`` (field -> value) to a CLI built with :func:`add_flags`."""
    by_name = {f.name: f for f in _fields(cls)}
    argv: list[str] = []
    for name, value in values.items():
        if name not in by_name:
            raise KeyError(f"{cls.__name__} has no setting {name!r}")
        spelling = flag_of(cls, name)
        if isinstance(value, bool):
            if not value and spelling.startswith("--no"):
                continue  # a --no... switch left off
            argv.append(spelling if value else "--no-" + spelling[2:])
        elif value is not None:
            argv.append(f"{spelling}={value}")  # '=' keeps values that start with '-'
    return argv


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def record(config) -> dict[str, Any]:
    """Every setting of ``config`` as JSON (what was asked), for its manifest."""
    return {f.name: _json(getattr(config, f.name)) for f in _fields(config)
            if _meta(f, "cli", True) and not _meta(f, "control")}


def key_settings(config) -> dict[str, Any]:
    """The settings of ``config`` that change output bytes (``key=True``), as JSON."""
    return {f.name: _json(getattr(config, f.name)) for f in _fields(config)
            if _meta(f, "cli", True) and _meta(f, "key", True)}


def engine_options(config) -> dict[str, Any]:
    """The engine options of ``config`` that are set (``None``: the engine's default)."""
    return {f.name: getattr(config, f.name) for f in _fields(config)
            if _meta(f, "engine") and getattr(config, f.name) is not None}


def engine_option_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in _fields(cls) if _meta(f, "engine"))
