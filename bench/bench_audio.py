"""Benchmark: seconds of audio analysed per second, for a 3-minute song (``artwalk audio``).

The song is made here, so nothing is downloaded: a 120 bpm kick-like click, a bass tone
that changes every bar and some noise, 44.1 kHz stereo, written as WAV and as mp3
(through PyAV). Each analysis is timed in the same run as the bare decode of the same
file (:func:`artwalk.audio.load_mono`), the baseline its ratio is against::

    python bench/bench_audio.py                 # 180 s, 24 fps
    python bench/bench_audio.py --seconds 600

librosa compiles some of its functions on first use (numba); a warm-up call on one
second of audio runs first, so the figures are what every later call costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RATE = 44100


def make_song(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    bass = 0.25 * np.sin(2 * np.pi * (55 * 2 ** ((t // 2) % 4 / 12)) * t)
    y = bass + 0.02 * rng.standard_normal(t.size)
    n = int(0.05 * RATE)
    kick = np.sin(2 * np.pi * 60 * np.arange(n) / RATE) * np.exp(-np.arange(n) / (0.01 * RATE))
    for beat in np.arange(0, seconds - 0.1, 0.5):
        i = int(beat * RATE)
        y[i:i + n] += 0.7 * kick
    stereo = np.repeat(np.clip(y, -1, 1)[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    return path


def to_mp3(wav: Path, mp3: Path) -> Path:
    import av

    with av.open(str(wav)) as src, av.open(str(mp3), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=RATE, layout="stereo")
        for frame in src.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return mp3


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from artwalk import audio

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ARTWALK_CACHE"] = str(Path(tmp) / "cache")
        wav = make_song(Path(tmp) / "song.wav", args.seconds)
        mp3 = to_mp3(wav, Path(tmp) / "song.mp3")
        audio.events(audio.load_mono(make_song(Path(tmp) / "warm.wav", 1.0)), args.fps, "percussive", "beats")
        audio.events(audio.load_mono(Path(tmp) / "warm.wav"), args.fps, "harmonic", "onsets")
        print(f"{args.seconds:g} s song, {args.fps:g} fps, best of {args.repeats}")
        print(f"{'file':5s} {'analysis':24s} {'seconds':>8s} {'audio s / s':>12s} {'vs decode':>10s}")
        for song in (wav, mp3):
            decode = best_of(args.repeats, lambda: audio.load_mono(song))
            print(f"{song.suffix[1:]:5s} {'decode only (baseline)':24s} {decode:8.2f} {args.seconds / decode:12.0f} "
                  f"{1.0:10.2f}")
            for component, on in (("both", "onsets"), ("percussive", "onsets"), ("percussive", "beats"),
                                  ("harmonic", "onsets")):
                found = []
                took = best_of(args.repeats, lambda: found.append(
                    audio.events(audio.load_mono(song), args.fps, component, on)))
                print(f"{song.suffix[1:]:5s} {component + ' ' + on:24s} {took:8.2f} {args.seconds / took:12.0f} "
                      f"{took / decode:10.2f}   ({len(found[-1])} events)")
            audio.analyse(song, args.fps, "percussive", "beats")  # fills the cache
            took = best_of(args.repeats, lambda: audio.analyse(song, args.fps, "percussive", "beats"))
            print(f"{song.suffix[1:]:5s} {'percussive beats, cached':24s} {took:8.2f} {args.seconds / took:12.0f} "
                  f"{took / decode:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
