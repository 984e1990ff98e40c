"""The defects a new user hit (issue "One house"), each as the user met it, through the CLIs.

Every test here failed on the main branch before the core was rebuilt: a traceback, a
run that never settled, reused files that were gone, settings silently reset, runs
trampling each other, work done before a check that could have stopped it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import EXAMPLES, REPO, run_cli, small_copy
from conftest import count_frames, shell

# A small walk: 64x48 frames, 8 fps, I = 0.5 s (N = 4), F = 0.25 s (H = 2).
SMALL = ["--w", "64", "--h", "48", "--fps", "8", "-I", "0.5", "-F", "0.25", "--target", "x2"]


def images(folder: Path, n: int = 3, width: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:n], start=1):
        small_copy(src, folder / f"art {k}.png", width)
    return folder


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The process failed with exactly one line on stderr, ``error: ...``, holding every needle."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture
def walk(capsys):
    """``artwalk ARGS`` in this process (the console command's own main), as a CompletedProcess:
    as a user sees it, without a new interpreter's start-up for each of the many refusals."""
    import logging

    from pipeline.cli import main

    def call(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse refuses a flag by exiting
            code = exit_.code
        finally:
            out = capsys.readouterr()
            root.handlers[:], root.level = handlers, level
        if check and code != 0:
            raise AssertionError(f"{args} failed ({code}):\n{out.err}")
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return call


def counts(stderr: str, stage: str) -> tuple[int, int]:
    """(reused, recomputed) from a stage's closing line, e.g. 'motion: ...; 3 unit(s) reused, 0 recomputed'."""
    m = re.findall(rf"^{stage}: .*?(\d+) unit\(s\) reused, (\d+) recomputed$", stderr, re.M)
    assert m, stderr
    return int(m[-1][0]), int(m[-1][1])


# ------------------------------------------------------------------------------------ 1. folders


def test_output_folder_inside_the_input_is_refused_before_any_write(tmp_path, walk):
    inp = images(tmp_path / "imgs")
    before = sorted(p.name for p in inp.iterdir())
    for out in (inp, inp / "walk"):
        proc = walk("run", str(inp), str(out), *SMALL)
        one_error_line(proc, "inside the input folder")
    assert sorted(p.name for p in inp.iterdir()) == before  # no walk.json, no video, no sheet
    outer = tmp_path / "outer"
    images(outer / "imgs")
    one_error_line(walk("run", str(outer / "imgs"), str(outer), *SMALL),
                   "input folder is inside the run folder")
    one_error_line(run_cli("-m", "diffusion_models", str(inp), str(inp)), "inside the input folder")


# ------------------------------------------------------------------------------------ 2. re-timing


def test_artwalks_sec_flags_change_only_what_they_name(tmp_path):
    inp = images(tmp_path / "in")
    out = tmp_path / "run"
    run_cli("-m", "pipeline", "run", str(inp), str(out), "--w", "64", "--h", "48", "-I", "1", "--fps", "12",
            "--easing", "linear", "--loop", "--motion-engine", "blend", "--target", "x2", "-q", check=True)
    proc = run_cli("generate_videos.py", str(out), "--sec_freeze", "0.5", check=True)
    config = json.loads((out / "frames" / "manifest.json").read_text())["config"]
    assert (config["fps"], config["easing"], config["loop"], config["engine"]) == (12.0, "linear", True, "blend")
    assert (config["sec_interpolation"], config["sec_freeze"]) == (1.0, 0.5)
    # The video is the re-timed walk at the run's own (upscaled) size, not stale frames.
    n, hold, big_n = 3, round(0.5 * 12), round(1 * 12)
    frames, fps, size = count_frames(out / "run.mp4")
    assert (frames, fps, size) == (n * hold + n * (big_n - 1), 12.0, (128, 96)), proc.stderr


# ------------------------------------------------------------------------------------ 3. reused units


def test_a_deleted_or_damaged_unit_file_is_recomputed(tmp_path):
    inp = images(tmp_path / "in")
    out = tmp_path / "run"
    args = ["-m", "pipeline", "run", str(inp), str(out), *SMALL, "--motion-engine", "blend"]
    run_cli(*args, "-q", check=True)
    frames = json.loads((out / "frames" / "manifest.json").read_text())["frames"]
    motion = [f for f in frames if f["kind"] == "motion"]
    (out / motion[0]["path"]).unlink()  # gone
    with open(out / motion[-1]["path"], "ab") as fh:  # a different size
        fh.write(b"\0")
    proc = run_cli(*args, check=True)
    assert counts(proc.stderr, "motion") == (0, 2)  # both segments that lost a file, not "reused"
    assert count_frames(out / "run.mp4")[0] == 3 * 2 + 2 * 3
    # Same size, other bytes: only --verify notices.
    path = out / motion[1]["path"]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert counts(run_cli(*args, check=True).stderr, "motion") == (2, 0)
    assert counts(run_cli(*args, "--verify", check=True).stderr, "motion") == (1, 1)


# ------------------------------------------------------------------------------------ 4. the lock


HOLD = """
import sys
from artwalk.runfolder import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()  # until told to let go
"""


def hold_lock(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_in_the_same_folder_is_refused_or_waits(tmp_path):
    inp = images(tmp_path / "in")
    out = tmp_path / "run"
    holder = hold_lock(out)
    proc = run_cli("-m", "pipeline", "run", str(inp), str(out), *SMALL)
    assert proc.returncode == 75
    one_error_line(proc, f"is in use by PID {holder.pid}", "--wait")
    for stage in (["-m", "diffusion_models", str(inp), str(out)], ["-m", "frame_interpolation", str(out)],
                  ["generate_videos.py", str(out)]):
        one_error_line(run_cli(*stage), f"is in use by PID {holder.pid}")
    # Only the driver's own children may work under its lock (full_pipeline.sh's stages).
    pretend = run_cli("-m", "frame_interpolation", str(out), env={"ARTWALK_LOCK_PID": str(holder.pid)})
    one_error_line(pretend, f"is in use by PID {holder.pid}")
    one_error_line(shell("--input", str(inp), "--output", str(out), *SMALL), f"is in use by PID {holder.pid}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    waiting = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(inp), str(out), *SMALL, "--wait"],
                               cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in waiting.stderr:  # the plan's checks first, then the wait
        seen.append(line)
        if "waiting for it (--wait)" in line:
            break
    assert waiting.poll() is None and f"in use by PID {holder.pid}" in seen[-1], seen
    holder.communicate("go\n")
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert (out / "run.mp4").is_file()
    assert (out / ".artwalk.lock").read_text() == f"{waiting.pid}\n"  # its own PID, written over the holder's


def test_a_killed_holder_never_blocks_a_rerun(tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    holder.kill()
    holder.wait()
    run_cli("-m", "diffusion_models", str(images(tmp_path / "in")), str(out), "--w", "64", "--h", "48", "-q",
            check=True)


# ------------------------------------------------------------------------------------ 5. one line, never a traceback


@pytest.mark.parametrize("flags,needle", [
    (["-I", "nan"], "--sec_interpolation/-I"), (["-I", "inf"], "finite"),
    (["-F", "nan"], "--sec_freeze/-F"), (["-F", "inf"], "finite"),
    (["--w", "0"], "--w must be between 16 and 16384"), (["--h", "-5"], "--h must be between"),
    (["--format", "gif", "--fps", "120"], "a gif cannot play 120 fps"),
    (["--workers", "-3"], "--workers must be 0 or more"),
    (["--crf", "99"], "--crf 99 is out of range"),
    (["--target", "x99"], "--target"),
    (["--fps", "0"], "--fps must be a number"),
])
def test_bad_settings_are_one_line_before_any_write(tmp_path, flags, needle, walk):
    inp = images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "run"
    for command in ("run", "plan"):
        one_error_line(walk(command, str(inp), str(out), *SMALL, *flags), needle)
        assert not out.exists()


def test_paths_in_the_way_are_one_line(tmp_path, walk):
    inp = images(tmp_path / "in", n=2, width=48)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_error_line(walk("run", str(inp), str(a_file), *SMALL), "is a file, not a folder")
    one_error_line(walk("run", str(a_file), str(tmp_path / "o"), *SMALL),
                   "is a file, not a folder of images")
    (tmp_path / "X.mp4").mkdir()
    one_error_line(walk("run", str(inp), str(tmp_path / "o"), *SMALL, "--video",
                           str(tmp_path / "X.mp4")), "X.mp4: the video path is a folder")
    (tmp_path / "Y_keyframes.png").mkdir()  # found only after the whole encode before
    one_error_line(walk("run", str(inp), str(tmp_path / "o"), *SMALL, "-o",
                           str(tmp_path / "Y.mp4")), "Y_keyframes.png: the contact sheet path is a folder")
    assert not (tmp_path / "o").exists()


def test_a_manifest_that_is_not_an_object_is_one_line(tmp_path):
    out = tmp_path / "run"
    (out / "keyframes").mkdir(parents=True)
    (out / "keyframes" / "manifest.json").write_text("[1,2,3]")
    one_error_line(run_cli("-m", "frame_interpolation", str(out)), "not a manifest", "python -m diffusion_models")


@pytest.fixture
def open_tmp():
    """A temporary folder an unprivileged user can enter (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="artwalk-perm-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_unprivileged(*args: str) -> subprocess.CompletedProcess:
    """``python <args>`` as user nobody when we are root (root reads everything), else as we are."""
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": "/tmp"}
    return subprocess.run([*prefix, sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env)


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs setpriv to drop root")
def test_permission_denied_is_one_line(open_tmp):
    inp = images(open_tmp / "in", n=2, width=48)
    for p in [inp, *inp.iterdir()]:
        p.chmod(0o777 if p.is_dir() else 0o644)
    walk = ["-m", "pipeline", "run", *SMALL]
    (inp / "art 2.png").chmod(0o000)
    one_error_line(as_unprivileged(*walk, str(inp), str(open_tmp / "o1")), "art 2.png", "permission denied")
    (inp / "art 2.png").chmod(0o644)
    inp.chmod(0o300)  # can enter, cannot list
    one_error_line(as_unprivileged(*walk, str(inp), str(open_tmp / "o2")), "permission denied listing")
    inp.chmod(0o777)
    locked = open_tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    one_error_line(as_unprivileged(*walk, str(inp), str(locked / "out")), "permission denied")
    assert not (locked / "out").exists()


# ------------------------------------------------------------------------------------ 6. checked before any work


def test_missing_upscale_weights_stop_the_plan_before_stage_one(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "run"
    env = {"ARTWALK_CACHE": str(tmp_path / "empty cache")}
    for command in ("plan", "run"):
        proc = run_cli("-m", "pipeline", command, str(inp), str(out), *SMALL, "--upscale-engine", "realesrgan",
                       env=env)
        one_error_line(proc, "RealESRGAN_x4plus", "artwalk models download RealESRGAN_x4plus")
        assert not out.exists()  # today: hours of stages 1 and 2 first


def test_bad_inputs_and_soundtracks_leave_no_run_folder(tmp_path, walk):
    inp = images(tmp_path / "in", n=2, width=48)
    (tmp_path / "song.mp3").write_bytes(b"ID3 not really an mp3" * 50)
    one_error_line(walk("plan", str(inp), str(tmp_path / "a"), *SMALL, "--audio",
                           str(tmp_path / "song.mp3")), "song.mp3")
    (inp / "broken.png").write_bytes(b"not a png")
    one_error_line(walk("plan", str(inp), str(tmp_path / "b"), *SMALL), "broken.png")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # walk.json was written before


def test_full_pipeline_gives_format_audio_and_crf_to_the_plan(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "run"
    song = tmp_path / "song.wav"
    _wav(song, 0.5)
    proc = shell("--input", str(inp), "--output", str(out), *SMALL, "--format", "webm", "--audio", str(song),
                 "--crf", "30", "--quiet")
    assert proc.returncode == 0, proc.stderr
    walk = json.loads((out / "walk.json").read_text())
    assert walk["format"] == "webm" and walk["audio"] == str(song)  # null before
    assert walk["settings"]["video"]["crf"] == 30
    assert (out / "run.webm").is_file()
    proc = shell("--input", str(inp), "--output", str(tmp_path / "bad"), *SMALL, "--crf", "99")
    one_error_line(proc, "--crf 99")
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------ 7. no download by itself


class _Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's hook
        _Counting.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_hub_models_are_never_fetched_by_a_run(tmp_path):
    """A hub model half in the cache (its index only, as after a cut download) gets past the
    plan's check, so loading is reached: it must fail with one line, asking the hub for nothing."""
    pytest.importorskip("diffusers")
    import tiny_models

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionImg2ImgPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False}))
    cache = tmp_path / "hf" / "hub"
    tiny_models.install_in_hub_cache(partial, "artwalk-tests/half-here", cache)
    server = HTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        env.update(PYTHONPATH=str(REPO), HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                   HF_HUB_CACHE=str(cache))
        inp = images(tmp_path / "in", n=2, width=48)
        proc = subprocess.run([sys.executable, "-m", "diffusion_models", str(inp), str(tmp_path / "out"),
                               "--engine", "sd", "--model", "artwalk-tests/half-here", "--w", "32", "--h", "32",
                               "-S", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    one_error_line(proc, "artwalk-tests/half-here", "artwalk models download")
    assert "loading the Stable Diffusion model" in proc.stderr  # the loader was reached
    # Not one request for the model: only `artwalk models download` fetches. (huggingface_hub
    # itself asks for its agent-harness registry once a day whatever is loaded; that is no model.)
    assert [hit for hit in _Counting.hits if not hit.startswith("/api/agent-harnesses")] == []


# ------------------------------------------------------------------------------------ 8. broken entries


def test_broken_entries_in_the_input_folder_are_named(tmp_path, walk):
    inp = images(tmp_path / "in", n=2, width=48)
    (inp / "loop.png").symlink_to("loop.png")
    one_error_line(walk("plan", str(inp), str(tmp_path / "a"), *SMALL), "loop.png",
                   "broken symbolic link")
    (inp / "loop.png").unlink()
    (inp / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    one_error_line(walk("plan", str(inp), str(tmp_path / "a"), *SMALL), "gone.jpg")
    (inp / "gone.jpg").unlink()
    (inp / "x.png").mkdir()
    proc = walk("plan", str(inp), str(tmp_path / "a"), *SMALL, check=True)
    assert "x.png: a folder, not an image" in proc.stderr


# ------------------------------------------------------------------------------------ 9. records and reruns


def _wav(path: Path, seconds: float, claim: float | None = None, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    if claim is not None:  # a header that claims more than the file holds, as a cut download does
        data = bytearray(path.read_bytes())
        declared = int(claim * rate) * 2
        data[4:8] = (36 + declared).to_bytes(4, "little")
        data[40:44] = declared.to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


def test_each_format_keeps_its_own_record(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "run"
    base = ["-m", "pipeline", "run", str(inp), str(out), *SMALL, "-q"]
    run_cli(*base, check=True)
    stamp = (out / "run.mp4").stat().st_mtime_ns
    run_cli(*base, "--format", "webm", check=True)
    run_cli(*base, "--format", "gif", check=True)
    proc = run_cli(*base[:-1], check=True)  # mp4 again: its record is its own
    assert "run.mp4 is up to date" in proc.stderr and (out / "run.mp4").stat().st_mtime_ns == stamp
    assert {p.name for p in out.glob("run.*.json")} == {"run.mp4.json", "run.webm.json", "run.gif.json"}


def test_a_rerun_after_clean_is_up_to_date(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "run"
    base = ["-m", "pipeline", "run", str(inp), str(out), *SMALL, "--clean"]
    run_cli(*base, "-q", check=True)
    assert not (out / "frames").exists()
    proc = run_cli(*base, check=True)
    assert "up to date" in proc.stderr and not (out / "keyframes").exists()
    proc = run_cli("generate_videos.py", str(out), check=True)
    assert "up to date" in proc.stderr
    proc = shell("--input", str(inp), "--output", str(out), *SMALL, "--clean")
    assert proc.returncode == 0 and "up to date" in proc.stderr, proc.stderr
    small_copy(EXAMPLES / "04_rocket.jpg", inp / "art 2.png", 48)  # a changed input: the walk runs again
    proc = run_cli(*base, check=True)
    assert "up to date" not in proc.stderr and counts(proc.stderr, "keyframes") == (0, 2)


def test_a_short_or_truncated_soundtrack(tmp_path):
    from artwalk.video import probe_audio

    short = _wav(tmp_path / "short.wav", 0.5)
    cut = _wav(tmp_path / "cut.wav", 0.6, claim=30.0)
    assert probe_audio(cut).duration_s == pytest.approx(0.6, abs=0.01)  # not the header's 30 s
    inp = images(tmp_path / "in", n=2, width=48)
    proc = run_cli("-m", "pipeline", "run", str(inp), str(tmp_path / "a"), *SMALL, "--audio", str(short),
                   check=True)
    assert "shorter than the" in proc.stderr and "the end will be silent" in proc.stderr
    proc = run_cli("-m", "pipeline", "run", str(inp), str(tmp_path / "b"), *SMALL, "--audio", str(cut), check=True)
    with av.open(str(tmp_path / "b" / "b.mp4")) as c:
        audio = c.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    assert seconds == pytest.approx(0.6, abs=0.05)


# ------------------------------------------------------------------------------------ 10. messages


def test_full_pipeline_flags_without_values_and_dash_paths(tmp_path):
    inp = images(tmp_path / "-in", n=2, width=48)
    out = tmp_path / "-out"
    for args in (["--input", str(inp), "--output"], ["--input", str(inp), "--output", str(out), "--fps"]):
        one_error_line(shell(*args))
    proc = shell("--input", "-in", "--output", "-out", *SMALL, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "-out.mp4").is_file()


def test_one_plan_line_one_skip_line_and_no_preset_clash(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    (inp / "notes.txt").write_text("my notes")
    proc = shell("--input", str(inp), "--output", str(tmp_path / "run"), *SMALL, "--preset", "cpu",
                 "--encode-preset", "ultrafast")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert sum(line.startswith("plan: ") for line in lines) == 1
    assert sum("skipping 1 non-image file(s)" in line for line in lines) == 1
    # --preset picked the engines; --encode-preset reached the encoder.
    assert json.loads((tmp_path / "run" / "walk.json").read_text())["preset"] == "cpu"
    assert json.loads((tmp_path / "run" / "run.mp4.json").read_text())["config"]["encode_preset"] == "ultrafast"


def test_models_list_prints_its_header_with_the_rows():
    proc = run_cli("-m", "pipeline", "models", "list", check=True)
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name "))
    assert lines[header].split()[:4] == ["name", "kind", "stage", "present"]
    assert any(line.startswith("RealESRGAN_x4plus ") for line in lines[header + 1:])


def test_plan_disk_figure_is_within_a_quarter_of_what_the_run_writes(tmp_path):
    inp = images(tmp_path / "in", n=3, width=400)
    out = tmp_path / "run"
    run_cli("-m", "pipeline", "run", str(inp), str(out), "--w", "320", "--h", "180", "--fps", "12", "-I", "1",
            "-F", "0.5", "--target", "x2", "-q", check=True)
    planned = json.loads((out / "walk.json").read_text())
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert 0.75 <= planned["disk_bytes"] / written <= 1.25, (planned, written)
    # Each of the two figures the plan line states: the stage folders, and the video with its sheet.
    stages = sum(p.stat().st_size for d in ("keyframes", "frames", "upscaled", "chunks") for p in (out / d).rglob("*")
                 if p.is_file())
    video = sum((out / name).stat().st_size for name in ("run.mp4", "run_keyframes.png"))
    assert 0.75 <= planned["intermediate_bytes"] / stages <= 1.25, (planned, stages)
    assert 0.75 <= planned["video_bytes"] / video <= 1.25, (planned, video)


# ------------------------------------------------------------------------------------ 11. joins


@pytest.mark.parametrize("sec", [3.0, 10.0])
def test_no_frame_is_repeated_at_a_join(tmp_path, sec):
    """No motion frame is byte-identical to the keyframe it leaves or reaches: 72- and
    240-frame segments (smoothstep put 6 and 18 such repeats into the examples' walk)."""
    inp = images(tmp_path / "in", n=2, width=400)
    out = tmp_path / "run"
    run_cli("-m", "diffusion_models", str(inp), str(out), "--w", "320", "--h", "180", "-q", check=True)
    from artwalk.framestore import FrameReader

    for easing in ("eased", "smoothstep"):
        run_cli("-m", "frame_interpolation", str(out), "--engine", "blend", "-I", str(sec), "--easing", easing,
                "-q", check=True)
        manifest = json.loads((out / "frames" / "manifest.json").read_text())
        frames = manifest["frames"]
        first, last = frames[2], frames[-1]  # after the two keyframes: the segment's motion frames
        with FrameReader(out) as reader:
            a, b = (reader.u8(f) for f in frames[:2])
            assert not np.array_equal(reader.u8(first), a), easing
            assert not np.array_equal(reader.u8(last), b), easing


# ------------------------------------------------------------------------------------ found by a new user


def test_what_a_new_user_tried_next(tmp_path):
    inp = images(tmp_path / "in", n=2, width=48)
    # A file name with a newline: the contact sheet labels it on one line (a traceback after the encode before).
    shutil.copy(inp / "art 1.png", inp / "b\nnewline.PNG")
    run_cli("-m", "pipeline", "run", str(inp), str(tmp_path / "nl"), *SMALL, "-q", check=True)
    assert (tmp_path / "nl" / "nl.mp4.json").is_file()
    (inp / "b\nnewline.PNG").unlink()
    # A missing soundtrack for a gif, which drops sound, is still named.
    one_error_line(run_cli("-m", "pipeline", "run", str(inp), str(tmp_path / "g"), *SMALL, "--format", "gif",
                           "--audio", str(tmp_path / "none.wav")), "none.wav: audio file not found")
    # A file where a stage keeps its work: refused before stage 1 runs.
    (tmp_path / "sf").mkdir()
    (tmp_path / "sf" / "frames").write_text("x")
    one_error_line(run_cli("-m", "pipeline", "run", str(inp), str(tmp_path / "sf"), *SMALL), "sf/frames")
    assert not (tmp_path / "sf" / "keyframes").exists()
    # Flags that would do nothing, and targets under the smallest frame.
    one_error_line(run_cli("-m", "pipeline", "plan", str(inp), str(tmp_path / "n"), *SMALL, "--no-upscale"),
                   "--no-upscale skips stage 3, so --target")
    one_error_line(run_cli("-m", "pipeline", "plan", str(inp), str(tmp_path / "n"), "--w", "64", "--h", "48",
                           "--target", "x0.05"), "under 16 pixels")
    # A cache that is a file.
    (tmp_path / "cache").write_text("x")
    proc = run_cli("-m", "pipeline", "models", "download", "film", env={"ARTWALK_CACHE": str(tmp_path / "cache")})
    one_error_line(proc, "is a file")
    # full_pipeline.sh without its folders, or with h but no w.
    one_error_line(shell(), "--input")
    one_error_line(shell("--input", str(inp)), "--output")
    one_error_line(shell(str(tmp_path), "in", str(tmp_path / "o"), "1", "0.5", "0.25", "none", "48"), "h and w")
    assert not (tmp_path / "n").exists()


def test_a_lock_file_that_is_a_link_writes_nothing_through_it(tmp_path, walk):
    """``OUT/.artwalk.lock`` made a link to a victim file: the walk and full_pipeline.sh refuse,
    and the victim keeps its bytes (today both wrote their PID into it)."""
    inp, out = images(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / ".artwalk.lock").symlink_to(victim)
    proc = walk("run", str(inp), str(out), *SMALL)
    assert proc.returncode != 0 and "a symbolic link stands where the lock file goes" in proc.stderr, proc.stderr
    ran = shell("--input", str(inp), "--output", str(out), *SMALL, terminal=False)
    assert ran.returncode != 0 and ran.stderr.count("error:") == 1 and "symbolic link" in ran.stderr, ran.stderr
    assert victim.read_text() == "precious\n" and not (out / "keyframes").exists()
