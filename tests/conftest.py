"""Shared fixtures: small real images, and a helper to run our CLIs as a user would."""

from __future__ import annotations

import os
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
    np.random.seed(0)


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
