"""The notebook (examples/walk.ipynb) runs in a real Jupyter kernel and makes its video."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from conftest import REPO, count_frames

pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


# The kernel is driven from a process of its own: the client's ZeroMQ threads would otherwise
# stay in the test process, and a later fork there (Ray starting its cluster) can hang on them.
EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
"""


def test_the_notebook_walks_the_examples_and_shows_the_video(tmp_path):
    executed = tmp_path / "executed.ipynb"
    subprocess.run([sys.executable, "-c", EXECUTE, str(REPO / "examples" / "walk.ipynb"), str(REPO), str(executed)],
                   env={**os.environ, "OUT": str(tmp_path)}, check=True, timeout=400)  # it writes $OUT/notebook
    nb = nbformat.read(executed, as_version=4)
    video = tmp_path / "notebook" / "notebook.mp4"
    # 4 originals held 0.5 s and 3 segments of 1 s at 12 fps: 4 * 6 + 3 * 11 motion frames.
    assert count_frames(video) == (57, 12.0, (640, 360))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"{video}: 57 frames, 4.75 s, 640x360" in printed and "motion: 0 reused, 3 computed" in printed
    shown = [o["data"]["text/html"] for o in outputs if o.output_type == "execute_result"]
    assert shown and "<video" in shown[-1]
    embedded = shown[-1].split("base64,")[1].split('"')[0]
    assert base64.b64decode(embedded) == video.read_bytes()  # the video itself, inline
    assert not any(o.output_type == "error" for o in outputs)
