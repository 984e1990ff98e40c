"""Stage 1 for an infinite zoom: the levels, each the last one shrunk into the centre of the next.

::

    0: a forest clearing            OUT/keyframes/
    3: a city at night      --->      manifest.json     the levels, innermost first (kind level), and
                                                        zoom: the factor, the feather, the count
                                      units/<key>/level.png   one unit per level

Level 0 is text to image of the schedule's line for level 0 (``--start IMAGE``: that
image, cover-fitted to W x H). Level k+1 is level k shrunk by Z (``--zoom-factor``) into
the centre of a W x H canvas, and the border around it painted by the engine's
inpainting model with the prompt of level k+1 (the schedule is keyed by level: each
level takes the line at or before it). Before painting, the border is prefilled with a
blur of level k so the model continues its colours; after it, the painted border's mean
and spread (Lab) are matched to level k's edge, and level k is blended back in over a
ramp of ``--feather`` pixels inside its edge (:func:`artwalk.zoom.paste`; stage 2 composes
the frames with the same ramp).

``--through FOLDER`` makes the levels of the user's own images (in natural order, the
first innermost): each is cover-fitted to W x H and the level before it pasted into its
centre with the same feathered blend; no weights. With ``--engine sd`` a band across that
seam (twice the feather) is painted by the inpainting model instead.

Each level is a unit keyed by the level below it (its sha256), its prompt, negative, seed,
the factor, the size, the feather and the engine: a rerun reuses it, a killed run resumes,
and a changed prompt redoes its level and every level outside it.

``check_zoom(config) -> ZoomPlan`` checks everything first; ``run_zoom(config, plan)``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from artwalk.config import engine_options, flag_of, record, setting
from artwalk.errors import ConfigError
from artwalk.fsutil import sha256_file
from artwalk.images import list_images, load_image, read_frame_u8, to_uint8
from artwalk.models import check_present
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key, check_layout, check_not_run_folder, check_run_folder, run_lock, \
    write_manifest
from artwalk.schedule import Part, parse_numeric, read_prompts
from artwalk.sizes import check_side
from artwalk.zoom import check_factor, paste
from diffusion_models.conform import conform
from diffusion_models.engines import ENGINES
from diffusion_models.outpaint import feather_pixels

log = logging.getLogger(__name__)

STAGE = "keyframes"
LEVEL_FILE = "level.png"
ZOOM_VERSION = 1  # bump when a level's bytes change for the same inputs
ENGINE_NAMES = ("sd", "none")
_SD = ENGINES.get("sd")  # its defaults, stated on its registry row
MAX_LEVELS = 1000


@dataclass(frozen=True)
class ZoomLevelsConfig:
    run_dir: Path | None = setting(None, "run folder to write (OUT)", cli=False)
    prompts: str | None = setting(None, "the prompt schedule keyed by level, a file or its text ('0: a forest\\n3: "
                                  "a city'): each level takes the line at or before it", cli=False)
    through: Path | None = setting(None, "zoom through your own images instead: the images of FOLDER (natural "
                                   "order, the first innermost), each set into the centre of the next; no weights "
                                   "(with --engine sd the seams are painted)", metavar="FOLDER")
    start: Path | None = setting(None, "level 0 is this image (cover-fitted to W x H) instead of text to image",
                                 metavar="IMAGE")
    levels: int | None = setting(None, "how many levels (default: the schedule's last level + 1)", metavar="N")
    zoom_factor: float = setting(2.0, "Z: each level is the one before it shrunk by Z (any Z > 1: 1.5, 2, 4)",
                                 metavar="Z")
    width: int = setting(1280, "level width, before upscaling", flags=("--w", "--width"), metavar="W")
    height: int = setting(720, "level height, before upscaling", flags=("--h", "--height"), metavar="H")
    engine: str | None = setting(None, "sd (text to image, then inpainting) or none (--through only, no "
                                 "weights) (default sd; with --through none)", choices=ENGINE_NAMES)
    pre_prompt: str | None = setting(None, "text put before every level's prompt", metavar="TEXT")
    post_prompt: str | None = setting(None, "text put after every level's prompt (a style: 'oil painting, highly "
                               "detailed')", metavar="TEXT")
    negative_prompt: str | None = setting(None, "what to steer away from, joined with each line's --neg",
                                   flags=("--negative-prompt", "--negative"), metavar="TEXT")
    seed: int = setting(0, "the zoom's seed; each level's derives from it, its index and its prompt")
    seed_schedule: str | None = setting(None, "each level's seed, a numeric schedule keyed by level such as "
                                        "'0:(42), 3:(7)'", metavar="SCHEDULE")
    feather: int | None = setting(None, "pixels of the blend inside each pasted level's edge (default 2 percent of the "
                                  "shorter side; with --through 6 percent)", metavar="PX")
    color_match: bool = setting(True, "match each painted border's colours (Lab mean and spread) to the edge of "
                                "the level inside it")
    progress: bool = setting(True, cli=False, key=False)
    verify: bool = setting(False, "check every reused unit's sha256, not only its size", control=True)
    wait: bool = setting(False, "if another process works in OUT, wait for it instead of stopping", control=True)
    # sd's options; None: the engine's default
    model: str | None = setting(None, f"sd: the text-to-image model for level 0 (default {_SD.value('model', None)})", engine=True,
                                flags=("--model", "--keyframe-model"), metavar="NAME|ID|DIR")
    outpaint_model: str | None = setting(None, "sd: the inpainting model that paints each border (default "
                                         f"{_SD.value('outpaint_model', None)})", engine=True, metavar="NAME|ID|DIR")
    steps: int | None = setting(None, f"sd: denoising steps (default {_SD.value('steps', None)})", engine=True, metavar="N")
    guidance: float | None = setting(None, f"sd: classifier-free guidance (default {_SD.value('guidance', None)})", engine=True, metavar="G")
    device: str | None = setting(None, "sd: auto (CUDA when there), cpu, cuda, cuda:1, ...", engine=True)
    dtype: str | None = setting(None, "sd: float32, float16 or bfloat16 (default float16 on CUDA, float32 on CPU)",
                                engine=True, choices=("auto", "float32", "float16", "bfloat16"))

    def __post_init__(self) -> None:
        check_side("--w", self.width)
        check_side("--h", self.height)
        check_factor(self.zoom_factor)
        if self.levels is not None and not 2 <= self.levels <= MAX_LEVELS:
            raise ConfigError(f"--levels must be 2 to {MAX_LEVELS}, got {self.levels}")
        if self.feather is not None and not 0 <= self.feather <= min(self.width, self.height) // 4:
            raise ConfigError(f"--feather must be 0 to a quarter of the shorter side "
                              f"({min(self.width, self.height) // 4}), got {self.feather}")

    @property
    def engine_name(self) -> str:
        return self.engine or ("none" if self.through is not None else "sd")

    @property
    def mode(self) -> str:
        return "through" if self.through is not None else "start" if self.start is not None else "prompts"

    @property
    def feather_px(self) -> int:
        if self.feather is not None:
            return self.feather
        short = min(self.width, self.height)
        return max(1, round(short * 0.06)) if self.through is not None else feather_pixels(self.width, self.height)


@dataclass
class ZoomLevel:
    index: int
    parts: tuple[Part, ...]  # the prompt, with --pre-prompt and --post-prompt (empty: no prompt)
    negative: str
    seed: int
    image: Path | None = None  # --start (level 0) or --through
    sha256: str | None = None  # the image file's

    @property
    def text(self) -> str:
        return ", ".join(p.text for p in self.parts if p.weight > 0)


@dataclass
class ZoomPlan:
    levels: list[ZoomLevel]
    engine: object | None  # None for engine none
    feather: int
    identity: dict = field(default_factory=dict)


@dataclass
class ZoomLevelsResult:
    run_dir: Path
    manifest: Path
    levels: int
    reused: int
    computed: int
    seconds: float


def check_zoom(config: ZoomLevelsConfig, announce: bool = True) -> ZoomPlan:
    """Everything before any work: the mode, the engine and its weights, the schedule, the
    images. Raises one line; writes nothing."""
    if config.run_dir is None:
        raise ConfigError("give the run folder OUT")
    mode, name = config.mode, config.engine_name
    if config.through is not None and config.start is not None:
        raise ConfigError("--start is level 0 of a prompt zoom; with --through your first image is level 0")
    if config.through is None and config.prompts is None:
        raise ConfigError("give a prompt schedule (PROMPTS) or --through FOLDER")
    if config.through is not None and config.levels is not None:
        raise ConfigError("--levels: with --through each image is a level")
    options = engine_options(config)
    if name == "none":
        if config.through is None:
            raise ConfigError("engine none makes no pictures: it zooms --through FOLDER; use --engine sd for prompts")
        if options:
            raise ConfigError(f"{', '.join(flag_of(ZoomLevelsConfig, k) for k in options)}: for --engine sd")
        if config.prompts is not None:
            raise ConfigError("PROMPTS with --through paint the seams between your images: add --engine sd (or drop "
                              "the prompts)")
        unused = [flag for flag, value in (("--pre-prompt", config.pre_prompt), ("--post-prompt", config.post_prompt),
                                           ("--negative-prompt", config.negative_prompt),
                                           ("--seed-schedule", config.seed_schedule)) if value is not None]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: for --engine sd, which paints; engine none only blends your "
                              "images")
    check_layout(config.run_dir)
    check_run_folder(config.run_dir)
    images: list[Path] = []
    if config.through is not None:
        check_not_run_folder(config.through)
        images = list_images(config.through, report=announce)
        if len(images) < 2:
            raise ConfigError(f"{config.through}: a zoom through images needs at least 2, found {len(images)}")
        if len(images) > MAX_LEVELS:
            raise ConfigError(f"{config.through}: {len(images)} images, over the {MAX_LEVELS} levels a zoom takes")
        inside = Path(config.run_dir).resolve()
        if inside == Path(config.through).resolve() or inside.is_relative_to(Path(config.through).resolve()):
            raise ConfigError(f"{config.run_dir}: the run folder is inside {config.through}; its video would be read "
                              "back as an image: pick an output folder elsewhere")
    elif config.start is not None:
        images = [Path(config.start)]

    schedule = None
    if config.prompts is not None:
        schedule = read_prompts(config.prompts)
        count = len(images) if config.through is not None else config.levels or max(2, schedule.last_frame + 1)
        if schedule.last_frame >= count:
            raise ConfigError(f"{schedule.source}: a line for level {schedule.last_frame}, but the zoom has {count} "
                              f"levels (0 to {count - 1}); give --levels {schedule.last_frame + 1}")
    else:
        count = len(images)
    seeds = None
    if config.seed_schedule:
        seeds = parse_numeric(config.seed_schedule, max_frames=count, source="--seed-schedule").values(count,
                                                                                                      config.seed)
    levels = []
    for k in range(count):
        parts: tuple[Part, ...] = ()
        negative = config.negative_prompt or ""
        if schedule is not None:
            key = schedule.keys[schedule.at(k)[0]]
            parts = tuple(Part(", ".join(t for t in (config.pre_prompt, p.text, config.post_prompt) if t), p.weight)
                          for p in key.parts)
            negative = ", ".join(n for n in (config.negative_prompt, key.negative) if n)
        elif config.pre_prompt or config.post_prompt:
            parts = (Part(", ".join(t for t in (config.pre_prompt, config.post_prompt) if t)),)
        text = ", ".join(p.text for p in parts if p.weight > 0)
        seed = int(seeds[k]) % 2**32 if seeds is not None else int(cache_key(seed=config.seed, level=k,
                                                                              prompt=text)[:8], 16)
        image = images[k] if config.through is not None else images[0] if k == 0 and images else None
        levels.append(ZoomLevel(k, parts, negative, seed, image))

    for level in progress([lv for lv in levels if lv.image is not None], desc="checking inputs",
                          enabled=config.progress and len(images) > 1, leave=False):
        load_image(level.image, min_size=(config.width, config.height))  # one line if it is no image
        level.sha256 = sha256_file(level.image)
    engine, identity = None, {"engine": "none"}
    if name != "none":
        if mode == "prompts" and not levels[0].parts:
            raise ConfigError(f"{schedule.source}: level 0 has no prompt to make it from")
        spec = ENGINES.check(name, options, lambda option: flag_of(ZoomLevelsConfig, option))
        check_present(spec.model_for("outpaint_model", options), "hub")  # the weights, before anything loads
        if mode == "prompts":
            check_present(spec.model_for("model", options), "hub")
        engine = ENGINES.create(name, options, lambda option: flag_of(ZoomLevelsConfig, option),
                                progress=config.progress)
        identity = {"outpaint": engine.outpaint_identity(), **({"text": engine.text_identity()}
                                                              if mode == "prompts" else {})}
    if announce:
        log.info("zoom levels: %d, each the one before shrunk by %g, %dx%d, %s (engine %s, feather %d px)", count,
                 config.zoom_factor, config.width, config.height,
                 {"prompts": "level 0 from text", "start": f"level 0 from {config.start}",
                  "through": f"through the images of {config.through}"}[mode], name, config.feather_px)
    return ZoomPlan(levels, engine, config.feather_px, identity)


def level_key(config: ZoomLevelsConfig, plan: ZoomPlan, level: ZoomLevel, inner: str | None) -> str:
    """What a level's bytes depend on; ``inner`` is the sha256 of the level inside it."""
    # Engine none blends images, and a level 0 that is an image is that image: no prompt, seed or colour match.
    painted = plan.engine is not None and not (level.index == 0 and level.image is not None)
    return cache_key(kind="zoom-level", index=level.index, inner=inner, mode=config.mode, image=level.sha256,
                     parts=[[p.text, p.weight] for p in level.parts if p.weight != 0.0] if painted else None,
                     negative=level.negative if painted else None, seed=level.seed if painted else None,
                     factor=config.zoom_factor, size=[config.width, config.height], feather=plan.feather,
                     color_match=config.color_match if painted and config.mode != "through" else None,
                     engine=plan.identity, version=ZOOM_VERSION)


def run_zoom(config: ZoomLevelsConfig, plan: ZoomPlan | None = None) -> ZoomLevelsResult:
    start = time.monotonic()
    plan = plan or check_zoom(config)
    with run_lock(config.run_dir, config.wait) as run_dir:
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        outputs: list[dict] = []
        inner: np.ndarray | None = None
        with progress(total=len(plan.levels), desc="zoom levels", unit="level", enabled=config.progress) as bar:
            for level in plan.levels:
                key = level_key(config, plan, level, outputs[-1]["sha256"] if outputs else None)
                found = store.lookup(key)
                if found is None:
                    if inner is None and outputs:  # the level below was reused: read it back
                        inner = read_frame_u8(run_dir / outputs[-1]["path"])
                    rgb = make_level(config, plan, level, inner)
                    with store.build(key, level=level.index, prompt=level.text, seed=level.seed) as unit:
                        unit.save_png(LEVEL_FILE, rgb)
                    found = unit.record
                    inner = rgb
                else:
                    inner = None  # read only if a level outside it must be made
                outputs.append({"path": store.relpath(key, LEVEL_FILE, run_dir), "sha256": found["files"][0]["sha256"],
                                "kind": "level", "level": level.index, "prompt": level.text, "seed": level.seed,
                                **({"source": level.image.name} if level.image is not None else {})})
                bar.update()
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(config), engine=plan.identity, outputs=outputs,
            size=[config.width, config.height],
            zoom={"factor": config.zoom_factor, "feather": plan.feather / config.width, "levels": len(outputs),
                  "mode": config.mode},
        )
        store.prune()
    log.info("zoom levels: %d in %s; %s", len(outputs), run_dir / STAGE, store.summary())
    return ZoomLevelsResult(run_dir, manifest, len(outputs), store.reused, store.computed, time.monotonic() - start)


def make_level(config: ZoomLevelsConfig, plan: ZoomPlan, level: ZoomLevel, inner: np.ndarray | None) -> np.ndarray:
    """One level, RGB uint8 (H, W, 3); ``inner`` is the level inside it (None for level 0)."""
    width, height = config.width, config.height
    if level.image is not None:
        own = to_uint8(conform(load_image(level.image, min_size=(width, height)), width, height, "cover"))
        if inner is None:
            return own
        blended, weight = paste(inner, own, config.zoom_factor, plan.feather)
        if plan.engine is None:
            return blended
        return paint_seam(plan.engine, blended, weight, plan.feather, level)
    if inner is None:  # level 0 from text
        cond = plan.engine.conditioning(level.parts, level.negative, level.seed, None, (width, height))
        return to_uint8(plan.engine.render(cond))
    return outpaint_level(plan.engine, inner, config.zoom_factor, plan.feather, level, config.color_match)


def outpaint_level(engine, inner: np.ndarray, factor: float, feather: int, level: ZoomLevel,
                   color_match: bool = True) -> np.ndarray:
    """``inner`` shrunk by ``factor`` into the centre, the border painted by ``engine.outpaint``,
    its colours matched to ``inner``'s edge, ``inner`` blended back over the ramp."""
    height, width = inner.shape[:2]
    prefill = cv2.GaussianBlur(inner, (0, 0), sigmaX=max(2.0, min(width, height) / 24))
    canvas, weight = paste(inner, prefill, factor, feather)
    painted = engine.outpaint(canvas.astype(np.float32) / 255.0, weight < 1.0, level.seed, prompt=level.text,
                              negative=level.negative)
    painted = to_uint8(painted)
    if color_match:
        painted = match_border(painted, inner, weight, factor)
    return paste(inner, painted, factor, feather)[0]


def match_border(painted: np.ndarray, inner: np.ndarray, weight: np.ndarray, factor: float) -> np.ndarray:
    """``painted`` with its colours moved (Lab mean, and spread within 0.7-1.4x) so that its
    band just outside the pasted rectangle matches ``inner``'s own edge band."""
    height, width = inner.shape[:2]
    band = max(2, round(min(width, height) * 0.04))
    outside = weight <= 0.0
    near = cv2.dilate((weight > 0).astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0
    ring = outside & near
    edge = max(1, round(band * factor))  # the same band in the inner level's own pixels
    frame = np.zeros((height, width), bool)
    frame[:edge], frame[-edge:], frame[:, :edge], frame[:, -edge:] = True, True, True, True
    if ring.sum() < 16:
        return painted
    lab = cv2.cvtColor(painted.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ref = cv2.cvtColor(inner.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    src_mean, src_std = lab[ring].mean(0), lab[ring].std(0) + 1e-3
    ref_mean, ref_std = ref[frame].mean(0), ref[frame].std(0) + 1e-3
    gain = np.clip(ref_std / src_std, 0.7, 1.4)
    moved = (lab - src_mean) * gain + ref_mean
    out = cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_Lab2RGB)
    return to_uint8(out)


def paint_seam(engine, blended: np.ndarray, weight: np.ndarray, feather: int, level: ZoomLevel) -> np.ndarray:
    """``--through`` with a model: the band across the pasted edge (``2 x feather`` wide, the
    ramp and as much outside it) painted by the inpainting model and blended in softly."""
    height, width = blended.shape[:2]
    inside = (weight > 0).astype(np.uint8)
    out_d = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)  # pixels outside the pasted rectangle
    reach = float(max(1, feather))
    # 1 at the edge, falling to 0 at one feather outside it and at the ramp's inner end inside.
    soft = np.where(inside > 0, np.clip(1.0 - weight, 0.0, 1.0), np.clip(1.0 - out_d / reach, 0.0, 1.0))
    soft = soft.astype(np.float32)
    if not (soft > 0).any():
        return blended
    painted = engine.outpaint(blended.astype(np.float32) / 255.0, soft > 0, level.seed, prompt=level.text,
                              negative=level.negative)
    painted = to_uint8(painted)
    return cv2.blendLinear(painted, np.ascontiguousarray(blended), soft, 1.0 - soft)

