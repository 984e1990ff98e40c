"""Audio analysis for walks that follow music: keyframe events and energy (librosa, lazily).

::

    song (mp3, m4a, ogg, flac, wav, ... any PyAV decodes)
      -> mono float32 at RATE Hz (:func:`load_mono`)
      -> HPSS: the percussive or the harmonic part, or the whole signal (``component``)
      -> onset strength, HOP samples a step
      -> onsets (peaks of it) or beats (librosa's beat tracker on it)  (``on``)
      -> events: (frame, time, strength), frame = round(time * fps)

An event's frame comes from its absolute time (``round(t * fps)``), never from adding up
frame durations, so the last event of a ten-minute song is as exact as the first.
The first event is always frame 0 (librosa finds no onset at t = 0): a walk starts on
its first keyframe. Two events that fall on one frame are one event (the stronger).
Strength is the onset envelope at the event, divided by the envelope's maximum.

librosa is imported only here, inside the functions: ``pip install -r requirements/audio.txt``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artwalk.errors import ConfigError, InputError

log = logging.getLogger(__name__)

RATE = 22050  # analysis sample rate (librosa's default)
HOP = 256  # onset envelope step: 11.6 ms at RATE, under a third of a frame at 24 fps
COMPONENTS = ("percussive", "harmonic", "both")
VERSION = 1  # bump when the same song and settings would give other events
ON = ("onsets", "beats")
# What a song's keyframes follow unless told otherwise: `artwalk audio` (the preview) and a
# walk's --sync-audio (what it uses) share them, so the preview shows the walk's events.
DEFAULT_ON = "beats"
DEFAULT_COMPONENT = "percussive"
MIN_SAMPLES = 2048  # one analysis window


@dataclass(frozen=True)
class Event:
    frame: int
    time: float  # seconds from the start of the song
    strength: float  # 0..1, the onset envelope there over its maximum


def _librosa():
    try:
        import librosa
    except ImportError:
        raise ConfigError("audio analysis needs librosa: pip install -r requirements/audio.txt") from None
    return librosa


def load_mono(path: Path | str, rate: int = RATE) -> np.ndarray:
    """The soundtrack as mono float32 samples at ``rate`` Hz; one-line :class:`InputError`
    for a file that is missing, empty, not audio, or holds no sound."""
    import av

    from artwalk.video import probe_audio

    path = Path(path)
    probe_audio(path)  # every check, with its one-line errors
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except av.FFmpegError:  # a damaged tail: what decoded up to here is the song (as probe_audio says)
                frame = None
            if frame is None:
                break
            frame.pts = None
            chunks.extend(c.to_ndarray().reshape(-1) for c in resampler.resample(frame))
        chunks.extend(c.to_ndarray().reshape(-1) for c in resampler.resample(None))
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InputError(f"{path}: audio stream holds no decodable sound")
    if samples.size < MIN_SAMPLES:
        raise InputError(f"{path}: only {samples.size / rate:.3f} s of sound, too short to find keyframes in "
                         f"(at least {MIN_SAMPLES / rate:.2f} s)")
    return samples


def component_of(samples: np.ndarray, component: str) -> np.ndarray:
    """The percussive or harmonic part (median-filtering HPSS), or the whole signal."""
    if component not in COMPONENTS:
        raise ConfigError(f"--component {component!r}: choose one of {', '.join(COMPONENTS)}")
    if component == "both":
        return samples
    harmonic, percussive = _librosa().effects.hpss(samples)
    return percussive if component == "percussive" else harmonic


def onset_envelope(samples: np.ndarray, rate: int = RATE) -> np.ndarray:
    """Spectral flux onset strength, one value per HOP samples (value i at i * HOP / rate s)."""
    return _librosa().onset.onset_strength(y=samples, sr=rate, hop_length=HOP)


def events(samples: np.ndarray, fps: float, component: str = "percussive", on: str = "onsets",
           rate: int = RATE) -> list[Event]:
    """The keyframe events of a song: frame 0, then each onset or beat of ``component``."""
    librosa = _librosa()
    if on not in ON:
        raise ConfigError(f"--on {on!r}: choose one of {', '.join(ON)}")
    from artwalk.timeline import MAX_FPS

    if not 0 < fps <= MAX_FPS:
        raise ConfigError(f"--fps must be a number in (0, {MAX_FPS:g}], got {fps:g}")
    with warnings.catch_warnings():  # librosa's notes on short inputs are not the user's concern
        warnings.simplefilter("ignore", UserWarning)
        return _events(librosa, samples, fps, component, on, rate)


def _events(librosa, samples: np.ndarray, fps: float, component: str, on: str, rate: int) -> list[Event]:
    envelope = onset_envelope(component_of(samples, component), rate)
    if on == "onsets":
        steps = librosa.onset.onset_detect(onset_envelope=envelope, sr=rate, hop_length=HOP, units="frames")
    else:
        _, steps = librosa.beat.beat_track(onset_envelope=envelope, sr=rate, hop_length=HOP, units="frames")
    peak = float(envelope.max()) if envelope.size else 0.0
    found: dict[int, Event] = {}
    for step in [0, *(int(s) for s in steps)]:
        time = step * HOP / rate  # absolute: no drift however long the song
        strength = float(envelope[step]) / peak if peak > 0 and step < envelope.size else 0.0
        frame = round(time * fps)
        if frame not in found or strength > found[frame].strength:
            found[frame] = Event(frame, time if frame else 0.0, round(strength, 4))
    return [found[f] for f in sorted(found)]


def song_events(path: Path | str, fps: float, component: str = "percussive", on: str = "onsets") -> list[Event]:
    """:func:`events` of the song at ``path``."""
    return analyse(path, fps, component, on)[0]


def analyse(path: Path | str, fps: float, component: str = "percussive", on: str = "onsets") -> tuple[list[Event], int]:
    """(events, the song's length in frames), cached on disk by the song's bytes and the
    settings: HPSS takes about a tenth of the song's length on two cores, and a walk's plan and
    its stage 1 both ask."""
    from artwalk.fsutil import atomic_write_json, sha256_file
    from artwalk.models import cache_dir
    from artwalk.video import probe_audio

    probe_audio(path)  # the one-line errors first, whatever the cache holds
    key = hashlib.sha256(json.dumps([VERSION, sha256_file(path), float(fps), component, on]).encode()).hexdigest()
    cached = cache_dir() / "audio" / f"{key[:32]}.json"
    try:
        data = json.loads(cached.read_text("utf-8"))
        return [Event(int(e[0]), float(e[1]), float(e[2])) for e in data["events"]], int(data["frames"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    samples = load_mono(path)
    found, frames = events(samples, fps, component, on), duration_frames(samples, fps)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cached, {"events": [[e.frame, e.time, e.strength] for e in found], "frames": frames})
    except Exception as exc:  # a cache that cannot be written only costs time
        log.debug("cannot cache the analysis in %s: %s", cached, exc)
    return found, frames


def cumulative_energy(samples: np.ndarray, fps: float, frames: int, rate: int = RATE) -> np.ndarray:
    """The song's onset energy summed up to each frame boundary 0..frames (``frames + 1``
    values, rising strictly): what ``--easing audio`` moves by. A floor of 5% of the mean
    keeps the picture moving, slowly, through silence; past the song's end it is flat."""
    envelope = onset_envelope(samples, rate).astype(np.float64)
    envelope = envelope + 0.05 * (float(envelope.mean()) if envelope.size else 0.0) + 1e-9
    step_times = np.arange(envelope.size + 1) * HOP / rate
    steps = np.concatenate([[0.0], np.cumsum(envelope)])
    cumulative = np.interp(np.arange(frames + 1) / fps, step_times, steps)
    return cumulative + np.linspace(0.0, 1e-6 * cumulative[-1] + 1e-9, frames + 1)  # rising past the end too


@dataclass(frozen=True)
class Placement:
    """Keyframes on a song: keyframe i at ``positions[i]``; ``frames`` in the walk."""

    positions: list[int]
    frames: int
    song_frames: int  # the song's own length in frames


def place(song: Path | str, fps: float, count: int, *, component: str, on: str, every: int, trim: bool,
          what: str = "keyframes", hint: str = "lower --every") -> Placement:
    """``count`` keyframes on every ``every``-th event of ``song`` (frame 0 first), in order;
    the walk lasts as long as the song, or (``trim``) ends on the last keyframe. Too few
    events is one line saying what to change."""
    found, song_frames = analyse(song, fps, component, on)
    chosen = found[::every]
    if len(chosen) < count:
        other = "--on onsets" if on == "beats" else "a longer song"
        raise ConfigError(f"{song}: frame 0 and {len(found) - 1} {on} give {len(chosen)} keyframe place(s) taking "
                          f"every {every}, for {count} {what}: {hint}, or use {other}")
    positions = [e.frame for e in chosen[:count]]
    frames = positions[-1] + 1 if trim else max(song_frames, positions[-1] + 1)
    return Placement(positions, frames, song_frames)


def duration_frames(samples: np.ndarray, fps: float, rate: int = RATE) -> int:
    """The song's length in frames: round(seconds * fps)."""
    return round(samples.size / rate * fps)
