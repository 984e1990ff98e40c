"""Stage 4 (generate_videos.py): tiny run folders built here, real encodes with PyAV."""

from __future__ import annotations

import json
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import generate_videos as gv
from artwalk.errors import ConfigError, InputError, StageOrderError
from artwalk.images import save_png
from artwalk.runfolder import sha256_file, write_manifest

REPO = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 40), (30, 40, 220), (250, 250, 250)


# --------------------------------------------------------------------------- builders


def solid(rgb, size):
    w, h = size
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def write_frames_stage(out: Path, stage: str, images: list[np.ndarray], timeline: list[int],
                       fps: float = 24.0, upstream: str = "0" * 64, unit: str = "k1",
                       kinds: list[str] | None = None) -> Path:
    frames = []
    for i, img in enumerate(images):
        rel = f"{stage}/units/{unit}/{i + 1:06d}.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        frames.append({"path": rel, "sha256": save_png(out / rel, img), "kind": kinds[i] if kinds else "motion"})
    h, w = images[0].shape[:2]
    return write_manifest(out / stage, stage, fps=fps, size=[w, h], frames=frames,
                          timeline=timeline, upstream=upstream)


def make_run(tmp_path: Path, colours=(RED, GREEN, BLUE), counts=(5, 3, 4), size=(64, 48),
             fps: float = 24.0, name: str = "walk", keyframes: int | None = None) -> Path:
    """A run folder whose video shows colours[i] for counts[i] frames."""
    out = tmp_path / name
    out.mkdir(parents=True)
    images = [solid(c, size) for c in colours]
    timeline = [i for i, n in enumerate(counts) for _ in range(n)]
    outputs = []
    for i in range(keyframes if keyframes is not None else len(colours)):
        rel = f"keyframes/units/u{i}/000001.png"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sha = save_png(out / rel, images[i % len(images)])
        entry = {"path": rel, "sha256": sha, "kind": "original" if i % 2 == 0 else "inbetween"}
        if i % 2 == 0:
            entry["source"] = f"painting_{i}.jpg"
        outputs.append(entry)
    write_manifest(out / "keyframes", "keyframes", size=list(size), outputs=outputs)
    write_frames_stage(out, "frames", images, timeline, fps=fps)
    (out / "walk.json").write_text("{}\n")
    return out


def sine_wav(path: Path, seconds: float, rate: int = 44100, channels: int = 2) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(x[:, None], channels, axis=1).tobytes())
    return path


def decode_video(path: Path):
    """(frames as RGB arrays, their times in s, the stream's average rate)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
    return frames, times, rate


def decode_audio(path: Path):
    """(mono float samples, sample rate), or None when there is no audio stream."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        rate = c.streams.audio[0].sample_rate
        chunks = [f.to_ndarray()[0] for f in c.decode(audio=0)]  # planar: channel 0
    return np.concatenate(chunks), rate


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "generate_videos.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120, **kw)


def cfg(run_dir: Path, **kw) -> gv.VideoConfig:
    kw.setdefault("progress", False)
    return gv.VideoConfig(run_dir=run_dir, **kw)


def listing(folder: Path) -> list[str]:
    """The folder's entries, without hidden ones (the run folder's lock file)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_frames_timing_and_colours(tmp_path, fmt):
    run_dir = make_run(tmp_path)
    result = gv.run(cfg(run_dir, format=fmt))
    assert result.path == run_dir / f"walk.{fmt}" and result.path.is_file()
    assert (result.frames, result.duration_s) == (12, 0.5)
    assert result.bytes == result.path.stat().st_size
    frames, times, rate = decode_video(result.path)
    assert len(frames) == 12
    if fmt != "gif":  # a GIF has delays, not a rate (its demuxer guesses 25 from 4/100 s)
        assert rate == 24
    # GIF delays are whole 1/100 s: 1/24 s rounds to 0.04 or 0.05.
    tol = 0.006 if fmt == "gif" else 1e-3
    assert np.allclose(times, np.arange(12) / 24, atol=tol)
    with av.open(str(result.path)) as c:
        assert c.duration / av.time_base == pytest.approx(0.5, abs=0.011)
    expected = [RED] * 5 + [GREEN] * 3 + [BLUE] * 4
    for k, (frame, colour) in enumerate(zip(frames, expected, strict=True)):
        mean = frame.reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - colour).max() < 8, (k, mean, colour)
    assert leftovers(run_dir) == []


def test_fractional_fps_is_exact(tmp_path):
    run_dir = make_run(tmp_path, counts=(10, 10, 10), fps=29.97)
    result = gv.run(cfg(run_dir))
    frames, times, rate = decode_video(result.path)
    assert rate == Fraction(30000, 1001)
    assert len(frames) == 30
    assert result.duration_s == pytest.approx(30 * 1001 / 30000)
    assert times[-1] == pytest.approx(29 * 1001 / 30000, abs=1e-3)


@pytest.mark.parametrize("fmt, encoded", [("mp4", (66, 48)), ("webm", (65, 47)), ("gif", (65, 47))])
def test_odd_size(tmp_path, fmt, encoded, caplog):
    caplog.set_level(logging.INFO)
    run_dir = make_run(tmp_path, size=(65, 47))
    result = gv.run(cfg(run_dir, format=fmt))
    assert (result.width, result.height) == encoded
    frames, _, _ = decode_video(result.path)
    assert len(frames) == 12 and frames[0].shape == (encoded[1], encoded[0], 3)
    # the pad repeats the edge: the last column/row has the picture's colour, not black
    assert np.abs(frames[0][-1, -1].astype(int) - RED).max() < 12
    padded = [r.message for r in caplog.records if "padded" in r.message]
    assert len(padded) == (1 if fmt == "mp4" else 0)


def test_mp4_is_faststart(tmp_path):
    result = gv.run(cfg(make_run(tmp_path)))
    data = result.path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_each_unique_frame_is_read_once(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, counts=(5, 3, 4))
    # a loop back to the first frame, as --loop makes: still within the cache
    manifest_path = write_frames_stage(run_dir, "frames", [solid(c, (64, 48)) for c in (RED, GREEN, BLUE)],
                                       [0] * 5 + [1] * 3 + [2] * 4 + [0] * 2)
    assert manifest_path.is_file()
    import artwalk.framestore as framestore

    calls = []
    real = framestore.read_frame_u8
    monkeypatch.setattr(framestore, "read_frame_u8", lambda p: calls.append(Path(p).name) or real(p))
    gv.run(cfg(run_dir, contact_sheet=False))
    assert sorted(calls) == ["000001.png", "000002.png", "000003.png"]


def test_frame_of_wrong_size_is_one_line_error(tmp_path):
    run_dir = make_run(tmp_path)
    save_png(run_dir / "frames/units/k1/000002.png", solid(GREEN, (32, 32)))
    with pytest.raises(StageOrderError, match="000002.png: frame is 32x32, the manifest says 64x48"):
        gv.run(cfg(run_dir))
    assert not (run_dir / "walk.mp4").exists() and leftovers(run_dir) == []


def test_failed_encode_leaves_no_file(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path)
    (run_dir / "frames/units/k1/000003.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="000003.png"):
        gv.run(cfg(run_dir))
    assert listing(run_dir) == ["chunks", "frames", "keyframes", "walk.json"]
    assert list((run_dir / "chunks" / "units").iterdir()) == []  # no half-made chunk either


def test_stale_temp_of_a_killed_run_is_removed(tmp_path):
    run_dir = make_run(tmp_path)
    stale = run_dir / "walk.mp4.tmp-999999999-deadbeef"  # no such process
    stale.write_bytes(b"half a video")
    gv.run(cfg(run_dir))
    assert not stale.exists() and (run_dir / "walk.mp4").is_file()


# --------------------------------------------------------------------------- source choice


def test_upscaled_is_used_when_fresh_and_refused_when_stale(tmp_path):
    run_dir = make_run(tmp_path)
    fresh = sha256_file(run_dir / "frames/manifest.json")
    white = [solid(WHITE, (128, 96))] * 3
    write_frames_stage(run_dir, "upscaled", white, [0] * 5 + [1] * 3 + [2] * 4, upstream=fresh)
    result = gv.run(cfg(run_dir))
    assert result.source == "upscaled" and (result.width, result.height) == (128, 96)
    frames, _, _ = decode_video(result.path)
    assert np.abs(frames[0].reshape(-1, 3).mean(axis=0) - WHITE).max() < 8

    write_frames_stage(run_dir, "upscaled", white, [0] * 12, upstream="f" * 64)  # stale
    for source in ("auto", "upscaled"):  # never the stale frames, nor frames of another size in their place
        with pytest.raises(StageOrderError, match="out of date.*--source frames"):
            gv.run(cfg(run_dir, source=source))
    assert gv.run(cfg(run_dir, source="frames")).source == "frames"


def test_missing_frames_manifest_is_one_line_error(tmp_path):
    run_dir = tmp_path / "walk"
    run_dir.mkdir()
    proc = cli(run_dir)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "python -m frame_interpolation" in proc.stderr
    with pytest.raises(StageOrderError):
        gv.run(cfg(run_dir, source="upscaled"))


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt, codec", [("mp4", "aac"), ("webm", "opus")])
def test_audio_trimmed_and_faded(tmp_path, fmt, codec):
    run_dir = make_run(tmp_path, counts=(16, 16, 16))  # 2 s
    song = sine_wav(tmp_path / "song.wav", 5.0)
    result = gv.run(cfg(run_dir, format=fmt, audio=song))
    with av.open(str(result.path)) as c:
        assert c.streams.audio[0].codec_context.name == codec
    samples, rate = decode_audio(result.path)
    assert len(samples) / rate == pytest.approx(2.0, abs=0.1)
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    middle = rms(samples[int(0.9 * rate): int(1.1 * rate)])
    # the default 2 s fade ends at the video's end: the last 0.1 s is near silence
    assert middle > 0.1 and rms(samples[-int(0.1 * rate):]) < 0.1 * middle


def test_short_audio_just_ends_and_fade_never_exceeds_video(tmp_path):
    run_dir = make_run(tmp_path, counts=(16, 16, 16))  # 2 s
    result = gv.run(cfg(run_dir, audio=sine_wav(tmp_path / "short.wav", 1.0, channels=1), audio_fade=10))
    samples, rate = decode_audio(result.path)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.1)
    assert result.audio_s == pytest.approx(1.0, abs=0.01)


def encode_sine(path: Path, container: str, codec: str, seconds: float = 1.0, rate: int = 48000) -> Path:
    """A stereo sine in another container/codec, written with PyAV."""
    formats = [f.name for f in av.Codec(codec, "w").audio_formats]
    fmt = next((f for f in ("fltp", "flt") if f in formats), formats[0])
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    data = np.stack([x, x]) if fmt.endswith("p") else np.repeat(x, 2)[None]
    if fmt.startswith("s16"):
        data = (data * 32767).astype(np.int16)
    with av.open(str(path), "w", format=container) as c:
        stream = c.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("name, container, codec", [("s.mp3", "mp3", "libmp3lame"), ("s.m4a", "ipod", "aac"),
                                                    ("s.flac", "flac", "flac"), ("s.ogg", "ogg", "libopus")])
def test_audio_formats(tmp_path, name, container, codec):
    run_dir = make_run(tmp_path, counts=(4, 4, 4))  # 0.5 s
    song = encode_sine(tmp_path / name, container, codec)
    result = gv.run(cfg(run_dir, audio=song, contact_sheet=False))
    assert result.audio_s == pytest.approx(0.5, abs=0.01)


def test_same_inputs_same_bytes(tmp_path):
    run_dir = make_run(tmp_path)
    song = sine_wav(tmp_path / "s.wav", 1.0)
    for fmt in ("mp4", "webm"):
        a = gv.run(cfg(run_dir, output=tmp_path / f"a.{fmt}", audio=song, contact_sheet=False))
        b = gv.run(cfg(run_dir, output=tmp_path / f"b.{fmt}", audio=song, contact_sheet=False))
        assert a.path.read_bytes() == b.path.read_bytes()


def test_the_same_frames_give_the_same_bytes_in_any_process(tmp_path):
    """Encoders take the machine's cores, not the process's CPU affinity: the same textured frames
    encode to the same file three times here and in a process pinned to one CPU, for mp4 and webm.
    (x264's AVX-512 variance shows only now and then; the next test checks what keeps it off.)"""
    frames = np.stack(textured(24))
    np.save(tmp_path / "frames.npy", frames)
    size = (frames.shape[2], frames.shape[1])
    code = ("import os, sys, numpy as np; from fractions import Fraction; from generate_videos import EncodeSettings,"
            " encode_video; allowed = os.sched_getaffinity(0) if hasattr(os, 'sched_getaffinity') else set();"
            " len(allowed) > 1 and os.sched_setaffinity(0, {min(allowed)}); f = np.load(sys.argv[1]);"
            " [encode_video(lambda: iter(f), len(f), (f.shape[2], f.shape[1]), out,"
            " EncodeSettings(format=out[-4:].lstrip('.'), fps=Fraction(24), progress=False)) for out in sys.argv[2:]]")
    subprocess.run([sys.executable, "-c", code, tmp_path / "frames.npy", tmp_path / "pinned.mp4", tmp_path / "pinned.webm"],
                   cwd=REPO, check=True, timeout=120)
    for fmt in ("mp4", "webm"):
        settings = gv.EncodeSettings(format=fmt, fps=Fraction(24), progress=False)
        here = {gv.encode_video(lambda: iter(frames), len(frames), size, tmp_path / f"{k}.{fmt}",
                                settings).path.read_bytes() for k in range(3 if fmt == "mp4" else 1)}
        assert here == {(tmp_path / f"pinned.{fmt}").read_bytes()}, fmt


def test_x264_is_held_to_avx2_on_avx512_cpus_and_a_continued_chunk_gets_its_zone(tmp_path, monkeypatch):
    """What x264 is told, as it says so: the instruction sets it logs, the zone it writes into the stream."""
    import re

    import av.logging

    import artwalk.video as video

    frames = textured(12, (64, 48))

    def encode(path: Path, continued: bool = False) -> tuple[str, str]:
        """(the cpu capabilities x264 logs, the options it writes into the stream)"""
        level = av.logging.get_level()
        av.logging.set_level(av.logging.INFO)
        try:
            with av.logging.Capture() as logs:
                gv.encode_video(lambda: iter(frames), len(frames), (64, 48), path,
                                gv.EncodeSettings(fps=Fraction(24), progress=False, continued=continued))
        finally:
            av.logging.set_level(level)
        with av.open(str(path)) as c:
            first = bytes(next(c.demux(c.streams.video[0])))
        capabilities = next(text for _, _, text in logs if "cpu capabilities" in text)
        return capabilities, re.search(rb"options: ([^\x00]*)", first).group(1).decode()

    from numpy._core._multiarray_umath import __cpu_features__ as cpu

    if not all(cpu.get(f) for f in ("AVX2", "FMA3", "BMI2")):  # x264's AVX2 set: forced on a CPU without it, a crash
        pytest.skip("this CPU has no AVX2")
    monkeypatch.setattr(video, "_has_avx512", lambda: True)
    video.x264_options.cache_clear()
    try:
        capabilities, written = encode(tmp_path / "held.mp4")
        assert "AVX2" in capabilities and "AVX512" not in capabilities, capabilities
        assert "zones" not in written
        _, written = encode(tmp_path / "continued.mp4", continued=True)
        assert "zones=4,11,b=1.75" in written, written  # the last 8 of 12 frames
    finally:
        video.x264_options.cache_clear()


def test_gif_with_a_soundtrack_is_refused_before_encoding(tmp_path):
    run_dir = make_run(tmp_path)
    with pytest.raises(ConfigError, match="--format gif has no sound"):
        gv.run(cfg(run_dir, format="gif", audio=sine_wav(tmp_path / "s.wav", 1.0)))
    assert not list(run_dir.glob("*.gif")) and leftovers(run_dir) == []


def test_corrupt_audio_fails_before_encoding(tmp_path):
    run_dir = make_run(tmp_path)
    bad = tmp_path / "song.mp3"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    proc = cli(run_dir, "--audio", bad)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "song.mp3" in proc.stderr
    assert "encoding" not in proc.stderr and not (run_dir / "walk.mp4").exists() and leftovers(run_dir) == []
    with pytest.raises(InputError, match="missing.wav: audio file not found"):
        gv.run(cfg(run_dir, audio=tmp_path / "missing.wav"))


# --------------------------------------------------------------------------- contact sheet, clean


def _label_pixels(sheet: Path, index: int, count: int, thumb_h: int = 240) -> np.ndarray:
    """The label strip under the ``index``-th of ``count`` thumbnails of a contact sheet."""
    from PIL import Image

    with Image.open(sheet) as im:
        rgb = np.asarray(im.convert("RGB"))
    cols, _ = gv.grid_shape(count)
    x, y = 8 + (index % cols) * (320 + 8), 8 + (index // cols) * (thumb_h + 26 + 8) + thumb_h
    return rgb[y : y + 26, x : x + 320]


def _drawn(text: str, fill=(235, 235, 235)) -> np.ndarray:
    """``text`` as the contact sheet draws a label, on its background."""
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (320, 26), gv._SHEET_BG)
    ImageDraw.Draw(strip).text((2, 5), text, font=ImageFont.truetype(str(gv.LABEL_FONT), size=14), fill=fill)
    return np.asarray(strip)


def test_contact_sheet_labels_show_names_as_written(tmp_path):
    from PIL import ImageFont

    font = ImageFont.truetype(str(gv.LABEL_FONT), size=14)
    glyph = lambda ch: bytes(font.getmask(ch))  # noqa: E731
    missing = glyph("\uffff")  # what a character without a glyph draws: a box
    for ch in "sunrise été ÉÀçñøßÅœ ЖΩ":
        assert ch == " " or glyph(ch) != missing, ch
    run_dir = make_run(tmp_path)
    manifest = json.loads((run_dir / "keyframes" / "manifest.json").read_text())
    manifest["outputs"][0]["source"] = "01 sunrise été.jpg"
    manifest["outputs"][2]["source"] = "Ωmega Жук.png"
    (run_dir / "keyframes" / "manifest.json").write_text(json.dumps(manifest))
    sheet = gv.run(cfg(run_dir)).contact_sheet
    assert np.array_equal(_label_pixels(sheet, 0, 3), _drawn("1 01 sunrise été.jpg"))
    assert np.array_equal(_label_pixels(sheet, 2, 3), _drawn("3 Ωmega Жук.png"))
    # An ordering prefix every original shares (the studio's input, a story) is not shown twice.
    manifest["outputs"][0]["source"], manifest["outputs"][2]["source"] = "0001_sunrise.jpg", "0002_nuit.jpg"
    (run_dir / "keyframes" / "manifest.json").write_text(json.dumps(manifest))
    sheet = gv.run(cfg(run_dir, output=tmp_path / "again.mp4")).contact_sheet
    assert np.array_equal(_label_pixels(sheet, 0, 3), _drawn("1 sunrise.jpg"))


def test_contact_sheet_grid(tmp_path):
    from PIL import Image

    run_dir = make_run(tmp_path, keyframes=5)
    result = gv.run(cfg(run_dir, output=tmp_path / "videos" / "mywalk.mp4"))
    assert result.contact_sheet == tmp_path / "videos" / "mywalk_keyframes.png"
    assert gv.grid_shape(5) == (3, 2)
    # 3 columns of 320 px thumbnails, 2 rows of 240 px (64x48 scaled) + label, 8 px gaps
    with Image.open(result.contact_sheet) as im:
        assert im.size == (8 + 3 * (320 + 8), 8 + 2 * (240 + 26 + 8))
        assert np.abs(np.asarray(im)[8 + 120, 8 + 160].astype(int) - RED).max() <= 2
    assert gv.grid_shape(1) == (1, 1) and gv.grid_shape(100) == (8, 13)

    result = gv.run(cfg(run_dir, output=tmp_path / "b.mp4", contact_sheet=False))
    assert result.contact_sheet is None and not (tmp_path / "b_keyframes.png").exists()


def test_clean_keeps_video_sheet_and_walk_json(tmp_path):
    run_dir = make_run(tmp_path)
    (run_dir / "notes.txt").write_text("mine")
    gv.run(cfg(run_dir, clean=True))
    assert listing(run_dir) == [
        "notes.txt", "walk.json", "walk.mp4", "walk.mp4.json", "walk_keyframes.png"]  # fmt: skip


def test_rerun_with_nothing_changed_does_not_encode(tmp_path):
    run_dir = make_run(tmp_path)
    first = gv.run(cfg(run_dir))
    stamp = first.path.stat().st_mtime_ns
    again = gv.run(cfg(run_dir))
    assert first.path.stat().st_mtime_ns == stamp and again.frames == first.frames
    changed = gv.run(cfg(run_dir, crf=30))  # another setting: encoded anew
    assert changed.path.stat().st_mtime_ns != stamp and changed.bytes != first.bytes


# --------------------------------------------------------------------------- CLI


def test_cli_artwalks_flags_format_and_final_line(tmp_path):
    make_run(tmp_path, name="my walk")
    proc = cli("--input_path", tmp_path, "--folder_name", "my walk", "--format", "webm", "--quiet")
    assert proc.returncode == 0 and proc.stderr == ""
    assert (tmp_path / "my walk" / "my walk.webm").is_file()
    proc = cli(tmp_path / "my walk", "-o", tmp_path / "x.gif", "--no-contact-sheet")
    assert proc.returncode == 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wrote {tmp_path / 'x.gif'}: 12 frames, 0.50 s") and "64x48" in last


def test_cli_config_errors_exit_2(tmp_path):
    run_dir = make_run(tmp_path)
    for args in (["-o", tmp_path / "x.mp4", "--format", "gif"], ["-o", tmp_path / "x.avi"], ["--crf", "99"]):
        proc = cli(run_dir, *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (args, proc.stderr)
    with pytest.raises(ConfigError):
        gv.config_from_args(gv.build_parser().parse_args([str(run_dir), "--input_path", str(tmp_path)]))


def test_help_names_every_flag():
    text = gv.build_parser().format_help()
    for flag in ("--input_path", "--folder_name", "--output", "--format", "--crf", "--encode-preset", "--audio",
                 "--audio-fade", "--source", "--no-contact-sheet", "--sec_interpolation", "--sec_freeze",
                 "--clean", "--quiet"):  # fmt: skip
        assert flag in text


def motion_run(tmp_path: Path, upscale: bool = False) -> Path:
    """make_run's keyframes (2 originals, an in-between) through the real stage 2 (blend, 12 fps,
    linear, I = 0.5 s, F = 0.25 s) and, with ``upscale``, stage 3 (lanczos x2)."""
    import frame_interpolation
    import super_resolution

    run_dir = make_run(tmp_path)
    frame_interpolation.run(frame_interpolation.MotionConfig(
        run_dir, fps=12, sec_interpolation=0.5, sec_freeze=0.25, engine="blend", easing="linear", progress=False))
    if upscale:
        super_resolution.run(super_resolution.UpscaleConfig(run_dir, target="x2", engine="lanczos", progress=False))
    return run_dir


def motion_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "frames" / "manifest.json").read_text())["config"]


def test_artwalks_sec_flags_are_handed_to_artwalk_retime(tmp_path):
    """ArtWalks' form still works: stage 4's script hands it to the top floor, which runs stage 2
    again with only I and F changed, stage 3 as the run had it, then the encode (one process)."""
    run_dir = motion_run(tmp_path, upscale=True)
    proc = cli("--input_path", tmp_path, "--folder_name", "walk", "--sec_interpolation", "1", "--sec_freeze", "0.5",
               "--no-contact-sheet")
    assert proc.returncode == 0, proc.stderr
    assert f"handing the command to the top floor: artwalk retime --input_path {tmp_path}" in proc.stderr
    config = motion_config(run_dir)
    assert (config["fps"], config["easing"], config["engine"]) == (12.0, "linear", "blend")  # kept
    assert (config["sec_interpolation"], config["sec_freeze"]) == (1.0, 0.5)
    upscaled = json.loads((run_dir / "upscaled" / "manifest.json").read_text())
    assert upscaled["upstream"] == sha256_file(run_dir / "frames" / "manifest.json")  # made from the new frames
    frames, _, rate = decode_video(run_dir / "walk.mp4")  # 2 originals held 6, an in-between, 2 x 11 motion
    assert (len(frames), rate, frames[0].shape) == (2 * 6 + 1 + 2 * 11, 12, (96, 128, 3))


def test_artwalks_sec_flags_errors_are_one_line_with_the_stage_s_code(tmp_path, capsys):
    run_dir = motion_run(tmp_path)
    before = (run_dir / "frames" / "manifest.json").read_bytes()
    proc = cli(run_dir, "--sec_freeze", "-1")  # refused before the hand-over
    assert proc.returncode == 2 and proc.stderr == "error: --sec_freeze must be zero or more seconds, got -1.0\n"
    frames_only = tmp_path / "frames only"
    write_frames_stage(frames_only, "frames", [solid(RED, (64, 48))], [0] * 4)
    proc = cli(frames_only, "--sec_interpolation", "2", "-q")  # the top floor's stage 2 says why, in one line
    assert proc.returncode == StageOrderError.exit_code and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "keyframes" in proc.stderr
    assert (run_dir / "frames" / "manifest.json").read_bytes() == before
    # Called in Python, the CLI keeps its caller's process: it says what to run instead.
    capsys.readouterr()  # what came before (the motion stage's lines, when logging is on in this process)
    assert gv.main([str(run_dir), "--sec_freeze", "1", "-q"]) == 2
    command = shlex.join([str(run_dir), "--sec_freeze", "1", "-q"])
    assert capsys.readouterr().err == ("error: --sec_interpolation/--sec_freeze: the motion stage runs again first, "
                                       f"which is the top floor's work: run `artwalk retime {command}`\n")
    assert (run_dir / "frames" / "manifest.json").read_bytes() == before


def test_retime_in_one_process_reuses_what_did_not_change(tmp_path, caplog):
    from pipeline.retime import retime

    run_dir = motion_run(tmp_path)
    first = retime(cfg(run_dir, contact_sheet=False), {"sec_freeze": 0.5})
    assert first.frames == 2 * 6 + 1 + 2 * 5 and motion_config(run_dir)["sec_freeze"] == 0.5
    with caplog.at_level(logging.INFO):
        again = retime(cfg(run_dir, contact_sheet=False), {"sec_freeze": 0.5})  # nothing changed
    assert again.frames == first.frames and again.computed == 0
    assert any("2 unit(s) reused, 0 recomputed" in r.message for r in caplog.records)
    assert any("up to date" in r.message for r in caplog.records)
    with pytest.raises(ConfigError, match="--sec_interpolation"):
        retime(cfg(run_dir), {"sec_interpolation": float("nan")})
    with pytest.raises(ConfigError, match="--walk-key"):
        retime(cfg(run_dir), {"sec_freeze": 1.0}, walk_key="k")


def test_the_record_keeps_a_walk_key_only_while_the_video_is_that_walk_s(tmp_path):
    """The walk's key comes from the top floor (``run(..., walk_key=)``, the CLI's --walk-key);
    stage 4 reads no OUT/walk.json."""
    run_dir = make_run(tmp_path)
    (run_dir / "walk.json").write_text(json.dumps({"walk_key": "from walk.json"}))
    walk_key = lambda: json.loads((run_dir / "walk.mp4.json").read_text())["walk_key"]  # noqa: E731
    gv.run(cfg(run_dir))
    assert walk_key() is None
    gv.run(cfg(run_dir), walk_key="k1")
    assert walk_key() == "k1"
    gv.run(cfg(run_dir))  # the same video, by hand: still the walk's
    assert walk_key() == "k1"
    gv.run(cfg(run_dir, crf=30))  # another video: no walk's
    assert walk_key() is None
    assert cli(run_dir, "--crf", "30", "--walk-key", "k2", "-q").returncode == 0
    assert walk_key() == "k2"


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "walk"
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(6)]
    write_frames_stage(run_dir, "frames", noise, list(range(6)))  # about 200 KB of H.264
    proc = cli(run_dir, "--no-contact-sheet", "--quiet", preexec_fn=_limit_file_size)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no space left writing")
    assert listing(run_dir) == ["chunks", "frames"] and list((run_dir / "chunks" / "units").iterdir()) == []


def test_sigterm_mid_encode_leaves_nothing(tmp_path):
    run_dir = tmp_path / "walk"
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
    write_frames_stage(run_dir, "frames", noise, [i % 4 for i in range(2000)])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([sys.executable, "generate_videos.py", str(run_dir), "--quiet", "--encode-preset", "veryslow"],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    temps = lambda: [p for p in run_dir.rglob("*") if ".tmp-" in p.name]  # noqa: E731 (chunks are built in temps too)
    while not temps() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert temps(), "the encode never started"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert listing(run_dir) == ["chunks", "frames"] and temps() == [], err


# --------------------------------------------------------------------------- chunks


def textured(n: int, size=(320, 200), seed: int = 3) -> list[np.ndarray]:
    """``n`` frames of a blocky random texture with grain, drifting right and down: work for the
    encoder's motion search and rate control, unlike flat colours."""
    w, h = size
    rng = np.random.default_rng(seed)
    big = np.kron(rng.integers(0, 256, ((h + n) // 8 + 1, (w + n) // 8 + 1, 3)), np.ones((8, 8, 1)))
    big = big + rng.integers(-24, 25, big.shape)  # grain
    return [np.clip(big[k // 2 : k // 2 + h, k : k + w], 0, 255).astype(np.uint8) for k in range(n)]


def walk_run(tmp_path: Path, colours, hold: int = 24, motion: int = 24, size=(64, 48), name: str = "walk",
             texture: bool = False):
    """A run folder like a walk's: each colour held ``hold`` frames (a keyframe), then
    ``motion`` frames fading to the next; returns it and the colour of every video frame.
    ``texture``: every frame also shows a drifting texture (half its pixel values)."""
    images, kinds, timeline, shown = [], [], [], []
    grain = textured(len(colours) * (motion + 1), size) if texture else None

    def picture(colour):  # the next image: the colour, or half of it over the texture
        flat = solid(colour, size)
        return flat if grain is None else flat // 2 + grain[len(images)] // 2

    for k, colour in enumerate(colours):
        images.append(picture(colour))
        kinds.append("original")
        timeline += [len(images) - 1] * hold
        shown += [colour] * hold
        for j in range(1, motion + 1 if k + 1 < len(colours) else 0):
            t = j / (motion + 1)
            mix = tuple(round((1 - t) * a + t * b) for a, b in zip(colour, colours[k + 1]))
            images.append(picture(mix))
            kinds.append("motion")
            timeline.append(len(images) - 1)
            shown.append(mix)
    out = tmp_path / name
    out.mkdir(parents=True)
    write_frames_stage(out, "frames", images, timeline, kinds=kinds)
    return out, shown


def test_chunk_bounds_follow_the_keyframes():
    entries = [{"kind": "original"}, {"kind": "motion"}, {"kind": "original"}, {"kind": "motion"},
               {"kind": "inbetween"}]
    timeline = [0] * 30 + [1] * 20 + [2] * 10 + [3] * 30 + [4] * 5
    # A chunk from each keyframe's hold to the next keyframe: 0 (its hold and motion), 2 (its hold and
    # the motion after it), 4; with 24 frames at least, 4's short tail (5) joins the chunk before.
    assert gv.chunk_bounds(entries, timeline, 1) == [(0, 50), (50, 90), (90, 95)]
    assert gv.chunk_bounds(entries, timeline, 24) == [(0, 50), (50, 95)]
    assert gv.chunk_bounds(entries, timeline, 45) == [(0, 50), (50, 95)]
    assert gv.chunk_bounds(entries, timeline, 60) == [(0, 95)]
    assert gv.chunk_bounds(entries, [0] * 7, 24) == [(0, 7)]
    # Keyframes with no motion between them (every frame diffused): a cut before each, merged to the minimum.
    stills = [{"kind": "keyframe"}] * 60
    assert gv.chunk_bounds(stills, list(range(60)), 24) == [(0, 24), (24, 60)]


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_chunks_join_into_the_exact_frames_and_times(tmp_path, fmt):
    run_dir, shown = walk_run(tmp_path, (RED, GREEN, BLUE, WHITE))
    result = gv.run(cfg(run_dir, format=fmt, audio=sine_wav(tmp_path / "s.wav", 10.0)))
    assert len(list((run_dir / "chunks" / "units").iterdir())) == 4  # a keyframe's hold and its motion each
    frames, times, rate = decode_video(result.path)
    assert len(frames) == len(shown) == 3 * 48 + 24 and rate == 24
    assert np.allclose(times, np.arange(len(shown)) / 24, atol=1e-3)  # monotonic, no gap, no repeat
    for k, (frame, colour) in enumerate(zip(frames, shown, strict=True)):
        assert np.abs(frame.reshape(-1, 3).mean(axis=0) - colour).max() < 8, (k, colour)
    samples, _ = decode_audio(result.path)  # the soundtrack once, over the whole video
    assert samples.size == pytest.approx(len(shown) / 24 * 48_000, rel=0.01)


def test_a_continued_chunk_gets_back_the_bits_x264_keeps_from_a_file_s_end(tmp_path):
    """A chunk the video goes on after: x264 would give its last frames fewer bits (nothing after
    them refers to them); ``continued`` gives them back, and the frames before are untouched."""
    from PIL import Image

    with Image.open(REPO / "examples" / "01_astronaut.png") as im:
        big = np.asarray(im.convert("RGB").resize((480, 480)))
    pan = [np.ascontiguousarray(big[k : k + 200, 2 * k : 2 * k + 320]) for k in range(40)]
    tail = range(len(pan) - gv.CONTINUED_TAIL, len(pan))
    scores = {}
    for continued in (False, True):
        path = tmp_path / f"{continued}.mp4"
        gv.encode_video(lambda: iter(pan), len(pan), (320, 200), path,
                        gv.EncodeSettings(fps=Fraction(24), progress=False, continued=continued))
        video, _, _ = decode_video(path)
        psnr = [10 * np.log10(255 ** 2 / np.mean((video[k].astype(float) - pan[k]) ** 2)) for k in range(len(pan))]
        scores[continued] = (np.mean(psnr[: tail.start]), np.mean(psnr[tail.start :]))
    assert scores[True][0] == pytest.approx(scores[False][0], abs=0.05)  # measured: the same 39.19 dB
    assert scores[True][1] > scores[False][1] + 0.25  # measured: 38.91 against 38.48 dB


def test_an_edit_re_encodes_only_its_chunks(tmp_path, caplog):
    run_dir, _ = walk_run(tmp_path, (RED, GREEN, BLUE, WHITE))
    gv.run(cfg(run_dir, contact_sheet=False))
    units = run_dir / "chunks" / "units"
    before = {u.name: (u / "chunk.mp4").read_bytes() for u in units.iterdir()}
    # The last keyframe becomes grey: only its own chunk (its hold) changes.
    manifest = run_dir / "frames" / "manifest.json"
    import json

    data = json.loads(manifest.read_text())
    last = data["timeline"][-1]
    data["frames"][last]["sha256"] = save_png(run_dir / data["frames"][last]["path"], solid((128, 128, 128), (64, 48)))
    manifest.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="generate_videos"):
        result = gv.run(cfg(run_dir, contact_sheet=False))
    assert any("4 chunk(s), 3 unit(s) reused, 1 recomputed" in r.message for r in caplog.records)
    after = {u.name: (u / "chunk.mp4").read_bytes() for u in units.iterdir()}
    assert len(set(before) & set(after)) == 3 and all(before[k] == after[k] for k in set(before) & set(after))
    frames, _, _ = decode_video(result.path)
    assert np.abs(frames[-1].reshape(-1, 3).mean(axis=0) - 128).max() < 8


def test_a_kill_while_encoding_chunks_then_a_rerun_gives_the_same_video(tmp_path):
    colours = [(20 * k, 255 - 20 * k, (70 * k) % 256) for k in range(12)]
    ref, _ = walk_run(tmp_path, colours, size=(320, 240), name="ref", texture=True)
    gv.run(cfg(ref, contact_sheet=False))
    killed, _ = walk_run(tmp_path, colours, size=(320, 240), name="killed", texture=True)
    proc = subprocess.Popen([sys.executable, "generate_videos.py", str(killed), "--no-contact-sheet", "-q"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    units = killed / "chunks" / "units"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if units.is_dir() and len([u for u in units.iterdir() if ".tmp-" not in u.name]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the encode ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "killed.mp4").exists()
    gv.run(cfg(killed, contact_sheet=False))
    a, _, _ = decode_video(ref / "ref.mp4")
    b, _, _ = decode_video(killed / "killed.mp4")
    assert len(a) == len(b) == 11 * 48 + 24
    # The chunks the killed run had finished are reused, the rest encoded again: the same bytes.
    assert (ref / "ref.mp4").read_bytes() == (killed / "killed.mp4").read_bytes()
