"""Shared fixtures: small real images, and a helper to run our CLIs as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
            **kw) -> subprocess.CompletedProcess:
    """Run ``python <args>`` as a user would (``env`` adds variables); returns the completed process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
