"""The walk spec: one frozen, typed description of a walk, built from plain settings.

::

    settings (a dict)  --walk_spec(settings, source)-->  WalkSpec  --plan-->  Plan  --run-->  result
        from argparse (pipeline/flags.py), the studio's JSON (studio/walks.py), or Python

A walk's settings are keyed as the command line's flags land (``interpolation_steps``,
``sec_interpolation``, ``fps``, ``width``, ``keyframe_engine``, ``motion_model``,
``executor``...; see :data:`SETTINGS`), with the source's own keys (``input`` and ``output``;
``prompts``; ``video_init``) and the walk's options (:class:`WalkOptions`). Values may be
text or numbers: each is typed and checked as its flag would be, so every caller gets the
command line's one-line errors. :func:`walk_spec` applies the preset, routes each setting
to the stage(s) it belongs to (one table), refuses a setting that belongs to another kind
of walk, and fills a video init's and a zoom's defaults; the stages' config dataclasses
then check their own values. Nothing edits a spec after it is built.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from artwalk.config import engine_option_names, engine_options, flag_of, given, setting, typed
from artwalk.errors import ConfigError
from artwalk.executors import EXECUTORS, WRITE_MODES, make_executor
from artwalk.video import probe_video
from diffusion_models import PROMPT_SETTINGS, VIDEO_SETTINGS, KeyframeConfig, check_video_init, parse_density
from diffusion_models import video_init
import pipeline.interrogate as interrogation
from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
from pipeline.inspire import parse_every
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from pipeline.presets import PRESETS, REGISTRIES, Engines, resolve_preset
from pipeline.tracking import TRACKERS
from super_resolution import UpscaleConfig

log = logging.getLogger("artwalk")

SOURCES = ("images", "prompts", "video", "zoom")


@dataclass(frozen=True)
class Stage:
    """A stage of the walk: its config, and how the walk names the fields that several
    stages share a name for (``engine`` -> ``motion_engine``, flag ``--motion-engine``)."""

    name: str
    config: type
    title: str
    renamed: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)  # field -> (flags, setting)
    exclude: tuple[str, ...] = ()
    helps: dict[str, str] = field(default_factory=dict)  # the walk's own words for a flag

    @property
    def dests(self) -> dict[str, str]:
        """field -> the setting's name in a walk's settings."""
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
STAGE = {s.name: s for s in STAGES}

# Settings that several stages have; given once, they go to each stage that takes them.
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
ENGINE_SHARED = ("device", "dtype", "batch")  # kept only by the stages whose engine takes them

# Stage 1 and 2 settings that only one kind of walk has.
PROMPT_ONLY = PROMPT_SETTINGS
IMAGE_ONLY = ("interpolation_steps", "no_originals", "outpaint", "prompts_csv", "outpaint_model", "fit",
              "square_crop", "sec_interpolation", "sec_freeze", "loop", "prompt", "strength", "noise_level")
# The zoom engine's options: `artwalk zoom` has them, a walk does not.
ZOOM_ONLY = ("seconds_per_level", "direction", "hold_start", "hold_end")
# A video init takes its frames, rate and length from the video (--fit and --strength it keeps).
NOT_VIDEO = tuple(f for f in IMAGE_ONLY if f not in ("fit", "strength")) + (
    "frames", "diffuse", "fps", "sync_audio", "sync_on", "sync_component", "trim", "prior_model")
# What each kind of walk leaves out of its stages' settings (and its command line).
LEFT_OUT = {"images": PROMPT_ONLY + VIDEO_SETTINGS + ZOOM_ONLY, "prompts": IMAGE_ONLY + VIDEO_SETTINGS + ZOOM_ONLY,
            "video": ("strength", *NOT_VIDEO) + ZOOM_ONLY}

# The keyframe engine of a prompt walk when neither --engine nor the preset names one that
# makes pictures from text (the cpu preset's is none).
TEXT_ENGINE = "sd"


@dataclass(frozen=True)
class WalkOptions:
    """The walk's own settings, beside its stages': which engines, whether to upscale,
    prompts from the images, where the units run, and the run record."""

    preset: str = setting("auto", "engine set: gpu (Kandinsky, FILM, Real-ESRGAN) or cpu (classical, no weights); "
                          "auto picks gpu when CUDA and the gpu engines are there (default auto); --engine, "
                          "--motion-engine and --upscale-engine override it per stage",
                          choices=("auto", *PRESETS))
    no_upscale: bool = setting(False, "skip stage 3; encode the frames as they are", control=True)
    interrogate: bool = setting(False, "first write INPUT/desc.csv, a prompt per image (BLIP caption + CLIP "
                                "ranking, as `artwalk interrogate` does; only new or changed images, hand edits "
                                "kept); the sd and unclip engines then slerp each pair's two prompts", control=True)
    interrogate_mode: str | None = setting(None, f"with --interrogate: {', '.join(interrogation.MODES)} (default "
                                           "classic)", choices=interrogation.MODES, metavar="MODE")
    executor: str = setting("local", "where the units of work run: local (this process, the default), pool "
                            "(processes of this machine, --pool-workers of them: the classical engines' units and "
                            "the encode's chunks) or ray (a Ray cluster's workers; needs pip install -r "
                            "requirements/cluster.txt)", choices=EXECUTORS)
    pool_workers: int | None = setting(None, "with --executor pool: how many processes (default: one per core)",
                                       metavar="N")
    ray_address: str | None = setting(None, "with --executor ray: the cluster to join: auto (the one `ray start` "
                                      "runs here), ray://HOST:10001 (a remote head); default: start a local one",
                                      metavar="auto|ray://HOST:PORT")
    ray_write: str | None = setting(None, "with --executor ray: shared (the workers see OUT: one machine or a "
                                    "shared folder; they write their units there) or driver (no shared folder: "
                                    "inputs go through Ray's object store and this process writes the bytes the "
                                    "workers return) (default shared)", choices=WRITE_MODES)
    ray_gpus: float | None = setting(None, "with --executor ray: GPUs per actor of a neural engine, may be a "
                                     "fraction (0.5: two actors per GPU) (default 1 when the cluster has GPUs, "
                                     "else 0)", metavar="N")
    track: str = setting("none", "record the walk as a run in an experiment tracker: mlflow (its parameters, "
                         "prompts, seeds, stage timings, units reused and computed, the video and contact sheet; "
                         "needs pip install -r requirements/tracking.txt) (default none)", choices=TRACKERS)
    tracking_uri: str | None = setting(None, "with --track mlflow: the tracking store, e.g. sqlite:///runs.db or "
                                       "http://host:5000 (default $MLFLOW_TRACKING_URI, else "
                                       "sqlite:///ROOT/mlruns/mlflow.db in the run folder's parent ROOT)",
                                       metavar="URI")


EXECUTOR_OPTIONS = ("executor", "pool_workers", "ray_address", "ray_write", "ray_gpus")
TRACKING_OPTIONS = ("track", "tracking_uri")
# The source's own settings and the command line's, which are no stage's.
SOURCE_KEYS = ("input", "output", "prompts", "from_images", "step", "quiet", "verbose")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a walk's units run (:mod:`artwalk.executors`)."""

    name: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    ray_write: str | None = None
    ray_gpus: float | None = None

    def make(self):
        return make_executor(self.name, workers=self.workers, ray_address=self.ray_address,
                             ray_write=self.ray_write, ray_gpus=self.ray_gpus)


@dataclass(frozen=True)
class WalkSpec:
    """A walk, whole: where it reads and writes, the four stages' configs, the engines
    the preset chose, what the user gave each stage (for the stage commands and the run
    record), and how it runs."""

    source: str  # images | prompts | video
    run_dir: Path
    input_dir: Path | None  # an image walk's folder
    preset: str
    reason: str  # the first log line's why
    engines: Engines
    keyframes: KeyframeConfig
    motion: MotionConfig
    upscale: UpscaleConfig | None  # None: --no-upscale
    video: VideoConfig
    given: Mapping[str, Mapping[str, Any]]  # stage -> {field: value} the user gave (and the engines)
    interrogate: interrogation.InterrogateConfig | None = None  # --interrogate: desc.csv before stage 1
    executor: ExecutorSpec = ExecutorSpec()
    track: str = "none"
    tracking_uri: str | None = None

    @property
    def configs(self) -> tuple:
        """The four stages' configs in order (upscale None with --no-upscale)."""
        return self.keyframes, self.motion, self.upscale, self.video


def walk_spec(settings: Mapping[str, Any], source: str = "images") -> WalkSpec:
    """The walk that ``settings`` describe (see the module docstring): a ConfigError with
    one line when a setting is unknown, belongs to another kind of walk, or is wrong."""
    if source not in ("images", "prompts", "video"):
        raise ValueError(f"walk_spec: source must be images, prompts or video, got {source!r}")
    values = dict(settings)
    _refuse_unknown(values, source)
    options = WalkOptions(**given(values, WalkOptions))
    run_dir, inp = _paths(values, source)
    if "from_images" in values or "step" in values:
        if source != "prompts":
            raise ConfigError("--from-images and --step make a prompt walk's schedule: `artwalk prompts`")
        _schedule_from_images(values)
    preset, engines, reason = resolve_preset(options.preset)
    staged = {stage.name: given(values, stage.config, stage.dests, {f: stage.flag(f) for f in stage.renamed})
              for stage in STAGES}
    no_upscale = options.no_upscale
    if source == "video":
        no_upscale = _video_defaults(staged, no_upscale)
    elif source == "prompts":
        if parse_density(staged["keyframes"].get("diffuse")) == "every":  # every frame is diffused
            if staged["motion"].get("engine", "none") != "none":
                raise ConfigError(f"--diffuse every leaves no frame to move: drop --motion-engine "
                                  f"{staged['motion']['engine']}")
            staged["motion"]["engine"] = "none"
    if no_upscale:  # stage 3's own settings would do nothing: say so rather than drop them
        dropped = [STAGE["upscale"].flag(f) for f in staged["upscale"] if f not in SHARED]
        if dropped:
            raise ConfigError(f"--no-upscale skips stage 3, so {', '.join(dropped)} would do nothing; drop one or "
                              "the other")
    kf = staged["keyframes"]
    if "engine" not in kf:  # the preset's, or the engine a --model belongs to
        model = kf.get("model")
        kf["engine"] = engines.keyframes if model is None else \
            KeyframeConfig(input_dir=inp, run_dir=run_dir, model=model, prompts=kf.get("prompts")).engine_name
        if source == "prompts" and "text2image" not in KEYFRAME_ENGINES.get(kf["engine"]).features:
            kf["engine"] = TEXT_ENGINE  # a prompt walk's keyframes are made from text
    for stage in ("motion", "upscale"):
        staged[stage].setdefault("engine", getattr(engines, stage))
    _route_shared(staged, no_upscale)
    _route_song(staged)
    progress = not values.get("quiet", False)
    keyframes = KeyframeConfig(input_dir=inp, run_dir=run_dir, progress=progress, **kf)
    motion = MotionConfig(run_dir=run_dir, progress=progress, **staged["motion"])
    upscale = None if no_upscale else UpscaleConfig(run_dir=run_dir, progress=progress, **staged["upscale"])
    video = VideoConfig(run_dir=run_dir, progress=progress, source="frames" if no_upscale else "upscaled",
                        **staged["video"])
    executor = ExecutorSpec(options.executor, options.pool_workers, options.ray_address, options.ray_write,
                            options.ray_gpus)
    executor.make()  # its settings checked now; it starts nothing until it is given work
    return WalkSpec(
        source=source, run_dir=run_dir, input_dir=inp, preset=preset, reason=reason,
        engines=Engines(keyframes.engine_name, motion.engine, staged["upscale"]["engine"]),
        keyframes=keyframes, motion=motion, upscale=upscale, video=video,
        given=MappingProxyType({k: MappingProxyType(v) for k, v in staged.items()}),
        interrogate=_interrogation(options, keyframes, source, progress),
        executor=executor, track=options.track, tracking_uri=options.tracking_uri,
    )


def setting_names(source: str) -> set[str]:
    """Every setting a walk of ``source`` takes (each stage's, under its walk name)."""
    names = {f.name for f in dataclasses.fields(WalkOptions)} | set(SOURCE_KEYS)
    for stage in STAGES:
        names |= {stage.dests.get(f.name, f.name) for f in dataclasses.fields(stage.config)
                  if f.metadata.get("cli", True) and f.name not in stage.exclude}
    return names  # those of another kind of walk among them: refused with their reason


def _refuse_unknown(values: dict, source: str) -> None:
    """One line for a setting no walk has, or one another kind of walk has."""
    known = setting_names(source)
    for name in values:
        if name not in known:
            raise ConfigError(f"unknown setting '{name}'")
    order = [stage.dests.get(f.name, f.name) for stage in STAGES for f in dataclasses.fields(stage.config)]
    foreign = sorted((name for name in values if name in LEFT_OUT[source]),
                     key=lambda name: order.index(name) if name in order else len(order))  # in stage order
    if foreign:
        flags = ", ".join(dict.fromkeys(_flag(name) for name in foreign))
        raise ConfigError({
            "prompts": f"{flags}: for image walks; a prompt walk places its keyframes at their scheduled frames (see "
                       "--diffuse and --frames)",
            "video": f"{flags}: not for a video init, which takes its frames, frame rate and length from the video "
                     "(choose them with --start, --end and --every)",
            "images": f"{flags}: not for an image walk (a prompt walk, a video init or a zoom has it)",
        }[source])


def _flag(name: str) -> str:
    """How the command line spells setting ``name``."""
    for stage in STAGES:
        for f, (flags, dest) in stage.renamed.items():
            if dest == name:
                return flags[0]
        if name in {f.name for f in dataclasses.fields(stage.config)}:
            return flag_of(stage.config, name)
    return flag_of(WalkOptions, name)


def _paths(values: dict, source: str) -> tuple[Path, Path | None]:
    """(OUT, INPUT) of the walk; INPUT is None but for an image walk."""
    out = values.get("output")
    if source == "images":
        if values.get("input") is None or out is None:
            raise ConfigError("give INPUT and OUT (or --prompts SCHEDULE and OUT)")
        for wrong in ("prompts", "video_init"):
            if values.get(wrong) is not None:
                raise ConfigError("give a folder of images (INPUT) or a prompt schedule (--prompts), not both")
        return Path(values["output"]), Path(values["input"])
    if values.get("input") is not None:
        raise ConfigError("give a folder of images (INPUT) or a prompt schedule (--prompts), not both")
    if source == "video" and values.get("prompts") is None:
        raise ConfigError("a video init restyles each frame with its prompt: give --prompts SCHEDULE")
    if source == "prompts" and values.get("prompts") is None and values.get("from_images") is None:
        raise ConfigError("give a SCHEDULE (or --from-images FOLDER) and OUT")
    if out is None:
        raise ConfigError("give the run folder OUT")
    return Path(out), None


def _schedule_from_images(values: dict) -> None:
    """``--from-images FOLDER [--step 2s]``: the schedule made of FOLDER/desc.csv, in ``values``."""
    folder, every = values.pop("from_images", None), values.pop("step", None)
    if folder is None:
        if every is not None:
            raise ConfigError("--step is for --from-images FOLDER; a schedule places its keyframes itself")
        return
    if values.get("prompts") is not None:
        raise ConfigError("give a SCHEDULE or --from-images FOLDER, not both")
    every = every or "2s"
    values["prompts"], count = interrogation.schedule_from_desc(Path(folder), every)
    if "frames" not in values and "sync_audio" not in values:  # the last image held as long as the others
        step = parse_every(every)
        fps = typed(KeyframeConfig, "fps", values.get("fps", KeyframeConfig.fps))
        values["frames"] = max(1, round(float(step.value) * count * (fps if step.seconds else 1)))
    log.info("%d keyframe(s) from %s, %s apart", count, Path(folder) / interrogation.DESC, every)


def _video_defaults(staged: dict[str, dict], no_upscale: bool) -> bool:
    """A video init keeps the video's frame rate, size (unless --w/--h) and sound (unless
    --audio); it is restyled by ``sd``, moves linearly between restyled frames, and is not
    upscaled unless a stage-3 setting asks for it. Returns whether stage 3 is skipped."""
    kf = staged["keyframes"]
    info = probe_video(kf["video_init"])
    if "engine" not in kf and "model" not in kf:
        kf["engine"] = "sd"
    if "engine" in kf:  # before the other engines' options are routed by it
        check_video_init(kf["engine"])
    for stage in ("keyframes", "motion"):
        staged[stage]["fps"] = info.fps
    width, height = kf.get("width"), kf.get("height")
    if width is None and height is None:
        width, height = info.width, info.height
    elif height is None:  # one side given: the other keeps the video's aspect
        height = max(2, 2 * round(width * info.height / info.width / 2))
    elif width is None:
        width = max(2, 2 * round(height * info.width / info.height / 2))
    kf["width"], kf["height"] = width, height
    if (kf.get("every") or 1) == 1:  # every frame restyled: nothing to move
        staged["motion"].setdefault("engine", "none")
    staged["motion"].setdefault("easing", "linear")  # the video moves evenly between its frames
    if not [f for f in staged["upscale"] if f not in SHARED]:
        no_upscale = True  # the video's own size unless --target (or an upscale engine) asks for more
    if "audio" not in staged["video"] and info.has_audio and not _is_gif(staged["video"]):
        # its own sound, as it is: from --start, no fade (a gif has none)
        staged["video"]["audio"] = kf["video_init"]
        staged["video"].setdefault("audio_start", round((kf.get("start") or 0.0) * info.fps) / info.fps)
        staged["video"].setdefault("audio_fade", 0.0)
    return no_upscale


def _route_song(staged: dict[str, dict]) -> None:
    """The song the keyframes follow is the soundtrack (a gif stays silent); --easing audio
    moves with the soundtrack."""
    song = staged["keyframes"].get("sync_audio")
    if song is not None and _is_gif(staged["video"]) and "audio" not in staged["video"]:
        log.info("the keyframes follow %s; a gif has no sound, so the video is silent", song)
    elif song is not None:
        given_audio = staged["video"].setdefault("audio", song)
        if Path(given_audio).resolve() != Path(song).resolve():
            raise ConfigError(f"--audio {given_audio} and --sync-audio {song}: the walk follows one song and plays "
                              "it; give one of them")
    if staged["motion"].get("easing") == "audio":  # the motion follows the soundtrack
        if staged["video"].get("audio") is None:
            raise ConfigError("--easing audio moves with a song: give --audio SONG or --sync-audio SONG")
        staged["motion"]["audio"] = staged["video"]["audio"]
    else:
        staged["motion"].pop("audio", None)


def _is_gif(video: Mapping[str, Any]) -> bool:
    """Whether stage 4's given settings make a gif (which has no sound)."""
    fmt = video.get("format")
    if video.get("output") is None:
        return (fmt or "mp4").lower() == "gif"
    return Path(video["output"]).suffix.lower() == ".gif" if fmt is None else fmt.lower() == "gif"


def _interrogation(options: WalkOptions, keyframes: KeyframeConfig, source: str, progress: bool):
    """``--interrogate``: the settings of the desc.csv it writes, for the keyframe engine's model."""
    if not options.interrogate:
        if options.interrogate_mode is not None:
            raise ConfigError("--interrogate-mode is for --interrogate: give both, or neither")
        return None
    if source != "images":
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
        folder=keyframes.input_dir, mode=options.interrogate_mode or "classic",
        target=interrogation.target_of(model, spec.name), tokenizer=model, device=keyframes.device,
        dtype=keyframes.dtype, only_new=True, wait=keyframes.wait, progress=progress)


def _route_shared(staged: dict[str, dict], no_upscale: bool) -> None:
    """A shared engine option (--device, --dtype, --batch) stays only with the stages whose
    engine takes it; one that no stage's engine takes is an error."""
    for name in ENGINE_SHARED:
        if not any(name in staged[s.name] for s in STAGES[:3]):
            continue
        takers = []
        for stage in STAGES[:3]:
            if name not in staged[stage.name] or (stage.name == "upscale" and no_upscale):
                staged[stage.name].pop(name, None)
                continue
            if name in engine_option_names(stage.config):
                engine = staged[stage.name].get("engine")
                spec = REGISTRIES[stage.name].get(engine) if engine else None
                if spec is None or name not in spec.options:
                    del staged[stage.name][name]
                    continue
            takers.append(stage.name)
        if not takers:
            raise ConfigError(f"--{name}: no stage of this walk takes it (engines: "
                              f"{', '.join(str(staged[s.name].get('engine')) for s in STAGES[:3])})")
