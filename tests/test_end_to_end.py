"""The drivers, as a user runs them: full_pipeline.sh (both forms) and `artwalk run`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av

from conftest import REPO, EXAMPLES, count_frames, run_cli, shell, small_copy


def test_full_pipeline_named_flags_exact_frame_count(tmp_path, image_folder):
    out = tmp_path / "walk out"
    proc = shell("--input", str(image_folder), "--output", str(out), "--preset", "auto", "-I", "0.5",
                 "-F", "0.25", "--fps", "12", "--w", "96", "--h", "64", "--target", "x2", "--loop",
                 "--easing", "alpha", "--quiet")
    assert proc.returncode == 0, proc.stderr
    n, h, big_n = 3, round(0.25 * 12), round(0.5 * 12)
    expected = n * h + n * (big_n - 1)  # loop: n segments, no in-betweens with the cpu preset
    frames, fps, size = count_frames(out / "walk out.mp4")
    assert (frames, fps, size) == (expected, 12.0, (192, 128))
    walk = json.loads((out / "walk.json").read_text())
    assert walk["frames"] == expected and walk["engines"]["motion"] == "flow"
    assert (out / "walk out_keyframes.png").is_file()


def test_full_pipeline_artwalks_positional_form(tmp_path, image_folder):
    # INPATH FOLDER_NAME OUTPATH S I F MODEL h w
    proc = shell(str(image_folder.parent), image_folder.name, str(tmp_path / "output"), "3", "1", "0.5",
                 "auto", "64", "96", "--target", "x1.5")
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith("artwalk ") and "preset auto" in first and "cpu engines" in first
    assert any(line.startswith("plan: 82 frames") for line in proc.stderr.splitlines())
    frames, fps, size = count_frames(tmp_path / "output" / image_folder.name / f"{image_folder.name}.mp4")
    # 3 originals held 12 frames, 2 segments of 23 motion frames; h=64 w=96, upscaled 1.5x
    assert frames == 3 * 12 + 2 * 23 == 82 and fps == 24.0 and size == (144, 96)


def test_full_pipeline_bad_input_stops_with_one_error_line(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    small_copy(EXAMPLES / "02_chelsea.png", folder / "a.png", 64)
    (folder / "b.png").write_bytes(b"not really a png")
    proc = shell("--input", str(folder), "--output", str(tmp_path / "out"), "--quiet")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.png" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "out.mp4").exists()


def test_artwalk_run_then_rerun_reuses_everything(tmp_path, image_folder):
    out = tmp_path / "run"
    args = ["-m", "pipeline", "run", str(image_folder), str(out), "-I", "0.5", "-F", "0.5", "--fps", "8",
            "--w", "64", "--h", "48", "--no-upscale", "--format", "webm"]
    first = run_cli(*args, check=True)
    assert "preset auto" in first.stderr.splitlines()[0]
    frames, fps, size = count_frames(out / "run.webm")
    assert frames == 3 * 4 + 2 * 3 and size == (64, 48)
    again = run_cli(*args, check=True)
    closing = re.findall(r"^(keyframes|motion): .*?(\d+) unit\(s\) reused, (\d+) recomputed$", again.stderr, re.M)
    assert closing == [("keyframes", "3", "0"), ("motion", "2", "0")] and "nothing to do" in again.stderr


def test_artwalks_diffusion_script_flags(tmp_path, image_folder):
    proc = run_cli(str(REPO / "diffusion_models" / "diffusion.py"), "--input_path", str(image_folder.parent),
                   "--folder_name", image_folder.name, "--output_path", str(tmp_path / "output"),
                   "--model", "none", "--interpolation_steps", "2", "--square_crop", "--h", "40", "--w", "80",
                   check=True)
    manifest = json.loads((tmp_path / "output" / image_folder.name / "keyframes" / "manifest.json").read_text())
    assert manifest["size"] == [40, 40] and len(manifest["outputs"]) == 3
    assert [o["source"] for o in manifest["outputs"]] == ["img1.png", "img2.jpg", "img10.png"]
    assert "makes no in-betweens" in proc.stderr


def test_gpu_preset_without_weights_names_the_download_command(tmp_path, image_folder):
    env_cache = {"HF_HOME": str(tmp_path / "hf"), "ARTWALK_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = run_cli("-m", "pipeline", "run", str(image_folder), str(tmp_path / "out"), "--preset", "gpu",
                   "--w", "64", "--h", "64", "-q", env=env_cache)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "artwalk models download" in errors[0], proc.stderr
