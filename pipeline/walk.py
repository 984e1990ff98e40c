"""The walk: one run folder through the four stages, planned and checked before any work.

::

    artwalk run INPUT OUT [flags]          plan, then the four stages in this process
    artwalk prompts SCHEDULE OUT [flags]   the same, with keyframes from a prompt schedule
    artwalk video-init VIDEO OUT --prompts SCHEDULE [flags]   the same, with a video's frames
                                           restyled by img2img
    artwalk plan [INPUT] OUT [flags]       plan only (full_pipeline.sh then runs each stage);
                                           --prompts SCHEDULE instead of INPUT

With ``--interrogate`` an image walk first writes INPUT/desc.csv (``artwalk interrogate``,
ranked with the keyframe model's CLIP family and counted by its tokenizer), which the
``sd`` and ``unclip`` engines read.

The walk's flags are the stages' own, made from their config dataclasses (so their
defaults live there, once): stage 1's ``--engine``/``--model`` (also spelt
``--keyframe-engine``/``--keyframe-model``), ``--motion-engine``/``--motion-model``,
``--upscale-engine``/``--upscale-model``, and every other stage flag under its own
name. ``--device``, ``--dtype`` and ``--batch`` go to every stage whose engine takes
them; ``--loop``, ``--verify`` and ``--wait`` to every stage.

The plan (:func:`plan_walk`) checks everything a walk needs before anything is
written: each stage's settings, engine and weights, every input image, the
soundtrack, the output paths and the disk space. It then states one plan line and
writes ``OUT/walk.json`` (what was asked, the engines, the frames, and the walk's key).
A walk whose run folder was cleaned (``--clean``) after its video was made, and whose
inputs and settings have not changed since, is up to date: nothing runs.

``--track mlflow [--tracking-uri URI]`` records the walk as an MLflow run (its settings,
prompts, seeds, stage timings, units reused and computed, the video and contact sheet;
see :mod:`pipeline.tracking`), by default in ``mlruns/`` beside the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import diffusion_models
import frame_interpolation
import generate_videos
import super_resolution
from artwalk import __version__
from artwalk.config import add_flags, engine_option_names, engine_options, flag_of, given, key_settings, record, \
    to_argv
from artwalk.devices import cuda_available
from artwalk.errors import ConfigError, InputError
from artwalk.executors import add_executor_flags, executor_from_args
from artwalk.fsutil import check_writable, free_bytes, human_bytes, sha256_file, write_json_once
from artwalk.plan import WalkPlan, plan_counts, plan_walk as plan_numbers
from artwalk.runfolder import MANIFEST, STAGE_DIRS, cache_key, check_layout, check_run_folder, run_lock
from artwalk.sizes import target_size
from artwalk.video import probe_video
from diffusion_models import PROMPT_SETTINGS, VIDEO_SETTINGS, KeyframeConfig, parse_density
from diffusion_models import video_init
from diffusion_models import interrogate as interrogation
from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
from diffusion_models.inspire import parse_every
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from pipeline import tracking
from pipeline.presets import REGISTRIES, Engines, resolve_preset
from super_resolution import UpscaleConfig

log = logging.getLogger("artwalk")


@dataclass(frozen=True)
class Stage:
    name: str
    config: type
    title: str
    renamed: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)  # field -> (flags, dest)
    exclude: tuple[str, ...] = ()
    helps: dict[str, str] = field(default_factory=dict)  # the walk's own words for a flag

    @property
    def dests(self) -> dict[str, str]:
        return {f: dest for f, (_, dest) in self.renamed.items()}

    def flag(self, option: str) -> str:
        """How the walk spells a field of this stage (--motion-model, not the stage's --model)."""
        return self.renamed[option][0][0] if option in self.renamed else flag_of(self.config, option)


STAGES = (
    Stage("keyframes", KeyframeConfig, "stage 1, keyframes (python -m diffusion_models)",
          {"engine": (("--engine", "--keyframe-engine"), "keyframe_engine"),
           "model": (("--model", "--keyframe-model"), "keyframe_model")},
          helps={"engine": "keyframe engine (default: the preset's, or the engine --model belongs to)"}),
    Stage("motion", MotionConfig, "stage 2, motion (python -m frame_interpolation)",
          {"engine": (("--motion-engine",), "motion_engine"), "model": (("--motion-model",), "motion_model")},
          helps={"engine": "motion engine (default: the preset's)"}),
    Stage("upscale", UpscaleConfig, "stage 3, upscaling (python -m super_resolution)",
          {"engine": (("--upscale-engine",), "upscale_engine"), "model": (("--upscale-model",), "upscale_model")},
          helps={"engine": "upscale engine (default: the preset's)"}),
    Stage("video", VideoConfig, "stage 4, video (python generate_videos.py)",
          {"output": (("--video", "-o"), "video")}, exclude=("source",)),
)
# Flags that several stages have; given once, they go to each stage that takes them.
SHARED = {
    "loop": "also walk from the last image back to the first (default off)",
    "verify": "check every reused unit's sha256, not only its size (default off)",
    "wait": "if another process works in OUT, wait for it instead of stopping (default off)",
    "device": "the neural engines' device: auto (CUDA when there), cpu, cuda, cuda:1, ... (default auto)",
    "dtype": "the neural engines' precision: auto (float16 on CUDA, float32 on CPU), float32, float16, bfloat16 "
             "(default auto)",
    "batch": "frames per network call for the neural motion and upscale engines (default: each engine's own)",
    "audio": "the soundtrack (wav, mp3, flac, m4a, ogg, ...), trimmed to the video; with --easing audio it also "
             "times the motion",
    "keep_frames": "store every motion frame and upscaled frame as a PNG file (otherwise a segment's motion frames "
                   "share one lossless video file, and a lanczos upscale runs during the encode, storing nothing) "
                   "(default off)",
}


# The keyframe engine of a prompt walk when neither --engine nor the preset names one that
# makes pictures from text (the cpu preset's is none).
TEXT_ENGINE = "sd"

# Stage 1 and 2 settings that only one kind of walk has: left out of the other's command.
PROMPT_ONLY = PROMPT_SETTINGS
IMAGE_ONLY = ("interpolation_steps", "no_originals", "outpaint", "prompts_csv", "outpaint_model", "fit",
              "square_crop", "sec_interpolation", "sec_freeze", "loop", "prompt", "strength", "noise_level")
# The zoom engine's options: `artwalk zoom` has them, a walk does not.
ZOOM_ONLY = ("seconds_per_level", "direction", "hold_start", "hold_end")
# A video init takes its frames, rate and length from the video (--fit and --strength it keeps).
NOT_VIDEO = tuple(f for f in IMAGE_ONLY if f not in ("fit", "strength")) + (
    "frames", "diffuse", "fps", "sync_audio", "sync_on", "sync_component", "trim", "prior_model")


# How `artwalk video-init` spells and words the flags whose meaning a video init changes.
VIDEO_FLAGS = {"keyframes": {"strength_schedule": ("--strength", "--strength-schedule")}}
VIDEO_HELPS = {
    "keyframes": {
        "strength_schedule": "img2img strength per frame: a number, or a numeric schedule such as '0:(0.45), "
                             f"48:(0.6)' (default {video_init.DEFAULT_STRENGTH})",
        "engine": "keyframe engine (default sd: img2img of each frame)",
        "prompts": "the prompt schedule, a file or its text ('0: a watercolour | ink:0.5' / '2s: an oil painting "
                   "--neg blur'): each frame takes the line at or before it; frames count from --start (see "
                   "`artwalk schedule`)",
        "easing": "timing of the motion frames between restyled frames (default linear, as the video moves)",
        "every": "restyle every K-th frame (and each schedule key's frame, and the last); the motion engine fills "
                 "between them (default 1: every frame)",
        "width": "frame width (default the video's; --w alone keeps its aspect)",
        "height": "frame height (default the video's; --h alone keeps its aspect)",
        "guidance_schedule": "guidance per frame, a numeric schedule such as '0:(7.5), 48:(12)' (default --guidance)",
        "seed_schedule": "each frame's seed, a numeric schedule such as '0:(42), 48:(7)' (default --seed on every "
                         "frame: the same noise keeps the restyle steady)",
    },
    "upscale": {"target": "upscale to this size: a scale (x2, 1.5), a name (2k, 4k, ...) or WxH (default: no "
                          "upscaling; the video keeps its size)"},
}


def add_walk_flags(p: argparse.ArgumentParser, source: str = "images") -> None:
    """The walk's flags. ``source``: images (INPUT OUT), prompts (SCHEDULE OUT), video
    (VIDEO OUT, ``artwalk video-init``), either ([INPUT] OUT, with --prompts instead of
    INPUT: ``artwalk plan``), or batch (an image walk's flags without INPUT, OUT and
    --video, which ``artwalk batch`` sets for each walk)."""
    if source == "prompts":
        p.add_argument("prompts", metavar="SCHEDULE", nargs="?",
                       help="prompt schedule: a file of 'FRAME: prompt' lines, or that text itself "
                       "(see `artwalk schedule`); or --from-images FOLDER instead")
    elif source == "video":
        p.add_argument("video_init", type=Path, metavar="VIDEO",
                       help="the video whose frames are restyled (any format PyAV decodes); its frame rate, size "
                       "and sound are the walk's")
    elif source != "batch":
        p.add_argument("input", type=Path, metavar="INPUT", nargs="?" if source == "either" else None,
                       help="folder of input images (natural order; other files are skipped)")
    if source != "batch":
        p.add_argument("output", type=Path, metavar="OUT", nargs="?" if source == "either" else None,
                       help="run folder to write (reruns resume and reuse work)")
    skip = {"images": PROMPT_ONLY + VIDEO_SETTINGS, "prompts": IMAGE_ONLY + VIDEO_SETTINGS,
            "video": ("video_init", "strength", *NOT_VIDEO), "either": (),
            "batch": PROMPT_ONLY + VIDEO_SETTINGS + (STAGES[3].dests["output"],)}[source] + ZOOM_ONLY
    walk = p.add_argument_group("the walk")
    walk.add_argument("--preset", default="auto", choices=["auto", "cpu", "gpu"],
                      help="engine set: gpu (Kandinsky, FILM, Real-ESRGAN) or cpu (classical, no weights); auto "
                      "picks gpu when CUDA and the gpu engines are there (default auto); --engine, "
                      "--motion-engine and --upscale-engine override it per stage")
    walk.add_argument("--no-upscale", action="store_true", help="skip stage 3; encode the frames as they are")
    if source != "either":  # a walk that runs here (`artwalk plan` runs nothing; full_pipeline.sh runs each stage)
        add_executor_flags(walk)
        tracking.add_tracking_flags(p.add_argument_group("run records (pipeline/tracking.py)"))
    if source == "prompts":
        desc = p.add_argument_group(f"prompts from images ({interrogation.DESC})")
        desc.add_argument("--from-images", type=Path, metavar="FOLDER",
                          help=f"instead of SCHEDULE: a keyframe per image of FOLDER (in its order), prompted by "
                          f"its row of FOLDER/{interrogation.DESC} (`artwalk interrogate FOLDER` writes it), "
                          "--step apart; --frames defaults to the last one's frame plus --step")
        desc.add_argument("--step", metavar="2s|48", help="with --from-images: the step between keyframes, seconds "
                          "(2s, 2.5s) or frames (48) (default 2s)")
    elif source != "video":
        asked = p.add_argument_group("prompts from the images (artwalk interrogate)")
        asked.add_argument("--interrogate", action="store_true",
                           help="first write INPUT/desc.csv, a prompt per image (BLIP caption + CLIP ranking, as "
                           "`artwalk interrogate` does; only new or changed images, hand edits kept); the sd and "
                           "unclip engines then slerp each pair's two prompts")
        asked.add_argument("--interrogate-mode", choices=interrogation.MODES, metavar="MODE",
                           help=f"with --interrogate: {', '.join(interrogation.MODES)} (default classic)")
    seen: set[str] = set(skip) | ({"prompts"} if source == "prompts" else set())
    for name, text in SHARED.items():  # in the walk's own words, as they serve several stages
        owner = next(s for s in STAGES if name in {f.name for f in dataclasses.fields(s.config)})
        add_flags(walk, owner.config, names=[name], seen=seen, helps={name: text})
    for stage in STAGES:
        flags = {f: spellings for f, (spellings, _) in stage.renamed.items()}
        helps = dict(stage.helps)
        if source == "video":  # its own words, and --strength takes a schedule (the spelling)
            flags.update(VIDEO_FLAGS.get(stage.name, {}))
            helps.update(VIDEO_HELPS.get(stage.name, {}))
        add_flags(p.add_argument_group(stage.title), stage.config, exclude=stage.exclude, seen=seen,
                  flags=flags, dests=stage.dests, helps=helps)


def walk_source(args: argparse.Namespace) -> None:
    """``artwalk plan [INPUT] OUT``: with --prompts, the one folder given is OUT.
    ``artwalk prompts --from-images FOLDER OUT``: the schedule is made of FOLDER/desc.csv."""
    if "from_images" in vars(args):
        _schedule_from_images(args)
    inp, out, prompts = getattr(args, "input", None), args.output, getattr(args, "prompts", None)
    if getattr(args, "video_init", None) is not None and prompts is None:
        raise ConfigError("a video init restyles each frame with its prompt: give --prompts SCHEDULE")
    if prompts is not None and out is None:
        args.input, args.output = None, inp
    elif prompts is not None and inp is not None:
        raise ConfigError("give a folder of images (INPUT) or a prompt schedule (--prompts), not both")
    elif prompts is None and (inp is None or out is None):
        raise ConfigError("give INPUT and OUT (or --prompts SCHEDULE and OUT)")
    if args.output is None:
        raise ConfigError("give the run folder OUT")


def _schedule_from_images(args: argparse.Namespace) -> None:
    folder, every = args.from_images, args.step
    if folder is None:
        if every is not None:
            raise ConfigError("--step is for --from-images FOLDER; a schedule places its keyframes itself")
        if args.prompts is None:
            raise ConfigError("give a SCHEDULE (or --from-images FOLDER) and OUT")
        return
    if args.output is None and args.prompts is not None:  # --from-images FOLDER OUT: the one positional is OUT
        args.output, args.prompts = Path(args.prompts), None
    if args.prompts is not None:
        raise ConfigError("give a SCHEDULE or --from-images FOLDER, not both")
    every = every or "2s"
    args.prompts, count = interrogation.schedule_from_desc(folder, every)
    if "frames" not in vars(args) and "sync_audio" not in vars(args):  # the last image held as long as the others
        step = parse_every(every)
        fps = vars(args).get("fps", KeyframeConfig.fps)
        args.frames = max(1, round(float(step.value) * count * (fps if step.seconds else 1)))
    log.info("%d keyframe(s) from %s, %s apart", count, folder / interrogation.DESC, every)


@dataclass
class Walk:
    """A planned walk: the stages' configs, what the user gave each, the plan, the key."""

    input_dir: Path | None  # None for a prompt walk
    run_dir: Path
    preset: str
    reason: str
    engines: Engines
    keyframes: KeyframeConfig
    motion: MotionConfig
    upscale: UpscaleConfig | None
    video: VideoConfig
    given: dict[str, dict[str, Any]]  # stage -> {field: value} the user gave (and the engines)
    interrogate: interrogation.InterrogateConfig | None = None  # --interrogate: desc.csv before stage 1
    keyframe_plan: diffusion_models.KeyframePlan | None = None
    motion_engine: object = None  # made by the plan's checks, used by the run
    upscale_engine: object = None
    plan: WalkPlan | None = None
    key: str = ""
    up_to_date: bool = False  # cleaned after its video was made, and unchanged since: nothing runs
    current: bool = False  # its video is made of exactly this walk (or up to date): a batch skips it
    executor: object = None  # where the units run (artwalk.executors; None: here)

    @property
    def configs(self) -> tuple:
        """The four stages' configs in order (upscale None with --no-upscale)."""
        return self.keyframes, self.motion, self.upscale, self.video

    def stage_argv(self, quiet: bool = False, verbose: bool = False) -> dict[str, list[str]]:
        """Each stage's command-line arguments: only what was given, plus the engines."""
        extra = (["--quiet"] if quiet else []) + (["--verbose"] if verbose else [])
        asked = self.interrogate
        argv = {
            "interrogate": [] if asked is None else
            [*to_argv(interrogation.InterrogateConfig, {"mode": asked.mode, "target": asked.target,
                                                        "tokenizer": asked.tokenizer, "device": asked.device,
                                                        "dtype": asked.dtype}),
             "--only-new", *(["--wait"] if asked.wait else []), *extra, "--", str(self.input_dir)],
            "keyframes": [*to_argv(KeyframeConfig, self.given["keyframes"]), *extra, "--",
                          *([] if self.input_dir is None else [str(self.input_dir)]), str(self.run_dir)],
            "motion": [*to_argv(MotionConfig, self.given["motion"]), *extra, "--", str(self.run_dir)],
            "upscale": [] if self.upscale is None else
            [*to_argv(UpscaleConfig, self.given["upscale"]), *extra, "--", str(self.run_dir)],
            "video": [*to_argv(VideoConfig, {**self.given["video"], "source": self.video.source}), *extra, "--",
                      str(self.run_dir)],
        }
        return argv


def configure(args: argparse.Namespace) -> Walk:
    """The stages' configs from the walk's flags (each config checks its own values)."""
    walk_source(args)
    inp = getattr(args, "input", None)
    preset, engines, reason = resolve_preset(args.preset)
    values = {stage.name: given(args, stage.config, stage.dests) for stage in STAGES}
    prompt_walk = values["keyframes"].get("prompts") is not None
    if values["keyframes"].get("video_init") is not None:
        _video_defaults(args, values)
    elif prompt_walk:  # what only an image walk reads would do nothing: say so rather than drop it
        dropped = [stage.flag(f) for stage in STAGES for f in values[stage.name] if f in IMAGE_ONLY]
        if dropped:
            raise ConfigError(f"{', '.join(dict.fromkeys(dropped))}: for image walks; a prompt walk places its "
                              "keyframes at their scheduled frames (see --diffuse and --frames)")
        if parse_density(values["keyframes"].get("diffuse")) == "every":  # every frame is diffused
            if values["motion"].get("engine", "none") != "none":
                raise ConfigError(f"--diffuse every leaves no frame to move: drop --motion-engine "
                                  f"{values['motion']['engine']}")
            values["motion"]["engine"] = "none"
    progress = not getattr(args, "quiet", False)
    if args.no_upscale:  # stage 3's own flags would do nothing: say so rather than drop them
        dropped = [STAGES[2].flag(f) for f in values["upscale"] if f not in SHARED]
        if dropped:
            raise ConfigError(f"--no-upscale skips stage 3, so {', '.join(dropped)} would do nothing; drop one or "
                              "the other")
    # The engines: given per stage, else the preset's; a keyframe --model alone implies its engine.
    if "engine" not in values["keyframes"]:
        model = values["keyframes"].get("model")
        values["keyframes"]["engine"] = engines.keyframes if model is None else \
            KeyframeConfig(input_dir=inp, run_dir=args.output, model=model,
                           prompts=values["keyframes"].get("prompts")).engine_name
        if prompt_walk and "text2image" not in KEYFRAME_ENGINES.get(values["keyframes"]["engine"]).features:
            values["keyframes"]["engine"] = TEXT_ENGINE  # a prompt walk's keyframes are made from text
    for stage in ("motion", "upscale"):
        values[stage].setdefault("engine", getattr(engines, stage))
    _route_shared(args, values)
    song = values["keyframes"].get("sync_audio")
    gif = _is_gif(values["video"])
    if song is not None and gif and "audio" not in values["video"]:
        log.info("the keyframes follow %s; a gif has no sound, so the video is silent", song)
    elif song is not None:  # the song the keyframes follow is the soundtrack
        given_audio = values["video"].setdefault("audio", song)
        if Path(given_audio).resolve() != Path(song).resolve():
            raise ConfigError(f"--audio {given_audio} and --sync-audio {song}: the walk follows one song and plays "
                              "it; give one of them")
    if values["motion"].get("easing") == "audio":  # the motion follows the soundtrack
        if values["video"].get("audio") is None:
            raise ConfigError("--easing audio moves with a song: give --audio SONG or --sync-audio SONG")
        values["motion"]["audio"] = values["video"]["audio"]
    else:
        values["motion"].pop("audio", None)
    keyframes = KeyframeConfig(input_dir=inp, run_dir=args.output, progress=progress, **values["keyframes"])
    engines = Engines(keyframes.engine_name, values["motion"]["engine"], values["upscale"]["engine"])
    motion = MotionConfig(run_dir=args.output, progress=progress, **values["motion"])
    upscale = None if args.no_upscale else UpscaleConfig(run_dir=args.output, progress=progress,
                                                         **values["upscale"])
    video = VideoConfig(run_dir=args.output, progress=progress, source="frames" if args.no_upscale else "upscaled",
                        **values["video"])
    walk = Walk(None if inp is None else Path(inp), Path(args.output), preset, reason, engines, keyframes, motion,
                upscale, video, values)
    walk.interrogate = _interrogation(args, keyframes, progress)
    walk.executor = executor_from_args(args)
    return walk


def _video_defaults(args: argparse.Namespace, values: dict[str, dict]) -> None:
    """A video init keeps the video's frame rate, size (unless --w/--h) and sound (unless
    --audio); it is restyled by ``sd``, moves linearly between restyled frames, and is not
    upscaled unless a stage-3 flag asks for it."""
    dropped = [stage.flag(f) for stage in STAGES for f in values[stage.name] if f in NOT_VIDEO]
    if dropped:
        raise ConfigError(f"{', '.join(dict.fromkeys(dropped))}: not for a video init, which takes its frames, "
                          "frame rate and length from the video (choose them with --start, --end and --every)")
    kf = values["keyframes"]
    info = probe_video(kf["video_init"])
    if "engine" not in kf and "model" not in kf:
        kf["engine"] = "sd"
    if "engine" in kf:  # before the other engines' options are routed by it
        diffusion_models.check_video_init(kf["engine"])
    for stage in ("keyframes", "motion"):
        values[stage]["fps"] = info.fps
    width, height = kf.get("width"), kf.get("height")
    if width is None and height is None:
        width, height = info.width, info.height
    elif height is None:  # one side given: the other keeps the video's aspect
        height = max(2, 2 * round(width * info.height / info.width / 2))
    elif width is None:
        width = max(2, 2 * round(height * info.width / info.height / 2))
    kf["width"], kf["height"] = width, height
    if (kf.get("every") or 1) == 1:  # every frame restyled: nothing to move
        values["motion"].setdefault("engine", "none")
    values["motion"].setdefault("easing", "linear")  # the video moves evenly between its frames
    if not args.no_upscale and not [f for f in values["upscale"] if f not in SHARED]:
        args.no_upscale = True  # the video's own size unless --target (or an upscale engine) asks for more
    if "audio" not in values["video"] and info.has_audio and not _is_gif(values["video"]):
        # its own sound, as it is: from --start, no fade (a gif has none)
        values["video"]["audio"] = kf["video_init"]
        values["video"].setdefault("audio_start", round((kf.get("start") or 0.0) * info.fps) / info.fps)
        values["video"].setdefault("audio_fade", 0.0)


def _is_gif(video: dict) -> bool:
    """Whether stage 4's given settings make a gif (which has no sound)."""
    fmt = video.get("format")
    if video.get("output") is None:
        return (fmt or "mp4").lower() == "gif"
    return Path(video["output"]).suffix.lower() == ".gif" if fmt is None else fmt.lower() == "gif"


def _interrogation(args: argparse.Namespace, keyframes: KeyframeConfig, progress: bool):
    """``--interrogate``: the settings of the desc.csv it writes, for the keyframe engine's model."""
    mode = getattr(args, "interrogate_mode", None)
    if not getattr(args, "interrogate", False):
        if mode is not None:
            raise ConfigError("--interrogate-mode is for --interrogate: give both, or neither")
        return None
    if keyframes.prompts is not None:
        raise ConfigError("--interrogate writes prompts for an image walk; a prompt walk takes them from "
                          "--from-images FOLDER or its schedule")
    spec = KEYFRAME_ENGINES.get(keyframes.engine_name)
    if spec is None or "prompts" not in spec.features:
        raise ConfigError(f"--interrogate: engine '{keyframes.engine_name}' reads no prompts; use --engine sd or "
                          "unclip")
    if keyframes.prompts_csv is not None:
        raise ConfigError(f"--interrogate writes INPUT/{interrogation.DESC}, which --prompts-csv would replace: "
                          "drop one")
    model = spec.model_for("model", engine_options(keyframes))
    # Rows made before, by `artwalk interrogate` with its own settings, are kept (only_new).
    return interrogation.InterrogateConfig(
        folder=keyframes.input_dir, mode=mode or "classic", target=interrogation.target_of(model, spec.name),
        tokenizer=model, device=keyframes.device, dtype=keyframes.dtype, only_new=True, wait=keyframes.wait,
        progress=progress)


def _route_shared(args: argparse.Namespace, values: dict[str, dict]) -> None:
    """A shared engine option (--device, --dtype, --batch) stays only with the stages whose
    engine takes it; one that no stage's engine takes is an error."""
    for name in ("device", "dtype", "batch"):
        if name not in vars(args):
            continue
        takers = []
        for stage in STAGES[:3]:
            if name not in values[stage.name] or (stage.name == "upscale" and args.no_upscale):
                continue
            if name in engine_option_names(stage.config):
                engine = values[stage.name].get("engine")
                spec = REGISTRIES[stage.name].get(engine) if engine else None
                if spec is None or name not in spec.options:
                    del values[stage.name][name]
                    continue
            takers.append(stage.name)
        if not takers:
            raise ConfigError(f"--{name}: no stage of this walk takes it (engines: "
                              f"{', '.join(str(values[s.name].get('engine')) for s in STAGES[:3])})")


def plan_walk(args: argparse.Namespace) -> Walk:
    """Configure and check the whole walk; log the engines and the plan. Writes nothing."""
    walk = configure(args)
    log.info("artwalk %s: %s (%s)", __version__, walk.reason, walk.engines)
    if walk.executor.name != "local":
        log.info("units of work run on %s", walk.executor.describe())
    if walk.preset == "gpu" and not cuda_available():
        log.warning("warning: --preset gpu without a CUDA device here: the neural engines will run on the CPU, "
                    "very slowly")
    check_writable(walk.run_dir, "run folder")
    check_layout(walk.run_dir)
    check_engines(walk)
    kf = diffusion_models.check(walk.keyframes, announce=True)  # INPUT and OUT swapped, among the rest
    check_run_folder(walk.run_dir, "walk")  # a zoom's run folder
    walk.keyframe_plan = kf
    every_frame = (kf.prompt_walk is not None and kf.prompt_walk.density == "every") or (
        kf.video is not None and len(kf.video.keyframes) == kf.video.frames)
    if walk.motion.engine == "none" and not every_frame:
        raise ConfigError("motion engine none makes no motion frames: it is for prompt walks with --diffuse every "
                          "and video inits with --every 1")
    if "levels" in REGISTRIES["motion"].get(walk.motion.engine).features:
        raise ConfigError(f"motion engine {walk.motion.engine} composes an infinite zoom's levels: use `artwalk zoom`")
    walk.motion_engine = frame_interpolation.check(walk.motion)
    if walk.upscale is not None:
        walk.upscale_engine = super_resolution.check(walk.upscale)
    audio_s = generate_videos.check(walk.video, walk.motion.fps)
    video_path = walk.video.video_path.resolve()
    if walk.keyframes.video_init is not None and video_path == Path(walk.keyframes.video_init).resolve():
        raise ConfigError(f"{walk.video.video_path}: that is the input video; write the new one elsewhere")
    if walk.input_dir is not None and video_path.is_relative_to(walk.input_dir.resolve()):
        raise ConfigError(f"{walk.video.video_path}: the video would be written inside the input folder, and its "
                          "contact sheet read back as an image; write it elsewhere")

    size = walk.keyframes.size
    upscaled = target_size(walk.upscale.target, *size) if walk.upscale is not None else None
    loop = walk.keyframes.loop or walk.motion.loop
    stored = walk.upscale is not None and (walk.upscale.keep_frames or "streamed" not in
                                           REGISTRIES["upscale"].get(walk.upscale.engine).features)
    pngs = walk.motion.keep_frames
    if kf.prompt_walk is not None:
        counts = (kf.prompt_walk.frames, kf.prompt_walk.unique_frames,
                  len(kf.prompt_walk.keyframes) + kf.prompt_walk.inbetweens)
    elif kf.video is not None:
        counts = kf.video.frames, kf.video.unique_frames, len(kf.video.keyframes)
    elif kf.sync is not None:  # keyframes on the song's events; motion fills every gap
        counts = kf.sync.frames, kf.sync.positions[-1] + 1, len(kf.sync.positions)
    else:
        counts = None
    chunked = walk.video.video_format != "gif"  # a gif is one pass; mp4 and webm keep their chunks
    released = stored and not walk.upscale.keep_frames  # a neural upscale's frames, freed once in the chunks
    walk.plan = plan_numbers(len(kf.images), kf.steps, walk.motion.spec, loop, size, upscaled, stored, pngs, chunked,
                             released) \
        if counts is None else plan_counts(*counts[:2], walk.motion.fps, size, upscaled, stored,
                                           keyframes=counts[2], motion_pngs=pngs, chunked=chunked,
                                           released_upscale=released)
    walk.key = walk_key(walk)
    walk.up_to_date = _up_to_date(walk)
    walk.current = walk.up_to_date or is_current(walk)
    # A walk whose video is made already needs no disk: decided before the disk is looked at.
    state_plan(walk.plan, walk.run_dir, walk.motion.fps, audio_s, "walk", check_disk=not walk.current)
    if walk.up_to_date:
        log.info("%s is up to date (the run folder was cleaned after it was made): nothing to do",
                 walk.video.video_path)
    return walk


def check_engines(walk: Walk, models: bool = False) -> None:
    """What the walk needs whatever its inputs: each stage's engine installed and taking the
    options given (in the walk's own spelling of the flags); with ``models``, every model
    it would load is on this machine too (the stages' own checks say so later otherwise)."""
    if walk.keyframes.prompts is not None:  # before its options: what a prompt walk needs first
        diffusion_models.check_text2image(walk.engines.keyframes)
    for stage, config in zip(STAGES, walk.configs):
        if stage.name in REGISTRIES and config is not None:
            name = walk.engines.keyframes if stage.name == "keyframes" else config.engine
            options = engine_options(config)
            spec = REGISTRIES[stage.name].check(name, options, stage.flag)
            if models:
                spec.check_models(options, **({"outpaint": config.outpaint} if stage.name == "keyframes" else {}))
    if walk.interrogate is not None:
        interrogation.check_ready(walk.interrogate)


def state_plan(plan: WalkPlan, run_dir: Path, fps: float, audio_s: float | None, what: str,
               check_disk: bool = True) -> None:
    """Log the plan line; warn of a short soundtrack; refuse a run that the disk cannot hold
    (with ``check_disk``: a walk whose video is current writes nothing new)."""
    log.info("%s", plan.describe(run_dir))
    if audio_s is not None and audio_s + 0.5 / fps + 1e-3 < plan.duration_s:  # > half a frame
        log.warning("warning: the soundtrack is %.1f s, shorter than the %.1f s video: the end will be silent",
                    audio_s, plan.duration_s)
    if not check_disk:
        return
    # What a rerun finds in OUT already (units it reuses, or rewrites in place) needs no new space.
    there = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) if run_dir.is_dir() else 0
    if plan.disk_bytes - there > free_bytes(run_dir):
        raise InputError(f"{run_dir}: not enough disk: the {what} needs about {human_bytes(plan.disk_bytes - there)} "
                         f"more, {human_bytes(free_bytes(run_dir))} free")


def is_current(walk: Walk) -> bool:
    """The walk's video is there and was made of exactly this walk: its record names the
    walk's key (inputs, prompts, engines, every stage's settings) and the encode settings
    asked now, and the file has its recorded size (with ``--verify``, its sha256). Nothing
    is read but the record, so an unchanged walk is recognised without running a stage."""
    previous = generate_videos.video_record(walk.video, verify=walk.keyframes.verify)
    if not previous or previous.get("walk_key") != walk.key or previous.get("source") != walk.video.source:
        return False
    asked = key_settings(walk.video)
    if asked != {k: v for k, v in previous.get("config", {}).items() if k in asked}:
        return False  # re-encoded by hand with other settings since
    if walk.video.clean and any((walk.run_dir / stage).exists() for stage in STAGE_DIRS):
        return False  # --clean asked now: the stages find their work done, and the encode cleans
    return not walk.video.contact_sheet or walk.video.sheet_path.is_file()


def _up_to_date(walk: Walk) -> bool:
    """The run folder was cleaned after its video was made, and nothing has changed since."""
    previous = generate_videos.video_record(walk.video)
    return (not (walk.run_dir / "keyframes" / MANIFEST).is_file() and bool(previous.get("cleaned"))
            and previous.get("walk_key") == walk.key)


def walk_key(walk: Walk) -> str:
    """What the video is made of: the inputs, their prompts, the engines and the settings."""
    kf = walk.keyframe_plan
    return cache_key(
        images=[[p.name, h] for p, h in zip(kf.images, kf.hashes)], engines=vars(walk.engines),
        image_prompts=kf.prompts,
        sync=None if kf.sync is None else [kf.sync.positions, kf.sync.frames],
        video=None if kf.video is None else {"sha256": kf.video.sha256, "frames": kf.video.frames,
                                             "keys": [[v.frame, v.key] for v in kf.video.keyframes]},
        prompts=None if kf.prompt_walk is None else {
            "keyframes": [[k.frame, k.key] for k in kf.prompt_walk.keyframes], "frames": kf.prompt_walk.frames,
            "segments": [[g.frames, g.fractions, g.guidances] for g in kf.prompt_walk.segments]},
        settings={s.name: key_settings(c) for s, c in zip(STAGES, walk.configs) if c is not None},
        interrogate=None if walk.interrogate is None else key_settings(walk.interrogate),
        audio=sha256_file(walk.video.audio) if walk.video.audio is not None else None,
    )


def write_walk_json(walk: Walk) -> Path:
    """OUT/walk.json: what was asked, the engines, the plan and the walk's key (call under the lock)."""
    path = walk.run_dir / "walk.json"
    write_json_once(path, {
        "artwalk": __version__, "preset": walk.preset, "engines": vars(walk.engines),
        "input": str(walk.input_dir) if walk.input_dir is not None else
        None if walk.keyframes.video_init is None else str(walk.keyframes.video_init),
        "images": [p.name for p in walk.keyframe_plan.images],
        "prompts": None if walk.keyframe_plan.prompt_walk is None else [
            {"frame": k.frame, "prompt": k.text, "negative": k.negative, "seed": k.seed}
            for k in walk.keyframe_plan.prompt_walk.keyframes],
        "settings": {s.name: record(c) for s, c in zip(STAGES, walk.configs) if c is not None},
        "audio": None if walk.video.audio is None else str(walk.video.audio),
        "format": walk.video.video_format, "video": str(walk.video.video_path),
        "frames": walk.plan.frames, "duration_s": walk.plan.duration_s, "disk_bytes": walk.plan.disk_bytes,
        "intermediate_bytes": walk.plan.intermediate_bytes, "video_bytes": walk.plan.video_bytes,
        "transient_bytes": walk.plan.transient_bytes, "walk_key": walk.key,
    })
    return path


def run_walk(args: argparse.Namespace) -> generate_videos.VideoResult | None:
    """Plan, then all four stages in this process, holding the run folder's lock throughout
    (with --track, recorded as a run: the store is opened before any stage)."""
    walk = plan_walk(args)
    return run_tracked(walk, tracking.open_tracker(args, walk.run_dir.absolute().parent))


def run_tracked(walk: Walk, tracker: tracking.MlflowTracker | None,
                tags: dict[str, str] | None = None) -> generate_videos.VideoResult | None:
    """:func:`run_planned`, recorded as a run by ``tracker`` (None: not recorded)."""
    return tracking.run_tracked(tracker, lambda: tracking.walk_record(walk, tags), lambda: tracking.walk_files(walk),
                                lambda report: run_planned(walk, report))


# What each stage reports when it ends (its result's reused and computed units).
StageReport = Callable[[str, Any], None]


def run_planned(walk: Walk, report: StageReport | None = None) -> generate_videos.VideoResult | None:
    """Run a planned walk's stages under the run folder's lock. ``report(stage, None)`` is
    called as each stage starts and ``report(stage, result)`` as it ends (keyframes, motion,
    upscale, video). Returns stage 4's result, or None when the walk was up to date. The
    lock is re-entrant: a caller may hold it already, as ``artwalk batch`` does while it plans."""
    report = report or (lambda stage, result: None)
    with run_lock(walk.run_dir, walk.video.wait):
        if walk.interrogate is not None and not walk.up_to_date:
            interrogation.interrogate(walk.interrogate)  # desc.csv, then stage 1 reads it
            walk.keyframe_plan = diffusion_models.check(walk.keyframes, announce=False)
            walk.key = walk_key(walk)
            walk.up_to_date = _up_to_date(walk)
            walk.current = walk.up_to_date or is_current(walk)
        write_walk_json(walk)
        if walk.up_to_date:
            return None
        ex = walk.executor
        stages = [("keyframes", lambda: diffusion_models.run(walk.keyframes, plan=walk.keyframe_plan, executor=ex)),
                  ("motion", lambda: frame_interpolation.run(walk.motion, walk.motion_engine, executor=ex))]

        def restore(run_dir: Path, indices: list[int]) -> None:  # upscaled frames stage 4 freed, and needs again
            super_resolution.run(walk.upscale, walk.upscale_engine, executor=ex, restore=indices)

        if walk.upscale is not None:
            stages.append(("upscale", lambda: super_resolution.run(walk.upscale, walk.upscale_engine, executor=ex)))
        stages.append(("video", lambda: generate_videos.run(walk.video, executor=ex,
                                                            restore=restore if walk.upscale is not None else None)))
        result = None
        for name, run in stages:
            report(name, None)
            result = run()
            report(name, result)
        return result
