"""Engine presets: which engine each stage uses on this machine.

``auto`` picks ``gpu`` when PyTorch sees a CUDA device and every gpu engine is
installed, else ``cpu``; the driver states the choice and why in its first log line.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from artwalk.errors import ConfigError


@dataclass(frozen=True)
class Engines:
    keyframes: str
    motion: str
    upscale: str

    def __str__(self) -> str:
        return f"keyframes {self.keyframes}, motion {self.motion}, upscale {self.upscale}"


PRESETS = {
    "cpu": Engines(keyframes="none", motion="flow", upscale="lanczos"),
    "gpu": Engines(keyframes="kandinsky", motion="film", upscale="realesrgan"),
}


def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def gpu_engines_installed() -> bool:
    from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
    from frame_interpolation.engines import ENGINES as MOTION_ENGINES
    from super_resolution.engines import ENGINES as UPSCALE_ENGINES

    gpu = PRESETS["gpu"]
    return (gpu.keyframes in KEYFRAME_ENGINES and gpu.motion in MOTION_ENGINES
            and gpu.upscale in UPSCALE_ENGINES)


def resolve_preset(name: str) -> tuple[str, Engines, str]:
    """(chosen preset, its engines, a one-line reason)."""
    if name in PRESETS:
        return name, PRESETS[name], f"preset {name} (asked for)"
    if name != "auto":
        raise ConfigError(f"unknown preset '{name}' (choose auto, cpu or gpu)")
    if not cuda_available():
        return "cpu", PRESETS["cpu"], "preset auto: no CUDA device, using the cpu engines"
    if not gpu_engines_installed():
        return "cpu", PRESETS["cpu"], "preset auto: CUDA found but the gpu engines are not installed, using cpu"
    return "gpu", PRESETS["gpu"], "preset auto: CUDA device found, using the gpu engines"
