"""Atomic writes and disk-space checks.

Every file a stage finishes is written under a temporary name in the same folder
and renamed into place, so a killed run never leaves a file that a rerun would
mistake for finished. A unit of work with several files is built in a temporary
folder that is renamed as a whole (:func:`atomic_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

from artwalk.errors import DiskFullError, InputError

# ENOSPC: disk full; EDQUOT: quota; EFBIG: file-size limit (ulimit -f).
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
TMP_MARK = ".tmp-"


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes (about 1 GB/s)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_dir(path: Path | str, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents), or say in one line why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: the {what} is a file, not a folder; give a folder path")
    try:
        with disk_errors(path):
            path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise InputError(f"{path}: permission denied creating the {what}; pick a folder you can write to") from None
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{path}: cannot create the {what}: a file stands in its path") from None
    return path


def check_writable(path: Path | str, what: str = "output folder") -> None:
    """Raise one line unless ``path`` is, or could be created as, a folder this process may write in."""
    path = Path(path).absolute()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: the {what} is a file, not a folder; give a folder path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(f"{path}: permission denied: cannot write in the {what}")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{path}: cannot create the {what}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: permission denied: cannot create the {what} in {parent}")


def tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def disk_errors(path: Path | str) -> Iterator[None]:
    """Turn 'disk full' OS errors raised inside the block into :class:`DiskFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS:
            raise DiskFullError(
                f"no space left writing {path}: free some disk space and rerun the same"
                " command; finished work is kept"
            ) from None
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with disk_errors(path):
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes) atomically."""
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json_once(path: Path | str, obj: Any) -> None:
    """:func:`atomic_write_json`, unless the file holds exactly that JSON already (a rerun of a
    walk that changed nothing writes nothing, so it also runs on a full disk)."""
    text = (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        if Path(path).read_bytes() == text:
            return
    except OSError:
        pass
    atomic_write_bytes(path, text)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``final`` when the block succeeds.

    On any error the temporary folder is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    tmp.mkdir()
    try:
        with disk_errors(final):
            yield tmp
            if final.exists():  # a concurrent worker finished the same unit first
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def tmp_owner_alive(name: str) -> bool:
    """Whether the process that made temporary name ``<name>.tmp-<pid>-<random>`` still runs."""
    pid = name.rsplit(TMP_MARK, 1)[-1].split("-", 1)[0]
    if TMP_MARK not in name or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Delete temporary files/folders left by a killed run; return how many.

    A temporary item whose process still runs (another worker on the same stage) is kept.
    """
    count = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if TMP_MARK in entry.name and not tmp_owner_alive(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            count += 1
    return count


def free_bytes(path: Path) -> int:
    """Free space on the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
