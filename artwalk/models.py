"""The model registry: short names for every model the engines use.

Two kinds of entry:

- ``hub``: a diffusers/transformers folder on the Hugging Face hub (``source`` is the
  repo id). It lives in the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE`` are
  respected) and loads offline once there; ``HF_HUB_OFFLINE=1`` is honoured.
- ``file``: one weights file fetched by URL (``source``), checked against ``sha256``
  when one is pinned, and kept in the artwalk cache (``$ARTWALK_CACHE``, else
  ``$XDG_CACHE_HOME/artwalk``, else ``~/.cache/artwalk``).

A user may always pass a hub id or a local path instead of a short name. A model
that is not on this machine raises :class:`WeightsMissingError` with one line that
names it and the command that fetches it (``artwalk models download NAME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from artwalk.errors import ConfigError, WeightsMissingError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "hub" or "file"
    source: str  # hub repo id, or URL of the file
    stage: str  # keyframes | motion | upscale
    licence: str
    description: str
    filename: str | None = None  # file kind: its name in the cache
    sha256: str | None = None  # file kind: pinned checksum, when known


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.kind not in ("hub", "file"):
        raise ValueError(f"model {spec.name}: kind must be hub or file")
    if spec.kind == "file" and not spec.filename:
        raise ValueError(f"model {spec.name}: a file model needs a filename")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}' (see `artwalk models list`)") from None


def cache_dir() -> Path:
    """Where file-kind weights are kept."""
    if os.environ.get("ARTWALK_CACHE"):
        return Path(os.environ["ARTWALK_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "artwalk"


def download_hint(name: str) -> str:
    return f"run `artwalk models download {name}` on a machine with network"


def weights_file(name_or_path: str | Path) -> Path:
    """The local weights file for a registry name or a path; one clear line if missing."""
    candidate = Path(name_or_path)
    if str(name_or_path) not in REGISTRY:
        if candidate.is_file():
            return candidate
        raise WeightsMissingError(
            f"weights file {candidate} not found (give a registry name from `artwalk models list` or an existing file)"
        )
    spec = REGISTRY[str(name_or_path)]
    if spec.kind != "file":
        raise ConfigError(f"model {spec.name} is a hub folder, not a weights file")
    path = cache_dir() / spec.filename
    if not path.is_file():
        raise WeightsMissingError(f"weights for {spec.name} ({spec.filename}) are not in {cache_dir()}: {download_hint(spec.name)}")
    return path


def hub_id(name_or_id: str) -> str:
    """A registry short name becomes its hub id; a hub id or local folder passes through."""
    spec = REGISTRY.get(name_or_id)
    if spec is None:
        return name_or_id
    if spec.kind != "hub":
        raise ConfigError(f"model {spec.name} is a weights file, not a hub folder")
    return spec.source
