"""The ground floor's shared machinery: config fields, flags, the engine registry, devices."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from artwalk.cli import Parser
from artwalk.config import add_flags, engine_options, from_args, given, key_settings, record, to_argv
from artwalk.errors import ConfigError, GpuMemoryError
from conftest import REPO, run_cli
from diffusion_models import KeyframeConfig
from frame_interpolation import MotionConfig
from generate_videos import VideoConfig
from super_resolution import UpscaleConfig


def parse(cls, argv: list[str]) -> argparse.Namespace:
    p = Parser(prog="t")
    add_flags(p, cls)
    return p.parse_args(argv)


def test_defaults_live_on_the_config_and_only_given_flags_are_set():
    args = parse(MotionConfig, ["-I", "1.5", "--no-loop"])
    assert given(args, MotionConfig) == {"sec_interpolation": 1.5, "loop": False}
    config = from_args(MotionConfig, args, run_dir="out")
    assert (config.sec_interpolation, config.fps, config.easing, config.engine) == (1.5, 24.0, "eased", "flow")
    assert engine_options(config) == {}  # None: the engine's own default
    # An earlier record (--keep-settings) fills what was not given; a given flag still wins.
    base = record(MotionConfig("out", fps=12.0, easing="linear", sec_interpolation=9.0))
    kept = from_args(MotionConfig, args, base=base, run_dir="out")
    assert (kept.fps, kept.easing, kept.sec_interpolation) == (12.0, "linear", 1.5)


def test_values_go_back_to_the_same_flags():
    values = {"width": 96, "square_crop": True, "no_originals": True, "loop": False, "prompt": "-a dash",
              "interpolation_steps": 3}
    argv = to_argv(KeyframeConfig, values)
    assert "--square_crop" in argv and "--no_originals" in argv and "--no-loop" in argv
    assert given(parse(KeyframeConfig, argv), KeyframeConfig) == values


def test_what_enters_a_key_is_marked_on_the_field():
    video = VideoConfig("out", crf=20, progress=False, clean=True, source="frames")
    assert set(key_settings(video)) == {"format", "crf", "encode_preset", "audio", "audio_fade", "audio_start"}
    assert "wait" not in record(video) and "run_dir" not in record(video)
    assert "batch" not in key_settings(UpscaleConfig("out", batch=4))


def test_parser_errors_are_one_line_and_dash_values_are_values(capsys):
    p = Parser(prog="t")
    add_flags(p, VideoConfig)
    with pytest.raises(SystemExit) as exit_:
        p.parse_args(["--crf"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("error: t: argument --crf")
    assert p.parse_args(["--audio", "-song.wav"]).audio.name == "-song.wav"
    with pytest.raises(SystemExit):
        p.parse_args(["--audio", "--crf", "3"])  # a flag is never taken for a value


@pytest.mark.parametrize("argv,needle", [
    (["-m", "frame_interpolation", "{out}", "--engine", "flow", "--model", "x.pt"],
     "motion engine 'flow' does not take --model"),
    (["-m", "frame_interpolation", "{out}", "--batch", "2"], "motion engine 'flow' does not take --batch"),
    (["-m", "super_resolution", "{out}", "--tile", "64"], "upscale engine 'lanczos' does not take --tile"),
    (["-m", "diffusion_models", "{inp}", "{out}", "--steps", "3"], "keyframes engine 'none' does not take --steps"),
])
def test_an_option_the_engine_does_not_take_is_an_error_in_every_stage(tmp_path, image_folder, argv, needle):
    argv = [a.format(out=tmp_path / "out", inp=image_folder) for a in argv]
    proc = run_cli(*argv)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert needle in proc.stderr and not (tmp_path / "out").exists()


def test_the_walk_gives_shared_flags_only_to_stages_that_take_them(tmp_path, image_folder):
    proc = run_cli("-m", "pipeline", "plan", str(image_folder), str(tmp_path / "out"), "--w", "64", "--h", "48",
                   "--batch", "3", "-q")
    assert proc.returncode == 0, proc.stderr  # stage 3 takes --batch; flow does not and is not given it
    settings = json.loads((tmp_path / "out" / "walk.json").read_text())["settings"]
    assert settings["upscale"]["batch"] == 3 and settings["motion"]["batch"] is None
    proc = run_cli("-m", "pipeline", "plan", str(image_folder), str(tmp_path / "o2"), "--device", "cpu")
    assert proc.returncode == 2 and "--device: no stage of this walk takes it" in proc.stderr


@pytest.mark.parametrize("build, expected", [
    ("__version__ = '2.5.1+cpu'\ncuda: Optional[str] = None\nhip: Optional[str] = None\n", "False False"),
    ("cuda = None\nhip = None\n", "False False"),
    ("cuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n", "True True"),
    ("cuda: Optional[str] = None\nhip: Optional[str] = '6.2.41133'\n", "True True"),  # ROCm
])
def test_cuda_check_imports_torch_only_for_a_gpu_build(tmp_path, build, expected):
    """A CPU build of torch (its version.py, as the wheels write it) is answered without
    importing torch (2 s); a CUDA or ROCm build is imported and asked."""
    torch = tmp_path / "torch"
    torch.mkdir()
    (torch / "version.py").write_text("from typing import Optional\n" + build)
    (torch / "__init__.py").write_text("import types\ncuda = types.SimpleNamespace(is_available=lambda: True)\n")
    code = ("import sys; from artwalk.devices import cuda_available; "
            "print(cuda_available(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
    assert out.stdout.strip() == expected


def test_out_of_gpu_memory_is_one_line():
    torch = pytest.importorskip("torch")
    from artwalk.devices import gpu_memory

    with pytest.raises(GpuMemoryError, match=r"^film on a block: out of GPU memory; lower --batch$"):
        with gpu_memory("film on a block", "lower --batch"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB ...")


def test_a_config_refuses_what_its_stage_cannot_do():
    with pytest.raises(ConfigError, match="--workers"):
        UpscaleConfig("out", workers=-3)
    with pytest.raises(ConfigError, match="--w must be between"):
        KeyframeConfig("in", "out", width=0)
    with pytest.raises(ConfigError, match="--sec_freeze"):
        MotionConfig("out", sec_freeze=float("nan"))


FORK_AFTER_A_READ = r"""
import queue, subprocess, sys, threading, time
import av, numpy as np
from artwalk.framestore import _Segment
from artwalk.video import decode_frames

path = sys.argv[1]
with av.open(path, "w") as out:  # a yuv420p clip: reading it back converts every frame
    stream = out.add_stream("libx264", rate=8)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    for i in range(3):
        frame = av.VideoFrame.from_ndarray(np.full((360, 640, 3), 60 * i, np.uint8), format="rgb24")
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
stay, read = queue.Queue(), threading.Event()

def reader():  # a long-lived thread (the studio's worker) reads frames, then waits
    frames = [rgb for _, rgb in decode_frames(path, range(3))]
    assert [f.shape for f in frames] == [(360, 640, 3)] * 3
    _Segment(path).read(2)  # the motion store's reader
    read.set()
    stay.get()

threading.Thread(target=reader, daemon=True).start()
assert read.wait(60)
start = time.monotonic()
subprocess.run(["true"], preexec_fn=lambda: None, check=True)  # as Ray starts its processes
print(f"forked in {time.monotonic() - start:.2f} s")
"""


def test_a_thread_that_read_frames_does_not_hang_a_later_fork(tmp_path):
    """PyAV keeps a frame scaler per thread; one with slice threads, kept by a living thread,
    hung every later fork with a ``preexec_fn`` (Ray's start after a studio render)."""
    script = tmp_path / "fork.py"
    script.write_text(FORK_AFTER_A_READ)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "clip.mp4")], cwd=REPO, timeout=30,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.startswith("forked in"), done.stderr


def test_frames_are_converted_through_the_one_thread_safe_place():
    """Only ``artwalk.video.reformat`` converts a frame (``.reformat(``, ``.to_image(`` or
    ``.to_ndarray(`` with options): a new call site would bring the hang above back."""
    import ast

    offenders = []
    for path in sorted(REPO.glob("*.py")) + sorted(REPO.glob("*/**/*.py")):
        if path.parts[len(REPO.parts)] in ("tests", "bench", ".venv") or path == REPO / "artwalk" / "video.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
                    node.func.attr in ("reformat", "to_image")
                    or node.func.attr == "to_ndarray" and node.keywords):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_logging_follows_stderr_when_a_caller_swaps_it(capsys, monkeypatch):
    """A command called in-process sets up logging; a later swap of stderr (the next test's
    capture, a notebook's next cell) gets the lines, and a closed old stream is never written."""
    import io
    import logging

    from artwalk.cli import setup_logging

    old = io.StringIO()
    monkeypatch.setattr(sys, "stderr", old)
    setup_logging()
    monkeypatch.undo()
    old.close()
    logging.getLogger("artwalk").info("a line after the swap")
    assert capsys.readouterr().err == "a line after the swap\n"
