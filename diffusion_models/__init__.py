"""Stage 1: keyframes. Conform the originals, hallucinate S in-betweens per pair.

::

    INPUT/                        OUT/keyframes/
      01_first.jpg                  manifest.json        walk order: A1, K1..KS, A2, ..., An
      02 second.png      --->       units/<key>/000001.png   one folder per unit:
      notes.txt (skipped)             unit.json              a conformed original, or the
                                                             S in-betweens of a pair (A, B)

Inputs are read in natural order ('2' before '10'), normalised (EXIF rotation,
palette/CMYK/grey/16-bit/alpha to RGB) and conformed to W x H by a fit mode
(:mod:`diffusion_models.conform`). With ``--outpaint`` an image of another aspect is
contain-fitted and the engine's inpainting model paints the bars
(:mod:`diffusion_models.outpaint`), inside the original's unit.

The in-betweens come from the keyframe engine (:mod:`diffusion_models.engines`:
``none``, or the neural ``kandinsky``, ``unclip``, ``sd``), created once per run
from the config's engine options; its models load on first use only.

The run, in four steps a reader can follow in :func:`run`:

1. :func:`check`: every setting, the engine and its weights, and every input image
   not already conformed are checked before anything is written: one bad file, one
   line, no output;
2. conform the originals: one unit each, keyed by the file's bytes and the fit (with
   ``--outpaint``: the outpainting model's identity and the image's seed and prompt);
3. the in-betweens: one unit per pair (A_i, A_i+1), plus (A_n, A_1) with ``--loop``,
   keyed by both conformed keyframes, S, the pair's seed, the engine's identity and
   (``--prompts-csv``) the two prompts. A pair's seed derives from the walk seed and the
   pair's contents, so inserting an image elsewhere does not change it;
4. the walk order, then the manifest (last), then the units no longer used go.

A prompt walk (``--prompts SCHEDULE`` instead of INPUT) takes its keyframes from a
prompt schedule instead: text to image at each scheduled frame, and with ``--diffuse``
diffused in-betweens between them (:mod:`diffusion_models.prompt_walk`). The library
functions :func:`keyframe_from_prompt` and :func:`interpolate` are the same two
operations for callers that hold conditionings themselves (the studio).

A video init (``--video-init VIDEO --prompts SCHEDULE``) restyles the video's frames by
img2img instead, every ``--every``-th one, each at its own frame
(:mod:`diffusion_models.video_init`).

``run(KeyframeConfig(...)) -> KeyframeResult``; the CLI is ``python -m diffusion_models``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from artwalk import audio, limits
from artwalk.config import engine_options, record, setting
from artwalk.engines import EngineSpec
from artwalk.errors import ConfigError, InputError
from artwalk.executors import Executor, Unit, resolve
from artwalk.fsutil import sha256_file
from artwalk.images import list_images, load_image, read_frame
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key, check_layout, check_not_run_folder, check_run_folder, run_lock, \
    write_manifest
from artwalk.schedule import keyframe_seed, parse_prompt
from artwalk.sizes import check_side
from artwalk.timeline import DEFAULT_EASING, EASING_NAMES, MAX_FPS
from diffusion_models import outpaint as outpainting
from diffusion_models import prompt_walk
from diffusion_models import video_init
from diffusion_models.conform import FIT_MODES, conform
from diffusion_models.engines import ENGINES, KeyframeEngine, engine_for_model
from diffusion_models.prompt_walk import PromptPlan, describe_density, negative_of, parse_density, plan_prompts, \
    run_prompts
from artwalk.prompts import DESC, prompt_for, read_prompts_csv
from diffusion_models.video_init import VideoPlan

log = logging.getLogger(__name__)

STAGE = "keyframes"
CONFORM_VERSION = 1  # bump when conform's output bytes change
OUTPAINT_VERSION = 1  # bump when outpaint's geometry (mask, feather, composite) changes


# The settings only a prompt walk has (an image walk refuses them), and only a video init.
PROMPT_SETTINGS = ("prompts", "frames", "diffuse", "guidance_schedule", "seed_schedule")
VIDEO_SETTINGS = ("video_init", "start", "end", "strength_schedule", "color_match")


@dataclass(frozen=True)
class KeyframeConfig:
    input_dir: Path | None = setting(None, "folder of input images (natural order; other files are skipped)",
                                     cli=False)
    run_dir: Path | None = setting(None, "run folder to write (OUT)", cli=False)
    prompts: str | None = setting(None, "a prompt walk: a schedule file, or its text ('0: a corgi\\n60: a lion'), "
                                  "instead of INPUT (see `artwalk schedule`)", metavar="FILE|TEXT")
    frames: int | None = setting(None, "prompt walks: the walk's length in frames, max_f in the schedule (default "
                                 "the last keyframe's frame + 1; frames after it hold it)", metavar="N")
    diffuse: str | None = setting(None, "prompt walks: every (every frame diffused), keyframes (only the "
                                  "keyframes; the motion engine fills the rest) or N (N diffused in-betweens per "
                                  "segment, motion between them) (default keyframes)", metavar="every|keyframes|N")
    fps: float = setting(24.0, "frames per second of the video (prompt walks: what a schedule's 2.5s means)")
    easing: str = setting(DEFAULT_EASING, "timing curve between keyframes (prompt walks with --diffuse every: of "
                          "the diffused frames)", choices=EASING_NAMES)
    guidance_schedule: str | None = setting(None, "prompt walks: guidance per frame, a numeric schedule such as "
                                            "'0:(7.5), 30:(12)' (default: --guidance)", metavar="SCHEDULE")
    seed_schedule: str | None = setting(None, "prompt walks: each keyframe's seed, a numeric schedule such as "
                                        "'0:(42), 60:(7)' (default: from --seed and the prompt's text)",
                                        metavar="SCHEDULE")
    sync_audio: Path | None = setting(None, "put the keyframes (an image walk's originals and in-betweens, a prompt "
                                      "walk's scheduled prompts), in order, on a song's beats or onsets (see "
                                      "`artwalk audio`); the video lasts as long as the song, its soundtrack",
                                      metavar="SONG")
    sync_on: str | None = setting(None, "with --sync-audio: beats (the tracked tempo) or onsets (every attack) "
                                  f"(default {audio.DEFAULT_ON})", flags=("--on",), choices=audio.ON)
    every: int | None = setting(None, "with --sync-audio: a keyframe on every K-th event; with --video-init: "
                                "restyle every K-th frame (and the last), the motion engine fills between "
                                "(default 1)", metavar="K")
    sync_component: str | None = setting(None, "with --sync-audio: the part of the sound to follow (default "
                                         f"{audio.DEFAULT_COMPONENT})",
                                  flags=("--component",), choices=audio.COMPONENTS)
    trim: bool = setting(False, "with --sync-audio: end the video on the last keyframe, not at the song's end")
    video_init: Path | None = setting(None, "video init: restyle the frames of VIDEO (any format PyAV decodes) by "
                                      "img2img, each with its frame's prompt from --prompts; the walk keeps the "
                                      "video's frame rate", metavar="VIDEO")
    start: float | None = setting(None, "video init: where in the video the walk begins, in seconds (default 0)",
                                  metavar="SEC")
    end: float | None = setting(None, "video init: where in the video the walk ends, in seconds (default its end)",
                                metavar="SEC")
    strength_schedule: str | None = setting(None, "video init: img2img strength per frame, a number or a numeric "
                                            "schedule such as '0:(0.45), 48:(0.6)' (default --strength, else "
                                            "0.45)", metavar="SCHEDULE")
    color_match: str | None = setting(None, "video init: match each restyled frame's colours (Lab histograms) to "
                                      "the first restyled frame, the previous one, or none (default first)",
                                      choices=("first", "previous", "none"))
    width: int = setting(1280, "frame width of the walk, before upscaling", flags=("--w", "--width"), metavar="W")
    height: int = setting(720, "frame height of the walk, before upscaling", flags=("--h", "--height"),
                          metavar="H")
    fit: str = setting("cover", "how an image of another aspect fills W x H: cover (crop), contain-blur "
                       "(blurred bars) or contain-mirror (mirrored bars)", choices=FIT_MODES)
    square_crop: bool = setting(False, "square walk: min(W, H) a side, centre-cropped", flags=("--square_crop",))
    engine: str | None = setting(None, f"keyframe engine: {', '.join(ENGINES.names)} (default none, or the engine "
                                 "--model belongs to)", choices=ENGINES.names)
    interpolation_steps: int = setting(5, "S: in-between artworks generated per pair of images (engine none "
                                       "makes none)", flags=("--interpolation_steps", "-S"), metavar="S")
    seed: int = setting(0, "walk seed; each pair's seed derives from it and the pair's contents (prompt walks: "
                        "each keyframe's, from it and the prompt's text)")
    loop: bool = setting(False, "also walk from the last image back to the first")
    no_originals: bool = setting(False, "leave the originals out; keep only the in-betweens",
                                 flags=("--no_originals",))
    outpaint: bool = setting(False, "extend images of another aspect with the engine's inpainting model "
                             "instead of --fit")
    prompts_csv: Path | None = setting(None, "unclip, sd: 'image,prompt' rows; each in-between slerps its two "
                                       "images' prompts (images not listed use --prompt) (default INPUT/desc.csv "
                                       "when it is there: see `artwalk interrogate`)", metavar="CSV")
    progress: bool = setting(True, cli=False, key=False)
    verify: bool = setting(False, "check every reused unit's sha256, not only its size", control=True)
    wait: bool = setting(False, "if another process works in OUT, wait for it instead of stopping", control=True)
    # The neural engines' options; None: the engine's own default.
    model: str | None = setting(None, "the engine's model: registry name, hub id or folder: kandinsky's decoder, "
                                "unclip's pipeline, sd's checkpoint, or a bundle folder with prior/, decoder/, "
                                f"unclip/, sd/, inpaint/ inside ({ENGINES.defaults_text('model')})",
                                flags=("--model", "--model-path"), engine=True, metavar="NAME|ID|DIR")
    prior_model: str | None = setting(None, f"the prior ({ENGINES.defaults_text('prior_model')})", engine=True,
                                      metavar="NAME|ID|DIR")
    outpaint_model: str | None = setting(None, "the inpainting model for --outpaint "
                                         f"({ENGINES.defaults_text('outpaint_model')})", engine=True,
                                         metavar="NAME|ID|DIR")
    device: str | None = setting(None, "auto (cuda when there, else cpu), cpu, cuda, cuda:1, ...",
                                 engine=True)
    dtype: str | None = setting(None, "auto (float16 on cuda, float32 on cpu), float32, float16, bfloat16",
                                engine=True, choices=("auto", "float32", "float16", "bfloat16"))
    steps: int | None = setting(None, f"denoising steps ({ENGINES.defaults_text('steps')})", engine=True,
                                metavar="N")
    guidance: float | None = setting(None, f"classifier-free guidance scale ({ENGINES.defaults_text('guidance')})",
                                     engine=True, metavar="G")
    strength: float | None = setting(None, "sd: img2img strength from the slerped latents; kandinsky: below 1 "
                                     "starts each in-between from the nearer original, anchoring it to the real "
                                     f"paintings, 1 is off ({ENGINES.defaults_text('strength')})", engine=True,
                                     metavar="S")
    noise_level: int | None = setting(None, "unclip: noise added to the image embeddings, 0-999 "
                                      f"({ENGINES.defaults_text('noise_level')})", engine=True, metavar="N")
    prompt: str | None = setting(None, "unclip, sd: text prompt for every in-between (default none)", engine=True)
    negative_prompt: str | None = setting(None, "what to steer away from (kandinsky: through the prior); prompt "
                                          "walks: joined with each line's --neg", engine=True, metavar="TEXT",
                                          flags=("--negative-prompt", "--negative"))
    attention_slicing: bool | None = setting(None, "less GPU memory, a little slower", engine=True)
    vae_tiling: bool | None = setting(None, "unclip, sd: decode large frames in tiles", engine=True)
    cpu_offload: bool | None = setting(None, "keep models on the CPU and move each to the GPU only while "
                                       "it runs (small GPUs)", engine=True)

    def __post_init__(self) -> None:
        check_side("--w", self.width)
        check_side("--h", self.height)
        limits.check_frame_pixels(self.width, self.height)
        limits.check_inbetweens("--interpolation_steps", self.interpolation_steps)
        for flag, text in (("--prompt", self.prompt), ("--negative-prompt", self.negative_prompt)):
            limits.check_prompt(flag, text)
        if not (math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS):
            raise ConfigError(f"--fps must be a number in (0, {MAX_FPS:g}], got {self.fps}")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"--every must be 1 or more, got {self.every}")
        self._check_video_init()
        if self.sync_audio is None:
            given = [flag for flag, value in (("--on", self.sync_on), ("--component", self.sync_component),
                                              ("--trim", self.trim or None),
                                              ("--every", None if self.video_init else self.every))
                     if value is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: for --sync-audio SONG"
                                  + (" (or --every for --video-init VIDEO)" if "--every" in given else ""))
        else:
            if self.loop:
                raise ConfigError("--loop with --sync-audio: end the walk on the first image again instead (add "
                                  "it at the end of the folder)")
        if self.prompts is None:
            given = [flag for flag, value in (("--diffuse", self.diffuse), ("--frames", self.frames),
                                              ("--guidance-schedule", self.guidance_schedule),
                                              ("--seed-schedule", self.seed_schedule)) if value is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: for prompt walks (--prompts); an image walk makes -S "
                                  "in-betweens per pair")
        else:
            parse_density(self.diffuse)
            if self.frames is not None and self.frames < 1:
                raise ConfigError(f"--frames must be 1 or more, got {self.frames}")
            if self.frames is not None:
                limits.check_frames(self.frames, "--frames: the walk")
            if self.loop:
                raise ConfigError("--loop: a prompt walk returns to its start when its schedule says so; end the "
                                  "schedule with the first prompt again")
            for flag, value in (("--outpaint", self.outpaint), ("--prompts-csv", self.prompts_csv),
                                ("--no_originals", self.no_originals)):
                if value:
                    raise ConfigError(f"{flag} is for image walks, not prompt walks (--prompts)")

    def _check_video_init(self) -> None:
        if self.video_init is None:
            given = [flag for flag, value in (("--start", self.start), ("--end", self.end),
                                              ("--strength-schedule", self.strength_schedule),
                                              ("--color-match", self.color_match)) if value is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: for --video-init VIDEO")
            return
        if self.prompts is None:
            raise ConfigError("--video-init restyles each frame with its prompt: give --prompts SCHEDULE too")
        for flag, value in (("--sync-audio", self.sync_audio), ("--diffuse", self.diffuse),
                            ("--frames", self.frames)):
            if value is not None:
                raise ConfigError(f"{flag}: a video init takes its frames from the video (choose them with --start, "
                                  "--end and --every)")
        for flag, value in (("--start", self.start), ("--end", self.end)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{flag} must be zero or more seconds, got {value:g}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ConfigError(f"--end {self.end:g} must be after --start {self.start:g}")

    @property
    def song_settings(self) -> dict:
        """--sync-audio's component, events and stride, defaults filled in."""
        return {"component": self.sync_component or audio.DEFAULT_COMPONENT, "on": self.sync_on or audio.DEFAULT_ON,
                "every": self.every or 1}

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

    @property
    def engine_name(self) -> str:
        """The engine asked for: ``engine``, else the one ``model`` belongs to, else ``none``."""
        if self.engine is not None:
            return self.engine
        if self.model is None:
            return "none"
        guessed = engine_for_model(self.model)
        if guessed is None:
            raise ConfigError(f"--model {self.model}: cannot tell which engine it is for; add --engine "
                              "kandinsky|unclip|sd")
        return guessed


@dataclass
class KeyframeResult:
    run_dir: Path
    manifest: Path
    originals: int
    inbetweens: int
    reused: int
    computed: int
    seconds: float


@dataclass(frozen=True)
class Sync:
    """An image walk on a song: keyframe i at ``positions[i]``, ``frames`` frames in all."""

    positions: list[int]
    frames: int
    song: str


def plan_sync(config: KeyframeConfig, keyframes: int, steps: int) -> Sync:
    """Every K-th event of the song for each of the walk's ``keyframes``, in order."""
    song = config.song_settings
    hints = (["lower --every"] if song["every"] > 1 else []) + (["lower -S"] if steps else []) + ["use fewer images"]
    placed = audio.place(config.sync_audio, config.fps, keyframes, **song, trim=config.trim, hint=", ".join(hints))
    return Sync(placed.positions, placed.frames, str(Path(config.sync_audio).resolve()))


@dataclass
class KeyframePlan:
    """What :func:`check` found: the inputs, the engine, and the units already done."""

    images: list[Path]
    hashes: list[str]  # sha256 of each input file
    spec: EngineSpec
    engine: KeyframeEngine
    steps: int  # in-betweens per pair (0 for an engine that makes none)
    conform_keys: list[str]
    prompts: dict[str, str] | None = None
    default_prompt: str = ""
    seeds: list[int] = field(default_factory=list)  # per original, for outpainting
    prompt_walk: PromptPlan | None = None  # a prompt walk's keyframes and in-betweens
    video: VideoPlan | None = None  # a video init's frames
    sync: Sync | None = None  # --sync-audio: each keyframe's frame, and the walk's length

    def prompt_of(self, path: Path) -> str | None:
        return None if self.prompts is None else prompt_for(path.name, self.prompts, self.default_prompt)


def pair_seed(walk_seed: int, sha_a: str, sha_b: str) -> int:
    """A pair's seed: from the walk seed and the pair's contents, not its position."""
    return int(cache_key(seed=walk_seed, a=sha_a, b=sha_b)[:8], 16)


def image_seed(walk_seed: int, sha: str) -> int:
    """An original's seed (for outpainting): from the walk seed and the file's contents."""
    return int(cache_key(seed=walk_seed, image=sha)[:8], 16)


def _input_sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except PermissionError:
        raise InputError(f"{path}: permission denied reading the image") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the image ({exc.strerror or exc})") from None


def check_folders(input_dir: Path, run_dir: Path) -> None:
    """Refuse a run folder inside the input folder, or an input folder inside the run
    folder: the walk's own video and contact sheet would be read back as artworks; an
    input folder that is a run folder, and a run folder that holds images (the two swapped)."""
    check_not_run_folder(input_dir)
    inp, out = Path(input_dir).resolve(), Path(run_dir).resolve()
    if out == inp or out.is_relative_to(inp):
        raise ConfigError(f"{run_dir}: the run folder is inside the input folder {input_dir}; the walk's own "
                          "video and contact sheet would be read back as images: pick an output folder elsewhere")
    if inp.is_relative_to(out):
        raise ConfigError(f"{input_dir}: the input folder is inside the run folder {run_dir}; pick an output "
                          "folder elsewhere")
    check_run_folder(run_dir)


def check(config: KeyframeConfig, announce: bool = True) -> KeyframePlan:
    """Step 1: everything before any work. Raises one line; writes nothing.

    ``announce``: log what is skipped (non-image files; in-betweens an engine cannot
    make); a caller whose plan has said it already passes False.
    """
    if config.run_dir is None:
        raise ConfigError("give the run folder OUT")
    if (config.input_dir is None) == (config.prompts is None):
        raise ConfigError("give a folder of images (INPUT) or a prompt schedule (--prompts), not both"
                          if config.prompts is not None else "give a folder of images (INPUT) or --prompts")
    name = config.engine_name
    if config.video_init is not None:
        check_video_init(name)
    elif config.prompts is not None:
        check_text2image(name)
    engine = ENGINES.create_for(config, name)  # checks the options' values; loads no model yet
    spec = ENGINES.check_config(config, name, outpaint=config.outpaint)  # are the weights here?
    if config.video_init is not None:
        check_layout(config.run_dir)
        check_run_folder(config.run_dir)
        if Path(config.video_init).resolve().is_relative_to(Path(config.run_dir).resolve()):
            raise ConfigError(f"{config.video_init}: the video is inside the run folder {config.run_dir}; pick an "
                              "output folder elsewhere")
        video = video_init.plan_video(config, engine.text_identity(), engine.guidance)
        if announce:
            log.info("video init: %d of %d frame(s) of %s restyled (from frame %d, every %d), %dx%d at %g fps",
                     len(video.keyframes), video.frames, config.video_init, video.first, config.every or 1,
                     *config.size, video.info.fps)
        return KeyframePlan([], [], spec, engine, 0, [], video=video)
    if config.prompts is not None:
        check_layout(config.run_dir)
        check_run_folder(config.run_dir)
        walk = plan_prompts(config, engine.text_identity(), engine.guidance)
        return KeyframePlan([], [], spec, engine, 0, [], prompt_walk=walk)
    steps = config.interpolation_steps if "inbetweens" in spec.features else 0
    if steps:
        engine.check_image_walk()
    if config.no_originals and not steps:
        raise ConfigError("--no_originals leaves nothing to show without in-betweens (S = 0)")
    if config.outpaint and "outpaint" not in spec.features:
        raise ConfigError("--outpaint needs a diffusion engine; for a classical fill use --fit contain-blur")
    if config.prompts_csv is not None and "prompts" not in spec.features:
        raise ConfigError(f"engine '{name}' takes no prompts; --prompts-csv needs --engine sd or unclip")
    check_folders(config.input_dir, config.run_dir)
    check_layout(config.run_dir)
    images = list_images(config.input_dir, report=announce)
    if len(images) < 2:
        raise InputError(f"{config.input_dir}: 1 image; a walk goes from one image to the next and needs at "
                         "least 2")
    prompts = None
    csv_path = config.prompts_csv
    if csv_path is None and "prompts" in spec.features and (Path(config.input_dir) / DESC).is_file():
        csv_path = Path(config.input_dir) / DESC  # artwalk interrogate's, or written by hand
        if announce:
            log.info("prompts from %s (engine %s slerps each pair's two prompts)", csv_path, name)
    if csv_path is not None:
        prompts = read_prompts_csv(csv_path, allow_empty=config.prompts_csv is None) or None
        unknown = sorted(set(prompts) - {p.name for p in images} - {p.stem for p in images})
        if unknown:
            log.warning("%s: no image named %s in %s", csv_path, ", ".join(unknown), config.input_dir)
    sync = None
    if config.sync_audio is not None:  # before the images are decoded: a song that does not fit is one line
        count = (0 if config.no_originals else len(images)) + steps * (len(images) - 1)
        sync = plan_sync(config, count, steps)
        if announce:
            log.info("%d keyframe(s) on the %s of %s (every %d): frames %s; %d frames in all", count,
                     config.song_settings["on"], config.sync_audio, config.song_settings["every"],
                     _frames_text(sync.positions), sync.frames)
    hashes = [_input_sha256(p) for p in images]
    plan = KeyframePlan(images, hashes, spec, engine, steps, [], prompts, config.prompt or "",
                        [image_seed(config.seed, h) for h in hashes])
    plan.conform_keys = [_conform_key(config, plan, i) for i in range(len(images))]
    plan.sync = sync
    store = UnitStore(Path(config.run_dir) / STAGE)
    width, height = config.size
    for path, key in zip(progress(images, desc="checking inputs", enabled=config.progress, leave=False),
                         plan.conform_keys):
        if not store.has(key):
            load_image(path, min_size=(width, height))
    if config.interpolation_steps and not steps and announce:
        log.info("engine '%s' makes no in-betweens: the walk goes straight from original to original", name)
    return plan


def _frames_text(positions: list[int]) -> str:
    shown = ", ".join(map(str, positions[:8]))
    return shown + (f", ... {positions[-1]}" if len(positions) > 8 else "")


def _conform_key(config: KeyframeConfig, plan: KeyframePlan, i: int) -> str:
    width, height = config.size
    if config.outpaint:
        # The outpainting model's identity and the image's seed (and prompt) change its bytes.
        return cache_key(kind="original", sha256=plan.hashes[i], size=[width, height], fit="outpaint",
                         outpaint=plan.engine.outpaint_identity(), seed=plan.seeds[i],
                         prompt=plan.prompt_of(plan.images[i]), version=[CONFORM_VERSION, OUTPAINT_VERSION])
    return cache_key(kind="original", sha256=plan.hashes[i], size=[width, height], fit=config.effective_fit,
                     version=CONFORM_VERSION)


def run(config: KeyframeConfig, plan: KeyframePlan | None = None, executor: Executor | None = None) -> KeyframeResult:
    """The stage; ``plan``: what :func:`check` found for this config (a walk's plan made it);
    ``executor`` (:mod:`artwalk.executors`): where an image walk's pairs are made (default: here;
    conforming, prompt walks and video inits run here)."""
    start = time.monotonic()
    plan = plan or check(config)
    if plan.video is not None:
        return _run_video(config, plan, start)
    if plan.prompt_walk is not None:
        return _run_prompt_walk(config, plan, start)
    width, height = config.size
    log.info("%d image(s) from %s, conformed to %dx%d (%s)", len(plan.images), config.input_dir, width, height,
             "contain + outpaint" if config.outpaint else config.effective_fit)
    with run_lock(config.run_dir, config.wait) as run_dir:
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        originals = _conform_originals(config, plan, store, run_dir)
        pairs = _make_inbetweens(config, plan, store, run_dir, originals, executor)
        outputs = _walk_order(config, plan, originals, pairs)
        placed = {}
        if plan.sync is not None:  # each keyframe at its event's frame (stage 2 fills the gaps)
            for entry, frame in zip(outputs, plan.sync.positions, strict=True):
                entry["frame"] = frame
            placed = {"frames": plan.sync.frames, "song": {"path": plan.sync.song,
                                                           "sha256": sha256_file(plan.sync.song)}}
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(config), engine=plan.engine.identity(), **placed,
            **({"outpaint": plan.engine.outpaint_identity()} if config.outpaint else {}),
            inputs=[{"path": str(p), "sha256": h} for p, h in zip(plan.images, plan.hashes)],
            outputs=outputs, size=[width, height], originals=len(plan.images), inbetweens_per_pair=plan.steps,
            loop=bool(config.loop and len(plan.images) > 1),
        )
        store.prune()
    inbetweens = sum(len(p) for p in pairs)
    log.info("keyframes: %d original(s), %d in-between(s); %s", len(plan.images), inbetweens, store.summary())
    return KeyframeResult(run_dir=run_dir, manifest=manifest, originals=len(plan.images), inbetweens=inbetweens,
                          reused=store.reused, computed=store.computed, seconds=time.monotonic() - start)


def _run_prompt_walk(config: KeyframeConfig, plan: KeyframePlan, start: float) -> KeyframeResult:
    walk = plan.prompt_walk
    width, height = config.size
    log.info("%d prompt keyframe(s) over %d frames at %dx%d: %s", len(walk.keyframes), walk.frames, width, height,
             describe_density(walk.density))
    with run_lock(config.run_dir, config.wait) as run_dir:
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        outputs = run_prompts(config, walk, plan.engine, store, run_dir)
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(config), engine=plan.engine.text_identity(),
            inputs=[{"prompts": walk.schedule.source,
                     "keyframes": [{"frame": k.frame, "prompt": k.text, "negative": k.negative, "seed": k.seed}
                                   for k in walk.keyframes]}],
            outputs=outputs, size=[width, height], frames=walk.frames, originals=0,
            inbetweens_per_pair=0, loop=False, density=walk.density,
        )
        store.prune()
    log.info("keyframes: %d prompt keyframe(s), %d diffused in-between(s); %s", len(walk.keyframes),
             walk.inbetweens, store.summary())
    return KeyframeResult(run_dir=run_dir, manifest=manifest, originals=0, inbetweens=walk.inbetweens,
                          reused=store.reused, computed=store.computed, seconds=time.monotonic() - start)


def _run_video(config: KeyframeConfig, plan: KeyframePlan, start: float) -> KeyframeResult:
    video = plan.video
    width, height = config.size
    with run_lock(config.run_dir, config.wait) as run_dir:
        store = UnitStore.open(run_dir / STAGE, verify=config.verify)
        outputs = video_init.run_video(config, video, plan.engine, store, run_dir)
        manifest = write_manifest(
            run_dir / STAGE, STAGE, config=record(video_init.recorded_config(config, video)),
            engine=plan.engine.text_identity(),
            inputs=[{"video": str(Path(config.video_init).resolve()), "sha256": video.sha256,
                     "prompts": video.schedule.source}],
            outputs=outputs, size=[width, height], frames=video.frames, originals=0, inbetweens_per_pair=0,
            loop=False, video={"first": video.first, "fps": video.info.fps, "every": config.every or 1,
                               "color_match": video.color_match, "audio": video.info.has_audio},
        )
        store.prune()
    log.info("keyframes: %d restyled frame(s) of %d; %s", len(outputs), video.frames, store.summary())
    return KeyframeResult(run_dir=run_dir, manifest=manifest, originals=0, inbetweens=0, reused=store.reused,
                          computed=store.computed, seconds=time.monotonic() - start)


def _conform_originals(config: KeyframeConfig, plan: KeyframePlan, store: UnitStore,
                       run_dir: Path) -> list[tuple[str, str]]:
    """Step 2: (relpath, sha256 of the conformed PNG) of each original."""
    width, height = config.size
    originals = []
    desc = "outpainting" if config.outpaint else "conforming"
    for i, (path, key) in enumerate(zip(progress(plan.images, desc=desc, enabled=config.progress),
                                        plan.conform_keys)):
        found = store.lookup(key)
        if found is None:
            meta = {"seed": plan.seeds[i]} if config.outpaint else {}
            with store.build(key, source=path.name, **meta) as unit:
                rgb = load_image(path, min_size=(width, height))
                if config.outpaint:
                    rgb = outpaint_original(plan.engine, rgb, width, height, plan.seeds[i], plan.prompt_of(path))
                else:
                    rgb = conform(rgb, width, height, config.effective_fit)
                unit.save_png("000001.png", rgb)
            found = unit.record
        originals.append((store.relpath(key, "000001.png", run_dir), found["files"][0]["sha256"]))
    return originals


def _make_inbetweens(config: KeyframeConfig, plan: KeyframePlan, store: UnitStore, run_dir: Path,
                     originals: list[tuple[str, str]], executor: Executor | None = None) -> list[list[dict]]:
    """Step 3: the manifest entries of each pair's in-betweens, pair by pair (one unit each,
    made by the executor where it is not there yet)."""
    n, steps, images = len(plan.images), plan.steps, plan.images
    joins = list(zip(range(n), range(1, n))) + ([(n - 1, 0)] if config.loop and n > 1 else [])
    fractions = [k / (steps + 1) for k in range(1, steps + 1)]
    asked, records, units = [], {}, []
    bar = progress(total=len(joins) * steps, desc="in-betweens", enabled=config.progress and bool(steps))
    for i, j in joins if steps else []:
        sha_a, sha_b = originals[i][1], originals[j][1]
        seed = pair_seed(config.seed, sha_a, sha_b)
        prompts = None if plan.prompts is None else (plan.prompt_of(images[i]), plan.prompt_of(images[j]))
        extra = {} if prompts is None else {"prompts": list(prompts)}
        key = cache_key(kind="pair", a=sha_a, b=sha_b, fractions=fractions, seed=seed,
                        size=list(config.size), engine=plan.engine.identity(), **extra)
        asked.append((key, i, j, seed))
        if key in records or any(u.key == key for u in units):
            continue
        found = store.lookup(key)
        if found is None:
            units.append(Unit(key, {"pair": [images[i].name, images[j].name], "seed": seed, **extra}, _build_pair,
                              (originals[i][0], originals[j][0], fractions, seed, prompts),
                              (originals[i][0], originals[j][0]), steps))
        else:
            records[key] = found
            bar.update(steps)
    executor = resolve(executor)
    recipe = None if executor.name == "local" else ENGINES.recipe_for(config, config.engine_name)
    for u, made in zip(units, executor.build(store, run_dir, units, plan.engine, recipe, tick=bar.update)):
        records[u.key] = made
    bar.close()
    return [[{"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"], "kind": "inbetween",
              "pair": [images[i].name, images[j].name], "seed": seed} for f in records[key]["files"]]
            for key, i, j, seed in asked]


def _build_pair(unit, root: Path, engine, a_path: str, b_path: str, fractions: list[float], seed: int,
                prompts: tuple[str, str] | None, tick=lambda n=1: None) -> None:
    """One pair's unit (here or on a worker): the in-betweens of the conformed originals ``a_path``
    and ``b_path`` (under ``root``) at ``fractions``, one PNG each."""
    a, b = read_frame(root / a_path), read_frame(root / b_path)
    for k, rgb in enumerate(engine.inbetweens(a, b, fractions, seed, prompts=prompts), start=1):
        unit.save_png(f"{k:06d}.png", rgb)
        tick()


def _walk_order(config: KeyframeConfig, plan: KeyframePlan, originals: list[tuple[str, str]],
                pairs: list[list[dict]]) -> list[dict]:
    """Step 4: A1, K1..KS, A2, ... (without the originals for --no_originals)."""
    outputs: list[dict] = []
    for i, (relpath, sha) in enumerate(originals):
        if not config.no_originals:
            entry = {"path": relpath, "sha256": sha, "kind": "original", "source": plan.images[i].name}
            if config.outpaint:
                entry["seed"] = plan.seeds[i]
            outputs.append(entry)
        if i < len(pairs):
            outputs.extend(pairs[i])
    return outputs


# ---------------------------------------------------------------------------------------------
# The two operations of a prompt walk, for callers that hold conditionings (the studio)

_LAST_ENGINE: list = []  # [(options tag, engine)]: the last engine made, kept with its models loaded


def _text_engine(settings: KeyframeConfig) -> KeyframeEngine:
    """The engine of ``settings``: the one made last when the options are the same (its models
    stay loaded between calls), else a new one, which replaces it."""
    name = settings.engine_name
    check_text2image(name)
    tag = json.dumps([name, engine_options(settings)], sort_keys=True, default=str)
    if not _LAST_ENGINE or _LAST_ENGINE[0][0] != tag:
        ENGINES.check_config(settings, name)
        _LAST_ENGINE[:] = [(tag, ENGINES.create_for(settings, name))]
    return _LAST_ENGINE[0][1]


def check_video_init(name: str) -> None:
    if "video" not in ENGINES.get(name).features:
        raise ConfigError(f"a video init restyles each frame by img2img: engine '{name}' cannot; use --engine "
                          f"{' or '.join(n for n, s in ENGINES.specs.items() if 'video' in s.features)}")


def check_text2image(name: str) -> None:
    if "text2image" not in ENGINES.get(name).features:
        raise ConfigError(f"a prompt walk makes its keyframes from text: engine '{name}' cannot; use --engine "
                          f"{' or '.join(n for n, s in ENGINES.specs.items() if 'text2image' in s.features)}")


def keyframe_from_prompt(prompt: str, settings: KeyframeConfig):
    """Text to image of one prompt (the text of a schedule line: composable parts with
    weights, ``--neg``), at ``settings``' size, engine and model. Returns ``(image,
    conditioning)``: RGB float32 (H, W, 3) in [0, 1], and the
    :class:`~diffusion_models.conditioning.Conditioning` to hand to :func:`interpolate`.
    The seed derives from ``settings.seed`` and the prompt's text, as in a prompt walk."""
    key = parse_prompt(prompt)
    engine = _text_engine(settings)
    cond = engine.conditioning(key.parts, negative_of(settings.negative_prompt, key), keyframe_seed(settings.seed, key),
                               None, settings.size)
    return engine.render(cond), cond


def interpolate(cond_a, cond_b, times, settings: KeyframeConfig) -> list:
    """The images at ``times`` in [0, 1] from conditioning ``cond_a`` to ``cond_b``: text
    embeddings per part and noise SLERPed (:func:`diffusion_models.conditioning.mix`)."""
    return list(prompt_walk.interpolate(cond_a, cond_b, times, _text_engine(settings)))


def outpaint_original(engine: KeyframeEngine, rgb, width: int, height: int, seed: int, prompt: str | None = None):
    """Contain-fit ``rgb`` into W x H and let the engine's inpainting model paint the bars."""

    def paint(canvas, region):
        return engine.outpaint(canvas, region, seed, prompt=prompt)

    return outpainting.outpaint(rgb, width, height, paint)
