"""`artwalk batch`: a walk per folder of a collection, as cron runs it.

Three collections, one with a broken image; a second pass that skips everything; a
changed image re-walked; two batches started at once that share the walks between
them; the summary line, the report and the exit code; arguments refused before any walk.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO, run_cli, small_copy

# A tiny walk: two 64x48 keyframes, one motion frame between them, no upscaling.
TINY = ["--w", "64", "--h", "48", "--fps", "8", "-I", "0.25", "-F", "0.125", "--no-upscale", "--preset", "cpu",
        "--motion-engine", "blend"]


def make_collection(root: Path, names=("alpha", "beta", "gamma"), broken: str | None = "gamma") -> Path:
    """A folder per name with two small real images; ``broken``'s second image is garbage."""
    sources = sorted(EXAMPLES.glob("0*"))
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(2):
            small_copy(sources[(k + i) % len(sources)], folder / f"art {i + 1}.png", 64)
    if broken is not None:
        (root / broken / "art 2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture
def batch(capsys):
    """``artwalk batch ARGS`` in this process, as a CompletedProcess (stdout, stderr, exit code)."""
    from pipeline.cli import main

    def call(*args: str) -> subprocess.CompletedProcess:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        capsys.readouterr()
        try:
            code = main(["batch", *args])
        except SystemExit as exit_:  # argparse refuses a flag by exiting
            code = exit_.code
        finally:
            out = capsys.readouterr()
            root.handlers[:], root.level = handlers, level
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return call


def summary(proc: subprocess.CompletedProcess) -> str:
    """The one line on stdout."""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return lines[0]


def report(root: Path) -> dict:
    return json.loads((root / "batch-report.json").read_text())


def statuses(rep: dict) -> dict[str, str]:
    return {w["name"]: w["status"] for w in rep["walks"]}


def test_three_collections_one_broken_then_a_second_pass_skips_everything(tmp_path, batch):
    coll = make_collection(tmp_path / "art")
    (coll / "notes").mkdir()  # no images: not a walk
    (coll / "notes" / "todo.txt").write_text("frame it\n")
    root = tmp_path / "art-walks"  # the default ROOT: beside the collection

    first = batch(str(coll), *TINY)
    line = summary(first)
    assert first.returncode == 1, first.stderr
    assert line.startswith("2 done, 1 failed: gamma: ") and "art 2.png" in line and "not an image" in line, line
    rep = report(root)
    assert statuses(rep) == {"alpha": "done", "beta": "done", "gamma": "failed"}
    assert rep["summary"] == line and rep["exit_code"] == 1 and rep["ignored"] == [str(coll / "notes")]
    for name in ("alpha", "beta"):
        walk = next(w for w in rep["walks"] if w["name"] == name)
        assert walk["run_dir"] == str(root / name) and walk["input"] == str(coll / name)
        assert walk["video"] == str(root / name / f"{name}.mp4") and Path(walk["video"]).stat().st_size > 0
    assert "error: gamma: " in first.stderr and "Traceback" not in first.stderr
    assert not (root / "notes").exists()

    # The second pass runs no stage and writes nothing in the finished run folders (but the lock's PID).
    before = {p: p.stat().st_mtime_ns for name in ("alpha", "beta") for p in (root / name).rglob("*")
              if p.is_file() and p.name != ".artwalk.lock"}
    second = batch(str(coll), *TINY)
    assert summary(second).startswith("0 done, 2 skipped (up to date), 1 failed: gamma: ")
    assert second.returncode == 1
    assert {p: p.stat().st_mtime_ns for p in before} == before
    skipped = [w for w in report(root)["walks"] if w["status"] == "skipped"]
    assert len(skipped) == 2 and all(w["seconds"] < 1.0 for w in skipped), skipped  # ~5-20 ms each here
    assert "is current" in second.stderr and "encoding" not in second.stderr

    # Mended, the broken collection is walked; the others stay skipped; exit code 0.
    small_copy(sorted(EXAMPLES.glob("0*"))[0], coll / "gamma" / "art 2.png", 64)
    third = batch(str(coll), *TINY)
    assert (summary(third), third.returncode) == ("1 done, 2 skipped (up to date)", 0)
    assert len(list((root / ".batch-reports").iterdir())) == 3  # one report per batch, the latest beside


def test_a_changed_image_or_setting_or_video_is_walked_again(tmp_path, batch):
    coll = make_collection(tmp_path / "art", names=("alpha", "beta"), broken=None)
    root = tmp_path / "walks"
    assert summary(batch(str(coll), "--out", str(root), *TINY)) == "2 done"
    small_copy(sorted(EXAMPLES.glob("0*"))[3], coll / "alpha" / "art 2.png", 64)  # another picture, same name
    proc = batch(str(coll), "--out", str(root), *TINY)
    assert summary(proc) == "1 done, 1 skipped (up to date)"
    assert statuses(report(root)) == {"alpha": "done", "beta": "skipped"}
    video = root / "beta" / "beta.mp4"
    video.write_bytes(video.read_bytes()[:-10])  # damaged: no longer the recorded file
    assert summary(batch(str(coll), "--out", str(root), *TINY)) == "1 done, 1 skipped (up to date)"
    assert statuses(report(root)) == {"alpha": "skipped", "beta": "done"}
    assert summary(batch(str(coll), "--out", str(root), *TINY, "--crf", "30")) == "2 done"  # a new setting


def test_two_batches_started_at_once_do_each_walk_exactly_once(tmp_path):
    names = ("alpha", "beta", "gamma", "delta")
    coll = make_collection(tmp_path / "art", names=names, broken=None)
    root = tmp_path / "walks"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "pipeline", "batch", str(coll), "--out", str(root), *TINY, "-I", "1.5"]  # longer
    procs = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert len(out.splitlines()) == 1 and "failed" not in out, out
        assert "Traceback" not in err, err
    reports = [json.loads(p.read_text()) for p in sorted((root / ".batch-reports").iterdir())]
    assert len(reports) == 2 and {r["pid"] for r in reports} == {p.pid for p in procs}
    done = sorted(w["name"] for r in reports for w in r["walks"] if w["status"] == "done")
    assert done == sorted(names), [statuses(r) for r in reports]  # each exactly once, by one or the other
    for r in reports:
        assert set(statuses(r).values()) <= {"done", "skipped", "busy"}
        assert r["summary"] in [out.strip() for out, _ in results]
    print("the two batches:", *(statuses(r) for r in reports))
    for name in names:
        assert (root / name / f"{name}.mp4").stat().st_size > 0


def test_a_walk_another_process_holds_is_skipped_as_busy(tmp_path):
    from artwalk.runfolder import run_lock

    coll = make_collection(tmp_path / "art", names=("alpha", "beta"), broken=None)
    root = tmp_path / "walks"
    with run_lock(root / "beta"):  # this process holds it; the batch is another process
        proc = run_cli("-m", "pipeline", "batch", str(coll), "--out", str(root), *TINY, "-q")
    assert (proc.stdout, proc.returncode) == ("1 done, 1 skipped (busy: another run holds it)\n", 0), proc.stderr
    beta = next(w for w in report(root)["walks"] if w["name"] == "beta")
    assert beta["status"] == "busy" and f"in use by PID {os.getpid()}" in beta["reason"]
    assert not (root / "beta" / "beta.mp4").exists()


def test_an_unexpected_error_in_one_walk_is_reported_with_its_type(tmp_path, batch, monkeypatch):
    import pipeline.batch as batch_module

    real = batch_module.run_tracked

    def flaky(walk, *rest):
        if walk.run_dir.name == "alpha":
            raise RuntimeError("boom\nsecond line")
        return real(walk, *rest)

    monkeypatch.setattr(batch_module, "run_tracked", flaky)
    coll = make_collection(tmp_path / "art", names=("alpha", "beta"), broken=None)
    proc = batch(str(coll), "--out", str(tmp_path / "walks"), *TINY)
    assert (summary(proc), proc.returncode) == ("1 done, 1 failed: alpha: RuntimeError: boom", 1)
    assert "unexpected RuntimeError" in proc.stderr and "Traceback" in proc.stderr  # a bug keeps its traceback


def test_max_hours_stops_starting_walks(tmp_path, batch):
    from pipeline.batch import Batch, run_batch
    from pipeline.cli import build_parser
    from pipeline.flags import settings_of

    coll = make_collection(tmp_path / "art", broken=None)
    root = tmp_path / "walks"
    proc = batch(str(coll), "--out", str(root), "--max-hours", "1e-9", *TINY)
    assert (summary(proc), proc.returncode) == ("0 done, 3 not started (time limit)", 0)
    assert {w["reason"] for w in report(root)["walks"]} == {"--max-hours 1e-09 reached"}
    # A clock that jumps two hours after the first walk: that one finishes, no other starts.
    ticks = iter([0.0, 0.0])
    args = build_parser().parse_args(["batch", str(coll), "--out", str(root), "--max-hours", "1", *TINY, "-q"])
    result = run_batch(Batch.of(settings_of(args)), clock=lambda: next(ticks, 7200.0))
    assert result.summary == "1 done, 2 not started (time limit)" and result.exit_code == 0
    assert [o.status for o in result.outcomes] == ["done", "not_started", "not_started"]


def test_a_list_file_names_the_walks(tmp_path, batch):
    coll = make_collection(tmp_path / "art", names=("alpha", "beta", "gamma"), broken=None)
    lists = tmp_path / "lists"
    lists.mkdir()
    todo = lists / "tonight.txt"
    todo.write_text(f"# tonight's walks\n\n../art/alpha\n  {coll / 'gamma'}  \n")
    proc = batch("--list", str(todo), *TINY)
    assert (summary(proc), proc.returncode) == ("2 done", 0)
    root = lists / "tonight-walks"  # the default ROOT: beside the list
    assert statuses(report(root)) == {"alpha": "done", "gamma": "done"}
    assert report(root)["list"] == str(todo)

    (tmp_path / "other" / "alpha").mkdir(parents=True)
    todo.write_text("../art/alpha\n../art/beta\n../other/alpha\n")
    refused = batch("--list", str(todo), "--out", str(tmp_path / "fresh"), *TINY)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (f"error: --list {todo}, line 3: ../other/alpha and line 1 (../art/alpha) "
                                      "would both walk into ROOT/alpha: rename one folder")
    assert not (tmp_path / "fresh").exists()  # nothing done before the refusal
    missing = lists / "gone.txt"
    todo.write_text(f"../art/alpha\n{tmp_path / 'nowhere'}\n")
    proc = batch("--list", str(todo), "--out", str(root), *TINY)
    assert proc.returncode == 1 and summary(proc).startswith("0 done, 1 skipped (up to date), 1 failed: nowhere: ")
    assert batch("--list", str(missing), *TINY).returncode == 2


@pytest.mark.parametrize("case", ["no collection", "not there", "no sub-folder", "both", "inside",
                                  "hours 0", "hours nan", "hours word", "walk flag", "video flag", "no weights"])
def test_bad_arguments_are_one_line_before_any_walk(tmp_path, batch, monkeypatch, case):
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "empty cache"))
    coll = make_collection(tmp_path / "art", names=("alpha",), broken=None)
    (tmp_path / "flat").mkdir()
    small_copy(sorted(EXAMPLES.glob("0*"))[0], tmp_path / "flat" / "a.png", 64)
    out = ["--out", str(tmp_path / "walks")]
    args, needle = {
        "no collection": ([*out], "give COLLECTION"),
        "not there": ([str(tmp_path / "nope"), *out], "no such collection folder"),
        "no sub-folder": ([str(tmp_path / "flat"), *out], "artwalk run"),
        "both": ([str(coll), "--list", str(tmp_path / "l.txt"), *out], "not both"),
        "inside": ([str(coll), "--out", str(coll / "walks")], "inside COLLECTION"),
        "hours 0": ([str(coll), *out, "--max-hours", "0"], "--max-hours"),
        "hours nan": ([str(coll), *out, "--max-hours", "nan"], "--max-hours"),
        "hours word": ([str(coll), *out, "--max-hours", "soon"], "--max-hours"),
        "walk flag": ([str(coll), *out, "--w", "5"], "--w must be between"),
        "video flag": ([str(coll), *out, "--video", "x.mp4"], "artwalk batch: unknown flag --video"),
        "no weights": ([str(coll), *out, "--w", "64", "--h", "48", "--motion-engine", "film"],
                       "artwalk models download film"),  # said once, not once per walk
    }[case]
    t0 = time.monotonic()
    proc = batch(*args, *TINY[4:-2])  # --w/--h and the motion engine left to the case
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not (tmp_path / "walks").exists() and not (coll / "walks").exists()
    assert time.monotonic() - t0 < 5


def test_the_batch_takes_exactly_the_walk_flags_of_artwalk_run():
    import argparse

    from pipeline.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))

    def flags(command: str) -> set:
        return {(s, a.dest, repr(a.default), repr(a.choices)) for a in sub.choices[command]._actions
                for s in a.option_strings}

    run, batch = flags("run"), flags("batch")
    assert {f[0] for f in run - batch} == {"--video", "-o"}  # each video is ROOT/NAME/NAME.mp4
    assert {f[0] for f in batch - run} == {"--list", "--out", "--max-hours"}


def test_the_summary_line_counts_each_status_and_says_a_shared_reason_once():
    from pipeline.batch import WalkOutcome, summary_line

    def walk(name, status, reason=""):
        return WalkOutcome(name, f"in/{name}", f"out/{name}", status, reason)

    assert summary_line([walk("a", "skipped")]) == "0 done, 1 skipped (up to date)"
    assert summary_line([walk("a", "done"), walk("b", "busy", "out/b is in use by PID 7"), walk("c", "not_started"),
                         walk("d", "failed", "no weights"), walk("e", "failed", "e.png: not an image"),
                         walk("f", "failed", "no weights")]) == \
        ("1 done, 1 skipped (busy: another run holds it), 1 not started (time limit), "
         "3 failed: d, f: no weights; e: e.png: not an image")


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB file system of its own (tmpfs), so that it can be filled to the last byte."""
    import shutil

    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small file system")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Take every free byte of ``disk``."""
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    assert os.statvfs(disk).f_bavail == 0


def test_a_current_walk_on_a_full_disk_is_skipped(small_disk, batch):
    coll = make_collection(small_disk / "coll", names=("alpha",), broken=None)
    out = small_disk / "walks"
    assert summary(batch(str(coll), "--out", str(out), *TINY)) == "1 done"
    video = (out / "alpha" / "alpha.mp4").read_bytes()
    fill(small_disk)
    second = batch(str(coll), "--out", str(out), *TINY)
    assert second.returncode == 0 and summary(second) == "0 done, 1 skipped (up to date)", second.stderr
    assert "the batch report was not written" in second.stderr  # the one thing it could not do
    from pipeline.cli import main

    assert main(["run", str(coll / "alpha"), str(out / "alpha"), *TINY, "-q"]) == 0  # the walk, by itself
    assert (out / "alpha" / "alpha.mp4").read_bytes() == video
