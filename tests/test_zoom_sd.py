"""An infinite zoom from prompts on tiny random SD and SD-inpainting models, through the real
loader: prompts to levels to a 2K zoom video; Real-ESRGAN (tiny random weights) on the
levels; the cache after an edited prompt; --start IMAGE; missing weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from artwalk.images import read_frame_u8  # noqa: E402
from artwalk.zoom import level_rect, paste  # noqa: E402
from conftest import DEVICE, EXAMPLES, small_copy  # noqa: E402
from conftest import count_frames  # noqa: E402

W, H = 64, 40
SCHEDULE = "0: a forest clearing\n1: a city at night --neg fog\n"


@pytest.fixture(scope="module")
def models(tiny_built) -> dict[str, Path]:
    return tiny_built("sd", "sd-inpaint")


def zoom(models, out: Path, *extra: str, schedule: str = SCHEDULE, quiet: bool = True) -> int:
    from pipeline.cli import main

    return main(["zoom", schedule, str(out), "--model", str(models["sd"]), "--outpaint-model",
                 str(models["sd-inpaint"]), "--steps", "2", "--w", str(W), "--h", str(H), "--device", DEVICE,
                 *(["-q"] if quiet else []), *extra])


def test_prompts_to_levels_to_a_2k_zoom_video(models, tmp_path):
    out = tmp_path / "sd zoom ü"
    assert zoom(models, out, "--levels", "3", "--fps", "4", "--seconds-per-level", "0.5", "--target", "2k",
                "--post-prompt", "oil painting") == 0
    frames, fps, size = count_frames(out / "sd zoom ü.mp4")
    assert (frames, fps, size) == (2 * 2 + 1, 4.0, (2304, 1440))  # 64x40 fitted into 2560x1440
    keyframes = json.loads((out / "keyframes" / "manifest.json").read_text())
    levels = keyframes["outputs"]
    assert [(e["level"], e["prompt"]) for e in levels] == [
        (0, "a forest clearing, oil painting"), (1, "a city at night, oil painting"),
        (2, "a city at night, oil painting")]
    assert len({e["seed"] for e in levels}) == 3  # each level its own seed, even with the same prompt
    images = [read_frame_u8(out / e["path"]) for e in levels]
    # Each level holds the one inside it, shrunk by Z, where its ramp is full.
    feather = keyframes["zoom"]["feather"] * W
    for inner, outer in zip(images, images[1:]):
        reference, weight = paste(inner, outer, 2.0, feather)
        full = weight == 1.0
        assert full.sum() > 0.15 * W * H
        assert np.abs(outer[full].astype(int) - reference[full]).max() <= 1
        assert np.abs(outer[weight == 0].astype(float) - inner[weight == 0]).mean() > 5  # a new border
    # The frames were composed at the output size from the upscaled levels.
    motion = json.loads((out / "frames" / "manifest.json").read_text())
    assert motion["size"] == [2304, 1440] and motion["zoom"]["from"] == "levels"
    from artwalk.framestore import FrameReader

    upscaled = json.loads((out / "levels" / "manifest.json").read_text())["outputs"]
    x0, y0, x1, y1 = level_rect(2304, 1440, 0.5)
    outside = np.ones((1440, 2304), bool)
    outside[int(y0) - 64 : int(y1) + 64, int(x0) - 64 : int(x1) + 64] = False
    with FrameReader(out) as reader:
        for k in range(3):
            frame = reader.u8(motion["frames"][2 * k])
            assert np.array_equal(frame[outside], read_frame_u8(out / upscaled[k]["path"])[outside])
    contact = out / "sd zoom ü_keyframes.png"
    assert contact.is_file()


def test_an_edited_prompt_redoes_its_level_and_those_outside_it(models, tmp_path, capsys):
    out = tmp_path / "edit"
    base = ["--levels", "3", "--fps", "2", "--seconds-per-level", "0.5", "--no-upscale"]
    assert zoom(models, out, *base) == 0
    before = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    capsys.readouterr()
    assert zoom(models, out, *base, schedule="0: a forest clearing\n1: a desert\n", quiet=False) == 0
    err = capsys.readouterr().err
    after = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    assert [a["sha256"] == b["sha256"] for a, b in zip(before, after)] == [True, False, False]
    assert "1 unit(s) reused, 2 recomputed" in err
    capsys.readouterr()
    assert zoom(models, out, *base, schedule="0: a forest clearing\n1: a desert\n", quiet=False) == 0
    assert "3 unit(s) reused, 0 recomputed" in capsys.readouterr().err  # nothing left to do


def test_start_image_seed_schedule_and_realesrgan_levels(models, tmp_path):
    from super_resolution.rrdbnet import RRDBNet, RRDBParams

    torch.manual_seed(0)
    weights = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)).state_dict()},
               weights)
    start = small_copy(EXAMPLES / "02_chelsea.png", tmp_path / "start.png", 160)
    out = tmp_path / "start"
    assert zoom(models, out, "--start", str(start), "--seed-schedule", "0:(5), 1:(9)", "--fps", "2",
                "--seconds-per-level", "1", "--target", "x2", "--upscale-engine", "realesrgan", "--upscale-model",
                str(weights), "--direction", "in", schedule="1: a garden") == 0
    assert count_frames(out / "start.mp4")[2] == (128, 80)
    levels = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    assert [e["seed"] for e in levels] == [5, 9]
    from artwalk.images import load_image, to_uint8
    from diffusion_models.conform import conform

    assert np.array_equal(read_frame_u8(out / levels[0]["path"]), to_uint8(conform(load_image(start), W, H, "cover")))
    upscale = json.loads((out / "levels" / "manifest.json").read_text())
    assert upscale["engine"]["engine"] == "realesrgan" and upscale["size"] == [128, 80]


def test_missing_inpainting_weights_is_one_line(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty cache"))
    from pipeline.cli import main

    code = main(["zoom", SCHEDULE, str(tmp_path / "out"), "--model", str(models["sd"]), "--w", str(W), "--h", str(H),
                 "-q"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "artwalk models download" in err, err
    assert not (tmp_path / "out" / "keyframes").exists()


def test_full_pipeline_sh_zoom_prompts(models, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    schedule = tmp_path / "zoom prompts.txt"
    schedule.write_text(SCHEDULE)
    out = tmp_path / "sh zoom"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        ["bash", str(REPO / "full_pipeline.sh"), "--zoom", str(schedule), "--output", str(out), "--model",
         str(models["sd"]), "--outpaint-model", str(models["sd-inpaint"]), "--steps", "2", "--w", str(W), "--h", str(H),
         "--fps", "4", "--seconds-per-level", "0.5", "--target", "x2", "--device", DEVICE, "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert count_frames(out / "sh zoom.mp4") == (3, 4.0, (128, 80))
    assert json.loads((out / "zoom.json").read_text())["given"]["upscale"] == {"target": "x2"}


def test_through_photos_with_painted_seams(models, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3]):
        small_copy(src, photos / f"{i}.png", 120)
    out = tmp_path / "painted"
    assert zoom(models, out, "--through", str(photos), "--engine", "sd", "--fps", "2", "--seconds-per-level", "1",
                "--no-upscale", schedule="0: a seamless collage") == 0
    assert count_frames(out / "painted.mp4")[:2] == (2 * 2 + 1, 2.0)
    levels = json.loads((out / "keyframes" / "manifest.json").read_text())
    feather = levels["zoom"]["feather"] * W
    from artwalk.images import load_image, to_uint8
    from diffusion_models.conform import conform

    images = [read_frame_u8(out / e["path"]) for e in levels["outputs"]]
    for k in (1, 2):
        own = to_uint8(conform(load_image(photos / f"{k}.png"), W, H, "cover"))
        blended, weight = paste(images[k - 1], own, 2.0, feather)
        # The band across the seam is painted; away from it the blend of the two photos is kept.
        far = (weight == 0) & (np.abs(np.arange(H)[:, None] - H / 2) > H / 4 + feather + 2)
        assert np.array_equal(images[k][far], blended[far])
        assert np.abs(images[k].astype(int) - blended).max() > 10
