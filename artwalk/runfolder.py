"""The run folder: how stages talk, and how work is cached.

One walk is one folder::

    OUT/
      walk.json                 what was asked (written by the driver)
      keyframes/manifest.json   stage 1: conformed originals + in-betweens
      keyframes/units/<key>/    one folder per unit of work, named by its cache key
      levels/manifest.json      a zoom's levels upscaled to the output size (stage 3)
      frames/manifest.json      stage 2: unique frames + the timeline
      frames/units/<key>/       motion frames of one segment
      upscaled/manifest.json    stage 3: unique frames at the target size + timeline
      upscaled/units/<key>/     one upscaled frame
      <name>.mp4                stage 4
      .artwalk.lock             held by the process working here (see run_lock)

A unit's key hashes everything that affects its bytes: input contents, settings,
engine and weights identity. A unit folder is built under a temporary name and
renamed when complete, so "the folder exists" means "the unit is finished". A rerun
reuses every unit whose key is unchanged; a killed run resumes; after one input
changes only the units that depend on it are recomputed. The manifest, written
last, lists a stage's outputs in order; a stage reads only its predecessor's
manifest, never its folder listing.

A reused unit is checked first: every file its record lists must be there with its
recorded size (``verify`` also compares the sha256); a unit that fails is rebuilt.
A file can be **released** once a later stage holds its content (:func:`release`: stage 4
frees a neural upscale's frames once they are in its encoded chunks): the record keeps
its hash and size and says so, the file goes, and the unit still counts as done. A stage
that needs such a unit's file again asks for it by name (:func:`released`) and rebuilds it.
One process at a time works in a run folder: :func:`run_lock` takes an exclusive
lock that the operating system releases when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from artwalk import __version__
from artwalk.errors import ConfigError, InputError, RunFolderBusyError, StageOrderError
from artwalk.images import IMAGE_EXTENSIONS, encode_png, to_uint8
from artwalk.fsutil import TMP_MARK, atomic_dir, atomic_write_bytes, atomic_write_json, disk_errors, make_dir, \
    remove_stale_temps, sha256_file, write_json_once

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
UNIT_RECORD = "unit.json"
LOCK_NAME = ".artwalk.lock"
LOCK_PID_ENV = "ARTWALK_LOCK_PID"  # set by a driver that holds the lock for the stages it starts

# Stage folder names inside a run folder, and the command that fills each.
STAGE_DIRS = {
    "keyframes": "python -m diffusion_models",
    "levels": "artwalk zoom --levels-only",  # a zoom's levels, upscaled (stage 3 on the keyframes)
    "frames": "python -m frame_interpolation",
    "upscaled": "python -m super_resolution",
    "chunks": "python generate_videos.py",
}


def cache_key(**parts: Any) -> str:
    """A stable hash of JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# The lock: one process per run folder

_held: set[Path] = set()  # lock files this process holds: the lock is re-entrant within it
_held_guard = threading.Lock()


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def run_lock(run_dir: Path | str, wait: bool = False, create: bool = True) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the block; re-entrant in one process.

    ``create``: make the folder when it is missing (stage 1); else a missing folder is a
    :class:`StageOrderError` that names the stage to run first.
    Another process holding it: :class:`RunFolderBusyError` at once ("in use by PID n"),
    or with ``wait`` a wait until it is released. The OS releases the lock of a process
    that crashed or was killed, so a stale lock never blocks a rerun.
    """
    if not create and not Path(run_dir).is_dir():
        raise StageOrderError(f"{run_dir}: no run folder here; run `{STAGE_DIRS['keyframes']}` first")
    run_dir = make_dir(run_dir, "run folder")
    with file_lock(run_dir.resolve() / LOCK_NAME, run_dir, wait):
        yield run_dir


@contextlib.contextmanager
def file_lock(lock: Path, what: Path | str, wait: bool = False) -> Iterator[None]:
    """Hold the lock file ``lock`` (made if missing), which guards ``what``; re-entrant in one
    process. The file is opened without following a symbolic link and must be a regular
    file: a link placed there cannot make us write into another file."""
    key = Path(lock)
    with _held_guard:
        held = key in _held
    if held:  # this process holds it already (artwalk run around a stage), until its outer block ends
        yield
        return
    fd = _open_lock(key)
    try:
        locked = _acquire(fd, what, wait)
        with _held_guard:
            _held.add(key)
        try:
            yield
        finally:
            with _held_guard:
                _held.discard(key)
            if locked:
                _release(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path | str, what: Path | str, wait: bool = False) -> Iterator[None]:
    """Hold a lock on ``folder`` itself (which guards ``what``, a file in it), leaving no file
    there: for folders that are the user's, not ours (the images that ``desc.csv`` sits
    beside). Not re-entrant; a holder is named by "another process"."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{folder}: cannot open the folder ({exc.strerror or exc})") from None
    try:
        locked = _acquire(fd, what, wait, pid=False)
        try:
            yield
        finally:
            if locked:
                _release(fd)
    finally:
        os.close(fd)


def _open_lock(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise InputError(f"{path}: a symbolic link stands where the lock file goes; remove it") from None
        raise InputError(f"{path}: cannot open the lock file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: not a regular file, where the lock file goes; remove it")
    return fd


def _acquire(fd: int, what: Path | str, wait: bool, pid: bool = True) -> bool:
    """flock the open lock file and (``pid``) write our PID in it; False when it need not be taken:
    no flock on this system (then the run is unlocked), or the driver that started this
    process holds it for the whole walk (full_pipeline.sh sets ``ARTWALK_LOCK_PID``)."""
    try:
        import fcntl
    except ImportError:
        log.debug("no fcntl here: %s is not locked", what)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd) if pid else None
        if pid and holder == os.environ.get(LOCK_PID_ENV) == str(os.getppid()):
            return False
        by = f"PID {holder}" if pid else "another process"
        if not wait:
            raise RunFolderBusyError(f"{what} is in use by {by}: let it finish, or rerun with --wait") from None
        log.info("%s is in use by %s; waiting for it (--wait)", what, by)
        fcntl.flock(fd, fcntl.LOCK_EX)
    if pid:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return True


def _release(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# Manifests

def write_manifest(stage_dir: Path, stage: str, **body: Any) -> Path:
    """Write ``stage_dir/manifest.json`` atomically (call it last)."""
    manifest = {"stage": stage, "format_version": FORMAT_VERSION, "artwalk": __version__, **body}
    path = Path(stage_dir) / MANIFEST
    write_json_once(path, manifest)  # a rerun that changed nothing writes nothing (a full disk is no matter)
    return path


def read_manifest(run_dir: Path, stage: str) -> dict:
    """Read a finished stage's manifest, or say which command to run first."""
    path = Path(run_dir) / stage / MANIFEST
    redo = f"rerun `{STAGE_DIRS[stage]}`"
    if not path.is_file():
        raise StageOrderError(
            f"{path.parent}: no finished '{stage}' stage here; run `{STAGE_DIRS[stage]}` first"
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except PermissionError:
        raise StageOrderError(f"{path}: permission denied reading the manifest") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StageOrderError(f"{path}: unreadable manifest ({exc}); {redo}") from None
    if not isinstance(manifest, dict):
        raise StageOrderError(f"{path}: not a manifest (a JSON {type(manifest).__name__}, not an object); {redo}")
    if manifest.get("stage") != stage or manifest.get("format_version") != FORMAT_VERSION:
        raise StageOrderError(f"{path}: manifest of another stage or format version; {redo}")
    return manifest


def check_layout(run_dir: Path | str) -> None:
    """One line unless each stage folder of ``run_dir`` (and its ``units/``) is a folder, or absent."""
    for stage in STAGE_DIRS:
        for path in (Path(run_dir) / stage, Path(run_dir) / stage / "units"):
            if path.exists() and not path.is_dir():
                raise InputError(f"{path}: a file stands where the run folder's {stage} stage keeps its work; "
                                 "move it away")


# What the drivers write at the top of a run folder, by the command that made it.
RECORDS = {"walk": "walk.json", "zoom": "zoom.json"}
_VIDEO_RECORD = re.compile(r".+\.(mp4|webm|gif)\.json")  # stage 4's record beside its video


def check_not_run_folder(folder: Path | str) -> None:
    """Refuse an input folder that is a run folder: INPUT and OUT were given the wrong way round."""
    folder = Path(folder)
    held = next((name for name in (*RECORDS.values(), *(f"{s}/{MANIFEST}" for s in STAGE_DIRS))
                 if _is_file(folder / name)), None)
    if held is not None:
        raise ConfigError(f"{folder}: this is a run folder (it holds {held}), not a folder of images: were INPUT "
                          "and OUT swapped? (the images first, then the run folder)")


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; False where it cannot be looked at (the check that reads
    the folder says why)."""
    try:
        return path.is_file()
    except OSError:
        return False


def check_run_folder(run_dir: Path | str, kind: str | None = None) -> None:
    """Refuse a run folder that another kind of command made (``kind``: walk or zoom; a
    walk's folder given to ``artwalk zoom``, or the reverse), and a folder that is no run
    folder yet but holds images (INPUT and OUT swapped: the walk would write into the
    user's image folder)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for other, name in RECORDS.items():
        if kind is not None and other != kind and _is_file(run_dir / name):
            raise ConfigError(f"{run_dir}: this is the run folder of a {other} (it holds {name}); a {kind} would "
                              f"overwrite it: give the {kind} another OUT")
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return  # unreadable: the writability check says so
    ours = {*RECORDS.values(), *STAGE_DIRS, LOCK_NAME}
    if any(e.name in ours or _VIDEO_RECORD.fullmatch(e.name) for e in entries):
        return
    images = [e for e in entries if e.suffix.lower() in IMAGE_EXTENSIONS and not e.name.startswith(".")
              and e.is_file()]
    if images:
        raise ConfigError(f"{run_dir}: holds {len(images)} image(s) and is not a run folder: were INPUT and OUT "
                          "swapped? (the images first, then a new or empty run folder)")


def previous_config(run_dir: Path, stage: str) -> dict | None:
    """The config a stage last ran with in ``run_dir`` (its manifest's ``config``), if any."""
    try:
        return read_manifest(run_dir, stage).get("config")
    except StageOrderError:
        return None


def keyframe_inputs(keyframes_manifest: dict) -> list[dict]:
    """What stage 2 records of the keyframes it read: path, hash, and frame where one is set."""
    inputs = []
    for entry in keyframes_manifest.get("outputs", []):
        inputs.append({"path": entry.get("path"), "sha256": entry.get("sha256")})
        if "frame" in entry:
            inputs[-1]["frame"] = entry["frame"]
    return inputs


def check_frames_current(run_dir: Path, frames_manifest: dict) -> None:
    """Raise :class:`StageOrderError` when ``frames/`` was made from other keyframes than
    ``keyframes/`` lists now (stage 1 was rerun after stage 2), so that a later stage
    neither encodes an outdated walk nor reads keyframe units that stage 1 has pruned.

    Compared by content (paths, hashes and, for keyframes at explicit frames, their frames
    and the walk's length), so a stage-1 rerun that changed nothing passes. A run folder
    without a keyframes manifest has nothing to compare with and passes.
    """
    path = Path(run_dir) / "keyframes" / MANIFEST
    inputs = frames_manifest.get("inputs")
    if inputs is None or not path.is_file():
        return
    keyframes = read_manifest(run_dir, "keyframes")
    length = keyframes.get("frames")  # a positioned walk's length (--frames)
    moved = length is not None and length != len(frames_manifest.get("timeline", []))
    if inputs != keyframe_inputs(keyframes) or moved:
        raise StageOrderError(
            f"{Path(run_dir) / 'frames'} is out of date: keyframes/ changed since it was made;"
            f" rerun `{STAGE_DIRS['frames']}` (it reuses unchanged segments)"
        )


# ---------------------------------------------------------------------------------------------
# Units

def released(record: dict) -> bool:
    """Whether any file of a unit's record was released (:func:`release`)."""
    return any(entry.get("released") for entry in record.get("files", ()))


def release(run_dir: Path, rels: Iterable[str]) -> int:
    """Free unit files (paths relative to ``run_dir``, in unit folders) whose content a later
    stage now holds: each record says so first, then the file goes. Returns the bytes freed.

    A released unit still counts as done (its record keeps the file's hash and size), so the
    stage that made it finds its work done; one that needs the file again rebuilds the unit.
    A kill between the record and the removal leaves a file that nothing counts on.
    """
    freed = 0
    by_folder: dict[Path, set[str]] = {}
    for rel in rels:
        path = Path(run_dir) / rel
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        try:
            record = json.loads((folder / UNIT_RECORD).read_text("utf-8"))
        except (OSError, ValueError):
            continue  # not a unit (or a broken one, which its stage rebuilds)
        entries = [e for e in record.get("files", []) if e.get("name") in names and not e.get("released")]
        if not entries:
            continue
        for entry in entries:
            entry["released"] = True
        atomic_write_json(folder / UNIT_RECORD, record)
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                (folder / entry["name"]).unlink()
                freed += int(entry.get("bytes") or 0)
    return freed


class UnitBuilder:
    """A unit folder under construction: write files with these methods, each is recorded."""

    def __init__(self, folder: Path, record: dict) -> None:
        self.folder = folder
        self.record = record

    def add_bytes(self, name: str, data: bytes) -> dict:
        atomic_write_bytes(self.folder / name, data)
        return self._note(name, hashlib.sha256(data).hexdigest(), len(data))

    def save_png(self, name: str, rgb: np.ndarray) -> dict:
        return self.add_bytes(name, encode_png(rgb))

    def add_segment(self, name: str, frames: Iterable[np.ndarray]) -> list[str]:
        """Write RGB frames (float in [0, 1], or uint8) losslessly into one segment file
        (:mod:`artwalk.framestore`); returns each frame's pixel hash."""
        from artwalk.framestore import write_segment

        path = self.folder / name
        with disk_errors(path):
            hashes = write_segment(path, (rgb if rgb.dtype == np.uint8 else to_uint8(rgb) for rgb in frames))
        self._note(name, sha256_file(path), path.stat().st_size)
        return hashes

    def add_frames(self, frames: Iterable[np.ndarray], pngs: bool) -> None:
        """A run of frames: one PNG each (``000001.png`` ..., in ``files``) with ``pngs``, else
        one lossless segment file (their pixel hashes in the record's ``frames``)."""
        from artwalk.framestore import SEGMENT_FILE

        if pngs:
            for k, rgb in enumerate(frames, start=1):
                self.save_png(f"{k:06d}.png", rgb)
        else:
            self.record["frames"] = self.add_segment(SEGMENT_FILE, frames)

    def note_file(self, name: str) -> dict:
        """Record a file written into the unit's folder by other means (an encoder)."""
        path = self.folder / name
        return self._note(name, sha256_file(path), path.stat().st_size)

    def _note(self, name: str, sha: str, size: int) -> dict:
        entry = {"name": name, "sha256": sha, "bytes": size}
        self.record["files"].append(entry)
        return entry


@dataclass
class UnitStore:
    """Content-addressed unit folders of one stage: ``<stage_dir>/units/<key>/``.

    Keeps count of reused and computed units for the stage's closing log line.
    Safe to use from several threads (units with distinct keys).
    ``verify``: check every reused file's sha256, not only its size.
    """

    stage_dir: Path
    verify: bool = False
    reused: int = 0
    computed: int = 0
    _used: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.stage_dir = Path(self.stage_dir)
        self.root = self.stage_dir / "units"

    @classmethod
    def open(cls, stage_dir: Path, verify: bool = False) -> UnitStore:
        """The store a stage's run works in: its folder made, and what a killed run left
        half-built removed. (The plain constructor touches nothing: it can ask ``has``.)"""
        store = cls(Path(stage_dir), verify=verify)
        make_dir(store.root, "stage's units folder")
        removed = remove_stale_temps(store.root) + remove_stale_temps(store.stage_dir)
        if removed:
            log.info("removed %d unfinished item(s) left by an interrupted run", removed)
        return store

    def path(self, key: str) -> Path:
        return self.root / key[:32]

    def _valid_record(self, key: str) -> dict | None:
        folder = self.path(key)
        try:
            record = json.loads((folder / UNIT_RECORD).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("files"), list):
            return None
        for entry in record["files"]:
            if entry.get("released"):  # a later stage holds its content (see release)
                continue
            path = folder / str(entry.get("name"))
            try:
                size = path.stat().st_size
            except OSError:
                log.warning("unit %s: %s is missing; recomputing the unit", folder.name, path.name)
                return None
            if size != entry.get("bytes"):
                log.warning("unit %s: %s has %d bytes, not the %s recorded; recomputing the unit",
                            folder.name, path.name, size, entry.get("bytes"))
                return None
            if self.verify and sha256_file(path) != entry.get("sha256"):
                log.warning("unit %s: %s does not match its sha256 (--verify); recomputing the unit",
                            folder.name, path.name)
                return None
        return record

    def has(self, key: str) -> bool:
        """Whether a finished, intact unit with this key is here (nothing is counted)."""
        return self._valid_record(key) is not None

    def lookup(self, key: str, whole: bool = False) -> dict | None:
        """The record of a finished, intact unit with this key (counted as reused), or None;
        ``whole``: None too when a file of it was released (:func:`release`)."""
        record = self._valid_record(key)
        if record is None or (whole and released(record)):
            return None
        with self._lock:
            self._used.add(key[:32])
            self.reused += 1
        return record

    def adopt(self, key: str) -> dict | None:
        """The record of a unit another process built here just now (a Ray worker on a shared
        folder), counted as computed; None when it is not there, intact."""
        record = self._valid_record(key)
        if record is not None:
            with self._lock:
                self._used.add(key[:32])
                self.computed += 1
        return record

    @contextlib.contextmanager
    def build(self, key: str, **meta: Any) -> Iterator[UnitBuilder]:
        """Yield a :class:`UnitBuilder` over a temporary folder; on success its record is
        saved and the folder renamed into place (replacing a broken unit of the same key)."""
        record: dict[str, Any] = {"key": key, "files": [], **meta}
        final = self.path(key)
        if final.exists():  # a broken finished folder (a missing file, no readable record): rebuild it
            shutil.rmtree(final)
        with atomic_dir(final) as tmp:
            unit = UnitBuilder(tmp, record)
            yield unit
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
