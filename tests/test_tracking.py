"""Run records: `--track mlflow` leaves a readable run, read back through MLflow's own client.

A tiny walk of three real images into the default store (ROOT/mlruns beside the run
folder), its rerun (every unit reused), an explicit --tracking-uri, a batch, a zoom, a walk that
fails after its plan, a store that fails mid-walk, and the refusals before any work:
no mlflow installed, a store that cannot be used, --tracking-uri without --track.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli, small_copy

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

TINY = ["--w", "64", "--h", "48", "--preset", "cpu", "-S", "0", "--sec_interpolation", "0.5", "--sec_freeze", "0.25",
        "--fps", "8", "--no-upscale", "--motion-engine", "blend"]


def three_images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:3], start=1):
        small_copy(src, folder / f"art {k}.png", 64)
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def artwalk(capsys):
    """``artwalk ARGS`` in this process (logging restored after): (exit code, stderr)."""
    from pipeline.cli import main

    def call(*args: str) -> tuple[int, str]:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        capsys.readouterr()
        try:
            code = main([*args])
        finally:
            err = capsys.readouterr().err
            root.handlers[:], root.level = handlers, level
        return code, err

    return call


def runs_of(uri: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("artwalk")
    assert experiment is not None
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def artifacts(client: MlflowClient, run_id: str) -> dict[str, Path]:
    """Every artifact of the run, downloaded: name -> local path."""
    where = Path(client.download_artifacts(run_id, ""))
    return {p.name: p for p in where.iterdir()}


def test_a_tracked_walk_is_a_run_in_the_default_store_and_its_rerun_reuses_every_unit(tmp_path, artwalk,
                                                                                         monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    inp = three_images(tmp_path / "in")
    out = tmp_path / "walks" / "seaside"
    code, err = artwalk("run", str(inp), str(out), *TINY, "--track", "mlflow", "-q")
    assert code == 0, err
    store = tmp_path / "walks" / "mlruns"
    assert (store / "mlflow.db").is_file() and not (out / "mlruns").exists()
    client, runs = runs_of(f"sqlite:///{store / 'mlflow.db'}")
    assert len(runs) == 1
    run = runs[0]
    walk = json.loads((out / "walk.json").read_text())
    assert run.info.status == "FINISHED" and run.info.run_name == "seaside"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert {k: params[k] for k in ("engine.keyframes", "engine.motion", "engine.upscale", "preset", "fps", "S",
                                    "I", "F", "size", "target", "format", "images")} == {
        "engine.keyframes": "none", "engine.motion": "blend", "engine.upscale": "off", "preset": "cpu",
        "fps": "8.0", "S": "0", "I": "0.5", "F": "0.25", "size": "64x48", "target": "off", "format": "mp4",
        "images": "3"}
    assert params["keyframes.width"] == "64" and params["motion.sec_freeze"] == "0.25"  # the flags given
    assert not any(k.startswith("upscale.") for k in params)  # --no-upscale: stage 3 does not run
    assert tags["artwalk.walk_key"] == walk["walk_key"] and tags["artwalk.version"] == walk["artwalk"]
    assert tags["artwalk.kind"] == "images" and tags["artwalk.preset"] == "cpu"
    assert (metrics["keyframes.units_computed"], metrics["keyframes.units_reused"]) == (3, 0)
    assert (metrics["motion.units_computed"], metrics["video.units_computed"]) == (2, 1)
    assert metrics["frames"] == walk["frames"] and metrics["video_bytes"] == (out / "seaside.mp4").stat().st_size
    assert all(metrics[f"{s}.seconds"] >= 0 for s in ("keyframes", "motion", "video"))
    got = artifacts(client, run.info.run_id)
    assert {"seaside.mp4", "seaside_keyframes.png", "seaside.mp4.json", "walk.json", "inputs.json"} <= set(got)
    for name in ("seaside.mp4", "seaside_keyframes.png", "walk.json"):
        assert sha(got[name]) == sha(out / name), name
    inputs = json.loads(got["inputs.json"].read_text())
    assert [(i["name"], i["sha256"]) for i in inputs["images"]] == [
        (p.name, sha(p)) for p in sorted(inp.iterdir())]
    assert sorted(p.name for p in store.rglob("seaside.mp4")) == ["seaside.mp4"]  # under mlruns/artifacts

    # The rerun: a second run, every unit reused; what the walk wrote in OUT is unchanged.
    before = {p.relative_to(out): sha(p) for p in out.rglob("*") if p.is_file()}
    code, err = artwalk("run", str(inp), str(out), *TINY, "--track", "mlflow", "-q")
    assert code == 0, err
    assert {p.relative_to(out): sha(p) for p in out.rglob("*") if p.is_file()} == before
    client, runs = runs_of(f"sqlite:///{store / 'mlflow.db'}")
    assert len(runs) == 2 and runs[1].info.status == "FINISHED"
    again = runs[1].data.metrics
    for stage in ("keyframes", "motion", "video"):
        assert again[f"{stage}.units_reused"] > 0 and again[f"{stage}.units_computed"] == 0, stage


def test_tracking_writes_nothing_in_the_run_folder(tmp_path, artwalk):
    """The same walk with and without --track: OUT holds the same files, the video the same bytes."""
    inp = three_images(tmp_path / "in")
    plain, tracked = tmp_path / "a" / "walk", tmp_path / "b" / "walk"
    assert artwalk("run", str(inp), str(plain), *TINY, "-q")[0] == 0
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'runs.db'}"
    (tmp_path / "elsewhere").mkdir()
    code, err = artwalk("run", str(inp), str(tracked), *TINY, "--track", "mlflow", "--tracking-uri", uri, "-q")
    assert code == 0, err
    names = sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*"))
    assert sorted(p.relative_to(tracked).as_posix() for p in tracked.rglob("*")) == names
    for name in ("walk.mp4", "walk_keyframes.png"):
        assert sha(plain / name) == sha(tracked / name)
    # The explicit store holds the run, its artifacts beside its database; no default store was made.
    assert not (tmp_path / "b" / "mlruns").exists()
    client, runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert (tmp_path / "elsewhere" / "artifacts" / runs[0].info.run_id / "artifacts" / "walk.mp4").is_file()


def test_a_batch_records_each_walk_that_runs(tmp_path, artwalk):
    collection = tmp_path / "collection"
    for name in ("alpha", "beta"):
        three_images(collection / name)
    code, err = artwalk("batch", str(collection), "--out", str(tmp_path / "root"), *TINY, "--track", "mlflow", "-q")
    assert code == 0, err
    client, runs = runs_of(f"sqlite:///{tmp_path / 'root' / 'mlruns' / 'mlflow.db'}")
    assert sorted(r.info.run_name for r in runs) == ["alpha", "beta"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["artwalk.batch"] for r in runs}) == 1
    # A second batch skips both walks (current): nothing runs, nothing is recorded.
    assert artwalk("batch", str(collection), "--out", str(tmp_path / "root"), *TINY, "--track", "mlflow", "-q")[0] == 0
    assert len(runs_of(f"sqlite:///{tmp_path / 'root' / 'mlruns' / 'mlflow.db'}")[1]) == 2


def test_a_zoom_is_a_run_too(tmp_path, artwalk):
    inp = three_images(tmp_path / "in")
    out = tmp_path / "zooms" / "zoom"
    code, err = artwalk("zoom", "--through", str(inp), str(out), "--w", "64", "--h", "48", "--no-upscale", "--fps",
                        "4", "--seconds-per-level", "0.5", "--track", "mlflow", "-q")
    assert code == 0, err
    client, runs = runs_of(f"sqlite:///{tmp_path / 'zooms' / 'mlruns' / 'mlflow.db'}")
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["artwalk.kind"] == "zoom"
    assert run.data.params["engine.motion"] == "zoom" and run.data.params["levels.through"] == str(inp)
    assert run.data.metrics["levels.units_computed"] == 3 and run.data.metrics["frames.units_computed"] > 0
    got = artifacts(client, run.info.run_id)
    assert sha(got["zoom.mp4"]) == sha(out / "zoom.mp4") and "zoom.json" in got


def _planned(inp: Path, out: Path):
    """A tracked walk, planned from Python: the spec from plain settings, its plan."""
    from pipeline import plan, walk_spec

    spec = walk_spec({"input": inp, "output": out, "width": 64, "height": 48, "preset": "cpu",
                      "interpolation_steps": 0, "sec_interpolation": 0.5, "sec_freeze": 0.25, "fps": 8,
                      "no_upscale": True, "motion_engine": "blend", "quiet": True, "track": "mlflow"})
    return spec, plan(spec)


def test_a_walk_that_fails_after_its_plan_is_a_failed_run_with_its_error(tmp_path):
    from artwalk.errors import ArtwalkError
    from pipeline import tracking
    from pipeline.walk import run_tracked

    inp = three_images(tmp_path / "in")
    out = tmp_path / "walks" / "broken"
    spec, walk = _planned(inp, out)
    tracker = tracking.open_tracker(spec.track, spec.tracking_uri, out.parent)
    (inp / "art 2.png").write_bytes(b"\x89PNG\r\n\x1a\n no longer an image")  # changed after the plan
    with pytest.raises(ArtwalkError) as failed:
        run_tracked(walk, tracker)
    client, runs = runs_of(tracker.uri)
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["artwalk.error"] == str(failed.value).splitlines()[0]
    assert "keyframes.units_computed" not in runs[0].data.metrics  # stage 1 did not end
    assert set(artifacts(client, runs[0].info.run_id)) == {"walk.json", "inputs.json"}  # no video was made


def test_a_store_that_fails_mid_walk_costs_the_record_not_the_video(tmp_path, caplog):
    from pipeline import tracking
    from pipeline.walk import run_tracked

    inp = three_images(tmp_path / "in")
    out = tmp_path / "walks" / "walk"
    spec, walk = _planned(inp, out)
    tracker = tracking.open_tracker(spec.track, spec.tracking_uri, out.parent)

    def gone(*_args, **_kw):
        raise ConnectionError("the tracking server went away")

    tracker.client.log_artifact = gone
    with caplog.at_level(logging.WARNING, logger="artwalk"):
        result = run_tracked(walk, tracker)
    assert result is not None and result.path.is_file()
    assert any("tracking" in r.getMessage() and "went away" in r.getMessage() for r in caplog.records)
    runs = runs_of(tracker.uri)[1]
    assert runs[0].info.status == "FINISHED"  # the walk's outcome; the tag says what the record lacks
    assert "went away" in runs[0].data.tags["artwalk.incomplete"]


def test_refusals_are_one_line_before_any_work(tmp_path, artwalk):
    inp = three_images(tmp_path / "in")
    out = tmp_path / "walks" / "walk"
    code, err = artwalk("run", str(inp), str(out), *TINY, "--tracking-uri", "sqlite:///x.db", "-q")
    assert code == 2 and err.strip().splitlines() == ["error: --tracking-uri sqlite:///x.db is for --track mlflow: "
                                                      "give both, or neither"]
    (tmp_path / "a file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path / 'a file' / 'runs.db'}"
    code, err = artwalk("run", str(inp), str(out), *TINY, "--track", "mlflow", "--tracking-uri", bad, "-q")
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: --track mlflow: cannot use the tracking "
                                                                 f"store {bad}: "), err
    assert not out.exists()


def test_without_mlflow_installed_the_walk_is_refused_in_one_line(tmp_path):
    inp = three_images(tmp_path / "in")
    out = tmp_path / "walks" / "walk"
    # `import mlflow` fails as on a machine without it (None in sys.modules stops the import).
    code = ("import sys; sys.modules['mlflow'] = None; from pipeline.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc: subprocess.CompletedProcess = run_cli("-c", code, "run", str(inp), str(out), *TINY, "--track", "mlflow",
                                                "-q")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --track mlflow: MLflow is not installed here (import of mlflow halted; None in sys.modules): "
        "pip install -r requirements/tracking.txt"]
    assert not out.exists() and not (out.parent / "mlruns").exists()


def test_credentials_in_a_store_uri_are_never_shown(tmp_path, artwalk, monkeypatch):
    from pipeline.tracking import redact

    assert redact("http://ann:s3cret@host:5000/x and https://tok@h/ ftp://h/") == \
        "http://***@host:5000/x and https://***@h/ ftp://h/"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    inp = three_images(tmp_path / "in")
    secret = "http://ann:s3cret@127.0.0.1:9/"  # nothing listens there: MLflow's error names the URL
    code, err = artwalk("run", str(inp), str(tmp_path / "w"), *TINY, "--track", "mlflow", "--tracking-uri", secret)
    assert code == 2 and "http://***@127.0.0.1:9/" in err and "s3cret" not in err, err
    code, err = artwalk("run", str(inp), str(tmp_path / "w"), *TINY, "--tracking-uri", secret)
    assert code == 2 and "s3cret" not in err, err
    # The default store's line says where it is and who shares it; the record keeps no path of this machine.
    code, err = artwalk("run", str(inp), str(tmp_path / "walks" / "w"), *TINY, "--track", "mlflow")
    assert code == 0 and "the default store, beside the run folder" in err, err
    from pipeline.tracking import default_uri

    client, runs = runs_of(default_uri(tmp_path / "walks"))
    data = runs[-1].data
    assert data.tags["artwalk.run_dir"] == "w" and data.params["input"] == "in"
    assert not any(str(tmp_path) in str(v) for v in [*data.tags.values(), *data.params.values()])
