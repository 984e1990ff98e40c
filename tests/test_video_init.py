"""Video init on a generated 24-frame video, through `artwalk video-init` and tiny random SD.

The frames restyled by img2img (each with its frame's prompt and strength), every N-th one
with motion between, colour coherence, the input's frame rate, size and sound (from
--start), the cache after a prompt edit, resume after a kill, and one-line refusals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from artwalk.errors import InputError  # noqa: E402
from artwalk.images import read_frame  # noqa: E402
from artwalk.schedule import parse_numeric  # noqa: E402
from artwalk.video import decode_frames, probe_video  # noqa: E402
from conftest import DEVICE, REPO, count_frames, write_video  # noqa: E402
from diffusion_models import KeyframeConfig, run as run_keyframes  # noqa: E402
from diffusion_models.conform import conform  # noqa: E402
from diffusion_models.engines import ENGINES  # noqa: E402
from diffusion_models.video_init import match_colors  # noqa: E402

W, H, FPS, FRAMES = 64, 48, 12, 24
STEPS = 2
SCHEDULE = "0: a red fox\n12: a blue storm | rain:0.5 --neg fog\n"
RATE = 48_000


def silent_wav(path: Path) -> Path:
    """A second of silence: a file with sound and no picture."""
    with av.open(str(path), "w") as c:
        a = c.add_stream("pcm_s16le", rate=8000, layout="mono")
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        fr.sample_rate = 8000
        for p in [*a.encode(fr), *a.encode(None)]:
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def models(tiny_built) -> dict[str, Path]:
    return tiny_built("sd")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip ü.mp4")


def cli(models, video: Path, out: Path, *extra: str, prompts: str = SCHEDULE) -> list[str]:
    return ["video-init", str(video), str(out), "--prompts", prompts, "--model", str(models["sd"]),
            "--steps", str(STEPS), "--device", DEVICE, "-q", *extra]


def walk(models, video: Path, out: Path, *extra: str, **kw) -> Path:
    from pipeline.cli import main

    assert main(cli(models, video, out, *extra, **kw)) == 0
    return out


def manifest(out: Path, stage: str = "keyframes") -> dict:
    return json.loads((out / stage / "manifest.json").read_text())


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def sound(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        assert c.streams.audio, f"{path} has no audio stream"
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])


@pytest.fixture(scope="module")
def every_frame(models, video, tmp_path_factory) -> Path:
    """The uninterrupted walk with every frame restyled: the reference of the resume test."""
    return walk(models, video, tmp_path_factory.mktemp("every") / "every", "--every", "1")


# --------------------------------------------------------------------------------------------
# The core: probing and decoding


def test_probe_and_decode_frames(video, tmp_path):
    info = probe_video(video)
    assert (info.fps, info.width, info.height, info.frames, info.has_audio) == (FPS, W, H, FRAMES, True)
    everything = decoded(video)
    picked = list(decode_frames(video, [20, 3, 0, 3]))
    assert [i for i, _ in picked] == [0, 3, 20]
    for i, rgb in picked:
        assert np.array_equal(rgb, everything[i])
    with pytest.raises(InputError, match="ends after 24 frame"):
        list(decode_frames(video, [5, 30]))


def test_a_variable_rate_video_keeps_time():
    from fractions import Fraction

    from artwalk.video import _layout

    # 25 fps stamps: constant, then pictures held 3 frames long (a phone slowing down).
    stamps = list(range(0, 40, 4)) + list(range(40, 100, 12))  # in 1/100 s
    frames, sources = _layout(stamps, Fraction(1, 100), 25.0)
    assert frames == 23  # the last picture starts at 0.88 s: frame 22 at 25 fps
    assert sources[:10] == tuple(range(10)) and sources[10:] == tuple(10 + k // 3 for k in range(13))
    assert _layout(list(range(0, 96, 4)), Fraction(1, 100), 25.0) == (24, tuple(range(24)))
    shuffled = [0, 8, 4, 12]  # decode order of B-frames: sorted by time
    assert _layout(shuffled, Fraction(1, 100), 25.0) == (4, (0, 1, 2, 3))


def test_a_real_variable_rate_file(tmp_path):
    from fractions import Fraction

    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.codec_context.time_base = Fraction(1, 100)
        for k, pts in enumerate([0, 4, 8, 12, 24, 36, 48]):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 30 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 100)
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
    info = probe_video(path)
    assert info.variable and info.sources[0] == 0 and info.sources[-1] == 6
    assert list(info.sources) == sorted(info.sources) and info.frames == round(0.48 * info.fps) + 1


def test_timestamps_far_apart_are_one_line_at_once(tmp_path):
    """A tiny mkv whose pictures are 10^13 (or 10^9) ticks apart would last for ages at its rate."""
    import resource
    import time
    from fractions import Fraction

    for gap in (10**13, 10**9):
        path = tmp_path / f"far {gap}.mkv"
        with av.open(str(path), "w") as c:
            v = c.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = W, H, "yuv420p"
            v.codec_context.time_base = Fraction(1, 1000)
            for k in range(3):
                frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), 60 * k, np.uint8), format="rgb24")
                frame.pts, frame.time_base = k * gap, Fraction(1, 1000)
                for packet in v.encode(frame):
                    c.mux(packet)
            for packet in v.encode(None):
                c.mux(packet)
        assert path.stat().st_size < 20_000
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
        with pytest.raises(InputError, match="over the 200000 a video init takes") as err:
            probe_video(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        assert time.monotonic() - start < 2 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


@pytest.mark.parametrize("kind, expected", [
    ("empty", "video file is empty (0 bytes)"),
    ("garbage", "not a video file this tool can read"),
    ("sound", "has no video stream (it holds only sound)"),
    ("missing", "video file not found"),
])
def test_broken_videos_are_one_line(tmp_path, kind, expected):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        # seeded: os.urandom's bytes were now and then read as a container with no stream
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "sound":
        path = silent_wav(tmp_path / "sound.wav")
    with pytest.raises(InputError) as err:
        probe_video(path)
    assert expected in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# The walk


@pytest.mark.parametrize("every", [1, 4])
def test_video_init_keeps_rate_size_length_and_sound(models, video, tmp_path, every, every_frame):
    out = every_frame if every == 1 else walk(models, video, tmp_path / "four", "--every", str(every))
    mp4 = out / f"{out.name}.mp4"
    assert count_frames(mp4) == (FRAMES, FPS, (W, H))
    assert sound(mp4).size == pytest.approx(RATE * FRAMES / FPS, abs=1024)  # the clip's 2 s of sound
    keys = manifest(out)
    restyled = list(range(0, FRAMES, every)) + ([FRAMES - 1] if (FRAMES - 1) % every else [])
    assert [e["frame"] for e in keys["outputs"]] == restyled and keys["frames"] == FRAMES
    assert [e["source"] for e in keys["outputs"]] == restyled
    motion = manifest(out, "frames")
    assert len(motion["timeline"]) == FRAMES
    assert sum(e["kind"] == "motion" for e in motion["frames"]) == FRAMES - len(restyled)
    assert motion["engine"]["engine"] == ("none" if every == 1 else "flow")
    # The frame at 0 is img2img of the video's frame 0 with the first line's prompt, at 0.45.
    engine = ENGINES.create("sd", {"model": str(models["sd"]), "steps": STEPS, "device": DEVICE}, progress=False)
    from artwalk.schedule import Part

    cond = engine.conditioning([Part("a red fox", 1.0)], "", 0, None, (W, H))
    source = conform(decoded(video)[0].astype(np.float32) / 255, W, H, "cover")
    expected = engine.restyle(cond, source, 0.45)
    assert np.array_equal(read_frame(out / keys["outputs"][0]["path"]), np.rint(expected * 255) / 255)
    # The contact sheet shows the schedule's two prompts, not every restyled frame.
    assert [e["kind"] for e in keys["outputs"]].count("keyframe") == 2


def test_strength_schedule_and_a_prompt_edit(models, video, tmp_path):
    strength = "0:(0.2), 23:(0.9)"
    settings = dict(video_init=video, run_dir=tmp_path / "out", prompts=SCHEDULE, strength_schedule=strength,
                    every=5, engine="sd", model=str(models["sd"]), steps=STEPS, device=DEVICE, width=W, height=H,
                    fps=FPS, color_match="none", progress=False)
    first = run_keyframes(KeyframeConfig(**settings))
    assert (first.computed, first.reused) == (7, 0)
    outputs = manifest(tmp_path / "out")["outputs"]
    # Every 5th frame, the last, and the second line's frame, so its prompt shows on time.
    assert [e["frame"] for e in outputs] == [0, 5, 10, 12, 15, 20, 23]
    wanted = parse_numeric(strength, fps=FPS, max_frames=FRAMES).values(FRAMES)
    assert [e["strength"] for e in outputs] == pytest.approx([wanted[e["frame"]] for e in outputs])
    # Frame 12 is img2img of the video's frame 12 with the second line (composable, --neg) at
    # the schedule's strength there; another strength gives other pixels.
    from artwalk.schedule import parse_prompt

    engine = ENGINES.create("sd", {"model": str(models["sd"]), "steps": STEPS, "device": DEVICE}, progress=False)
    line = parse_prompt("a blue storm | rain:0.5 --neg fog")
    cond = engine.conditioning(line.parts, line.negative, 0, None, (W, H))
    source = conform(decoded(video)[12].astype(np.float32) / 255, W, H, "cover")
    made = read_frame(tmp_path / "out" / outputs[3]["path"])
    assert np.array_equal(made, np.rint(engine.restyle(cond, source, wanted[12]) * 255) / 255)
    assert not np.array_equal(made, np.rint(engine.restyle(cond, source, 1.0) * 255) / 255)
    # A changed prompt from frame 12 on redoes frames 12, 15, 20 and 23 only.
    edited = run_keyframes(KeyframeConfig(**{**settings, "prompts": SCHEDULE.replace("blue storm", "green sea")}))
    assert (edited.computed, edited.reused) == (4, 3)
    after = manifest(tmp_path / "out")["outputs"]
    assert [e["sha256"] for e in after[:3]] == [e["sha256"] for e in outputs[:3]]
    assert all(a["sha256"] != b["sha256"] for a, b in zip(after[3:], outputs[3:]))


def test_color_match_moves_the_palette_and_keeps_the_picture():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64] / 64.0
    picture = np.stack([x, y, 0.5 * (x + y)], axis=-1).astype(np.float32)
    reference = np.clip(rng.random((40, 40, 3)) * 0.3 + [0.6, 0.2, 0.1], 0, 1).astype(np.float32)
    out = match_colors(picture, reference)
    assert out.shape == picture.shape and out.dtype == np.float32
    mean_gap = lambda a, b: np.abs(a.reshape(-1, 3).mean(0) - b.reshape(-1, 3).mean(0)).max()  # noqa: E731
    assert mean_gap(out, reference) < 0.03 < mean_gap(picture, reference)
    # The picture's lightness order is kept: the matched image still shows the gradient.
    lum = lambda a: a @ np.array([0.3, 0.59, 0.11], np.float32)  # noqa: E731
    assert np.corrcoef(lum(picture).ravel(), lum(out).ravel())[0, 1] > 0.95
    # Its own palette: unchanged, within one 8-bit level (OpenCV's float Lab is tabulated).
    assert np.abs(match_colors(picture, picture) - picture).max() < 1 / 255


def test_color_match_settings_reach_the_frames(models, video, tmp_path):
    base = dict(video_init=video, prompts=SCHEDULE, every=8, engine="sd", model=str(models["sd"]), steps=STEPS,
                device=DEVICE, width=W, height=H, progress=False)
    shas = {}
    for mode in ("none", "first", "previous"):
        run_keyframes(KeyframeConfig(run_dir=tmp_path / mode, color_match=mode, **base))
        shas[mode] = [e["sha256"] for e in manifest(tmp_path / mode)["outputs"]]
    assert shas["none"][0] == shas["first"][0] == shas["previous"][0]  # the first frame is the reference
    assert shas["none"][1:] != shas["first"][1:] and shas["first"][2:] != shas["previous"][2:]
    assert shas["first"][1] == shas["previous"][1]  # frame 8's reference is frame 0 either way


def test_start_end_choose_the_frames_and_the_sound(models, video, tmp_path):
    out = walk(models, video, tmp_path / "part", "--start", "0.5", "--end", "1.5", "--every", "3",
               prompts="0: a red fox\n6: a storm")
    mp4 = out / "part.mp4"
    assert count_frames(mp4) == (12, FPS, (W, H))
    keys = manifest(out)
    assert [e["source"] for e in keys["outputs"]] == [6, 9, 12, 15, 17]
    assert [e["frame"] for e in keys["outputs"]] == [0, 3, 6, 9, 11]
    samples = sound(mp4)
    assert samples.size == pytest.approx(RATE, abs=1024)
    # The clip is silent until 0.5 s: from --start its sound begins with the tone at once, and
    # it is its own sound, not faded out at the end.
    rms = lambda x: np.sqrt(np.mean(x ** 2))  # noqa: E731
    assert rms(samples[: RATE // 10]) > 0.25 and rms(samples[-RATE // 10 :]) > 0.25


def test_a_killed_run_resumes_to_the_same_video(models, video, tmp_path, every_frame):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *cli(models, video, out, "--every", "1")],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    units = out / "keyframes" / "units"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        done = [u for u in units.glob("*") if (u / "unit.json").is_file()] if units.is_dir() else []
        if len(done) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "keyframes" / "manifest.json").exists()
    walk(models, video, out, "--every", "1")
    # Every restyled frame is bit-identical to the uninterrupted run's, and so is the video.
    assert [e["sha256"] for e in manifest(out)["outputs"]] == [e["sha256"] for e in manifest(every_frame)["outputs"]]
    assert (out / "killed.mp4").read_bytes() == (every_frame / "every.mp4").read_bytes()


def test_refusals_are_one_line_and_write_nothing(models, video, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "out"
    audio_only = silent_wav(tmp_path / "song.wav")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video.read_bytes()[:300])
    cases = [
        (cli(models, audio_only, out), "has no video stream (it holds only sound)"),
        (cli(models, truncated, out), str(truncated)),
        (cli(models, video, out, "--start", "5"), "is frame 60, past the last frame (23)"),
        (cli(models, video, out, "--start", "1", "--end", "0.5"), "--end 0.5 must be after --start 1"),
        (cli(models, video, out, "--every", "0"), "--every must be 1 or more"),
        (cli(models, video, out, "--strength", "0:(0), 12:(0.5)"), "the strength schedule gives 0 at frame 0; strength must be in (0, 1]"),
        (cli(models, video, out, prompts="0: a\n30: b"), "line 2"),
        (cli(models, video, out, "--engine", "none"), "engine 'none' cannot; use --engine sd"),
        (["plan", "--video-init", str(video), "--prompts", SCHEDULE, str(out), "--sec_freeze", "1", "--fps", "30"],
         "--fps, --sec_freeze: not for a video init"),
        (["video-init", str(video), str(out), "--model", str(models["sd"])], "give --prompts SCHEDULE"),
        (cli(models, video, out, "--model", str(tmp_path / "nowhere")), "nowhere"),
        (cli(models, video, out, "-o", str(video)), "that is the input video"),
    ]
    for args, expected in cases:
        capsys.readouterr()
        assert main(args) != 0, args
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, (args, err)
        assert not out.exists(), args
