"""Stage 1 from a prompt schedule: prompt keyframes at their frames, and diffused in-betweens.

::

    0: a corgi                     OUT/keyframes/
    60: a lion | a storm:0.5  --->   manifest.json     outputs in frame order, each with its `frame`;
                                                       `frames`: the walk's length
                                     units/<key>/      a keyframe: 000001.png and
                                       000001.png      conditioning.safetensors (prompt parts and
                                       conditioning.safetensors   weights, negative, seed, guidance,
                                                       model; the text embeddings and the noise)
                                     units/<key>/      a segment's diffused in-betweens (--diffuse
                                       000001.png ...  every or N), at their frames

Each keyframe sits at exactly its scheduled frame (:mod:`artwalk.schedule`; a schedule
with no frame 0 shows its first keyframe from frame 0) and is text to image with the
engine's model. Its seed is the ``--seed-schedule`` value at its frame, else derived
from the walk seed and its prompt text, so moving or inserting a prompt keeps the
others' images. The walk's ``--negative`` and a line's ``--neg`` are joined into its
negative prompt; ``--guidance-schedule`` gives the guidance at each frame.

``--diffuse`` sets how densely a segment between keyframes at frames p and q (L = q - p)
is diffused; each diffused in-between mixes the two keyframes' conditionings at t
(:func:`diffusion_models.conditioning.mix`: text embeddings per part and the seeded
noises SLERPed) with the guidance of its frame:

- ``keyframes`` (the default): none; the motion stage fills the L - 1 frames;
- ``every``: all L - 1 frames, at t = ease(k / L) (``--easing``); the motion stage has
  nothing left to fill;
- ``N``: N in-betweens (at most L - 1) at frames p + round(j L / (N + 1)), t = their
  place in the segment; the motion stage fills the frames between them.

Units: a keyframe is keyed by its prompt, negative, seed, guidance, size and the
engine's identity; a segment's in-betweens, in units of at most 12 frames, by both
keyframes' conditionings, their times and guidances. Editing one prompt recomputes
its keyframe and its two segments only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from artwalk import audio
from artwalk.errors import ConfigError, ScheduleError
from artwalk.progress import progress
from artwalk.runfolder import UnitStore, cache_key
from artwalk.schedule import PromptSchedule, keyframe_seed, parse_numeric, read_prompts
from artwalk.timeline import MAX_SECONDS, gap_times

log = logging.getLogger(__name__)

COND_FILE = "conditioning.safetensors"
CHUNK_FRAMES = 12  # diffused in-betweens per unit: what a killed run can lose
DENSITIES = ("keyframes", "every")


def parse_density(value: str | None) -> str | int:
    """``--diffuse``: every, keyframes, or a number N of in-betweens per segment."""
    value = "keyframes" if value is None else str(value).strip().lower()
    if value in DENSITIES:
        return value
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--diffuse must be every, keyframes or a number of in-betweens, got {value!r}") from None
    if not 0 <= n <= 10_000:
        raise ConfigError(f"--diffuse N must be 0 to 10000, got {n}")
    return "keyframes" if n == 0 else n


@dataclass
class PromptKeyframe:
    frame: int
    parts: list  # artwalk.schedule.Part items, as written
    text: str  # the line's prompt, as written
    negative: str  # the walk's --negative and the line's --neg, joined
    seed: int
    guidance: float  # --guidance-schedule's at its frame, else the engine's
    key: str = ""


@dataclass
class PromptSegment:
    a: int  # keyframe indices
    b: int
    frames: list[int]  # the diffused in-betweens' frames
    fractions: list[float]
    guidances: list[float]


@dataclass
class PromptPlan:
    """What the stage's check found for a prompt walk."""

    schedule: PromptSchedule
    frames: int  # the walk's length
    density: str | int
    keyframes: list[PromptKeyframe]
    segments: list[PromptSegment] = field(default_factory=list)

    @property
    def inbetweens(self) -> int:
        return sum(len(s.frames) for s in self.segments)

    @property
    def unique_frames(self) -> int:
        """Frames of the walk that differ: every one from the first keyframe to the last."""
        return self.keyframes[-1].frame - self.keyframes[0].frame + 1


def negative_of(walk_negative: str | None, key) -> str:
    """A keyframe's negative prompt: the walk's ``--negative`` and the line's ``--neg``, joined."""
    return ", ".join(n for n in (walk_negative, key.negative) if n)


def plan_prompts(config, identity: dict, guidance: float) -> PromptPlan:
    """Parse the schedule and every numeric schedule; place keyframes and in-betweens.
    ``identity``: the engine's text identity; ``guidance``: its guidance, where no
    ``--guidance-schedule`` says otherwise."""
    if config.sync_audio is not None:  # the schedule's keyframes, in order, on the song's events
        if config.frames is not None:
            raise ConfigError("--frames: with --sync-audio the song sets the walk's length (--trim ends it on the "
                              "last keyframe)")
        song = config.song_settings
        try:  # the schedule's own frames only give the order
            schedule = read_prompts(config.prompts, fps=config.fps)
        except ScheduleError as exc:
            if "uses max_f" not in str(exc):
                raise
            schedule = read_prompts(config.prompts, fps=config.fps,  # max_f is the song's length
                                    max_frames=audio.analyse(config.sync_audio, config.fps, song["component"],
                                                             song["on"])[1])
        placed = audio.place(config.sync_audio, config.fps, len(schedule.keys), **song, trim=config.trim,
                             what="keyframes of the schedule",
                             hint="lower --every" if song["every"] > 1 else "use fewer keyframes")
        positions, frames = placed.positions, placed.frames
        log.info("%d prompt keyframe(s) on the %s of %s: frames %s", len(positions), song["on"],
                 config.sync_audio, ", ".join(map(str, positions[:8])) + (" ..." if len(positions) > 8 else ""))
    else:
        schedule = read_prompts(config.prompts, fps=config.fps, max_frames=config.frames)
        positions = [k.frame for k in schedule.keys]
        frames = config.frames if config.frames is not None else schedule.last_frame + 1
    if frames <= positions[-1]:
        raise ConfigError(f"--frames {frames} ends before the schedule's last keyframe (frame "
                          f"{schedule.last_frame}); give at least {schedule.last_frame + 1}")
    if frames > MAX_SECONDS * config.fps:
        raise ConfigError(f"a prompt walk of {frames} frames is over {MAX_SECONDS / 3600:g} hour at {config.fps:g} "
                          "fps; split it into several walks")
    guidances = [float(guidance)] * frames
    if config.guidance_schedule:
        guidances = parse_numeric(config.guidance_schedule, fps=config.fps, max_frames=frames,
                                  source="--guidance-schedule").values(frames, config.seed)
        bad = next((f for f, g in enumerate(guidances) if not 0.0 <= g <= 100.0), None)
        if bad is not None:
            raise ConfigError(f"--guidance-schedule gives {guidances[bad]:g} at frame {bad}; guidance must be in "
                              "[0, 100]")
    seeds = None
    if config.seed_schedule:
        seeds = parse_numeric(config.seed_schedule, fps=config.fps, max_frames=frames,
                              source="--seed-schedule").values(frames, config.seed)
    keyframes = []
    for k, at in zip(schedule.keys, positions):
        seed = int(seeds[at]) % 2**32 if seeds is not None else keyframe_seed(config.seed, k)
        keyframes.append(PromptKeyframe(at, list(k.parts), k.text, negative_of(config.negative_prompt, k), seed,
                                        guidances[at]))
    unguided = [kf.frame for kf in keyframes if kf.negative and kf.guidance <= 1.0]
    if unguided:
        log.warning("warning: a guidance of 1 or less (no classifier-free guidance, as turbo models run) leaves "
                    "the negative prompt of the keyframe(s) at frame %s without effect", ", ".join(map(str, unguided)))
    for kf in keyframes:  # weight-0 parts change nothing, so they are not in the key either
        kf.key = cache_key(kind="prompt", parts=[[p.text, p.weight] for p in kf.parts if p.weight != 0.0],
                           negative=kf.negative, seed=kf.seed, guidance=kf.guidance, size=list(config.size),
                           engine=identity)
    density = parse_density(config.diffuse)
    plan = PromptPlan(schedule, frames, density, keyframes)
    if isinstance(density, int):
        room = min((b.frame - a.frame - 1 for a, b in zip(keyframes, keyframes[1:])), default=density)
        if room < density:
            log.warning("warning: --diffuse %d: the closest keyframes have room for %d frame(s) between them; those "
                        "segments diffuse every frame", density, room)
    for i in range(len(keyframes) - 1):
        p, q = keyframes[i].frame, keyframes[i + 1].frame
        length = q - p
        if density == "keyframes" or length < 2:
            continue
        if density == "every":
            at, fractions = list(range(p + 1, q)), gap_times(length, config.easing)
        else:
            n = min(density, length - 1)
            at = [p + round(j * length / (n + 1)) for j in range(1, n + 1)]
            fractions = [(f - p) / length for f in at]
        plan.segments.append(PromptSegment(i, i + 1, at, fractions, [guidances[f] for f in at]))
    return plan


def run_prompts(config, plan: PromptPlan, engine, store: UnitStore, run_dir: Path) -> list[dict]:
    """The keyframes, then the segments' in-betweens; returns the manifest outputs, in frame order."""
    size = config.size
    outputs, conds = [], []
    for kf in progress(plan.keyframes, desc="prompt keyframes", enabled=config.progress):
        found = store.lookup(kf.key)
        if found is None:
            with store.build(kf.key, frame=kf.frame, prompt=kf.text, negative=kf.negative, seed=kf.seed) as unit:
                cond = engine.conditioning(kf.parts, kf.negative, kf.seed, kf.guidance, size)
                unit.save_png("000001.png", engine.render(cond))
                unit.add_bytes(COND_FILE, cond.to_bytes())
            found = unit.record
        files = {f["name"]: f for f in found["files"]}
        conds.append(files[COND_FILE]["sha256"])
        outputs.append({"path": store.relpath(kf.key, "000001.png", run_dir), "sha256": files["000001.png"]["sha256"],
                        "kind": "keyframe", "frame": kf.frame, "prompt": kf.text, "seed": kf.seed})
    bar = progress(total=plan.inbetweens, desc="in-betweens", enabled=config.progress and bool(plan.inbetweens))
    for seg in plan.segments:
        ends = None
        for lo in range(0, len(seg.frames), CHUNK_FRAMES):  # a unit per chunk: a killed run loses one at most
            at, ts, gs = (x[lo : lo + CHUNK_FRAMES] for x in (seg.frames, seg.fractions, seg.guidances))
            key = cache_key(kind="prompt-segment", a=conds[seg.a], b=conds[seg.b], fractions=ts, guidances=gs,
                            size=list(size), engine=engine.text_identity())
            found = store.lookup(key)
            if found is None:
                ends = ends or [_conditioning(store, plan.keyframes[i].key, run_dir) for i in (seg.a, seg.b)]
                with store.build(key, between=[plan.keyframes[seg.a].frame, plan.keyframes[seg.b].frame],
                                 frames=at) as unit:
                    for k, image in enumerate(interpolate(*ends, ts, engine, gs), start=1):
                        unit.save_png(f"{k:06d}.png", image)
                        bar.update()
                found = unit.record
            else:
                bar.update(len(at))
            outputs.extend({"path": store.relpath(key, f["name"], run_dir), "sha256": f["sha256"],
                            "kind": "inbetween", "frame": frame, "t": t}
                           for f, frame, t in zip(found["files"], at, ts))
    bar.close()
    return sorted(outputs, key=lambda o: o["frame"])


def _conditioning(store: UnitStore, key: str, run_dir: Path):
    from diffusion_models.conditioning import Conditioning

    path = run_dir / store.relpath(key, COND_FILE, run_dir)
    return Conditioning.from_bytes(path.read_bytes(), source=str(path))


def interpolate(cond_a, cond_b, times, engine, guidances=None):
    """The images at ``times`` from conditioning ``cond_a`` to ``cond_b`` (a generator);
    ``guidances``: the guidance at each time (default: the mix of the two keyframes')."""
    from diffusion_models.conditioning import mix

    guidances = list(guidances) if guidances is not None else [None] * len(times)
    for t, g in zip(times, guidances):
        yield engine.render(mix(cond_a, cond_b, t, g))


def describe_density(density: str | int) -> str:
    if density == "every":
        return "every frame diffused"
    if density == "keyframes":
        return "only the keyframes diffused, motion between them"
    return f"{density} diffused in-between(s) per segment, motion between them"

