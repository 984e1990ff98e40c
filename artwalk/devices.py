"""Device and dtype choice for the neural engines (PyTorch is imported lazily).

CPU and float32 by default; on CUDA the engines default to float16. ``--device``
and ``--dtype`` override; a model that cannot run in half precision says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from pathlib import Path
from typing import Iterator

from artwalk.errors import ConfigError, GpuMemoryError

DTYPES = ("float32", "float16", "bfloat16")


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA device.

    Cheap where the answer is no: without torch, or with a CPU-only build of it (its
    ``torch/version.py`` says ``cuda = None`` and ``hip = None``), torch is not
    imported (about 2 s).
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    try:
        version = (Path(spec.origin).parent / "version.py").read_text("utf-8")
    except OSError:
        version = ""
    cpu_only = all(re.search(rf"^{name}(: *Optional\[str\])? *= *None\s*$", version, re.M) for name in ("cuda", "hip"))
    if cpu_only:  # (a ROCm build says cuda = None too, but has hip)
        return False
    import torch

    return bool(torch.cuda.is_available())


@contextlib.contextmanager
def gpu_memory(what: str, advice: str) -> Iterator[None]:
    """Out of GPU memory inside the block becomes one :class:`GpuMemoryError` line:
    ``<what>: out of GPU memory; <advice>``. Every neural engine runs its models in one."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise GpuMemoryError(f"{what}: out of GPU memory; {advice}") from None


def resolve_device(name: str | None = None):
    """``None``/``auto``: CUDA when available, else CPU. Otherwise the named device."""
    import torch

    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown --device '{name}' ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: PyTorch sees no CUDA device here; use --device cpu")
    return device


def resolve_dtype(name: str | None, device, supports_half: bool = True):
    """``None``/``auto``: float16 on CUDA, float32 elsewhere."""
    import torch

    if name in (None, "", "auto"):
        name = "float16" if device.type == "cuda" and supports_half else "float32"
    if name not in DTYPES:
        raise ConfigError(f"unknown --dtype '{name}' (choose from {', '.join(DTYPES)})")
    if name != "float32" and not supports_half:
        raise ConfigError(f"this model does not support --dtype {name}; use float32")
    return getattr(torch, name)


def generator(seed: int):
    """A ``torch.Generator`` seeded for one unit of work.

    It lives on the CPU: noise drawn there is the same on every machine, and is then
    moved to the model's device.
    """
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))
