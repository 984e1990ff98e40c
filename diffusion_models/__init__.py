"""Stage 1: keyframes. Conform the originals, hallucinate S in-betweens per pair.

::

    INPUT/                        OUT/keyframes/
      01_first.jpg                  manifest.json        walk order: A1, K1..KS, A2, ..., An
      02 second.png      --->       units/<key>/000001.png   one folder per unit:
      notes.txt (skipped)             unit.json              a conformed original, or the
                                                             S in-betweens of a pair (A, B)

Inputs are read in natural order ('2' before '10'), normalised (EXIF rotation,
palette/CMYK/grey/16-bit/alpha to RGB) and conformed to W x H by a fit mode
(:mod:`diffusion_models.conform`). Every input is read and checked before anything
is written, so a bad file stops the run with one line and no output. With
``--outpaint`` an image of another aspect is contain-fitted and the engine's
inpainting model paints the bars (:mod:`diffusion_models.outpaint`), inside the
original's unit.

The in-betweens come from the keyframe engine (:mod:`diffusion_models.engines`:
``none``, or the neural ``kandinsky``, ``unclip``, ``sd``), created once per run
from the config's model options; its models load on first use only.

Units are cached by key (:mod:`artwalk.runfolder`): an original's key hashes its
file bytes and the fit (with ``--outpaint``: the outpainting model's identity and
seed); a pair's key hashes both conformed keyframes, S, the seed, the engine's
identity and, with ``--prompts-csv``, the two images' prompts. Each pair's seed is
derived from the walk seed and the pair's contents, so inserting an image
elsewhere does not change it; it is recorded in the manifest.

``run(KeyframeConfig(...)) -> KeyframeResult``; the CLI is ``python -m diffusion_models``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from artwalk.errors import ConfigError
from artwalk.images import list_images, load_image, read_frame, save_png
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key, config_dict, sha256_file, write_manifest
from diffusion_models import outpaint as outpainting
from diffusion_models.conform import FIT_MODES, conform
from diffusion_models.engines import create_engine, prompt_for, read_prompts_csv

log = logging.getLogger(__name__)

STAGE = "keyframes"
CONFORM_VERSION = 1  # bump when conform's output bytes change
OUTPAINT_VERSION = 1  # bump when outpaint's geometry (mask, feather, composite) changes

# KeyframeConfig fields that are the engine's options (None: the engine's default).
ENGINE_OPTIONS = (
    "model", "prior_model", "outpaint_model", "device", "dtype", "steps", "guidance", "strength",
    "prompt", "negative_prompt", "noise_level", "attention_slicing", "vae_tiling", "cpu_offload",
)


@dataclass(frozen=True)
class KeyframeConfig:
    input_dir: Path
    run_dir: Path
    width: int = 1280
    height: int = 720
    fit: str = "cover"
    square_crop: bool = False
    engine: str = "none"
    interpolation_steps: int = 5
    seed: int = 0
    loop: bool = False
    no_originals: bool = False
    outpaint: bool = False
    progress: bool = True
    # The neural engines' options; None means the engine's own default.
    model: str | None = None  # short name, hub id or local folder
    prior_model: str | None = None  # kandinsky's prior
    outpaint_model: str | None = None  # the inpainting model for --outpaint
    device: str | None = None  # auto: cuda when there, else cpu
    dtype: str | None = None  # auto: float16 on cuda, float32 on cpu
    steps: int | None = None
    guidance: float | None = None
    strength: float | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    prompts_csv: Path | None = None  # filename,prompt rows: each image's own prompt
    noise_level: int | None = None  # unclip
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not 16 <= value <= 16384:
                raise ConfigError(f"--{name} must be between 16 and 16384 pixels, got {value}")
        if self.fit not in FIT_MODES:
            raise ConfigError(f"unknown fit mode '{self.fit}' (choose from {', '.join(FIT_MODES)})")
        if self.interpolation_steps < 0:
            raise ConfigError(f"--interpolation_steps must be 0 or more, got {self.interpolation_steps}")

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of every keyframe; --square_crop makes it min(W, H) square."""
        if self.square_crop:
            side = min(self.width, self.height)
            return side, side
        return self.width, self.height

    @property
    def effective_fit(self) -> str:
        return "cover" if self.square_crop else self.fit

    def engine_options(self) -> dict:
        return {name: getattr(self, name) for name in ENGINE_OPTIONS}


@dataclass
class KeyframeResult:
    run_dir: Path
    manifest: Path
    originals: int
    inbetweens: int
    reused: int
    computed: int
    seconds: float


def pair_seed(walk_seed: int, sha_a: str, sha_b: str) -> int:
    """A pair's seed: from the walk seed and the pair's contents, not its position."""
    return int(cache_key(seed=walk_seed, a=sha_a, b=sha_b)[:8], 16)


def image_seed(walk_seed: int, sha: str) -> int:
    """An original's seed (for outpainting): from the walk seed and the file's contents."""
    return int(cache_key(seed=walk_seed, image=sha)[:8], 16)


def run(config: KeyframeConfig) -> KeyframeResult:
    start = time.monotonic()
    images = list_images(config.input_dir)
    engine = create_engine(config.engine, progress=config.progress, **config.engine_options())
    steps = config.interpolation_steps if engine.makes_inbetweens else 0
    if config.interpolation_steps and not engine.makes_inbetweens:
        log.info("engine 'none' makes no in-betweens: the walk goes straight from original to original")
    if config.no_originals and not steps:
        raise ConfigError("--no_originals leaves nothing to show without in-betweens (S = 0)")
    if config.outpaint and not hasattr(engine, "outpaint"):
        raise ConfigError(
            "--outpaint needs a diffusion engine; for a classical fill use --fit contain-blur"
        )
    prompts = None
    if config.prompts_csv is not None:
        if not getattr(engine, "takes_prompts", False):
            raise ConfigError(f"engine '{engine.name}' takes no prompts; --prompts-csv needs --engine sd or unclip")
        prompts = read_prompts_csv(config.prompts_csv)
        unknown = sorted(set(prompts) - {p.name for p in images} - {p.stem for p in images})
        if unknown:
            log.warning("%s: no image named %s in %s", config.prompts_csv, ", ".join(unknown), config.input_dir)
    width, height = config.size
    fit = config.effective_fit

    def image_prompt(path: Path) -> str | None:
        return None if prompts is None else prompt_for(path.name, prompts, config.prompt or "")

    # 1. Check every input before writing anything: one bad file, no output.
    hashes = [sha256_file(p) for p in images]
    store_dir = Path(config.run_dir) / STAGE
    if config.outpaint:
        # The outpainting model's identity and the image's seed (and prompt) change its bytes.
        conform_keys = [
            cache_key(kind="original", sha256=h, size=[width, height], fit="outpaint",
                      outpaint=engine.outpaint_identity(), seed=image_seed(config.seed, h),
                      prompt=image_prompt(p), version=[CONFORM_VERSION, OUTPAINT_VERSION])
            for p, h in zip(images, hashes)
        ]
    else:
        conform_keys = [
            cache_key(kind="original", sha256=h, size=[width, height], fit=fit, version=CONFORM_VERSION)
            for h in hashes
        ]
    cached = [(store_dir / "units" / k[:32] / "unit.json").is_file() for k in conform_keys]
    for path, done in zip(progress(images, desc="checking inputs", enabled=config.progress, leave=False), cached):
        if not done:
            load_image(path, min_size=(width, height))
    log.info("%d image(s) from %s, conformed to %dx%d (%s)", len(images), config.input_dir, width, height,
             "contain + outpaint" if config.outpaint else fit)

    store = UnitStore(store_dir)
    run_dir = Path(config.run_dir)

    # 2. Conform the originals: one unit each (outpainted inside the unit with --outpaint).
    originals = []  # (relpath, sha256 of the conformed PNG)
    desc = "outpainting" if config.outpaint else "conforming"
    for path, key, sha in zip(progress(images, desc=desc, enabled=config.progress), conform_keys, hashes):
        record = store.lookup(key)
        if record is None:
            meta = {"seed": image_seed(config.seed, sha)} if config.outpaint else {}
            with store.build(key, source=path.name, **meta) as (tmp, record):
                rgb = load_image(path, min_size=(width, height))
                if config.outpaint:
                    rgb = outpaint_original(engine, rgb, width, height, meta["seed"], image_prompt(path))
                else:
                    rgb = conform(rgb, width, height, fit)
                record["files"].append({"name": "000001.png", "sha256": save_png(tmp / "000001.png", rgb)})
        originals.append((store.relpath(key, "000001.png", run_dir), record["files"][0]["sha256"]))

    # 3. In-betweens: one unit per pair (A_i, A_i+1), plus (A_n, A_1) for a loop.
    joins = list(zip(range(len(images)), range(1, len(images))))
    if config.loop and len(images) > 1:
        joins.append((len(images) - 1, 0))
    fractions = [k / (steps + 1) for k in range(1, steps + 1)]
    pair_outputs: list[list[dict]] = []
    bar = progress(total=len(joins) * steps, desc="in-betweens", enabled=config.progress and bool(steps))
    for i, j in joins if steps else []:
        sha_a, sha_b = originals[i][1], originals[j][1]
        seed = pair_seed(config.seed, sha_a, sha_b)
        pair_prompts = None if prompts is None else (image_prompt(images[i]), image_prompt(images[j]))
        extra = {} if pair_prompts is None else {"prompts": list(pair_prompts)}
        key = cache_key(kind="pair", a=sha_a, b=sha_b, fractions=fractions, seed=seed,
                        size=[width, height], engine=engine.identity(), **extra)
        record = store.lookup(key)
        if record is None:
            a, b = read_frame(run_dir / originals[i][0]), read_frame(run_dir / originals[j][0])
            kwargs = {} if pair_prompts is None else {"prompts": pair_prompts}
            with store.build(key, pair=[images[i].name, images[j].name], seed=seed, **extra) as (tmp, record):
                for k, rgb in enumerate(engine.inbetweens(a, b, fractions, seed, **kwargs), start=1):
                    name = f"{k:06d}.png"
                    record["files"].append({"name": name, "sha256": save_png(tmp / name, rgb)})
                    bar.update()
        else:
            bar.update(steps)
        pair_outputs.append(
            [{"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"], "kind": "inbetween",
              "pair": [images[i].name, images[j].name], "seed": seed} for f in record["files"]]
        )
    bar.close()

    # 4. Walk order, then the manifest (last), then drop units this walk no longer uses.
    outputs: list[dict] = []
    for i, (relpath, sha) in enumerate(originals):
        if not config.no_originals:
            entry = {"path": relpath, "sha256": sha, "kind": "original", "source": images[i].name}
            if config.outpaint:
                entry["seed"] = image_seed(config.seed, hashes[i])
            outputs.append(entry)
        if i < len(pair_outputs):
            outputs.extend(pair_outputs[i])
    manifest = write_manifest(
        store_dir, STAGE,
        config=config_dict(config),
        engine=engine.identity(),
        **({"outpaint": engine.outpaint_identity()} if config.outpaint else {}),
        inputs=[{"path": str(p), "sha256": h} for p, h in zip(images, hashes)],
        outputs=outputs,
        size=[width, height],
        originals=len(images),
        inbetweens_per_pair=steps,
        loop=bool(config.loop and len(images) > 1),
    )
    store.prune()
    log.info("keyframes: %d original(s), %d in-between(s); %s", len(images),
             len(outputs) - (0 if config.no_originals else len(images)), store.summary())
    return KeyframeResult(
        run_dir=run_dir, manifest=manifest, originals=len(images),
        inbetweens=sum(len(p) for p in pair_outputs), reused=store.reused,
        computed=store.computed, seconds=time.monotonic() - start,
    )


def outpaint_original(engine, rgb, width: int, height: int, seed: int, prompt: str | None = None):
    """Contain-fit ``rgb`` into W x H and let the engine's inpainting model paint the bars."""
    kwargs = {} if prompt is None else {"prompt": prompt}

    def paint(canvas, region):
        return engine.outpaint(canvas, region, seed, **kwargs)

    return outpainting.outpaint(rgb, width, height, paint)
