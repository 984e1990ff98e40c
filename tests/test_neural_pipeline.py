"""The drivers with neural engines on tiny random models, into a video.

The models are built from config, saved to a temporary folder in the published
layouts, and given to the driver by path: the same loading code a GPU user runs.
full_pipeline.sh runs each stage as its own CLI (``python -m diffusion_models`` ...);
``artwalk run`` runs them in one process. The device comes from ``ARTWALK_TEST_DEVICE``
(default cpu).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import EXAMPLES, REPO, small_copy  # noqa: E402
from frame_interpolation.film_net import FilmConfig, FilmNet, save_film_weights  # noqa: E402
from super_resolution.rrdbnet import RRDBNet, RRDBParams  # noqa: E402
from conftest import count_frames  # noqa: E402

# Each keyframe engine's bundle folder: role subfolder -> tiny pipeline.
BUNDLES = {
    "kandinsky": {"prior": "kandinsky-prior", "decoder": "kandinsky-decoder"},
    "unclip": {"unclip": "unclip"},
    "sd": {"sd": "sd"},
}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_built) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-weights")
    built = tiny_built(*dict.fromkeys(name for roles in BUNDLES.values() for name in roles.values()))
    weights = {}
    for engine, roles in BUNDLES.items():
        for role, name in roles.items():
            shutil.copytree(built[name], root / engine / role)
        weights[engine] = root / engine
    torch.manual_seed(0)
    film = FilmNet(FilmConfig(pyramid_levels=4, fusion_pyramid_levels=3, specialized_levels=2, sub_levels=3,
                              filters=4, flow_convs=(1, 1, 1), flow_filters=(4, 8, 8)))
    weights["film"] = save_film_weights(film, root / "film.safetensors")
    sr = RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2))
    torch.save({"params_ema": sr.state_dict()}, root / "RealESRGAN_x2plus.pth")
    weights["realesrgan"] = root / "RealESRGAN_x2plus.pth"
    return weights


# kandinsky runs with every stage neural, through full_pipeline.sh (each stage its own CLI);
# unclip and sd with the classical motion and upscale, through `artwalk run` (one process).
@pytest.mark.parametrize("driver,keyframes,motion,upscale", [
    ("full_pipeline.sh", "kandinsky", "film", "realesrgan"), ("artwalk run", "unclip", "blend", "lanczos"),
    ("artwalk run", "sd", "flow", "lanczos")])
def test_neural_walk_into_a_video(tmp_path, tiny_weights, driver, keyframes, motion, upscale):
    inp = tmp_path / "in"
    inp.mkdir()
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3], start=1):
        small_copy(src, inp / f"{k}.png", 80)
    out = tmp_path / "out"
    models = ["--keyframe-model", str(tiny_weights[keyframes])]
    if motion == "film":
        models += ["--motion-model", str(tiny_weights["film"])]
    if upscale == "realesrgan":
        models += ["--upscale-model", str(tiny_weights["realesrgan"])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    command = (["bash", str(REPO / "full_pipeline.sh"), "--input", str(inp), "--output", str(out)]
               if driver == "full_pipeline.sh" else [sys.executable, "-m", "pipeline", "run", str(inp), str(out)])
    proc = subprocess.run(
        [*command, "--preset", "cpu", "--engine", keyframes, "--motion-engine", motion, "--upscale-engine", upscale,
         *models,
         "-S", "1", "-I", "0.5", "-F", "0.25", "--fps", "8", "--w", "64", "--h", "48", "--target", "x2",
         "--loop", "--device", os.environ.get("ARTWALK_TEST_DEVICE", "cpu"), "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    n, s, hold, big_n = 3, 1, round(0.25 * 8), round(0.5 * 8)
    frames, fps, size = count_frames(out / "out.mp4")
    assert frames == n * hold + n * s + n * (s + 1) * (big_n - 1)  # --loop: n pairs, back to the first
    assert fps == 8.0 and size == (128, 96)
    engines = [json.loads((out / stage / "manifest.json").read_text())["engine"]["engine"]
               for stage in ("keyframes", "frames", "upscaled")]
    assert engines == [keyframes, motion, upscale]
    assert (out / "out_keyframes.png").is_file() and json.loads((out / "walk.json").read_text())["frames"] == frames
