"""Walks that follow music: events on generated click tracks (WAV, and mp3 through PyAV),
`artwalk audio`, beat-synced image walks into a video, and exact GIF timing."""

from __future__ import annotations

import json
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("librosa")

from artwalk import audio  # noqa: E402
from artwalk.errors import ConfigError, InputError  # noqa: E402
from artwalk.images import read_frame_u8  # noqa: E402
from artwalk.schedule import read_prompts  # noqa: E402
from conftest import run_cli  # noqa: E402
import generate_videos as gv  # noqa: E402

FPS = 24
RATE = 44100


def click_track(path: Path, times, seconds: float, tone_from: float | None = None) -> Path:
    """Short noise bursts at ``times`` (s), optionally over a sustained 220 Hz tone from
    ``tone_from`` on; 16-bit mono WAV."""
    y = np.zeros(int(seconds * RATE), np.float32)
    n = int(0.01 * RATE)
    envelope = np.exp(-np.arange(n) / (0.002 * RATE))
    for k, t in enumerate(times):
        i = int(round(t * RATE))
        burst = np.random.default_rng(k).standard_normal(n).astype(np.float32) * envelope * 0.8
        y[i:i + n] += burst[:len(y) - i]
    if tone_from is not None:
        t = np.arange(y.size) / RATE
        y += np.where(t >= tone_from, 0.3 * np.sin(2 * np.pi * 220 * t), 0).astype(np.float32)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def to_mp3(wav: Path, mp3: Path) -> Path:
    with av.open(str(wav)) as src, av.open(str(mp3), "w") as dst:
        stream = dst.add_stream("libmp3lame", rate=RATE, layout="mono")
        for frame in src.decode(audio=0):
            frame.pts = None
            for packet in stream.encode(frame):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return mp3


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each test its own artwalk cache (the analyses)."""
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "cache"))


CLICKS = np.cumsum(np.random.default_rng(1).uniform(0.35, 0.9, 16)) + 0.2


@pytest.fixture(scope="module")
def clicks(tmp_path_factory) -> Path:
    return click_track(tmp_path_factory.mktemp("song") / "clicks.wav", CLICKS, CLICKS[-1] + 0.8)


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_every_click_is_a_keyframe_within_one_frame(clicks, tmp_path, kind):
    song = clicks if kind == "wav" else to_mp3(clicks, tmp_path / "clicks.mp3")
    found = audio.song_events(song, FPS, "percussive", "onsets")
    assert found[0].frame == 0 and found[0].time == 0.0  # always from frame 0
    frames = [e.frame for e in found[1:]]
    assert len(frames) == len(CLICKS)
    assert all(abs(f - round(t * FPS)) <= 1 for f, t in zip(frames, CLICKS)), (frames, CLICKS * FPS)
    assert all(0 <= e.strength <= 1 for e in found)


def test_no_drift_over_ten_minutes(tmp_path):
    times = np.arange(1.0, 600.0, 1.0)
    found = audio.song_events(click_track(tmp_path / "long.wav", times, 601.0), FPS, "both", "onsets")
    frames = [e.frame for e in found[1:]]
    assert len(frames) == len(times)
    assert max(abs(f - round(t * FPS)) for f, t in zip(frames, times)) <= 1
    assert frames[-1] in (round(599 * FPS) - 1, round(599 * FPS), round(599 * FPS) + 1)


def test_percussive_follows_the_clicks_and_harmonic_the_tone(tmp_path):
    song = click_track(tmp_path / "both.wav", CLICKS, CLICKS[-1] + 0.8, tone_from=3.0)
    samples = audio.load_mono(song)
    percussive = [e.frame for e in audio.events(samples, FPS, "percussive", "onsets")[1:]]
    harmonic = [e.frame for e in audio.events(samples, FPS, "harmonic", "onsets")[1:]]
    hits = sum(any(abs(f - round(t * FPS)) <= 1 for f in percussive) for t in CLICKS)
    assert hits == len(CLICKS)
    assert any(abs(f - 3.0 * FPS) <= 1 for f in harmonic)  # the tone's start
    assert len(harmonic) < len(percussive) / 2


def test_beats_of_a_steady_pulse(tmp_path):
    times = np.arange(0.5, 20.0, 0.5)  # 120 bpm
    found = audio.song_events(click_track(tmp_path / "pulse.wav", times, 20.5), FPS, "percussive", "beats")
    frames = [e.frame for e in found[1:]]
    assert len(frames) >= len(times) * 0.8
    assert all(min(abs(f - round(t * FPS)) for t in times) <= 1 for f in frames)


def test_the_audio_command(clicks, tmp_path):
    proc = run_cli("-m", "pipeline", "audio", str(clicks), "--fps", "24", "--on", "onsets", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "0: timestamp: 0.000" and len(lines) == len(CLICKS) + 1
    frame, word, seconds = lines[1].split(": ")
    assert word == "timestamp" and abs(int(frame) - round(float(seconds) * 24)) == 0
    schedule = tmp_path / "walk.txt"
    proc = run_cli("-m", "pipeline", "audio", str(clicks), "--fps", "12", "--on", "onsets", "--json", "--schedule",
                   str(schedule), check=True)
    events = json.loads(proc.stdout)
    assert set(events[0]) == {"frame", "time", "strength"} and events[0]["frame"] == 0
    parsed = read_prompts(str(schedule), fps=12)
    assert [k.frame for k in parsed.keys] == [e["frame"] for e in events]


def test_broken_audio_is_one_line(tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_text("not audio")
    proc = run_cli("-m", "pipeline", "audio", str(fake))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "song.mp3" in proc.stderr
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        audio.load_mono(tmp_path / "empty.wav")
    with pytest.raises(ConfigError, match="--on"):
        audio.events(np.zeros(1000, np.float32), 24, "both", "bars")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_a_beat_synced_walk_lands_each_original_on_its_click(clicks, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):  # smooth but different pictures: a cross-fade step away from one is easy to see
        blobs = np.random.default_rng(i).random((9, 16, 3))
        Image.fromarray((blobs * 255).astype(np.uint8)).resize((128, 72), Image.BICUBIC).save(folder / f"{i}.png")
    out = tmp_path / "synced walk"
    proc = run_cli("-m", "pipeline", "run", str(folder), str(out), "--preset", "cpu", "--sync-audio", str(clicks),
                   "--on", "onsets", "--every", "3", "-S", "0", "--w", "128", "--h", "72", "--motion-engine", "blend",
                   "--easing", "linear", "--no-upscale", "-q")
    assert proc.returncode == 0, proc.stderr
    keys = json.loads((out / "keyframes" / "manifest.json").read_text())
    events = audio.song_events(clicks, FPS, "percussive", "onsets")[::3]
    assert [k["frame"] for k in keys["outputs"]] == [e.frame for e in events[:4]]
    with av.open(str(out / "synced walk.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.audio, "the song is muxed"
    song_s = audio.load_mono(clicks).size / audio.RATE
    assert abs(len(frames) / FPS - song_s) <= 1 / FPS  # as long as the song, within one frame
    outputs = keys["outputs"]
    for i, entry in enumerate(outputs):
        original = read_frame_u8(out / entry["path"])
        at = entry["frame"]
        best = psnr(frames[at], original)
        near = [psnr(frames[j], original) for j in (at - 1, at + 1) if 0 <= j < len(frames)]
        held = i + 1 == len(outputs)  # the last is held to the song's end
        assert best > 25 and all(best > p or held and abs(best - p) < 0.5 for p in near), (i, best, near)
        if i + 1 < len(outputs):  # and the picture moves on between clicks
            assert psnr(frames[(at + outputs[i + 1]["frame"]) // 2], original) < best - 3

    # Too few events for the keyframes: one line, before any work.
    proc = run_cli("-m", "pipeline", "run", str(folder), str(tmp_path / "x"), "--preset", "cpu", "--sync-audio",
                   str(clicks), "--on", "onsets", "--every", "6", "--no-upscale", "-q")
    assert proc.returncode == 2 and "lower --every" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "x" / "keyframes").exists()


def test_trim_ends_on_the_last_keyframe(clicks, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((72, 128, 3), 60 + 120 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "trimmed"
    proc = run_cli("-m", "pipeline", "run", str(folder), str(out), "--preset", "cpu", "--sync-audio", str(clicks),
                   "--on", "onsets", "--trim", "-S", "0", "--w", "64", "--h", "36", "--no-upscale", "-q")
    assert proc.returncode == 0, proc.stderr
    first_click = audio.song_events(clicks, FPS, "percussive", "onsets")[1].frame
    assert json.loads((out / "walk.json").read_text())["frames"] == first_click + 1


@pytest.mark.parametrize("fps", [24, 25, 30, 12.5])
def test_gif_delays_add_up_to_frames_over_fps(tmp_path, fps):
    n = 47
    frames = [np.full((8, 8, 3), (i * 9) % 256, np.uint8) for i in range(n)]
    out = tmp_path / "t.gif"
    gv.encode_video(lambda: iter(frames), n, (8, 8), out,
                    gv.EncodeSettings(format="gif", fps=Fraction(fps), progress=False))
    im = Image.open(out)
    delays = []
    for k in range(im.n_frames):
        im.seek(k)
        delays.append(im.info["duration"])
    assert im.n_frames == n and abs(sum(delays) - n / fps * 1000) <= 10


# --------------------------------------------------------------------------------------------
# --easing audio

def test_energy_times_are_monotonic_and_faster_where_it_is_loud():
    from artwalk.timeline import energy_times

    energy = np.array([1.0] * 10 + [9.0] * 10)  # quiet, then loud
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    times = energy_times(cumulative, 0, 20)
    assert len(times) == 19 and all(0 < a < b < 1 for a, b in zip(times, times[1:]))
    steps = np.diff([0.0, *times, 1.0])
    assert steps[15] > 5 * steps[5]  # more motion per frame where the energy is higher
    assert energy_times(np.zeros(30), 0, 4) == pytest.approx([0.25, 0.5, 0.75])  # no energy: linear


def test_a_walk_with_audio_easing(clicks, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((36, 64, 3), 40 + 90 * i, np.uint8)).save(folder / f"{i}.png")
    runs = {}
    for easing in ("linear", "audio"):
        out = tmp_path / easing
        proc = run_cli("-m", "pipeline", "run", str(folder), str(out), "--preset", "cpu", "--audio", str(clicks),
                       "--easing", easing, "-I", "2", "-F", "0.5", "--w", "64", "--h", "36", "--no-upscale", "-q")
        assert proc.returncode == 0, proc.stderr
        runs[easing] = json.loads((out / "frames" / "manifest.json").read_text())
    assert len(runs["audio"]["timeline"]) == len(runs["linear"]["timeline"])  # the frame count is unchanged
    # The cross-fade's brightness follows t: monotonic, and not the linear curve.
    from artwalk.framestore import FrameReader

    def means(name):
        with FrameReader(tmp_path / name) as reader:
            return [float(reader.u8(f).mean()) for f in runs[name]["frames"]]

    segment = means("audio")[3:3 + 47]  # the first segment's motion frames (3 keyframes first)
    assert all(a <= b + 0.5 for a, b in zip(segment, segment[1:]))
    linear = means("linear")[3:50]
    assert max(abs(a - b) for a, b in zip(segment, linear)) > 5
    proc = run_cli("-m", "pipeline", "run", str(folder), str(tmp_path / "x"), "--preset", "cpu", "--easing", "audio",
                   "--no-upscale", "-q")
    assert proc.returncode == 2 and "--easing audio moves with a song" in proc.stderr


def test_the_analysis_is_cached_by_the_song_and_settings(clicks, tmp_path, monkeypatch):
    first = audio.analyse(clicks, FPS, "percussive", "onsets")
    cached = list((tmp_path / "cache" / "audio").glob("*.json"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: the cache was not read")

    with monkeypatch.context() as m:
        m.setattr(audio, "load_mono", no_decoding)
        assert len(cached) == 1 and audio.analyse(clicks, FPS, "percussive", "onsets") == first
    changed = tmp_path / "changed.wav"
    changed.write_bytes(clicks.read_bytes()[:-4410])  # other bytes: its own analysis
    assert audio.analyse(changed, FPS, "percussive", "onsets")[1] < first[1]
    assert audio.analyse(clicks, 12, "percussive", "onsets") != first  # another frame rate: its own entry
    assert len(list((tmp_path / "cache" / "audio").glob("*.json"))) == 3


def test_a_prompt_walk_on_the_clicks(clicks, tmp_path, tiny_built):
    sd = tiny_built("sd")["sd"]
    out = tmp_path / "prompt walk"
    proc = run_cli("-m", "pipeline", "prompts", "0: a corgi\n10: a lion\n20: a lighthouse", str(out), "--engine", "sd",
                   "--model", str(sd), "--steps", "2", "--w", "64", "--h", "40", "--sync-audio", str(clicks), "--on",
                   "onsets", "--every", "2", "--trim", "--motion-engine", "blend", "--no-upscale", "-q")
    assert proc.returncode == 0, proc.stderr
    events = audio.song_events(clicks, FPS, "percussive", "onsets")[::2]
    walk = json.loads((out / "walk.json").read_text())
    assert [k["frame"] for k in walk["prompts"]] == [e.frame for e in events[:3]]
    assert walk["frames"] == events[2].frame + 1  # --trim: ends on the last keyframe
    with av.open(str(out / "prompt walk.mp4")) as c:
        assert c.streams.audio and sum(1 for _ in c.decode(video=0)) == walk["frames"]


@pytest.mark.parametrize("loop, originals", [(False, [True, False, True, False, True]), (True, [True, True, True]),
                                             (False, [False, False, False]), (True, [False, True])])
def test_segment_starts_match_the_timeline(loop, originals):
    from artwalk.timeline import Keyframe, TimelineSpec, build_timeline

    spec = TimelineSpec(fps=10, sec_interpolation=0.6, sec_freeze=0.3, easing="linear")
    joins = len(originals) - 1 + (1 if loop else 0)
    segments = [[100 + 10 * j + k for k in range(spec.intervals - 1)] for j in range(joins)]
    timeline = build_timeline([Keyframe(i, o) for i, o in enumerate(originals)], segments, spec)
    for j, start in enumerate(spec.segment_starts(originals, joins)):
        assert timeline[start] == j and timeline[start + 1] == segments[j][0]  # leaves from keyframe j's last frame
        assert timeline[start + spec.intervals] == (j + 1) % len(originals) if start + spec.intervals < len(
            timeline) else loop
