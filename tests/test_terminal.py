"""Every command a user types, typed in a terminal; and the logs of a command that is not.

In a terminal (tests/terminal.py) every progress bar redraws on every step, so a progress
call that leaks into the data (tqdm's ``update()`` returns True when it redraws: ``bar.update()
or frame`` fed a bool to the encoder) fails here on every run. In a log (cron, ``2> log``)
nothing is drawn: no carriage return, no escape code, one line as each stage ends.
"""

from __future__ import annotations

import ast
import math
import os
import struct
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import EXAMPLES, REPO, count_frames, run_cli, shell, small_copy

SMALL = ("--w", "64", "--h", "36", "-I", "0.5", "-F", "0.25", "--fps", "8", "--target", "x2")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures") / "my pictures"
    folder.mkdir()
    for i, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3]):
        small_copy(src, folder / f"{i + 1} été.png", 96)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_built) -> dict[str, Path]:
    return tiny_built("sd", "blip", "clip")


def clicks(path: Path, seconds: float = 3.0, every: float = 0.5, rate: int = 22050) -> Path:
    """A mono WAV of short clicks ``every`` seconds."""
    samples = np.zeros(int(seconds * rate), np.float32)
    for k in range(int(seconds / every)):
        start = int((k * every + 0.1) * rate)
        samples[start:start + 200] = np.hanning(200) * 0.9
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(struct.pack(f"<{len(samples)}h", *(np.round(samples * 32767).astype(int))))
    return path


def clip(path: Path, frames: int = 6, size=(64, 48)) -> Path:
    """A short mp4 of a moving gradient."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            y, x = np.mgrid[0 : size[1], 0 : size[0]]
            rgb = np.stack([(x * 4 + i * 20) % 256, (y * 5) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def typed(*args: str, **kw):
    """``python -m pipeline <args>`` in a terminal; it must succeed and its bars must have drawn."""
    ran = run_cli("-m", "pipeline", *args, **kw)
    assert ran.returncode == 0, ran.stderr
    assert ran.redraws > 0, f"no progress bar drew:\n{ran.stderr}"
    return ran


# ---------------------------------------------------------------------------------------------
# The commands

def test_full_pipeline_sh_both_forms(tmp_path, images):
    named = shell("--input", str(images), "--output", str(tmp_path / "named"), *SMALL)
    assert named.returncode == 0 and named.redraws > 0, named.stderr
    positional = shell(str(images.parent), images.name, str(tmp_path / "positional walks"), "0", "0.5", "0.25",
                       "none", "36", "64", "--fps", "8", "--target", "x2")
    assert positional.returncode == 0 and positional.redraws > 0, positional.stderr
    a = count_frames(tmp_path / "named" / "named.mp4")
    b = count_frames(tmp_path / "positional walks" / images.name / f"{images.name}.mp4")
    assert a == b and a[0] == 3 * 2 + 2 * 3  # 3 holds of 2 frames, 2 segments of 3 motion frames


def test_artwalk_run_then_schedule_audio_story_batch(tmp_path, images):
    out = tmp_path / "walk"
    typed("run", str(images), str(out), *SMALL)
    assert count_frames(out / "walk.mp4")[0] == 12
    ran = run_cli("-m", "pipeline", "schedule", "0: a lighthouse | storm:0.5\n8: a harbour --neg fog", "--frames",
                  "10")
    assert ran.returncode == 0 and "lighthouse" in ran.stdout and "harbour" in ran.stdout, ran.stderr
    song = clicks(tmp_path / "clicks.wav")
    ran = run_cli("-m", "pipeline", "audio", str(song), "--on", "onsets")
    assert ran.returncode == 0 and len([ln for ln in ran.stdout.splitlines() if ": timestamp:" in ln]) >= 5
    collection = tmp_path / "collection"
    for sub in ("city", "seaside"):
        (collection / sub).mkdir(parents=True)
        for i, src in enumerate(sorted(EXAMPLES.glob("0*"))[:2]):
            small_copy(src, collection / sub / f"{i + 1}.png", 64)
    ran = run_cli("-m", "pipeline", "story", str(collection), str(tmp_path / "story"), "-n", "3")
    assert ran.returncode == 0 and len(list((tmp_path / "story").glob("*.png"))) == 3, ran.stderr
    typed("batch", str(collection), "--out", str(tmp_path / "walks"), *SMALL)
    assert count_frames(tmp_path / "walks" / "city" / "city.mp4")[0] == 2 * 2 + 3


def test_artwalk_zoom_through_in_a_terminal(tmp_path, images):
    out = tmp_path / "zoom"
    typed("zoom", "--through", str(images), str(out), "--w", "64", "--h", "36", "--target", "x2",
          "--seconds-per-level", "0.5", "--fps", "8")
    assert count_frames(out / "zoom.mp4")[2] == (128, 72)


def test_the_four_stage_commands(tmp_path, images):
    out = tmp_path / "stages"
    for args in (("-m", "diffusion_models", str(images), str(out), "--w", "64", "--h", "36"),
                 ("-m", "frame_interpolation", str(out), "--sec_interpolation", "0.5", "--sec_freeze", "0.25",
                  "--fps", "8"),
                 ("-m", "super_resolution", str(out), "--target", "x2", "--keep-frames"),
                 ("generate_videos.py", str(out))):
        ran = run_cli(*args)
        assert ran.returncode == 0 and ran.redraws > 0, ran.stderr
    assert count_frames(out / "stages.mp4") == (12, 8.0, (128, 72))


def test_prompt_walk_with_diffused_inbetweens_and_video_init(tmp_path, tiny):
    out = tmp_path / "prompts"
    typed("prompts", "0: a red house\n4: a blue boat", str(out), "--model", str(tiny["sd"]), "--steps", "2",
          "--w", "64", "--h", "64", "--diffuse", "2", "--frames", "6", "--fps", "8", "--no-upscale")
    assert count_frames(out / "prompts.mp4")[0] == 6
    video = clip(tmp_path / "clip.mp4")
    out = tmp_path / "restyled"
    typed("video-init", str(video), str(out), "--prompts", "0: an ink drawing", "--model", str(tiny["sd"]),
          "--steps", "2", "--every", "2")
    assert count_frames(out / "restyled.mp4")[0] == 6


def test_interrogate_in_a_terminal(tmp_path, tiny, images, monkeypatch):
    folder = tmp_path / "pics"
    folder.mkdir()
    for src in images.iterdir():
        (folder / src.name).write_bytes(src.read_bytes())
    ran = run_cli("-m", "pipeline", "interrogate", str(folder), "--mode", "fast", "--caption-model",
                  str(tiny["blip"]), "--clip-model", str(tiny["clip"]), "--tokenizer", str(tiny["sd"]),
                  env={"ARTWALK_CACHE": str(tmp_path / "cache")})
    assert ran.returncode == 0 and ran.redraws > 0, ran.stderr
    assert len((folder / "desc.csv").read_text("utf-8").splitlines()) == 1 + 3


# ---------------------------------------------------------------------------------------------
# Logs

def test_a_log_holds_no_bars_and_a_line_per_stage(tmp_path, images):
    ran = run_cli("-m", "pipeline", "run", str(images), str(tmp_path / "logged"), *SMALL, terminal=False)
    assert ran.returncode == 0, ran.stderr
    assert "\r" not in ran.stderr and "\x1b" not in ran.stderr, repr(ran.stderr[:400])
    lines = ran.stderr.splitlines()
    for stage in ("keyframes:", "motion:", "upscale:", "encode:"):
        assert any(ln.startswith(stage) and "reused" in ln for ln in lines), (stage, ran.stderr)
    assert not any("%|" in ln for ln in lines), ran.stderr  # no bar, drawn whole or in part


# ---------------------------------------------------------------------------------------------
# The mechanism

PROGRESS_CALLS = {"update", "counting", "set_description", "reset", "refresh", "set_postfix"}
PACKAGES = ("artwalk", "diffusion_models", "frame_interpolation", "super_resolution", "pipeline", "studio", "bench")


def _progress_call(node: ast.AST) -> bool:
    """``tick(...)``, or ``<something named like a bar>.update(...)`` and the like."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "tick"
    if isinstance(func, ast.Attribute) and func.attr in PROGRESS_CALLS and func.attr != "counting":
        return "bar" in ast.unparse(func.value).lower()
    return False


def test_no_expression_mixes_a_progress_call_with_data():
    """A progress call is a statement of its own (or hands its iterable on: ``bar.counting(items)``);
    never an operand whose value is used."""
    files = [REPO / "generate_videos.py", *(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))]
    found = []
    for path in files:
        tree = ast.parse(path.read_text("utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if _progress_call(node) and not isinstance(parents.get(node), ast.Expr):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(parents[node])[:80]}")
    assert not found, "progress calls used as values:\n" + "\n".join(found)


def test_a_bar_returns_nothing_it_could_be_mistaken_for(monkeypatch):
    from artwalk.progress import progress

    monkeypatch.setenv("ARTWALK_PROGRESS_INTERVAL", "0")
    with progress(total=3) as bar:
        assert bar.update() is None and bar.set_description("x") is None
        assert list(bar.counting(iter([np.zeros(2), np.ones(2)])))[1].dtype == np.float64
