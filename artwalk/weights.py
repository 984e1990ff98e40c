"""Reading weights files safely: safetensors, or ``torch.load(weights_only=True)``.

Never an unrestricted pickle: a ``.pth`` that holds anything but tensors and plain
containers is refused, and the message does not suggest loading it unsafely. Every
failure is one :class:`UnsupportedWeightsError` line that names the file and says
what it is not. PyTorch is imported when a file is read, not before.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

from artwalk.errors import InputError, UnsupportedWeightsError, first_line


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "Unsupported global" in text:
        return "it holds Python objects besides tensors, which are not loaded because that could run code"
    if "zip archive" in text or "central directory" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return "it is truncated or corrupt"
    return "it is not a PyTorch weights file (.pth/.pt of tensors) nor a .safetensors file"


def is_torchscript(path: Path | str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in name or name.startswith("code/") for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_weights(path: Path | str, what: str = "weights") -> tuple[Any, dict[str, str]]:
    """(the object in a ``.safetensors``/``.pth``/``.pt`` file, safetensors metadata), on the CPU.

    A safetensors file gives its dict of tensors; a torch file whatever
    ``weights_only=True`` allows (tensors in dicts and lists).
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


def tensors_of(obj: Any) -> dict:
    """The tensors of a loaded dict (others dropped); empty when it is not a dict."""
    import torch

    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
