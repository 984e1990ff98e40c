"""Projects on disk: everything the studio knows lives under ROOT, so a restart loses nothing.

::

    ROOT/
      .jobs/<job>.json             each render job: state, progress, stages' units
      <project>/                   12 hex digits
        project.json               name, keyframes in order, settings
        keyframes/<kf>.<ext>       the keyframe's image: the upload's bytes, or the generated PNG
        keyframes/<kf>.safetensors a prompt keyframe's conditioning (embeddings and noise)
        thumbs/<kf>.png            what the page shows (at most 320 px a side)
        inbetweens/<key>/NNN.png   POST .../interpolate's images
        input/                     the walk's input, rebuilt for each render: 0001_<the name given>.<ext> hard links
        run/                       the walk's run folder (artwalk run input run): run.mp4 and its contact sheet
        rendered.json              the units of the last finished render, by signature

Ids are never paths: a project, keyframe or job id is checked against its pattern before
any path is made of it, and :meth:`Store.path` refuses anything that resolves outside
the project (a symbolic link placed in ROOT included). Nor does a path go back out:
:meth:`Store.words` is what every error says when it leaves the API, with ROOT, the models
folder, the caches and the home folder as placeholders and any other absolute path cut
to its last part.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from artwalk.errors import ArtwalkError
from artwalk.fsutil import atomic_write_json, tmp_name
from artwalk.models import cache_dir
from studio.walks import in_page_words

ID = re.compile(r"[0-9a-f]{12}")
JOB_ID = re.compile(r"[0-9a-f]{16}")
PROJECT = "project.json"
RENDERED = "rendered.json"
# An absolute path that no known place covers: it keeps its last part ("…/x.png").
_ANY_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"]+/)+(?=[^\s/'\"]*)")


class NotFound(ArtwalkError):
    """No such project, keyframe, job or file (or an id that is not one)."""


class Busy(ArtwalkError):
    """The project is already being rendered."""


def new_id() -> str:
    return secrets.token_hex(6)


@dataclass
class Store:
    root: Path
    models: Path | None = None  # the folder whose entries a project's settings may name as models

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.models = None if self.models is None else Path(self.models).resolve()
        (self.root / ".jobs").mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._names = _places({"ROOT": self.root, "MODELS": self.models, "CACHE": cache_dir(),
                               "HF_CACHE": _hf_cache(), "TMP": Path(tempfile.gettempdir()), "~": Path.home()})
        alternatives = "|".join(re.escape(text) for text in self._names)
        self._places = re.compile(f"(?:{alternatives})" + r"(?![^/\s'\",:;)])" if alternatives else r"(?!)")

    def words(self, message: str) -> str:
        """An error as it leaves the API: the walk's flags in the page's words
        (:func:`studio.walks.in_page_words`), and no absolute path of this machine (ROOT,
        the models folder, the caches, the temporary folder and home become those names;
        any other absolute path keeps only its last part)."""
        message = self._places.sub(lambda m: self._names[m.group(0)], message)
        return in_page_words(_ANY_PATH.sub("…/", message))

    # ------------------------------------------------------------------ paths
    def folder(self, pid: str) -> Path:
        """The project's folder; :class:`NotFound` for anything that is not a project here."""
        if not isinstance(pid, str) or not ID.fullmatch(pid):
            raise NotFound(f"no project '{pid}'")
        folder = self.root / pid
        if folder.is_symlink() or not (folder / PROJECT).is_file() or folder.resolve().parent != self.root:
            raise NotFound(f"no project '{pid}'")
        return folder

    def path(self, pid: str, *parts: str) -> Path:
        """A file inside project ``pid``, refused if it would resolve outside it."""
        folder = self.folder(pid)
        path = folder.joinpath(*parts)
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(folder.resolve()) or any(p.is_symlink() for p in _between(folder, path)):
            raise NotFound(f"no file {'/'.join(parts)} in project '{pid}'")
        return path

    def job_path(self, job: str) -> Path:
        if not isinstance(job, str) or not JOB_ID.fullmatch(job):
            raise NotFound(f"no job '{job}'")
        return self.root / ".jobs" / f"{job}.json"

    def lock(self, pid: str) -> threading.RLock:
        """The lock a request holds while it reads or changes the project."""
        with self._guard:
            return self._locks.setdefault(pid, threading.RLock())

    # --------------------------------------------------------------- projects
    def create(self, name: str) -> dict:
        pid = new_id()
        folder = self.root / pid
        tmp = tmp_name(folder)
        for sub in ("keyframes", "thumbs"):
            (tmp / sub).mkdir(parents=True)
        project = {"id": pid, "name": name, "created": time.time(), "keyframes": [], "settings": {}}
        atomic_write_json(tmp / PROJECT, project)
        os.replace(tmp, folder)
        return project

    def load(self, pid: str) -> dict:
        return json.loads((self.folder(pid) / PROJECT).read_text("utf-8"))

    def save(self, project: dict) -> None:
        atomic_write_json(self.folder(project["id"]) / PROJECT, project)

    def projects(self) -> list[dict]:
        found = []
        for entry in sorted(self.root.iterdir()):
            try:
                found.append(self.load(entry.name))
            except (NotFound, OSError, ValueError):
                continue  # not a project (a stray file, a half-made folder, a link)
        return sorted(found, key=lambda p: p["created"])

    def rendered(self, pid: str) -> dict | None:
        path = self.path(pid, RENDERED)
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def rebuild_input(self, project: dict) -> Path:
        """The walk's input folder: the keyframes in order as hard links (copies where links
        cannot be made), named so that their natural order is the project's."""
        pid = project["id"]
        final = self.path(pid, "input")
        tmp = tmp_name(final)
        tmp.mkdir()
        for i, kf in enumerate(project["keyframes"], 1):
            source = self.path(pid, "keyframes", kf["file"])
            target = tmp / input_name(i, kf)
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        old = final.with_name("input.old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final


def input_name(index: int, kf: dict) -> str:
    """A keyframe's name in the walk's input: its place, then the name the user gave it (an
    upload's file name, a prompt's text), so that the contact sheet shows that name; the
    stored file's extension, so that it is read as what it is."""
    given = Path(kf.get("name") or "").stem or " ".join(str(kf.get("prompt") or "").split()) or Path(kf["file"]).stem
    given = "".join("_" if c in '/\\\0' or ord(c) < 32 else c for c in given)
    suffix = Path(kf["file"]).suffix
    while len(f"{index:04d}_{given}{suffix}".encode("utf-8")) > 240 and given:
        given = given[:-1]
    return f"{index:04d}_{given}{suffix}"


def _places(named: dict[str, Path | None]) -> dict[str, str]:
    """{path as text: its name}, each place as given and as resolved, longest first (so
    ROOT inside home is ROOT); "/" is no place."""
    pairs: dict[str, str] = {}
    for name, place in named.items():
        if place is None:
            continue
        for form in (Path(place).absolute(), Path(place).resolve()):
            text = str(form).rstrip("/")
            if text and text not in pairs:
                pairs[text] = name
    return dict(sorted(pairs.items(), key=lambda p: len(p[0]), reverse=True))


def _hf_cache() -> Path | None:
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return Path(constants.HF_HUB_CACHE)


def _between(folder: Path, path: Path):
    """``path`` and each of its parents up to (not including) ``folder``."""
    while path != folder and folder in path.parents:
        yield path
        path = path.parent
