"""One lazy engine registry for every stage.

A stage lists its engines as :class:`EngineSpec` rows in an :class:`EngineRegistry`
(``diffusion_models/engines.py``, ``frame_interpolation/engines.py``,
``super_resolution/engines.py``). A row names the class that implements the engine
as ``"module:Class"``; the module is imported only when the engine is created, so
PyTorch is never imported for a classical engine. A row also says:

- ``options``: the config options the engine takes. An option that is set but not
  taken is a one-line error naming its flag, in every stage;
- ``requires``: the modules it needs (checked with ``importlib.util.find_spec``, which
  imports nothing), and ``install``, the command that provides them;
- ``models``: the model slots it loads (:class:`ModelSlot`), so that a walk's plan can
  check that the weights are here before any work starts;
- ``features``: what the stage may ask of it beyond its interface's core (stage 1:
  ``inbetweens``, ``prompts``, ``outpaint``), so no stage probes an object with hasattr;
- ``defaults``: the engine's own default for each option (a config's ``None``), read by
  the engine and written into the stage's ``--help``, so it is stated once.

The core knows no stage: the rows come from the stages, and ``create`` only resolves
the strings they gave.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from artwalk.config import engine_options, flag_of
from artwalk.errors import ConfigError
from artwalk.executors import EngineRecipe
from artwalk.models import check_present, pick_model

# Arguments an engine may take that never change its output: passed when it takes them.
CONTEXT = ("progress",)


@dataclass(frozen=True)
class ModelSlot:
    """A model an engine loads: the option that names it, its default, and how it is kept.

    ``kind`` is ``file`` (one weights file: a registry name or a path) or ``hub`` (a
    diffusers folder: a registry name, a hub id or a local folder). ``role``: the
    sub-folder that holds it when the engine's ``model`` option is a bundle folder.
    ``when``: an option that must be set for the slot to be used (``outpaint``).
    """

    option: str
    default: str
    kind: str = "file"
    role: str | None = None
    when: str | None = None


@dataclass(frozen=True)
class EngineSpec:
    name: str
    target: str  # "package.module:Class"
    summary: str
    options: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    install: str = ""
    models: tuple[ModelSlot, ...] = ()
    features: tuple[str, ...] = ()  # what the stage may ask of it (keyframes: inbetweens, prompts, outpaint)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # option -> the engine's default (models: slots)

    def value(self, option: str, given: Any) -> Any:
        """``given``, or this engine's default for ``option`` when it is None."""
        if given is not None:
            return given
        slot = next((s for s in self.models if s.option == option), None)
        return slot.default if slot is not None else self.defaults.get(option)

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def model_for(self, option: str, options: Mapping[str, Any]) -> str:
        """The model the slot named ``option`` loads, given the engine's options."""
        slot = next(s for s in self.models if s.option == option)
        return pick_model(slot.option, dict(options), slot.role, slot.default)

    def check_models(self, options: Mapping[str, Any], **switches: Any) -> None:
        """Raise a one-line :class:`WeightsMissingError` unless every model the engine would
        load with ``options`` is on this machine. ``switches`` (outpaint) turn slots on."""
        for slot in self.models:
            if slot.when and not (switches.get(slot.when) or options.get(slot.when)):
                continue
            check_present(pick_model(slot.option, dict(options), slot.role, slot.default), slot.kind)


def option_flag(option: str) -> str:
    return "--" + option.replace("_", "-")


class EngineRegistry:
    """The engines of one stage, by name."""

    def __init__(self, stage: str, specs: Iterable[EngineSpec]) -> None:
        self.stage = stage
        self.specs = {s.name: s for s in specs}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def defaults_text(self, option: str) -> str:
        """The engines' defaults for ``option``, for a flag's help: 'kandinsky 50, sd 50'."""
        parts = []
        for spec in self.specs.values():
            if option in spec.options:
                value = spec.value(option, None)
                if value is not None:
                    parts.append(f"{spec.name} {value}")
        return ", ".join(parts)

    def get(self, name: str) -> EngineSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise ConfigError(f"unknown {self.stage} engine '{name}' (choose from {', '.join(self.specs)})") from None

    def check(self, name: str, options: Mapping[str, Any], flag: Callable[[str], str] = option_flag) -> EngineSpec:
        """The engine's spec, once it is known, installed, and takes every option given."""
        spec = self.get(name)
        if not spec.installed():
            missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
            raise ConfigError(f"{self.stage} engine '{name}' needs {', '.join(missing)}: {spec.install}")
        refused = [k for k, v in options.items() if v is not None and k not in spec.options]
        if refused:
            takes = ", ".join(flag(k) for k in spec.options if k not in CONTEXT) or "no options"
            raise ConfigError(f"{self.stage} engine '{name}' does not take {', '.join(flag(k) for k in refused)}"
                              f" (it takes {takes})")
        return spec

    def check_config(self, config: Any, name: str | None = None, **switches: Any) -> EngineSpec:
        """:meth:`check` and :meth:`EngineSpec.check_models` for a stage config: its engine
        (or ``name``) with its engine options, errors naming the config's own flags."""
        options = engine_options(config)
        spec = self.check(name or config.engine, options, lambda option: flag_of(type(config), option))
        spec.check_models(options, **switches)
        return spec

    def create_for(self, config: Any, name: str | None = None):
        """The engine of a stage config, built from its engine options (and its progress switch)."""
        return self.create(name or config.engine, engine_options(config), lambda option: flag_of(type(config), option),
                           progress=getattr(config, "progress", True))

    def recipe_for(self, config: Any, name: str | None = None) -> EngineRecipe:
        """How a worker makes the engine of a stage config (:mod:`artwalk.executors`): the same
        class and options as :meth:`create_for`, without progress bars; ``neural`` when it loads models."""
        name = name or config.engine
        options = engine_options(config)
        spec = self.check(name, options, lambda option: flag_of(type(config), option))
        kwargs = {k: v for k, v in options.items() if v is not None}
        if "progress" in spec.options:
            kwargs["progress"] = False
        return EngineRecipe(spec.target, kwargs, neural=bool(spec.models), device=options.get("device"))

    def create(self, name: str, options: Mapping[str, Any], flag: Callable[[str], str] = option_flag,
               **context: Any):
        """Build engine ``name`` with the ``options`` that are set; ``context`` (progress)
        is passed where the engine takes it."""
        spec = self.check(name, options, flag)
        module, _, cls = spec.target.partition(":")
        factory = getattr(importlib.import_module(module), cls)
        kwargs = {k: v for k, v in options.items() if v is not None}
        kwargs.update({k: v for k, v in context.items() if k in CONTEXT and k in spec.options})
        return factory(**kwargs)
