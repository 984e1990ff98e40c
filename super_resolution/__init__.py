"""Stage 3: upscale the walk's unique frames to the target size.

::

    OUT/frames/manifest.json       OUT/upscaled/
      unique frames + timeline       manifest.json         same frames, same timeline,
                          --->                             at the target size
                                     units/<key>/frame.png one unit per unique frame

Only unique frames are processed: a frame held for 48 video frames is upscaled
once. A frame's cache key hashes its bytes, the output size and the engine's
identity (for ``realesrgan``: the weights' hash, architecture, dtype, denoise
strength). Frames still to compute go to the engine ``batch`` at a time, on a thread
pool (OpenCV and PNG coding release the GIL; a neural engine runs one batch at a
time). See :mod:`super_resolution.engines` for targets and engines and
:mod:`super_resolution.realesrgan` for the neural engine's options.

``run(UpscaleConfig(...)) -> UpscaleResult``; the CLI is ``python -m super_resolution``.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from artwalk.errors import ConfigError
from artwalk.images import read_frame, save_png
from artwalk.progress import progress
from artwalk.runfolder import (
    UnitStore, cache_key, check_frames_current, config_dict, read_manifest, sha256_file, write_manifest,
)
from super_resolution.engines import create_engine, target_size

log = logging.getLogger(__name__)

STAGE = "upscaled"
FRAME = "frame.png"


@dataclass(frozen=True)
class UpscaleConfig:
    run_dir: Path
    target: str = "2k"
    engine: str = "lanczos"
    workers: int = 0  # 0: one per CPU core
    progress: bool = True
    # options of the neural engine (realesrgan); lanczos ignores them
    model: str = "RealESRGAN_x4plus"  # registry name or path to a .pth / .safetensors
    tile: int = 0  # 0: whole frames; else tile side in input pixels
    tile_pad: int | None = None  # context around a tile; None: the receptive radius (exact)
    batch: int = 1  # frames per network call
    dtype: str = "auto"  # auto: float16 on CUDA, float32 on CPU
    device: str = "auto"  # auto: CUDA when available
    denoise_strength: float | None = None  # realesr-general-x4v3 only; None: 0.5

    def __post_init__(self) -> None:
        if self.batch < 1 or self.tile < 0 or (self.tile_pad is not None and self.tile_pad < 0):
            raise ConfigError(f"--batch must be >= 1 and --tile, --tile-pad >= 0 "
                              f"(got {self.batch}, {self.tile}, {self.tile_pad})")

    def engine_options(self) -> dict:
        return {"model": self.model, "tile": self.tile, "tile_pad": self.tile_pad, "dtype": self.dtype,
                "device": self.device, "denoise_strength": self.denoise_strength}


@dataclass
class UpscaleResult:
    run_dir: Path
    manifest: Path
    width: int
    height: int
    unique_frames: int
    reused: int
    computed: int
    seconds: float


def run(config: UpscaleConfig) -> UpscaleResult:
    start = time.monotonic()
    run_dir = Path(config.run_dir)
    source = read_manifest(run_dir, "frames")
    check_frames_current(run_dir, source)
    engine = create_engine(config.engine, **config.engine_options())
    width, height = target_size(config.target, *source["size"])
    log.info("upscale: %d unique frame(s) %dx%d -> %dx%d with %s", len(source["frames"]),
             *source["size"], width, height, engine.name)

    store = UnitStore(run_dir / STAGE)
    identity = engine.identity()
    keys = [cache_key(kind="upscale", sha256=f["sha256"], size=[width, height], engine=identity)
            for f in source["frames"]]

    records: dict[str, dict] = {}
    todo: dict[str, int] = {}  # key -> first frame with it (equal frames are computed once)
    for i, key in enumerate(keys):
        if key in records or key in todo:
            continue
        record = store.lookup(key)
        if record is None:
            todo[key] = i
        else:
            records[key] = record
    pending = list(todo)
    batches = [pending[j:j + config.batch] for j in range(0, len(pending), config.batch)]
    upscale_batch = getattr(engine, "upscale_batch", None)

    def compute(batch: list[str]) -> int:
        paths = [source["frames"][todo[key]]["path"] for key in batch]
        rgbs = [read_frame(run_dir / path) for path in paths]
        if upscale_batch is not None and len(rgbs) > 1:
            outs = upscale_batch(rgbs, width, height)
        else:
            outs = [engine.upscale(rgb, width, height) for rgb in rgbs]
        for key, path, rgb in zip(batch, paths, outs):
            with store.build(key, source=path) as (tmp, record):
                record["files"].append({"name": FRAME, "sha256": save_png(tmp / FRAME, rgb)})
            records[key] = record
        return len(batch)

    workers = config.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool, progress(
            total=len(records) + len(pending), initial=len(records), desc="upscaling", unit="frame",
            enabled=config.progress) as bar:
        for done in pool.map(compute, batches):
            bar.update(done)
    frames = [{"path": store.relpath(key, FRAME, run_dir), "sha256": records[key]["files"][0]["sha256"],
               "kind": f["kind"]} for key, f in zip(keys, source["frames"])]

    manifest = write_manifest(
        run_dir / STAGE, STAGE,
        config=config_dict(config, drop=("progress", "run_dir", "workers", "batch", "device")),
        engine=identity,
        upstream=sha256_file(run_dir / "frames" / "manifest.json"),
        inputs=[{"path": f["path"], "sha256": f["sha256"]} for f in source["frames"]],
        outputs=frames, frames=frames, timeline=source["timeline"], fps=source["fps"],
        size=[width, height],
    )
    store.prune()
    log.info("upscale: %s", store.summary())
    return UpscaleResult(run_dir=run_dir, manifest=manifest, width=width, height=height,
                         unique_frames=len(frames), reused=store.reused, computed=store.computed,
                         seconds=time.monotonic() - start)
