"""Engine presets: which engine each stage uses on this machine.

``auto`` picks ``gpu`` when PyTorch sees a CUDA device and every stage's gpu engine
is installed (asked of the stages' registries, which use ``importlib.util.find_spec``
and import nothing), else ``cpu``; the walk states the choice and why in its first
log line.
"""

from __future__ import annotations

from dataclasses import dataclass

from artwalk.devices import cuda_available
from artwalk.errors import ConfigError
from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
from frame_interpolation.engines import ENGINES as MOTION_ENGINES
from super_resolution.engines import ENGINES as UPSCALE_ENGINES

REGISTRIES = {"keyframes": KEYFRAME_ENGINES, "motion": MOTION_ENGINES, "upscale": UPSCALE_ENGINES}


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


def missing_gpu_engines() -> list[str]:
    """The gpu preset's engines that are not installed here, as 'stage engine (needs ...)'."""
    gpu = PRESETS["gpu"]
    out = []
    for stage, registry in REGISTRIES.items():
        spec = registry.get(getattr(gpu, stage))
        if not spec.installed():
            out.append(f"{stage} {spec.name} ({spec.install})")
    return out


def resolve_preset(name: str) -> tuple[str, Engines, str]:
    """(chosen preset, its engines, a one-line reason)."""
    if name in PRESETS:
        return name, PRESETS[name], f"preset {name} (asked for)"
    if name != "auto":
        raise ConfigError(f"unknown preset '{name}' (choose auto, cpu or gpu)")
    if not cuda_available():
        return "cpu", PRESETS["cpu"], "preset auto: no CUDA device, using the cpu engines"
    missing = missing_gpu_engines()
    if missing:
        return "cpu", PRESETS["cpu"], f"preset auto: CUDA found but {'; '.join(missing)} not installed, using cpu"
    return "gpu", PRESETS["gpu"], "preset auto: CUDA device found, using the gpu engines"
