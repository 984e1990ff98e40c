"""A project's settings as a walk: checked as ``artwalk run`` checks its flags.

A project's settings are a JSON object whose keys stand for the walk's settings
(:mod:`pipeline.spec`)::

    S interpolation_steps    I sec_interpolation    F sec_freeze    fps    easing
    w width   h height    target    format    seed    steps    preset    device
    engines {keyframes keyframe_engine, motion motion_engine, upscale upscale_engine ("none": no_upscale)}
    models  {keyframes keyframe_model, motion motion_model, upscale upscale_model}

A key left out (or null) is the walk's default, so the defaults live in the stages'
config dataclasses, once. A model is named, never a path on the server
(:func:`model_argument`): a registry name, a hub id, or an entry of the models folder the
studio was started with (``--models DIR``), which becomes that entry's path only here, on
its way to the walk's settings. :func:`walk_for` turns settings into the walk's own
:class:`~pipeline.spec.WalkSpec` by :func:`pipeline.spec.walk_spec`, the command line's
checks, so an error is the CLI's one line, which :func:`in_page_words` says with the page's
names for the settings instead of the flags (``--motion-engine`` -> "the motion engine"), as
every error that leaves the API does. :func:`layout` cuts the walk's timeline into its
units: each keyframe's hold and each segment between two keyframes, with the frames they
span; a timeline over :data:`artwalk.limits.MAX_FRAMES` is refused there.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artwalk import limits
from artwalk.cli import Parser, add_common_flags
from artwalk.errors import ConfigError
from artwalk.timeline import total_frames
from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
from pipeline.presets import REGISTRIES
from pipeline.flags import add_walk_flags
from pipeline.spec import WalkSpec, walk_spec
from pipeline.walk import check_engines

# Page setting -> the walk's setting (pipeline.spec).
SETTINGS = {"S": "interpolation_steps", "I": "sec_interpolation", "F": "sec_freeze", "fps": "fps",
            "easing": "easing", "w": "width", "h": "height", "target": "target", "format": "format", "seed": "seed",
            "steps": "steps", "preset": "preset", "device": "device"}
STAGE_SETTINGS = {"engines": {"keyframes": "keyframe_engine", "motion": "motion_engine",
                              "upscale": "upscale_engine"},
                  "models": {"keyframes": "keyframe_model", "motion": "motion_model", "upscale": "upscale_model"}}
KEYS = (*SETTINGS, *STAGE_SETTINGS)
STAGE_DEST = {"keyframes": "keyframe", "motion": "motion", "upscale": "upscale"}  # PAGE_NAMES' "<dest>_model"
# What the page calls each of those flags (by the walk parser's dest, so every spelling of a flag is covered).
PAGE_NAMES = {"interpolation_steps": "S in-betweens", "sec_interpolation": "I seconds of motion",
              "sec_freeze": "F seconds of hold", "fps": "fps", "easing": "easing", "width": "width",
              "height": "height", "target": "target", "format": "format", "seed": "seed",
              "steps": "diffusion steps", "preset": "preset", "device": "device",
              "keyframe_engine": "the keyframes engine", "motion_engine": "the motion engine",
              "upscale_engine": "the upscale engine", "no_upscale": "the upscale engine none",
              "keyframe_model": "the keyframe model", "motion_model": "the motion model",
              "upscale_model": "the upscale model"}


class _Parser(Parser):
    """The walk's parser, raising its one-line error instead of exiting."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise ConfigError(message)


def _walk_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="artwalk run", add_help=False)
    add_walk_flags(p)
    add_common_flags(p)
    return p


def merge(settings: dict, change: Any) -> dict:
    """``settings`` with ``change``'s keys applied (null: back to the default); checks the
    keys and their JSON types, not the values (:func:`walk_for` does)."""
    if not isinstance(change, dict):
        raise ConfigError("settings must be a JSON object")
    merged = json.loads(json.dumps(settings))
    for key, value in change.items():
        if key not in KEYS:
            raise ConfigError(f"unknown setting '{key}' (known: {', '.join(KEYS)})")
        if key in STAGE_SETTINGS:
            if value is None:
                merged.pop(key, None)
                continue
            if not isinstance(value, dict) or set(value) - set(STAGE_SETTINGS[key]):
                raise ConfigError(f"{key} must be an object with keys {', '.join(STAGE_SETTINGS[key])}")
            part = {**merged.get(key, {}), **value}
            merged[key] = {k: v for k, v in part.items() if v not in (None, "")}
            bad = [k for k, v in merged[key].items() if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{key}.{bad[0]} must be a string")
        elif value is None or value == "":
            merged.pop(key, None)
        elif isinstance(value, (bool, dict, list)):
            raise ConfigError(f"{key} must be a number or a string, got {json.dumps(value)}")
        else:
            merged[key] = value
    return merged


# A model's name over HTTP: a registry name or a hub id's part ("owner", "name"), never "..".
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")


def model_argument(stage: str, value: str, models: Path | None = None) -> str:
    """What the walk's ``--model`` flags get for the name ``value`` of a stage's model in the
    settings: an entry of the ``models`` folder (its path, which must stay inside the
    folder), else a registry name or a hub id (``owner/name``), as they are. A path, or a
    name that the walk would take for a file or folder of the server's working directory,
    is a :class:`ConfigError`: nothing sent over HTTP names a file on the server."""
    parts = value.split("/")
    named = 1 <= len(parts) <= 2 and all(_NAME.fullmatch(p) and ".." not in p for p in parts)
    if named and models is not None and len(parts) == 1:
        entry = models / value
        if entry.exists() or entry.is_symlink():
            real = entry.resolve()
            if not real.is_relative_to(models.resolve()):
                raise ConfigError(f"{PAGE_NAMES[stage + '_model']} '{value}' leads out of the models folder")
            return str(real)
    if named and not Path(value).exists() and not Path(value).is_symlink():
        return value
    folder = "a name in the studio's models folder" if models is not None else \
        "a folder of models named when the studio starts (artwalk studio --models DIR)"
    raise ConfigError(f"{PAGE_NAMES[stage + '_model']} '{value}' is not a model name: give a registry name "
                      f"(artwalk models list), a hub id (owner/name) or {folder}")


def walk_settings(settings: dict, input_dir: Path, run_dir: Path, quiet: bool = True,
                  models: Path | None = None) -> dict[str, Any]:
    """The walk's settings (:mod:`pipeline.spec`) for a project's ``settings``; model names as
    :func:`model_argument` gives them; ``quiet``: the stages' progress bars off (a request's
    checks), where a render job turns them on and observes them."""
    out: dict[str, Any] = {"input": input_dir, "output": run_dir, "quiet": quiet}
    for key, name in SETTINGS.items():
        if key in settings:
            out[name] = settings[key]
    for key, names in STAGE_SETTINGS.items():
        for stage, value in settings.get(key, {}).items():
            if key == "engines" and stage == "upscale" and value == "none":
                out["no_upscale"] = True
            elif key == "models":
                out[names[stage]] = model_argument(STAGE_DEST[stage], value, models)
            else:
                out[names[stage]] = value
    return out


@functools.cache
def _flag_names() -> tuple[re.Pattern, dict[str, str]]:
    """A pattern that finds the walk's flags the page has a name for (``argument --w/--width:``
    as argparse puts it, or a bare ``--w``), and each spelling's page name."""
    names = {}
    for action in _walk_parser()._actions:
        for flag in action.option_strings:
            if action.dest in PAGE_NAMES:
                names[flag] = PAGE_NAMES[action.dest]
    one = "|".join(re.escape(f) for f in sorted(names, key=len, reverse=True))
    return re.compile(rf"argument (?:{one})(?:/(?:{one}))*(?=:)|(?<![\w-])(?:{one})(?![\w-])"), names


def in_page_words(message: str) -> str:
    """``message`` with the walk's flags named as the page names them: ``argument
    --motion-engine: invalid choice`` -> ``the motion engine: invalid choice``, ``--w must be``
    -> ``width must be``. Flags the page has no setting for stay as they are."""
    pattern, names = _flag_names()

    def name(match: re.Match) -> str:
        text = match.group(0)
        return names[text.removeprefix("argument ").split("/")[0]]

    return pattern.sub(name, message)


def motion_engines() -> list[str]:
    """The motion engines that walk between a studio project's keyframes (not none, which makes
    no motion frames, nor a zoom's, which composes zoom levels)."""
    motion = REGISTRIES["motion"]
    return [name for name in motion.specs if name != "none" and "levels" not in motion.get(name).features]


def walk_for(settings: dict, input_dir: Path = Path("input"), run_dir: Path = Path("run"),
             models: Path | None = None, quiet: bool = True) -> WalkSpec:
    """The walk for ``settings`` (every setting and engine option checked, and a walk of two
    keyframes within :data:`artwalk.limits.MAX_FRAMES`; no file read, no weights loaded): a
    :class:`~artwalk.errors.ConfigError` otherwise."""
    walk = walk_spec(walk_settings(settings, input_dir, run_dir, quiet, models))
    if walk.engines.motion not in motion_engines():
        raise ConfigError(f"the motion engine {walk.engines.motion} cannot walk between keyframes: choose "
                          f"{', '.join(motion_engines())}")
    check_engines(walk)
    limits.check_frames(total_frames(2, _inbetweens(walk), walk.motion.spec), "a walk of two keyframes")
    return walk


def _inbetweens(walk: WalkSpec) -> int:
    """S, where the keyframe engine makes in-betweens (none makes none)."""
    makes = "inbetweens" in KEYFRAME_ENGINES.get(walk.engines.keyframes).features
    return walk.keyframes.interpolation_steps if makes else 0


@dataclass(frozen=True)
class Unit:
    """A stretch of the timeline: a keyframe's hold, or the segment from keyframe i to i+1."""

    kind: str  # "hold" or "segment"
    keyframes: tuple[int, ...]  # indices in the project's order
    start: int  # first frame
    frames: int
    signature: str  # what its frames are made of

    def as_json(self) -> dict:
        return {"kind": self.kind, "keyframes": list(self.keyframes), "start": self.start, "frames": self.frames,
                "signature": self.signature}


def settings_signature(walk: WalkSpec) -> str:
    """What every frame depends on: the engines and the stages' settings, not the paths."""
    configs = {name: {k: v for k, v in vars(c).items() if k not in ("run_dir", "input_dir", "progress", "output")}
               for name, c in zip(("keyframes", "motion", "upscale", "video"), walk.configs) if c is not None}
    text = json.dumps({"engines": vars(walk.engines), "configs": configs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def project_units(project: dict, models: Path | None = None) -> list[Unit]:
    """The units of a studio project's timeline, as its keyframes and settings are now."""
    return layout(walk_for(project["settings"], models=models), [kf["sha256"] for kf in project["keyframes"]])


def layout(walk: WalkSpec, hashes: list[str]) -> list[Unit]:
    """The timeline's units for keyframes with content hashes ``hashes``, in order:
    hold 0, segment 0-1, hold 1, ... hold n-1 (the walk's exact frame counts); a
    :class:`ConfigError` if they are over :data:`artwalk.limits.MAX_FRAMES` together."""
    spec = walk.motion.spec
    steps = _inbetweens(walk)
    limits.check_frames(total_frames(len(hashes), steps, spec), f"the walk of {len(hashes)} keyframes")
    between = steps + (steps + 1) * (spec.intervals - 1)
    base = settings_signature(walk)
    units, start = [], 0

    def add(kind: str, keys: tuple[int, ...], frames: int) -> None:
        nonlocal start
        text = json.dumps([base, kind, [hashes[i] for i in keys]])
        units.append(Unit(kind, keys, start, frames, hashlib.sha256(text.encode()).hexdigest()[:16]))
        start += frames

    for i in range(len(hashes)):
        add("hold", (i,), spec.hold)
        if i + 1 < len(hashes) and between:
            add("segment", (i, i + 1), between)
    return units
