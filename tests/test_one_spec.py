"""One walk spec: `artwalk`, full_pipeline.sh, the studio and the Python API build the same
spec from the same settings, so they make the same video bytes (a test per source)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import EXAMPLES, run_cli, shell, small_copy
from pipeline.cli import main

SIZE = {"width": 64, "height": 36}


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one spec") / "pictures"
    folder.mkdir()
    for i, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3]):
        small_copy(src, folder / f"{i + 1}.png", 96)
    return folder


@pytest.fixture(scope="module")
def tiny_sd(tiny_built) -> Path:
    return tiny_built("sd")["sd"]


@pytest.fixture
def api(caplog):
    """``pipeline.render`` in this process, with the logging a notebook would have."""
    from pipeline import render

    def call(settings: dict, source: str = "images"):
        with caplog.at_level(logging.INFO, logger="artwalk"):
            return render({**settings, "quiet": True}, source)

    return call


def test_an_image_walk_from_every_entry(tmp_path, images, api):
    flags = ["--w", "64", "--h", "36", "-I", "0.5", "-F", "0.25", "--fps", "8", "--target", "x2", "--easing",
             "smoothstep", "--preset", "cpu"]
    ran = run_cli("-m", "pipeline", "run", str(images), str(tmp_path / "cli"), *flags, "-q")
    assert ran.returncode == 0, ran.stderr
    ran = shell("--input", str(images), "--output", str(tmp_path / "sh"), *flags, "-q")
    assert ran.returncode == 0, ran.stderr
    result = api({"input": images, "output": tmp_path / "py", **SIZE, "sec_interpolation": "0.5",
                  "sec_freeze": 0.25, "fps": 8, "target": "x2", "easing": "smoothstep", "preset": "cpu"})
    videos = [tmp_path / "cli" / "cli.mp4", tmp_path / "sh" / "sh.mp4", result.video.path]
    assert len({sha(v) for v in videos}) == 1
    assert result.video.frames == 3 * 2 + 2 * 3 and result.stages["motion"].computed == 2

    from fastapi.testclient import TestClient
    from studio.app import create_app

    base = "http://127.0.0.1:8765"  # the studio's own page: its address and Origin
    with TestClient(create_app(tmp_path / "studio root"), base_url=base, headers={"Origin": base}) as client:
        pid = client.post("/api/projects", json={"name": "same"}).json()["id"]
        for p in sorted(images.iterdir()):
            assert client.post(f"/api/projects/{pid}/keyframes", files={"file": (p.name, p.read_bytes())}).status_code \
                == 201
        settings = {"S": 0, "I": 0.5, "F": 0.25, "fps": 8, "w": 64, "h": 36, "target": "x2", "easing": "smoothstep",
                    "preset": "cpu"}
        assert client.put(f"/api/projects/{pid}/settings", json=settings).status_code == 200
        job = client.post(f"/api/projects/{pid}/render").json()["job"]
        for _ in range(600):
            state = client.get(f"/api/jobs/{job}").json()
            if state["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert state["state"] == "done", state
        assert sha(next((tmp_path / "studio root" / pid / "run").glob("*.mp4"))) == sha(videos[0])


def test_a_prompt_walk_from_the_command_and_from_python(tmp_path, tiny_sd, api):
    schedule = "0: a red house\n6: a blue boat --neg fog"
    flags = ["--model", str(tiny_sd), "--steps", "2", "--w", "64", "--h", "64", "--frames", "8", "--fps", "8",
             "--diffuse", "2", "--no-upscale"]
    assert main(["prompts", schedule, str(tmp_path / "cli"), *flags, "-q"]) == 0  # the command, in this process
    result = api({"prompts": schedule, "output": tmp_path / "py", "keyframe_model": tiny_sd, "steps": 2, "width": 64,
                  "height": 64, "frames": 8, "fps": 8, "diffuse": "2", "no_upscale": True}, "prompts")
    assert result.video.frames == 8 and sha(tmp_path / "cli" / "cli.mp4") == sha(result.video.path)


def test_a_video_init_from_the_command_and_from_python(tmp_path, tiny_sd, api):
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            y, x = np.mgrid[0:48, 0:64]
            rgb = np.stack([(x * 4 + i * 30) % 256, (y * 5) % 256, np.full_like(x, 90)], -1).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    assert main(["video-init", str(clip), str(tmp_path / "cli"), "--prompts", "0: ink", "--model", str(tiny_sd),
                 "--steps", "2", "--every", "2", "-q"]) == 0
    result = api({"video_init": clip, "prompts": "0: ink", "output": tmp_path / "py", "keyframe_model": str(tiny_sd),
                  "steps": 2, "every": 2}, "video")
    assert result.video.frames == 4 and sha(tmp_path / "cli" / "cli.mp4") == sha(result.video.path)


def test_a_zoom_from_every_entry(tmp_path, images, api):
    flags = ["--w", "64", "--h", "36", "--seconds-per-level", "0.5", "--fps", "8", "--target", "x2"]
    ran = run_cli("-m", "pipeline", "zoom", "--through", str(images), str(tmp_path / "cli"), *flags, "-q")
    assert ran.returncode == 0, ran.stderr
    ran = shell("--zoom", "--through", str(images), "--output", str(tmp_path / "sh"), *flags, "-q")
    assert ran.returncode == 0, ran.stderr
    result = api({"through": images, "output": tmp_path / "py", **SIZE, "seconds_per_level": 0.5, "fps": 8,
                  "target": "x2"}, "zoom")
    assert json.loads((tmp_path / "py" / "zoom.json").read_text())["levels"]["through"] == str(images)
    assert len({sha(tmp_path / "cli" / "cli.mp4"), sha(tmp_path / "sh" / "sh.mp4"), sha(result.video.path)}) == 1


def test_a_spec_is_frozen_and_refuses_what_another_walk_takes(images, tmp_path):
    import dataclasses

    from artwalk.errors import ConfigError
    from pipeline import walk_spec

    spec = walk_spec({"input": images, "output": tmp_path / "o", "fps": "12", "width": 64, "height": 36})
    assert spec.motion.fps == 12.0 and spec.keyframes.fps == 12.0  # a shared setting, routed to both stages once
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.run_dir = tmp_path  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.given["motion"]["fps"] = 1  # type: ignore[index]
    for settings, source, words in (
            ({"input": images, "output": tmp_path, "diffuse": "every"}, "images", "--diffuse: not for an image walk"),
            ({"prompts": "0: a", "output": tmp_path, "sec_interpolation": 2}, "prompts",
             "--sec_interpolation: for image"),
            ({"input": images, "output": tmp_path, "fps": "fast"}, "images", "--fps: 'fast' is not a number"),
            ({"input": images, "output": tmp_path, "easing": "wobbly"}, "images", "--easing: invalid choice"),
            ({"input": images, "output": tmp_path, "colour": "red"}, "images", "unknown setting 'colour'"),
            ({"input": images, "output": tmp_path, "pool_workers": 2}, "images", "--pool-workers: for --executor pool"),
    ):
        with pytest.raises(ConfigError, match=words):
            walk_spec(settings, source)
