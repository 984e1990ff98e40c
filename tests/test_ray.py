"""The Ray executor on a local cluster (``ray.init(num_cpus=2)``, started here once): the same
video bytes as the local executor in both write modes, a worker killed mid-unit retried, neural
engines' units on actors that load the engine once each, and the flags' errors."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import diffusion_models  # noqa: E402
import frame_interpolation  # noqa: E402
import generate_videos  # noqa: E402
import super_resolution  # noqa: E402
from artwalk.engines import EngineSpec, ModelSlot  # noqa: E402
from artwalk.executors import RayExecutor, make_executor  # noqa: E402
from artwalk.errors import ConfigError  # noqa: E402
from conftest import EXAMPLES, REPO, run_cli, small_copy  # noqa: E402
from frame_interpolation import MotionConfig  # noqa: E402
from frame_interpolation.engines import ENGINES as MOTION  # noqa: E402
from generate_videos import VideoConfig  # noqa: E402
from pipeline.cli import main as artwalk  # noqa: E402
from ray_helpers import KILL_DIR, LOADS  # noqa: E402
from super_resolution import UpscaleConfig  # noqa: E402

WALK = ["--w", "64", "--h", "48", "--preset", "cpu", "-S", "0", "--sec_interpolation", "1", "--sec_freeze", "0.5",
        "--fps", "8", "--quiet"]
# 4 images: 3 segments of 7 motion frames, 37 frames, 3 chunks


@pytest.fixture(scope="module")
def hooks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray hooks")
    hooks = {"kill": root / "kill", "loads": root / "loads"}
    for folder in hooks.values():
        folder.mkdir()
    return hooks


@pytest.fixture(scope="module")
def cluster(hooks):
    """One local cluster for the module; its workers import this checkout and the test engines."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", KILL_DIR, LOADS)}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), saved["PYTHONPATH"]]))
    os.environ[KILL_DIR], os.environ[LOADS] = str(hooks["kill"]), str(hooks["loads"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray images")
    for k, src in enumerate(sorted(EXAMPLES.glob("0*")), start=1):
        small_copy(src, folder / f"art {k}.png", 96)
    return folder


@pytest.fixture(scope="module")
def local_walk(images, tmp_path_factory) -> Path:
    """The reference: the same walk with the local executor, in a process of its own as a user
    runs it."""
    out = tmp_path_factory.mktemp("ray local") / "walk"
    run_cli("-m", "pipeline", "run", str(images), str(out), *WALK, "--target", "96x72", check=True)
    return out


@pytest.fixture
def helper_engines(monkeypatch):
    """The test engines in the motion registry (tasks: killonce; actors: counted, with a model slot)."""
    monkeypatch.setitem(MOTION.specs, "killonce", EngineSpec("killonce", "ray_helpers:TestEngine", "test"))
    monkeypatch.setitem(MOTION.specs, "counted", EngineSpec("counted", "ray_helpers:TestEngine", "test neural",
                                                            models=(ModelSlot("model", "tiny"),)))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keyframes_only(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    shutil.copytree(src / "keyframes", dst / "keyframes")
    return dst


@pytest.mark.parametrize("write", ["shared", "driver"])
def test_ray_walk_is_byte_identical_to_the_local_one(cluster, images, local_walk, tmp_path, write):
    out = tmp_path / "walk"
    assert artwalk(["run", str(images), str(out), *WALK, "--target", "96x72",
                    "--executor", "ray", "--ray-write", write]) == 0
    assert sha(out / "walk.mp4") == sha(local_walk / "walk.mp4")
    for stage in ("keyframes", "frames"):  # every unit's hashes, and the manifests in timeline order
        assert (out / stage / "manifest.json").read_bytes() == (local_walk / stage / "manifest.json").read_bytes()
    for unit in (local_walk / "frames" / "units").iterdir():  # the segment files themselves
        assert sha(out / "frames" / "units" / unit.name / "motion.mkv") == sha(unit / "motion.mkv")
    chunks = sorted(p.name for p in (out / "chunks" / "units").iterdir())
    assert chunks == sorted(p.name for p in (local_walk / "chunks" / "units").iterdir()) and len(chunks) == 3


def test_stored_upscaled_frames_on_ray_give_the_same_video(cluster, local_walk, tmp_path):
    """Stage 3 with stored frames (--keep-frames), each frame a Ray task, written by the driver:
    the same pixels as the local walk's streamed resize, so the same video bytes."""
    out = keyframes_only(local_walk, tmp_path / "walk")
    ex = RayExecutor(write="driver")
    frame_interpolation.run(MotionConfig(out, fps=8, sec_interpolation=1, sec_freeze=0.5, progress=False),
                            executor=ex)
    up = super_resolution.run(UpscaleConfig(out, target="96x72", keep_frames=True, progress=False), executor=ex)
    assert up.computed == up.unique_frames == 4 + 3 * 7
    video = generate_videos.run(VideoConfig(out, progress=False), executor=ex)
    assert video.computed == 3 and sha(out / "walk.mp4") == sha(local_walk / "walk.mp4")


@pytest.mark.parametrize("write", ["shared", "driver"])
def test_a_worker_killed_mid_unit_is_retried(cluster, hooks, local_walk, tmp_path, helper_engines, write):
    out = keyframes_only(local_walk, tmp_path / "walk")
    (hooks["kill"] / "armed").write_text("")
    config = MotionConfig(out, fps=8, sec_interpolation=1, sec_freeze=0.5, engine="killonce", progress=False)
    frame_interpolation.run(config, executor=RayExecutor(write=write))
    killed = list(hooks["kill"].glob("killed-*"))
    assert not (hooks["kill"] / "armed").exists() and len(killed) == 1  # a worker died mid-unit
    assert int(killed[0].name.split("-")[1]) != os.getpid()
    killed[0].unlink()
    generate_videos.run(VideoConfig(out, source="frames", progress=False), executor=RayExecutor(write=write))

    ref = keyframes_only(local_walk, tmp_path / "local" / "walk")  # the same engine, here
    frame_interpolation.run(dataclasses.replace(config, run_dir=ref))
    generate_videos.run(VideoConfig(ref, source="frames", progress=False))
    assert sha(out / "walk.mp4") == sha(ref / "walk.mp4")
    # What the dead worker left half-built is never taken for a unit: a rerun reuses all and tidies it.
    again = frame_interpolation.run(config)
    assert again.computed == 0 and again.reused == 3
    assert not [p for p in (out / "frames" / "units").iterdir() if ".tmp" in p.name]


def test_neural_units_go_to_actors_that_load_the_engine_once(cluster, hooks, local_walk, tmp_path, helper_engines):
    out = keyframes_only(local_walk, tmp_path / "walk")
    for old in hooks["loads"].iterdir():
        old.unlink()
    config = MotionConfig(out, fps=8, sec_interpolation=1, sec_freeze=0.5, engine="counted", progress=False)
    (hooks["kill"] / "armed").write_text("")  # and one actor killed mid-unit: restarted, its unit retried
    result = frame_interpolation.run(config, engine=MOTION.create("counted", {}), executor=RayExecutor())
    loads = [p for p in hooks["loads"].iterdir() if int(p.name.split("-")[0]) != os.getpid()]
    assert result.computed == 3
    assert len(loads) == 2 + 1  # two actors for three units, and the killed one's restart
    for killed in hooks["kill"].glob("killed-*"):
        killed.unlink()
    ref = keyframes_only(local_walk, tmp_path / "local" / "walk")
    frame_interpolation.run(MotionConfig(ref, fps=8, sec_interpolation=1, sec_freeze=0.5, engine="counted",
                                         progress=False), engine=MOTION.create("counted", {}))
    assert (out / "frames" / "manifest.json").read_bytes() == (ref / "frames" / "manifest.json").read_bytes()


def test_stage_1_pairs_on_actors_match_local(cluster, images, tmp_path, monkeypatch):
    from diffusion_models import KeyframeConfig
    from diffusion_models.engines import ENGINES as KEYFRAMES

    monkeypatch.setitem(KEYFRAMES.specs, "mix", EngineSpec("mix", "ray_helpers:MixKeyframes", "test",
                                                           features=("inbetweens",),
                                                           models=(ModelSlot("model", "tiny"),)))
    monkeypatch.setattr(KEYFRAMES, "check_config", lambda config, name=None, **kw: KEYFRAMES.get(name or "mix"))
    manifests = []
    for where, ex in (("ray", RayExecutor(write="driver")), ("local", None)):
        config = KeyframeConfig(images, tmp_path / where / "walk", engine="mix", interpolation_steps=2, width=64,
                                height=48, progress=False)
        result = diffusion_models.run(config, executor=ex)
        assert result.inbetweens == 3 * 2
        manifests.append((tmp_path / where / "walk" / "keyframes" / "manifest.json").read_bytes())
    assert manifests[0] == manifests[1]


def test_flags(images, tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="for --executor ray"):
        make_executor("local", ray_address="auto")
    ex = make_executor("ray", ray_address="auto", ray_write="driver", ray_gpus=0.5)
    assert (ex.address, ex.write, ex.gpus) == ("auto", "driver", 0.5)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert artwalk(["run", str(images), str(tmp_path / "w"), *WALK, "--executor", "ray"]) != 0
    assert "pip install -r requirements/cluster.txt" in capsys.readouterr().err
    for command in (["prompts", "--help"], ["zoom", "--help"], ["batch", "--help"], ["video-init", "--help"]):
        with pytest.raises(SystemExit):
            artwalk(command)
        assert "--ray-write" in capsys.readouterr().out
