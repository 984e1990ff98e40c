"""Reading weights files safely: tensors only, nothing in a file ever runs.

- :func:`read_weights`: safetensors, or ``torch.load(weights_only=True)``. Never an
  unrestricted pickle: a ``.pth`` that holds anything but tensors and plain containers is
  refused, and the message does not suggest loading it unsafely. A TorchScript archive is
  refused too: ``torch.jit.load`` runs the code it carries (a module's ``__setstate__``
  runs while it loads, and can write files).
- :func:`read_torchscript`: the tensors of a TorchScript archive, read without running
  it, for the one published TorchScript export we use (FILM's). The archive is a zip::

      <root>/data.pkl        a pickle that rebuilds the module tree; tensors are references
                             to the records below (persistent ids)
      <root>/data/<n>        the raw bytes of storage n
      <root>/code/...        the module's code, never read here
      <root>/constants.pkl   constants of that code, never read here

  ``data.pkl`` goes through a restricted unpickler that knows six names: the
  ``__torch__.*`` classes become inert records of their attributes (their code is not
  looked at), ``torch.*Storage`` and ``torch._utils._rebuild_tensor_v2`` become tensors
  that view the archive's bytes, ``collections.OrderedDict`` and the list builders of
  ``torch.jit._pickle`` build plain containers; any other name is refused before anything
  is called. A module whose state is not a plain attribute dict (it has its own
  ``__setstate__``, which is code) is refused. Every callable the pickle can reach is
  made for that one read, so nothing a file does outlives it.

Every failure is one :class:`UnsupportedWeightsError` line that names the file and says
what it is not. PyTorch is imported when a file is read, not before.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from artwalk.errors import InputError, UnsupportedWeightsError, first_line

_ZIP_MAGIC = b"PK\x03\x04"
_TORCHSCRIPT = ("it is a TorchScript archive, which runs the code it carries when it is loaded; "
                "give the weights as a .safetensors file or a .pth/.pt of tensors")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "Unsupported global" in text:
        return "it holds Python objects besides tensors, which are not loaded because that could run code"
    if "zip archive" in text or "central directory" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return "it is truncated or corrupt"
    return "it is not a PyTorch weights file (.pth/.pt of tensors) nor a .safetensors file"


def _is_script_member(name: str) -> bool:
    return name.startswith("code/") or "/code/" in name or name.rsplit("/", 1)[-1] == "constants.pkl"


def is_torchscript(path: Path | str) -> bool:
    """Whether ``path`` holds a TorchScript archive (a zip with a ``code/`` folder or a
    ``constants.pkl``), also when other data comes first (an image with an archive appended)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(_is_script_member(name) for name in zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def read_weights(path: Path | str, what: str = "weights") -> tuple[Any, dict[str, str]]:
    """(the object in a ``.safetensors``/``.pth``/``.pt`` file, safetensors metadata), on the CPU.

    A safetensors file gives its dict of tensors; a torch file whatever
    ``weights_only=True`` allows (tensors in dicts and lists). A TorchScript archive is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    if path.stat().st_size == 0:
        raise UnsupportedWeightsError(f"{path}: cannot use these {what}: the file is empty (0 bytes)")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise UnsupportedWeightsError(
                f"{path}: cannot use these {what}: not a readable safetensors file ({first_line(exc)})") from None
        return state, meta
    if is_torchscript(path):
        raise UnsupportedWeightsError(f"{path}: cannot use these {what}: {_TORCHSCRIPT}")
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol ..."
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise InputError(f"{path}: permission denied reading the {what}") from None
    except Exception as exc:  # torch.load raises many types (KeyError on a text file)
        raise UnsupportedWeightsError(f"{path}: cannot use these {what}: {_reason(exc)}") from None
    return obj, {}


def refused_by_weights_only(exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` (or an error it was raised from) is
    ``torch.load(weights_only=True)`` refusing a file, as diffusers and transformers raise
    it for a ``.bin``; None for any other error. Unlike torch's own message, the reason never
    suggests loading the file unsafely."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if "weights_only=True`` with TorchScript" in text:
            return _TORCHSCRIPT.split(";")[0] + "; nothing in it was run"
        if "Weights only load failed" in text:
            return _reason(exc) + "; nothing in it was run"
        exc = exc.__cause__ or exc.__context__
    return None


def tensors_of(obj: Any) -> dict:
    """The tensors of a loaded dict (others dropped); empty when it is not a dict."""
    import torch

    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------- TorchScript, not run


@dataclass
class ScriptedWeights:
    """What :func:`read_torchscript` found: every tensor attribute of every module, keyed
    like ``state_dict()`` (``extract.convs.0.0.weight``), and the other attributes
    (``pyramid_levels``: plain values, containers, ``None``) under the same names."""

    tensors: dict = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)  # module name ('' the root) -> its class


class _Refused(pickle.UnpicklingError):
    """A name the pickle asked for that is not one of the few a module of tensors needs."""


class _ScriptObject:
    """A ``__torch__`` object of the archive: its class name and its state, nothing run."""

    qualname = ""
    state: Any = None

    def __setstate__(self, state: Any) -> None:  # pickle's BUILD: keep the state as data
        self.state = state


@dataclass(frozen=True, slots=True)  # slots: pickle's BUILD can neither edit nor extend it
class _StorageType:
    dtype: Any


@dataclass(frozen=True, slots=True)
class _Storage:
    dtype: Any
    flat: Any  # a 1-D tensor over the record's bytes


def _storage_dtypes() -> dict[str, Any]:
    import torch

    return {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
            "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
            "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
            "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
            "ComplexDoubleStorage": torch.complex128}


def _ints(values: Any) -> bool:
    return isinstance(values, (tuple, list)) and all(type(v) is int and v >= 0 for v in values)


class _ScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into inert records; see the module docstring."""

    def __init__(self, data: bytes, record: Callable[[str], bytes]) -> None:
        super().__init__(io.BytesIO(data))
        import torch

        self._torch = torch
        self._record = record
        self._storages: dict[str, _Storage] = {}
        self._classes: dict[str, type] = {}
        self._dtypes = _storage_dtypes()

        def ordered_dict(*args):  # made per read: a pickle that edits it edits only this copy
            return collections.OrderedDict(*args)

        def as_list(values, *_):
            if not isinstance(values, list):
                raise pickle.UnpicklingError("a list builder got a non-list")
            return values

        def restore_type_tag(value, *_):
            return value

        def rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
            if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0 \
                    or not _ints(size) or not _ints(stride) or len(size) != len(stride):
                raise pickle.UnpicklingError("a tensor record that is not storage, offset, size, stride")
            if hooks:
                raise pickle.UnpicklingError("a tensor with backward hooks")
            # A view of the archive's bytes (the bounds are checked by as_strided); nothing is
            # copied, so a huge shape of stride 0 costs nothing until a caller checks its shape.
            return storage.flat.as_strided(tuple(size), tuple(stride), offset)

        self._safe: dict[tuple[str, str], Callable] = {
            ("collections", "OrderedDict"): ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
            ("torch.jit._pickle", "build_intlist"): as_list,
            ("torch.jit._pickle", "build_doublelist"): as_list,
            ("torch.jit._pickle", "build_boollist"): as_list,
            ("torch.jit._pickle", "build_tensorlist"): as_list,
            ("torch.jit._pickle", "restore_type_tag"): restore_type_tag,
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._safe:
            return self._safe[module, name]
        if module == "torch" and name in self._dtypes:
            return _StorageType(self._dtypes[name])
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:  # an inert class per name and per read
                self._classes[qualname] = type(name, (_ScriptObject,), {"qualname": qualname})
            return self._classes[qualname]
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        torch = self._torch
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and type(pid[4]) is int):
            raise pickle.UnpicklingError("a reference that is not a tensor storage")
        _, kind, key, _location, numel = pid
        if key not in self._storages:
            raw = self._record(f"data/{key}")
            dtype = kind.dtype
            if len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, not {numel} x {dtype}")
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = _Storage(dtype, flat)
        storage = self._storages[key]
        if storage.dtype != pid[1].dtype:
            raise pickle.UnpicklingError(f"storage {key} is read as two types")
        return storage


def _archive_root(zf: zipfile.ZipFile, fail) -> str:
    roots = {name[: -len("/data.pkl")] for name in zf.namelist() if name.endswith("/data.pkl")}
    roots = {root for root in roots if root and "/" not in root}
    if len(roots) != 1:
        raise fail("it is not a TorchScript archive of a module (no single <name>/data.pkl)")
    return roots.pop()


def read_torchscript(path: Path | str, what: str = "weights") -> ScriptedWeights:
    """The tensors and plain attributes of a TorchScript archive, on the CPU, without running
    anything in it (see the module docstring). One line if it is not a plain module of tensors."""
    path = Path(path)

    def fail(why: str) -> UnsupportedWeightsError:
        return UnsupportedWeightsError(f"{path}: cannot use these {what}: {why}")

    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_ZIP_MAGIC))
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                first = min((info.header_offset for info in infos), default=0)
                if head != _ZIP_MAGIC or first != 0:
                    raise fail(f"other data comes before its TorchScript archive ({first} bytes, starting "
                               f"{head!r}), as in an image with an archive appended; a weights file is the "
                               "archive alone")
                root = _archive_root(zf, fail)

                def record(name: str) -> bytes:
                    try:
                        info = zf.getinfo(f"{root}/{name}")
                    except KeyError:
                        raise pickle.UnpicklingError(f"the record {root}/{name} is missing") from None
                    if info.compress_type != zipfile.ZIP_STORED:  # torch stores; no zip bombs
                        raise pickle.UnpicklingError(f"the record {root}/{name} is compressed")
                    return zf.read(info)

                try:
                    order = record("byteorder").decode("ascii", "replace").strip() \
                        if f"{root}/byteorder" in zf.namelist() else "little"
                except pickle.UnpicklingError as exc:
                    raise fail(f"a broken TorchScript archive ({exc})") from None
                if order != sys.byteorder:
                    raise fail(f"its tensors are {order}-endian, this machine is {sys.byteorder}-endian")
                try:
                    obj = _ScriptUnpickler(record("data.pkl"), record).load()
                except _Refused as exc:
                    raise fail(f"it is a TorchScript archive that names {exc}, which is not loaded because "
                               "that could run code") from None
                except UnsupportedWeightsError:
                    raise
                except Exception as exc:  # the unpickler raises many types on a damaged pickle
                    raise fail(f"a broken TorchScript archive ({type(exc).__name__}: {first_line(exc)})") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied reading the {what}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise fail(f"it is truncated or corrupt ({first_line(exc)})") from None
    out = ScriptedWeights()
    try:
        _collect(obj, "", out, fail, set())
    except RecursionError:
        raise fail("its modules are nested too deeply") from None
    return out


def _collect(obj: Any, prefix: str, out: ScriptedWeights, fail, seen: set[int]) -> None:
    """Walk the module tree: tensors and plain attributes under their dotted names."""
    import torch

    name = f"module {prefix.rstrip('.')}" if prefix else "root module"
    if not isinstance(obj, _ScriptObject):
        raise fail(f"its {name} is not a TorchScript module but a {type(obj).__name__}")
    if id(obj) in seen:
        raise fail(f"its {name} contains itself")
    seen.add(id(obj))
    if not isinstance(obj.state, dict) or not all(isinstance(k, str) for k in obj.state):
        raise fail(f"its {name} ({obj.qualname}) keeps a custom state that its own code (__setstate__) rebuilds "
                   "when torch loads it; only modules of plain attributes and tensors are read")
    out.classes[prefix.rstrip(".")] = obj.qualname
    for key, value in obj.state.items():
        if isinstance(value, torch.Tensor):
            out.tensors[prefix + key] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{key}.", out, fail, seen)
        else:
            out.attributes[prefix + key] = value
