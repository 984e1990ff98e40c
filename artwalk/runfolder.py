"""The run folder: how stages talk, and how work is cached.

One walk is one folder::

    OUT/
      walk.json                 what was asked (written by the driver)
      keyframes/manifest.json   stage 1: conformed originals + in-betweens
      keyframes/units/<key>/    one folder per unit of work, named by its cache key
      frames/manifest.json      stage 2: unique frames + the timeline
      frames/units/<key>/       motion frames of one segment
      upscaled/manifest.json    stage 3: unique frames at the target size + timeline
      upscaled/units/<key>/     one upscaled frame
      <name>.mp4                stage 4

A unit's key hashes everything that affects its bytes: input contents, settings,
engine and weights identity. A unit folder is built under a temporary name and
renamed when complete, so "the folder exists" means "the unit is finished". A rerun
reuses every unit whose key is unchanged; a killed run resumes; after one input
changes only the units that depend on it are recomputed. The manifest, written
last, lists a stage's outputs in order; a stage reads only its predecessor's
manifest, never its folder listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from artwalk import __version__
from artwalk.errors import StageOrderError
from artwalk.fsutil import TMP_MARK, atomic_dir, atomic_write_json, remove_stale_temps

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
UNIT_RECORD = "unit.json"

# Stage folder names inside a run folder, and the command that fills each.
STAGE_DIRS = {
    "keyframes": "python -m diffusion_models",
    "frames": "python -m frame_interpolation",
    "upscaled": "python -m super_resolution",
}


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(**parts: Any) -> str:
    """A stable hash of JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def config_dict(config: Any, drop: tuple[str, ...] = ("progress", "run_dir")) -> dict:
    """A config dataclass as JSON-able dict, without settings that do not affect output."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k not in drop}


def write_manifest(stage_dir: Path, stage: str, **body: Any) -> Path:
    """Write ``stage_dir/manifest.json`` atomically (call it last)."""
    manifest = {"stage": stage, "format_version": FORMAT_VERSION, "artwalk": __version__, **body}
    path = Path(stage_dir) / MANIFEST
    atomic_write_json(path, manifest)
    return path


def read_manifest(run_dir: Path, stage: str) -> dict:
    """Read a finished stage's manifest, or say which command to run first."""
    path = Path(run_dir) / stage / MANIFEST
    if not path.is_file():
        raise StageOrderError(
            f"{path.parent}: no finished '{stage}' stage here; run `{STAGE_DIRS[stage]}` first"
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StageOrderError(f"{path}: unreadable manifest ({exc}); rerun `{STAGE_DIRS[stage]}`") from None
    if manifest.get("stage") != stage or manifest.get("format_version") != FORMAT_VERSION:
        raise StageOrderError(
            f"{path}: manifest of another stage or format version; rerun `{STAGE_DIRS[stage]}`"
        )
    return manifest


def check_frames_current(run_dir: Path, frames_manifest: dict) -> None:
    """Raise :class:`StageOrderError` when ``frames/`` was made from other keyframes than
    ``keyframes/`` lists now (stage 1 was rerun after stage 2), so that a later stage
    neither encodes an outdated walk nor reads keyframe units that stage 1 has pruned.

    Compared by content (paths and hashes), so a stage-1 rerun that changed nothing passes.
    A run folder without a keyframes manifest has nothing to compare with and passes.
    """
    path = Path(run_dir) / "keyframes" / MANIFEST
    inputs = frames_manifest.get("inputs")
    if inputs is None or not path.is_file():
        return
    current = [{"path": k.get("path"), "sha256": k.get("sha256")}
               for k in read_manifest(run_dir, "keyframes").get("outputs", [])]
    if inputs != current:
        raise StageOrderError(
            f"{Path(run_dir) / 'frames'} is out of date: keyframes/ changed since it was made;"
            f" rerun `{STAGE_DIRS['frames']}` (it reuses unchanged segments)"
        )


@dataclass
class UnitStore:
    """Content-addressed unit folders of one stage: ``<stage_dir>/units/<key>/``.

    Keeps count of reused and computed units for the stage's closing log line.
    Safe to use from several threads (units with distinct keys).
    """

    stage_dir: Path
    reused: int = 0
    computed: int = 0
    _used: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.stage_dir = Path(self.stage_dir)
        self.root = self.stage_dir / "units"
        self.root.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(self.root) + remove_stale_temps(self.stage_dir)
        if removed:
            log.info("removed %d unfinished item(s) left by an interrupted run", removed)

    def path(self, key: str) -> Path:
        return self.root / key[:32]

    def lookup(self, key: str) -> dict | None:
        """The record of a finished unit with this key, or None (and count it as reused)."""
        record_path = self.path(key) / UNIT_RECORD
        try:
            record = json.loads(record_path.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if record.get("key") != key:
            return None
        with self._lock:
            self._used.add(key[:32])
            self.reused += 1
        return record

    @contextlib.contextmanager
    def build(self, key: str, **meta: Any) -> Iterator[tuple[Path, dict]]:
        """Yield (temporary folder, record); write files there and list them in
        ``record["files"]``. On success the record is saved and the folder renamed."""
        record: dict[str, Any] = {"key": key, "files": [], **meta}
        final = self.path(key)
        if final.exists():  # a broken finished folder (no readable record): rebuild it
            shutil.rmtree(final)
        with atomic_dir(final) as tmp:
            yield tmp, record
            atomic_write_json(tmp / UNIT_RECORD, record)
        with self._lock:
            self._used.add(key[:32])
            self.computed += 1

    def relpath(self, key: str, name: str, run_dir: Path) -> str:
        """Path of a unit's file relative to the run folder, with forward slashes."""
        return (self.path(key) / name).relative_to(run_dir).as_posix()

    def prune(self) -> int:
        """Remove unit folders not used by this run (call after the manifest is written)."""
        removed = 0
        for entry in self.root.iterdir():
            # Temporary folders are units still being built (by a live process: stale ones
            # went at start-up); they are not this run's to remove.
            if entry.is_dir() and entry.name not in self._used and TMP_MARK not in entry.name:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def summary(self) -> str:
        return f"{self.reused} unit(s) reused, {self.computed} recomputed"
