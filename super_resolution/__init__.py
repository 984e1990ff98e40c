"""Stage 3: upscale the walk's unique frames to the target size.

::

    OUT/frames/manifest.json       OUT/upscaled/
      unique frames + timeline       manifest.json         same frames, same timeline,
                          --->                             at the target size
                                     units/<key>/frame.png one unit per unique frame

Only unique frames are processed: a frame held for 48 video frames is upscaled
once. A frame's cache key hashes its bytes, the output size and the engine's
identity. Frames are processed on a thread pool (OpenCV and PNG coding release the
GIL). See :mod:`super_resolution.engines` for targets and engines.

``run(UpscaleConfig(...)) -> UpscaleResult``; the CLI is ``python -m super_resolution``.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from artwalk.images import read_frame, save_png
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key, config_dict, read_manifest, sha256_file, write_manifest
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
    engine = create_engine(config.engine)
    width, height = target_size(config.target, *source["size"])
    log.info("upscale: %d unique frame(s) %dx%d -> %dx%d with %s", len(source["frames"]),
             *source["size"], width, height, engine.name)

    store = UnitStore(run_dir / STAGE)
    keys = [cache_key(kind="upscale", sha256=f["sha256"], size=[width, height], engine=engine.identity())
            for f in source["frames"]]

    def unit(i: int) -> dict:
        record = store.lookup(keys[i])
        if record is None:
            rgb = engine.upscale(read_frame(run_dir / source["frames"][i]["path"]), width, height)
            with store.build(keys[i], source=source["frames"][i]["path"]) as (tmp, record):
                record["files"].append({"name": FRAME, "sha256": save_png(tmp / FRAME, rgb)})
        f = source["frames"][i]
        return {"path": store.relpath(keys[i], FRAME, run_dir), "sha256": record["files"][0]["sha256"],
                "kind": f["kind"]}

    workers = config.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        frames = list(progress(pool.map(unit, range(len(keys))), total=len(keys), desc="upscaling",
                           unit="frame", enabled=config.progress))

    manifest = write_manifest(
        run_dir / STAGE, STAGE,
        config=config_dict(config, drop=("progress", "run_dir", "workers")), engine=engine.identity(),
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
