"""A neural upscale's frames are kept only in stage 4's chunks, and come back when needed.

Real-ESRGAN here is a tiny, seeded, random RRDBNet saved as the official ``.pth`` and loaded
through the engine's own loader. The walks run as a user runs them: ``artwalk run`` (one
process, the engine kept loaded) and the stage scripts one by one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import generate_videos as gv
from artwalk.errors import StageOrderError
from artwalk.runfolder import UNIT_RECORD, UnitStore, release
from conftest import DEVICE, EXAMPLES, run_cli, small_copy
from super_resolution.rrdbnet import RRDBNet, RRDBParams
from conftest import count_frames

W, H, FPS = 64, 48, 8
FRAMES = 3 * 4 + 2 * (8 - 1)  # 3 originals held 4 frames, 2 segments of 7 motion frames


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    sd = RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)).state_dict()
    sd["conv_last.bias"] += 0.5  # centred in [0, 1], so clamping hides nothing
    path = tmp_path_factory.mktemp("weights") / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": sd}, path)
    return path


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3], start=1):
        small_copy(src, folder / f"{k}.png", 96)
    return folder


def walk(images: Path, out: Path, weights: Path, *flags: str):
    proc = run_cli("-m", "pipeline", "run", str(images), str(out), "--preset", "cpu", "--upscale-engine",
                   "realesrgan", "--upscale-model", str(weights), "--device", DEVICE, "--w", str(W), "--h", str(H),
                   "--target", "x2", "-I", "1", "-F", "0.5", "--fps", str(FPS), *flags)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def upscaled(out: Path) -> tuple[list[dict], list[Path]]:
    """The upscaled manifest's frames, and the PNGs stage 3 left on disk."""
    manifest = json.loads((out / "upscaled" / "manifest.json").read_text())
    return manifest["frames"], sorted((out / "upscaled").rglob("*.png"))


def chunk_files(out: Path) -> set[str]:
    return {p.parent.name for p in (out / "chunks" / "units").glob("*/chunk.*")}


def test_frames_live_only_in_the_chunks_and_a_rerun_upscales_nothing(tmp_path, images, weights):
    out = tmp_path / "out"
    log = walk(images, out, weights)
    frames, pngs = upscaled(out)
    assert pngs == [] and "freed" in log
    assert count_frames(out / "out.mp4") == (FRAMES, FPS, (2 * W, 2 * H))
    for frame in frames:  # each record keeps the frame's hash and size, and says it was released
        record = json.loads((out / frame["path"]).parent.joinpath(UNIT_RECORD).read_text())
        assert record["files"] == [{"name": "frame.png", "sha256": frame["sha256"], "bytes": record["files"][0]["bytes"],
                                    "released": True}]
    before = (out / "out.mp4").read_bytes()

    # Another crf: every chunk is encoded again, so every frame is upscaled again, to the same bytes.
    log = walk(images, out, weights, "--crf", "24")
    assert f"upscaling {len(frames)} released frame(s) again" in log
    again, pngs = upscaled(out)
    assert again == frames and pngs == [] and (out / "out.mp4").read_bytes() != before
    assert count_frames(out / "out.mp4")[0] == FRAMES

    # Unchanged: the upscale finds every frame done (released counts as done) and the video current.
    log = walk(images, out, weights, "--crf", "24", "-v")
    assert "released frame(s) again" not in log and "nothing to do" in log


def test_one_image_changed_upscales_only_its_chunks_frames(tmp_path, images, weights):
    out = tmp_path / "out"
    walk(images, out, weights)
    first, _ = upscaled(out)
    chunks = chunk_files(out)
    with Image.open(images / "3.png") as im:
        im.transpose(Image.FLIP_LEFT_RIGHT).save(images / "3.png")
    log = walk(images, out, weights)
    frames, pngs = upscaled(out)
    assert pngs == []
    # The second chunk (image 2's hold, the motion to image 3, its hold) is encoded again: of its
    # frames only image 2 was upscaled before, so only it is upscaled again; the first chunk stays.
    assert "upscaling 1 released frame(s) again" in log
    assert "1 unit(s) reused, 1 recomputed" in log.split("mp4 chunks")[-1]
    assert len(chunks & chunk_files(out)) == 1
    assert sum(f in first for f in frames) == 1 + 7 + 1  # image 1, the first segment, image 2


def test_stage_scripts_restore_with_stage_3_and_keep_frames_keeps_them(tmp_path, images, weights):
    out = tmp_path / "out"
    walk(images, out, weights)
    frames, _ = upscaled(out)
    # Stage 4 alone, another format: it runs stage 3 with its own settings for the frames it needs.
    proc = run_cli("generate_videos.py", str(out), "--format", "webm", check=True)
    assert f"python -m super_resolution {out} --keep-settings --restore 0-{len(frames) - 1}" in proc.stderr
    assert count_frames(out / "out.webm")[0] == FRAMES and upscaled(out)[1] == []
    proc = run_cli("generate_videos.py", str(out), "--format", "gif", check=True)  # one pass: every frame
    assert "--restore" in proc.stderr and count_frames(out / "out.gif")[0] == FRAMES
    assert len(upscaled(out)[1]) == len(frames)  # a gif holds no chunk: its frames stay

    # Called as a library without a way to restore: one error that says what to run.
    walk(images, out, weights, "--crf", "20")
    with pytest.raises(StageOrderError, match=r"--keep-settings --restore 0-\d+` first"):
        gv.run(gv.VideoConfig(out, crf=30, progress=False))

    kept = tmp_path / "kept"
    walk(images, kept, weights, "--keep-frames")
    assert len(upscaled(kept)[1]) == len(frames)


def test_release_keeps_the_record_and_a_released_unit_counts_as_done(tmp_path):
    run_dir = tmp_path / "run"
    store = UnitStore.open(run_dir / "stage")
    with store.build("k" * 64) as unit:
        unit.add_bytes("a.bin", b"x" * 100)
        unit.add_bytes("b.bin", b"y" * 10)
    rel = store.relpath("k" * 64, "a.bin", run_dir)
    assert release(run_dir, [rel, rel]) == 100 and release(run_dir, [rel]) == 0  # once
    assert not (run_dir / rel).exists() and (store.path("k" * 64) / "b.bin").is_file()
    record = UnitStore(run_dir / "stage").lookup("k" * 64)
    assert record is not None and [f.get("released", False) for f in record["files"]] == [True, False]
    assert UnitStore(run_dir / "stage").lookup("k" * 64, whole=True) is None
    (store.path("k" * 64) / "b.bin").unlink()  # a file not released is still checked
    assert UnitStore(run_dir / "stage").lookup("k" * 64) is None
    assert release(run_dir, ["stage/units/nothing/a.bin"]) == 0
