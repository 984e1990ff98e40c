"""Shared fixtures: small real images, and a helper to run our CLIs as a user would."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from terminal import run_in_terminal

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The device the neural engines' tests run on: cpu here, `ARTWALK_TEST_DEVICE=cuda` on a GPU machine.
DEVICE = os.environ.get("ARTWALK_TEST_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Each test starts from the same random state: numpy's, Python's, and torch's once a test
    has imported torch (the tiny models' weights are drawn from it)."""
    np.random.seed(0)
    random.seed(0)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory):
    """Tiny models built from the real checkpoints' configurations (tests/tiny_models.py), each
    built and saved once per session, when first asked: ``tiny_built("sd", "blip")`` is
    ``{name: folder}``. Tests read them; one that changes a model copies its folder first."""
    import tiny_models

    root = tmp_path_factory.mktemp("tiny models")
    own = {"blip": tiny_models.blip_captioner, "clip": tiny_models.clip_ranker}

    def folders(*names: str) -> dict[str, Path]:
        made = tiny_models.save_all(root, names=[n for n in names if n not in own])
        for name in (n for n in names if n in own):
            folder = root / name
            made[name] = folder if (folder / "config.json").is_file() else own[name](folder)
        return {name: made[name] for name in names}

    return folders


def small_copy(src: Path, dst: Path, width: int) -> Path:
    """A downscaled copy of a real image (keeps tests fast)."""
    im = Image.open(src).convert("RGB")
    im = im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)
    im.save(dst)
    return dst


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small real photographs, named so that natural order matters."""
    folder = tmp_path / "in images ü"
    folder.mkdir()
    names = ["img1.png", "img2.jpg", "img10.png"]
    for src, name in zip(sorted(EXAMPLES.glob("0*")), names):
        small_copy(src, folder / name, 96)
    return folder


def run_cli(*args: str, cwd: Path = REPO, check: bool = False, env: dict | None = None,
            terminal: bool = True, **kw):
    """Run ``python <args>`` as a user would: in a terminal, where every progress bar redraws
    on every step (see tests/terminal.py); ``env`` adds variables. ``terminal=False`` runs it
    with stderr on a pipe instead, as cron would. Returns the finished process, whose
    ``stderr`` is the text the terminal shows at the end."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    if terminal:
        proc = run_in_terminal([sys.executable, *args], cwd=cwd, env=env, **kw)
    else:
        proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def refused(capsys, *argv: str) -> str:
    """``artwalk <argv>`` in this process (where a subprocess would add nothing): it refuses,
    with exit code 1 or 2 and one ``error:`` line and no traceback; returns that line."""
    from pipeline.cli import main

    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and err and err[-1].startswith("error: "), (code, err)
    assert sum(line.startswith("error: ") for line in err) == 1 and "Traceback" not in "\n".join(err), err
    return err[-1]


def shell(*args: str, cwd: Path = REPO, terminal: bool = True, **kw):
    """``bash full_pipeline.sh <args>`` as a user types it (in a terminal, unless ``terminal=False``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    argv = ["bash", str(REPO / "full_pipeline.sh"), *args]
    kw.setdefault("timeout", 300)
    if terminal:
        return run_in_terminal(argv, cwd=cwd, env=env, **kw)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, **kw)


def count_frames(video: Path) -> tuple[int, float, tuple[int, int]]:
    """A video's decoded frame count, frame rate and size."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        return n, float(stream.average_rate), (stream.codec_context.width, stream.codec_context.height)


def write_video(path: Path, frames: int = 24, fps: int = 12, size=(64, 48), silent_for: float = 0.5,
                audio: bool = True, rate: int = 48_000) -> Path:
    """A square crossing a changing background, H.264 at ``fps``; the sound is silence for
    ``silent_for`` seconds, then a 440 Hz tone (``rate`` Hz, mono)."""
    w, h = size
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=rate, layout="mono") if audio else None
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0], img[..., 1], img[..., 2] = 40 + 6 * i, 60, 140
            x = 2 + i * (w - 20) // frames
            img[h // 4 : h // 4 + 18, x : x + 16] = (250, 220, 30)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:
            n = rate * frames // fps
            t = np.arange(n) / rate
            sig = np.where(t < silent_for, 0.0, 0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for s in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(sig[:, s : s + 1024]), format="flt",
                                                layout="mono")
                fr.sample_rate, fr.pts = rate, s
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path
