"""Stage 3: upscale the walk's unique frames to the target size.

::

    OUT/frames/manifest.json       OUT/upscaled/
      unique frames + timeline       manifest.json         same frames, same timeline,
                          --->                             at the target size
                                     units/<key>/frame.png one unit per unique frame

With ``lanczos`` (an engine whose row has the ``streamed`` feature) nothing is stored:
the manifest lists the frames/ frames and the resize (``streamed``), and stage 4 resizes
each unique frame as it encodes it, with the very function that would have written it.
That saves the biggest intermediate of a walk (3.3 MB per 2560x1440 PNG) and the time to
write and read it. ``--keep-frames`` stores them as PNGs all the same.

A neural engine's frames are stored (``units/<key>/frame.png``) for stage 4, and the
manifest says ``release``: once stage 4 has encoded them into its chunks it frees the
PNGs (:func:`artwalk.runfolder.release`), and the chunks are then their only copy. A
released frame still counts as done, so a rerun upscales nothing unchanged; when stage 4
must encode a chunk again (other encode settings, another format) it asks for its frames
back, and ``run(..., restore=[indices])`` (the CLI's ``--restore``) upscales exactly
those again. ``--keep-frames`` keeps them.

Only unique frames are processed: a frame held for 48 video frames is upscaled
once. A frame's cache key hashes its bytes, the output size and the engine's
identity (for ``realesrgan``: the weights' hash, architecture, dtype, denoise
strength). Frames still to compute go to the engine ``batch`` at a time, on a thread
pool (OpenCV and PNG coding release the GIL; a neural engine runs one batch at a
time). Targets are the core's (:mod:`artwalk.sizes`); the engines are listed in
:mod:`super_resolution.engines`, the neural one's options in
:mod:`super_resolution.realesrgan`.

A zoom's levels (``OUT/keyframes/`` with a ``zoom`` section) are upscaled before any frame
is made: :func:`run_levels` writes ``OUT/levels/``, one unit per level at the target size,
from which stage 2's ``zoom`` engine composes every frame (so only the levels are
upscaled, never the frames).

``check(config)`` checks everything that needs no earlier stage (engine, options,
weights, target) and returns the engine; ``run(UpscaleConfig(...), engine=None) -> UpscaleResult``. The CLI is
``python -m super_resolution``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from artwalk.config import record, setting
from artwalk.errors import ConfigError
from artwalk.executors import Executor, Unit, resolve
from artwalk.framestore import FrameReader
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key, check_frames_current, read_manifest, run_lock, write_manifest
from artwalk.fsutil import sha256_file
from artwalk.sizes import NAMED_TARGETS, check_target, target_size
from super_resolution.engines import ENGINES, UpscaleEngine

log = logging.getLogger(__name__)

STAGE = "upscaled"
FRAME = "frame.png"


@dataclass(frozen=True)
class UpscaleConfig:
    run_dir: Path = setting(help="run folder (OUT) holding frames/", cli=False)
    target: str = setting("2k", f"output size: a scale (x2, 1.5), a name ({', '.join(NAMED_TARGETS)}) or WxH; "
                          "names and WxH are boxes the frame fits inside, keeping its aspect (2k = 2560x1440)",
                          flags=("--target", "-t"))
    engine: str = setting("lanczos", f"upscale engine: {', '.join(ENGINES.names)}", choices=ENGINES.names)
    workers: int = setting(0, "threads reading, upscaling and writing frames (0: one per CPU core)", key=False,
                           metavar="N")
    batch: int = setting(1, "frames per engine call", key=False, metavar="N")
    keep_frames: bool = setting(False, "store the upscaled frames as PNGs in upscaled/ even for lanczos, whose "
                                "resize otherwise runs during the encode and stores nothing")
    progress: bool = setting(True, cli=False, key=False)
    verify: bool = setting(False, "check every reused frame's sha256, not only its size", control=True)
    wait: bool = setting(False, "if another process works in OUT, wait for it instead of stopping", control=True)
    # realesrgan's options; None: the engine's default
    model: str | None = setting(None, "realesrgan: registry name (RealESRGAN_x4plus, RealESRGAN_x2plus, "
                                "realesr-general-x4v3, realesr-animevideov3) or a .pth / .safetensors file "
                                f"({ENGINES.defaults_text('model')})", engine=True, metavar="NAME|FILE")
    tile: int | None = setting(None, "realesrgan: tiles of this many input pixels a side, to bound memory; 0: "
                               f"whole frames ({ENGINES.defaults_text('tile')})", engine=True, metavar="PX")
    tile_pad: int | None = setting(None, "realesrgan: context pixels around each tile (default: the network's "
                                   "receptive radius, so tiles match whole frames; smaller is faster, approximate)",
                                   engine=True, metavar="PX")
    dtype: str | None = setting(None, "realesrgan: float32, float16 or bfloat16 (default float16 on CUDA, "
                                "float32 on CPU)", engine=True, choices=("auto", "float32", "float16", "bfloat16"))
    device: str | None = setting(None, "realesrgan: auto (CUDA when there), cpu, cuda, cuda:1, ...", engine=True)
    denoise_strength: float | None = setting(None, "realesrgan, realesr-general-x4v3 only: 0 keeps noise, "
                                             f"1 removes it ({ENGINES.defaults_text('denoise_strength')})",
                                             engine=True, metavar="D")

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more (0: one per CPU core), got {self.workers}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be 1 or more, got {self.batch}")
        check_target(self.target)


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


def check(config: UpscaleConfig) -> UpscaleEngine:
    """Everything that can be checked before stage 3 starts: the engine, its options and weights;
    returns the engine, made (its constructor checks the option values and reads the weights)."""
    ENGINES.check_config(config)
    return ENGINES.create_for(config)


def run(config: UpscaleConfig, engine: UpscaleEngine | None = None, executor: Executor | None = None,
        restore: Iterable[int] = ()) -> UpscaleResult:
    """Stage 3. ``executor`` (:mod:`artwalk.executors`): where the stored frames are upscaled
    (default: here, on a thread pool); a streamed engine stores nothing, so it has nothing to send.
    ``restore``: frames (indices into the manifest's ``frames``) that stage 4 released and needs
    again: they are upscaled again where released (see the module docstring)."""
    start = time.monotonic()
    engine = engine or check(config)
    with run_lock(config.run_dir, config.wait, create=False) as run_dir:
        source = read_manifest(run_dir, "frames")
        check_frames_current(run_dir, source)
        width, height = target_size(config.target, *source["size"])
        log.info("upscale: %d unique frame(s) %dx%d -> %dx%d with %s", len(source["frames"]),
                 *source["size"], width, height, engine.name)
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        identity = engine.identity()
        streamed = "streamed" in ENGINES.get(engine.name).features and not config.keep_frames
        if streamed:  # stage 4 resizes each frame as it encodes it
            frames = [dict(f) for f in source["frames"]]
            log.info("upscale: %s runs during the encode: no frames stored (--keep-frames stores them)",
                     engine.name)
        else:
            keys = [cache_key(kind="upscale", sha256=f["sha256"], size=[width, height], engine=identity)
                    for f in source["frames"]]
            rebuild = {keys[i] for i in restore if 0 <= i < len(keys)}
            records = _upscale_missing(config, engine, store, run_dir, source["frames"], keys, (width, height),
                                       executor=executor, rebuild=rebuild)
            frames = [{"path": store.relpath(key, FRAME, run_dir), "sha256": records[key]["files"][0]["sha256"],
                       "kind": f["kind"]} for key, f in zip(keys, source["frames"])]
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(config), engine=identity,
            upstream=sha256_file(run_dir / "frames" / "manifest.json"),
            inputs=[{k: f[k] for k in ("path", "index", "sha256") if k in f} for f in source["frames"]],
            outputs=frames, frames=frames, timeline=source["timeline"], fps=source["fps"], size=[width, height],
            **({"streamed": {"resize": identity, "from": list(source["size"])}} if streamed else
               {"release": not config.keep_frames}),  # stage 4 frees them once they are in its chunks
        )
        store.prune()
    log.info("upscale: %s", store.summary())
    return UpscaleResult(run_dir=run_dir, manifest=manifest, width=width, height=height,
                         unique_frames=len(frames), reused=store.reused, computed=store.computed,
                         seconds=time.monotonic() - start)


LEVELS = "levels"


def run_levels(config: UpscaleConfig, engine: UpscaleEngine | None = None,
               executor: Executor | None = None) -> UpscaleResult:
    """A zoom's levels at the target size: ``OUT/levels/`` (always stored, even for lanczos), one
    unit per level, made by ``executor`` (default: here)."""
    start = time.monotonic()
    engine = engine or check(config)
    with run_lock(config.run_dir, config.wait, create=False) as run_dir:
        source = read_manifest(run_dir, "keyframes")
        if "zoom" not in source:
            raise ConfigError(f"{run_dir / 'keyframes'} holds a walk's keyframes, not a zoom's levels; make them with "
                              "`artwalk zoom --levels-only`")
        width, height = target_size(config.target, *source["size"])
        levels = source["outputs"]
        log.info("upscale: %d zoom level(s) %dx%d -> %dx%d with %s", len(levels), *source["size"], width, height,
                 engine.name)
        store = UnitStore.open(run_dir / LEVELS, verify=config.verify)
        identity = engine.identity()
        keys = [cache_key(kind="upscale", sha256=f["sha256"], size=[width, height], engine=identity) for f in levels]
        records = _upscale_missing(config, engine, store, run_dir, levels, keys, (width, height), "upscaling levels",
                                   executor)
        outputs = [{**entry, "path": store.relpath(key, FRAME, run_dir), "sha256": records[key]["files"][0]["sha256"]}
                   for key, entry in zip(keys, levels)]
        manifest = write_manifest(
            run_dir / LEVELS, LEVELS, config=record(config), engine=identity,
            upstream=sha256_file(run_dir / "keyframes" / "manifest.json"),
            inputs=[{"path": f["path"], "sha256": f["sha256"]} for f in levels], outputs=outputs,
            size=[width, height], zoom=source["zoom"],
        )
        store.prune()
    log.info("upscale: %s", store.summary())
    return UpscaleResult(run_dir=run_dir, manifest=manifest, width=width, height=height, unique_frames=len(outputs),
                         reused=store.reused, computed=store.computed, seconds=time.monotonic() - start)


def _upscale_missing(config: UpscaleConfig, engine, store: UnitStore, run_dir: Path, sources: list[dict],
                     keys: list[str], size: tuple[int, int], desc: str = "upscaling",
                     executor: Executor | None = None, rebuild: set[str] = frozenset()) -> dict[str, dict]:
    """Each key's unit record: reused where intact (or released, unless its key is in
    ``rebuild``), else upscaled now (equal frames once): here on a thread pool, or with a Ray
    ``executor`` one unit (frame) per task or actor call."""
    records: dict[str, dict] = {}
    todo: dict[str, int] = {}  # key -> first frame with it
    for i, key in enumerate(keys):
        if key in records or key in todo:
            continue
        found = store.lookup(key, whole=key in rebuild)
        if found is None:
            todo[key] = i
        else:
            records[key] = found
    restored = len(rebuild.intersection(todo))
    if restored:
        log.info("upscale: upscaling %d released frame(s) again for the encode", restored)
    pending = list(todo)
    executor = resolve(executor)
    if executor.name != "local":
        units = [Unit(key, {"source": sources[todo[key]]["path"],
                            **({"index": sources[todo[key]]["index"]} if "index" in sources[todo[key]] else {})},
                      _upscale_frame, (sources[todo[key]], size), (sources[todo[key]]["path"],)) for key in pending]
        with progress(total=len(records) + len(pending), initial=len(records), desc=desc, unit="frame",
                      enabled=config.progress) as bar:
            for key, made in zip(pending, executor.build(store, run_dir, units, engine,
                                                         ENGINES.recipe_for(config), tick=bar.update)):
                records[key] = made
        return records
    batches = [pending[j:j + config.batch] for j in range(0, len(pending), config.batch)]
    reader = FrameReader(run_dir)

    def compute(batch: list[str]) -> int:
        entries = [sources[todo[key]] for key in batch]
        outs = engine.upscale_batch([reader.rgb(entry) for entry in entries], *size)
        for key, entry, rgb in zip(batch, entries, outs):
            with store.build(key, source=entry["path"], **({"index": entry["index"]} if "index" in entry else {})) \
                    as unit:
                unit.save_png(FRAME, rgb)
            records[key] = unit.record
        return len(batch)

    workers = config.workers or os.cpu_count() or 1
    with reader, progress(total=len(records) + len(pending), initial=len(records), desc=desc, unit="frame",
                          enabled=config.progress) as bar:
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            for done in pool.map(compute, batches):
                bar.update(done)
        finally:  # on a stop (Ctrl-C, a cancelled render) wait only for the batches already running
            pool.shutdown(wait=True, cancel_futures=True)
    return records


def _upscale_frame(unit, root: Path, engine, entry: dict, size: tuple[int, int], tick=lambda n=1: None) -> None:
    """One frame's unit on a worker: ``entry`` (under ``root``) upscaled to ``size``."""
    with FrameReader(root) as reader:
        rgb = reader.rgb(entry)
    unit.save_png(FRAME, engine.upscale_batch([rgb], *size)[0])
    tick(1)
