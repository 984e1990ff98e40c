"""The run-folder contract end to end: caching, resume after SIGKILL, partial recompute."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO, run_cli, small_copy
from diffusion_models import KeyframeConfig
from diffusion_models import run as run_keyframes
from frame_interpolation import MotionConfig
from frame_interpolation import run as run_motion
from super_resolution import UpscaleConfig
from super_resolution import run as run_upscale

W, H = 96, 64


def four_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(sorted(EXAMPLES.glob("0*")), start=1):
        small_copy(src, folder / f"art {k}.png", 120)
    return folder


def stages(inp: Path, out: Path, engine: str = "blend", sec_i: float = 0.5, keep_frames: bool = True) -> tuple:
    """Stages 1-3; ``keep_frames``: stage 3 stores its lanczos frames as units (else it streams them)."""
    kf = run_keyframes(KeyframeConfig(inp, out, width=W, height=H, progress=False))
    mo = run_motion(MotionConfig(out, fps=12, sec_interpolation=sec_i, sec_freeze=0.25, engine=engine,
                                 progress=False))
    up = run_upscale(UpscaleConfig(out, target="x2", keep_frames=keep_frames, progress=False))
    return kf, mo, up


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_frame_count_and_timeline_match_the_formula(tmp_path):
    inp = four_images(tmp_path / "in")
    out = tmp_path / "out"
    kf, mo, up = stages(inp, out)
    manifest = json.loads((out / "frames" / "manifest.json").read_text())
    n, h, big_n = 4, max(1, round(0.25 * 12)), round(0.5 * 12)
    assert mo.frames == len(manifest["timeline"]) == n * h + (n - 1) * (big_n - 1)
    assert mo.unique_frames == len(manifest["frames"]) == n + (n - 1) * (big_n - 1)
    # Holds are repeated references, never copies: each original appears h times in a row.
    timeline = manifest["timeline"]
    for k in range(n):
        assert timeline.count(k) == h
    # Upscaling touched unique frames only, and kept the timeline.
    upm = json.loads((out / "upscaled" / "manifest.json").read_text())
    assert upm["timeline"] == timeline and upm["size"] == [2 * W, 2 * H]
    assert up.computed == len(manifest["frames"])
    assert len(list((out / "upscaled" / "units").iterdir())) == len(manifest["frames"])


def test_a_lanczos_upscale_streams_into_the_encode_with_the_same_frames(tmp_path):
    import numpy as np

    import generate_videos as gv
    from artwalk.framestore import FrameReader

    inp = four_images(tmp_path / "in")
    fed = []
    for keep in (True, False):
        out = tmp_path / f"keep-{keep}"
        _, mo, up = stages(inp, out, keep_frames=keep)
        upm = json.loads((out / "upscaled" / "manifest.json").read_text())
        assert upm["size"] == [2 * W, 2 * H] and bool(upm.get("streamed")) is not keep
        assert len(list((out / "upscaled" / "units").iterdir())) == (mo.unique_frames if keep else 0)
        assert up.computed == (mo.unique_frames if keep else 0)
        result = gv.run(gv.VideoConfig(out, progress=False))
        assert result.source == "upscaled" and (result.width, result.height, result.frames) == (2 * W, 2 * H,
                                                                                                 mo.frames)
        # What the encoder is given, frame by frame: stored PNGs, or resized as it goes.
        with FrameReader(out) as reader:
            fed.append([f.copy() for f in gv._timeline_frames(reader, upm["frames"], upm["timeline"],
                                                               (2 * W, 2 * H), streamed=not keep)])
    assert len(fed[0]) == len(fed[1]) == mo.frames and all(np.array_equal(a, b) for a, b in zip(*fed))


def test_rerun_does_no_work(tmp_path):
    inp = four_images(tmp_path / "in")
    out = tmp_path / "out"
    stages(inp, out)
    before = tree_digest(out)
    kf, mo, up = stages(inp, out)
    assert (kf.computed, mo.computed, up.computed) == (0, 0, 0)
    assert (kf.reused, mo.reused) == (4, 3)
    assert tree_digest(out) == before


def test_one_changed_input_recomputes_only_its_units(tmp_path):
    inp = four_images(tmp_path / "in")
    out = tmp_path / "out"
    stages(inp, out)
    small_copy(EXAMPLES / "01_astronaut.png", inp / "art 3.png", 110)  # a different third image
    kf, mo, up = stages(inp, out)
    assert (kf.reused, kf.computed) == (3, 1)
    assert (mo.reused, mo.computed) == (1, 2)  # segments 2->3 and 3->4
    frames_per_segment = round(0.5 * 12) - 1
    assert up.computed == 1 + 2 * frames_per_segment
    # The stage CLI says so in its log.
    proc = run_cli("-m", "frame_interpolation", str(out), "--engine", "blend", "--fps", "12", "-I", "0.5",
                   "-F", "0.25", check=True)
    assert "3 unit(s) reused, 0 recomputed" in proc.stderr


def test_stage_order_and_stale_inputs_are_clear_errors(tmp_path):
    proc = run_cli("-m", "frame_interpolation", str(tmp_path / "nowhere"))
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "python -m diffusion_models" in proc.stderr and "Traceback" not in proc.stderr


def _kill_when_mid_unit(proc: subprocess.Popen, units: Path, timeout: float = 60) -> None:
    """SIGKILL the process once one unit is finished and another is half-built."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if units.is_dir():
            entries = list(units.iterdir())
            finished = [e for e in entries if ".tmp-" not in e.name]
            building = [e for e in entries if ".tmp-" in e.name and any(e.iterdir())]
            if finished and building:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
        if proc.poll() is not None:
            pytest.fail("the stage finished before it could be killed; make the walk longer")
        time.sleep(0.002)
    proc.kill()
    pytest.fail("timed out waiting for the stage to start a unit")


@pytest.mark.parametrize("engine", ["flow"])
def test_sigkill_mid_stage_then_rerun_is_byte_identical(tmp_path, engine):
    inp = four_images(tmp_path / "in")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for out in (ref, killed):
        run_keyframes(KeyframeConfig(inp, out, width=W * 2, height=H * 2, progress=False))
    args = ["--engine", engine, "--fps", "24", "-I", "1.5"]
    run_cli("-m", "frame_interpolation", str(ref), *args, "-q", check=True)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "frame_interpolation", str(killed), *args, "-q"],
                            cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    _kill_when_mid_unit(proc, killed / "frames" / "units")
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "frames" / "manifest.json").exists()
    assert any(".tmp-" in p.name for p in (killed / "frames" / "units").iterdir())

    rerun = run_cli("-m", "frame_interpolation", str(killed), *args, check=True)
    reused, recomputed = map(int, re.search(r"(\d+) unit\(s\) reused, (\d+) recomputed", rerun.stderr).groups())
    assert reused >= 1 and reused + recomputed == 3  # the finished unit was kept, the rest made
    assert tree_digest(killed / "frames") == tree_digest(ref / "frames")
    assert tree_digest(killed / "keyframes") == tree_digest(ref / "keyframes")


def test_stage1_rerun_makes_later_stages_say_rerun_stage2(tmp_path):
    inp = four_images(tmp_path / "in")
    out = tmp_path / "out"
    stages(inp, out)
    small_copy(EXAMPLES / "01_astronaut.png", inp / "art 3.png", 110)  # a different third image
    run_keyframes(KeyframeConfig(inp, out, width=W, height=H, progress=False))  # prunes the old unit
    from artwalk.errors import StageOrderError

    with pytest.raises(StageOrderError, match="out of date.*python -m frame_interpolation"):
        run_upscale(UpscaleConfig(out, target="x2", progress=False))
    for source in ("auto", "frames"):  # neither an outdated video nor a traceback on the pruned keyframe
        proc = run_cli(str(REPO / "generate_videos.py"), str(out), "--source", source, "-q")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [l for l in proc.stderr.strip().splitlines()
                                                    if l.startswith("error: ") and "out of date" in l]
    # Rerunning stage 2 (segments reused where they can be) puts things right.
    stages(inp, out)
    run_cli(str(REPO / "generate_videos.py"), str(out), "-q", check=True)


def test_missing_frame_file_is_one_line_error(tmp_path):
    from artwalk.errors import InputError
    from artwalk.images import read_frame_u8

    with pytest.raises(InputError, match="missing or corrupt"):
        read_frame_u8(tmp_path / "gone.png")
    inp = four_images(tmp_path / "in")
    out = tmp_path / "out"
    stages(inp, out)
    manifest = json.loads((out / "frames" / "manifest.json").read_text())
    (out / manifest["frames"][-1]["path"]).unlink()
    proc = run_cli(str(REPO / "generate_videos.py"), str(out), "--source", "frames", "-q")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "missing or corrupt" in proc.stderr


def test_temps_of_a_live_worker_survive_another_run(tmp_path):
    from artwalk.runfolder import UnitStore

    units = tmp_path / "stage" / "units"
    units.mkdir(parents=True)
    live = units / f"{'a' * 32}.tmp-{os.getpid()}-12345678"  # this process: still building it
    dead = units / f"{'b' * 32}.tmp-{2 ** 22 + 1}-12345678"  # no such process: left by a killed run
    for d in (live, dead):
        d.mkdir()
        (d / "000001.png").write_bytes(b"x")
    store = UnitStore.open(tmp_path / "stage")
    assert live.is_dir() and not dead.exists()
    store.prune()  # another run's unit under construction is not this run's to remove
    assert live.is_dir()


def test_the_compact_motion_store_round_trips_bit_exactly(tmp_path):
    import numpy as np

    from artwalk.errors import InputError
    from artwalk.framestore import FrameReader, pixels_sha256, write_segment

    rng = np.random.default_rng(7)
    for w, h in ((65, 47), (96, 64), (1, 1)):
        frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(9)]
        frames[4] = np.zeros_like(frames[4])  # flat, then noise again: the hardest case for a codec
        seg = tmp_path / f"{w}x{h}" / "motion.mkv"
        seg.parent.mkdir()
        assert write_segment(seg, iter(frames)) == [pixels_sha256(f) for f in frames]
        with FrameReader(tmp_path) as reader:
            for k in (0, 1, 8, 3, 3, 0, 7):  # forwards, backwards, repeated
                got = reader.u8({"path": f"{w}x{h}/motion.mkv", "index": k})
                assert np.array_equal(got, frames[k]), (w, h, k)
    seg.write_bytes(seg.read_bytes()[:60])  # truncated
    with FrameReader(tmp_path) as reader, pytest.raises(InputError, match="segment file is missing or corrupt"):
        reader.u8({"path": "1x1/motion.mkv", "index": 5})


def test_motion_frames_live_in_one_file_per_segment_or_as_pngs(tmp_path):
    import numpy as np

    from artwalk.framestore import FrameReader

    inp = four_images(tmp_path / "in")
    kept = {}
    for keep in (False, True):
        out = tmp_path / f"keep-{keep}"
        run_keyframes(KeyframeConfig(inp, out, width=W, height=H, progress=False))
        mo = run_motion(MotionConfig(out, fps=12, sec_interpolation=0.5, sec_freeze=0.25, engine="flow",
                                     keep_frames=keep, progress=False))
        units = list((out / "frames" / "units").iterdir())
        names = sorted({p.name for u in units for p in u.iterdir() if p.name != "unit.json"})
        assert len(units) == 3 and (names[-1].endswith(".png") if keep else names == ["motion.mkv"])
        frames = json.loads((out / "frames" / "manifest.json").read_text())["frames"]
        with FrameReader(out) as reader:
            kept[keep] = [reader.u8(f) for f in frames]
        assert len(frames) == mo.unique_frames
    assert all(np.array_equal(a, b) for a, b in zip(kept[False], kept[True], strict=True))
