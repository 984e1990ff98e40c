"""Timeline maths: how many frames, and where each motion frame sits in time.

With n originals, S in-betweens per pair, I seconds per motion segment, F seconds
of hold on each original, and a frame rate fps::

    H = max(1, round(F * fps))     frames each original is shown (a held reference)
    N = round(I * fps)             frame intervals per motion segment
    segment k (k = 1..N-1) sits at t_k = ease(k / N), strictly between its ends;
    the default curve's slope is 1/2 at both ends, so t_1 ~ 1/(2N), and no t_k is ever
    closer to 0 or 1 than 1/255 (long segments are mapped affinely into [1/255, 254/255])

    keyframes:  A1, K1..KS, A2, K1..KS, A3, ... An      (--loop: ..., An, K1..KS, back to A1)
    total    =  n*H + P*S + P*(S+1)*(N-1)               P = n-1 pairs, or n with --loop

No keyframe is ever repeated at a join, and no segment is quantised to 2^k + 1
frames. Rounding is Python's round (half to even), stated once here.

Keyframes at explicit frames (a prompt schedule's ``60: a lion``): keyframe i sits at
exactly frame p_i; the L - 1 motion frames between p_i and p_i+1 (L = p_i+1 - p_i)
sit at ease(k / L); frames before the first keyframe show it, and frames after the
last hold it up to the walk's length (:func:`positioned_timeline`, :func:`gap_times`).

``--easing audio`` is no curve: a segment from frame s, L frames long, sits at
t_k = (C(s+k) - C(s)) / (C(s+L) - C(s)) for a song's cumulative energy C (:func:`energy_times`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from artwalk.errors import ConfigError


def _linear(x: float) -> float:
    """constant speed"""
    return x


def _smoothstep(x: float) -> float:
    """eases in and out, at rest at both keyframes"""
    return x * x * (3.0 - 2.0 * x)


def _eased(x: float) -> float:
    """half smoothstep, half linear: eases in and out but never stops, so the first and last motion frames of a
    segment always move (the default)"""
    return 0.5 * _smoothstep(x) + 0.5 * x


# ArtWalks' generate_videos_alpha.py gives 34% / 32% / 34% of a segment's frames to
# the quarters it builds with FILM (0 -> 1/4, 1/4 -> 3/4, 3/4 -> 1): slow near the
# artworks, fast through the middle. As a curve: piecewise linear through these knots.
_ALPHA_KNOTS = ((0.0, 0.0), (0.34, 0.25), (0.66, 0.75), (1.0, 1.0))


def _alpha(x: float) -> float:
    """ArtWalks' 34/32/34 curve: slow near the artworks, fast through the middle"""
    for (x0, y0), (x1, y1) in zip(_ALPHA_KNOTS, _ALPHA_KNOTS[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return 1.0


_SINH_K = 4.0


def _sinh(x: float) -> float:
    """fast out of each keyframe, lingering mid-way"""
    return 0.5 + math.sinh(_SINH_K * (x - 0.5)) / (2.0 * math.sinh(_SINH_K / 2.0))


EASINGS: dict[str, Callable[[float], float]] = {
    "eased": _eased,
    "linear": _linear,
    "smoothstep": _smoothstep,
    "alpha": _alpha,
    "sinh": _sinh,
}
# Why "eased" and not smoothstep: smoothstep's slope is 0 at both ends, so with long
# segments its first time is tiny (N = 72: t_1 = 0.00057) and the first and last motion
# frames round to the very bytes of their keyframes: a repeated frame at every join
# (measured on the examples: 6 at N = 72, 18 at N = 144). "eased" moves at half the
# mean speed at the ends (t_1 ~ 1/(2N)): no repeated frame on the examples at N = 24,
# 72 or 144, with flow or a cross-fade, while the ease in and out stays visible (peak
# speed 1.25x linear; smoothstep 1.5x).
DEFAULT_EASING = "eased"


# Not a curve: the motion stage times each segment by a song's cumulative energy
# (:func:`energy_times`), so only it takes this name.
AUDIO_EASING = "audio"
AUDIO_EASING_HELP = "moves with the music: each segment advances with the song's cumulative onset energy, and " \
    "rests in quiet passages (needs the song: --audio, or --sync-audio)"
EASING_NAMES = (*EASINGS, AUDIO_EASING)


def ease(name: str, x: float) -> float:
    if name == AUDIO_EASING:
        raise ConfigError("--easing audio times the motion stage's segments by a song; here give a curve "
                          f"({', '.join(EASINGS)})")
    try:
        curve = EASINGS[name]
    except KeyError:
        raise ConfigError(f"unknown easing '{name}' (choose from {', '.join(EASING_NAMES)})") from None
    return curve(x)


def energy_times(cumulative: Sequence[float], start: int, length: int) -> list[float]:
    """The L - 1 times of a segment from frame ``start`` to ``start + L`` that advance with
    ``cumulative`` energy (its value at each frame of the walk, rising): t_k = (C[s+k] - C[s])
    / (C[s+L] - C[s]). Rising energy gives rising times; where the energy is flat the
    times are linear. Kept off the ends like every curve's."""
    if length < 2:
        return []
    c0, c1 = float(cumulative[start]), float(cumulative[start + length])
    if not c1 > c0:
        return keep_off_the_ends([k / length for k in range(1, length)])
    return keep_off_the_ends([(float(cumulative[start + k]) - c0) / (c1 - c0) for k in range(1, length)])


# The first and last motion frames of a segment are at least this far (in t) from their
# keyframes: one 8-bit step of a pixel that goes from black to white. Nearer, they would
# round to the keyframe's very bytes and show as a repeated frame at the join.
MIN_STEP = 1.0 / 255.0


def keep_off_the_ends(times: list[float]) -> list[float]:
    """Times in (0, 1) moved off the ends: if the first is under :data:`MIN_STEP` from 0 or
    the last from 1, all are mapped affinely, t -> MIN_STEP + (1 - 2 MIN_STEP) t, which
    keeps their order and spacing (no clamping, which would repeat a time)."""
    if not times or (times[0] >= MIN_STEP and 1.0 - times[-1] >= MIN_STEP):
        return times
    return [MIN_STEP + (1.0 - 2.0 * MIN_STEP) * t for t in times]


MAX_FPS = 1000.0
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class TimelineSpec:
    """The settings that shape a timeline (their defaults live in the motion stage's config).
    Seconds may be fractional."""

    fps: float
    sec_interpolation: float
    sec_freeze: float
    easing: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 0 < self.fps <= MAX_FPS):
            raise ConfigError(f"--fps must be a number in (0, {MAX_FPS}], got {self.fps}")
        for flag, value in (("--sec_interpolation", self.sec_interpolation), ("--sec_freeze", self.sec_freeze)):
            if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
                raise ConfigError(f"{flag} must be a number of seconds in [0, {MAX_SECONDS}], got {value}")
        if self.intervals < 1:
            raise ConfigError(
                f"--sec_interpolation {self.sec_interpolation} at {self.fps} fps is under one"
                " frame; use at least 1/fps seconds"
            )
        if self.easing != AUDIO_EASING:
            ease(self.easing, 0.5)  # validates the name

    @property
    def hold(self) -> int:
        """H: frames each original is shown."""
        return max(1, round(self.sec_freeze * self.fps))

    @property
    def intervals(self) -> int:
        """N: frame intervals per motion segment (N - 1 motion frames)."""
        return round(self.sec_interpolation * self.fps)

    def segment_starts(self, originals: Sequence[bool], segments: int) -> list[int]:
        """The frame each of the first ``segments`` segments leaves from (its keyframe's last
        shown frame), for keyframes that are originals (held H frames) or not (shown once)."""
        starts, cursor = [], 0
        for i in range(segments):
            cursor += self.hold if originals[i] else 1
            starts.append(cursor - 1)
            cursor += self.intervals - 1
        return starts

    def segment_times(self) -> list[float]:
        """The eased times t_k = ease(k / N), k = 1..N-1, strictly inside (0, 1), and never
        closer to a keyframe than one 8-bit step (:data:`MIN_STEP`, see :func:`keep_off_the_ends`)."""
        n = self.intervals
        return keep_off_the_ends([ease(self.easing, k / n) for k in range(1, n)])


def total_frames(n: int, s: int, spec: TimelineSpec, loop: bool = False) -> int:
    """The exact frame count of a walk over n originals with s in-betweens per pair."""
    if n < 1:
        return 0
    pairs = n if (loop and n > 1) else n - 1
    return n * spec.hold + pairs * s + pairs * (s + 1) * (spec.intervals - 1)


@dataclass(frozen=True)
class Keyframe:
    """A keyframe of the walk: a reference to its frame and whether it is an original."""

    ref: int
    original: bool


def build_timeline(
    keyframes: Sequence[Keyframe], segments: Sequence[Sequence[int]], spec: TimelineSpec
) -> list[int]:
    """Lay out the walk as a list of frame references.

    ``segments[i]`` holds the motion-frame references between keyframes i and i+1
    (the last one, when there is one more segment than joins, closes a loop back to
    keyframe 0). Originals are repeated H times; in-betweens appear once.
    """
    if len(segments) not in (len(keyframes) - 1, len(keyframes)) or not keyframes:
        raise ValueError("need one segment per join (plus one to close a loop)")
    timeline: list[int] = []
    for i, key in enumerate(keyframes):
        timeline.extend([key.ref] * (spec.hold if key.original else 1))
        if i < len(segments):
            timeline.extend(segments[i])
    return timeline


def gap_times(length: int, easing: str) -> list[float]:
    """The L - 1 eased times between two keyframes L frames apart (kept off the ends)."""
    return keep_off_the_ends([ease(easing, k / length) for k in range(1, length)])


def positioned_timeline(refs: Sequence[int], positions: Sequence[int], segments: Sequence[Sequence[int]],
                        total: int) -> list[int]:
    """The walk as frame references when keyframe ``refs[i]`` sits at frame ``positions[i]``.

    ``segments[i]`` holds exactly ``positions[i+1] - positions[i] - 1`` references, the
    frames between keyframes i and i+1. The first keyframe also shows on the frames
    before it, and the last is held up to ``total`` frames.
    """
    if not refs or len(refs) != len(positions) or len(segments) != len(refs) - 1:
        raise ValueError("need one position per keyframe and one segment per join")
    if positions[0] < 0 or positions[-1] >= total or any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"keyframe positions {list(positions)} must increase from 0 and stay under {total}")
    timeline = [refs[0]] * positions[0]
    for i, ref in enumerate(refs):
        timeline.append(ref)
        if i < len(segments):
            if len(segments[i]) != positions[i + 1] - positions[i] - 1:
                raise ValueError(f"segment {i} has {len(segments[i])} frames, its gap "
                                 f"{positions[i + 1] - positions[i] - 1}")
            timeline.extend(segments[i])
    timeline.extend([refs[-1]] * (total - 1 - positions[-1]))
    return timeline
