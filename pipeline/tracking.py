"""Run records: each walk (or zoom) as a run in an experiment tracker (``--track mlflow``).

::

    artwalk run INPUT OUT --track mlflow [--tracking-uri URI]     (also prompts, video-init,
                                                                   batch and zoom)

    ROOT/                      the run folder's parent (a batch: its ROOT), the default store
      OUT/ ...                 the walk, exactly as without --track
      mlruns/
        mlflow.db              runs, parameters, metrics, tags (SQLite: sqlite:///ROOT/mlruns/mlflow.db)
        artifacts/<run id>/artifacts/
          OUT.mp4  OUT_keyframes.png  OUT.mp4.json  walk.json  inputs.json

One run per walk, in the experiment ``artwalk`` (or ``$MLFLOW_EXPERIMENT_NAME``), named
after the run folder. It starts when the walk's first stage starts (a walk that is up to
date, or a batch's skipped walk, records nothing), and holds:

- parameters: the engines, the preset, the input, the key settings (fps, S, I, F, size,
  target, format, easing, seed), every setting the user gave (``<stage>.<field>``), and
  each keyframe's prompt and seed (``prompt.000``, ``seed.000``; the first 100);
- metrics: per stage its seconds and its units reused and computed
  (``<stage>.seconds``, ``<stage>.units_reused``, ``<stage>.units_computed``), then the
  walk's seconds, frames, duration and video bytes;
- tags: artwalk's version, the walk's key, the preset, the kind of walk, the run folder
  (and ``artwalk.error``, the one-line error, when the walk failed);
- artifacts: the video, its contact sheet and record, ``walk.json`` (or ``zoom.json``) and
  ``inputs.json`` (every input's name, sha256 and prompt, every prompt keyframe).

The store is opened, and the experiment made, right after the plan and before any stage:
mlflow not installed, or a store that cannot be used, is one ``error:`` line then. A store
that fails later (a server gone mid-walk) costs the record, never the walk: a warning
after it. MLflow is imported only here, and only for ``--track mlflow``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from artwalk import __version__
from artwalk.errors import ConfigError, first_line

log = logging.getLogger("artwalk")

TRACKERS = ("none", "mlflow")
STORE = "mlruns"  # under the run folder's root: mlflow.db and artifacts/
EXPERIMENT = "artwalk"
MAX_PROMPTS = 100  # prompt.NNN / seed.NNN parameters; inputs.json and walk.json hold them all
MAX_PARAM = 6000  # MLflow's limit on a parameter's value (MAX_PARAM_VAL_LENGTH)
MAX_TAG = 8000
BATCH = 100  # parameters or tags per log_batch call (MAX_PARAMS_TAGS_PER_BATCH)
INSTALL = "pip install -r requirements/tracking.txt"


def default_uri(root: Path) -> str:
    """The local store under ``root`` (the run folder's parent): a SQLite file, as MLflow 3
    keeps its plain-file store in maintenance mode and refuses it unless told otherwise."""
    return "sqlite:///" + (Path(root).absolute() / STORE / "mlflow.db").as_posix()  # four slashes: absolute


def open_tracker(kind: str, uri: str | None, root: Path) -> MlflowTracker | None:
    """The tracker ``kind`` asks for (None for none), its store (``uri``, else the default)
    opened and its experiment there, or one line saying why not. ``root``: where the
    default store goes."""
    if kind == "none":
        if uri is not None:
            raise ConfigError(f"--tracking-uri {redact(uri)} is for --track mlflow: give both, or neither")
        return None
    return MlflowTracker.open(uri, Path(root))


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """``text`` with the user name and password taken out of every URI in it
    (``http://user:secret@host`` becomes ``http://***@host``): what gets logged or raised."""
    return _USERINFO.sub(r"\1***@", str(text))


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (None for any other store)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix):] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix):].split("?", 1)[0])


def _import_mlflow():
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(f"--track mlflow: MLflow is not installed here ({first_line(exc)}): {INSTALL}") from None
    return mlflow, MlflowClient


@dataclass
class RunRecord:
    """What a tracked run holds from its start: its name, parameters, tags and JSON artifacts."""

    name: str
    params: dict[str, Any]
    tags: dict[str, str]
    documents: dict[str, Any] = field(default_factory=dict)  # artifact file name -> JSON


class MlflowTracker:
    """An MLflow tracking store and the experiment the runs go to."""

    def __init__(self, client, uri: str, experiment_id: str, experiment: str) -> None:
        self.client, self.experiment_id, self.experiment = client, experiment_id, experiment
        self.uri = redact(uri)  # the store as it is shown: never its credentials

    @classmethod
    def open(cls, uri: str | None, root: Path) -> MlflowTracker:
        _, client_class = _import_mlflow()
        local = uri is None and not os.environ.get("MLFLOW_TRACKING_URI")
        uri = default_uri(root) if local else uri or os.environ["MLFLOW_TRACKING_URI"]
        shown = redact(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        database = _sqlite_file(uri)
        # MLflow prints "View run ... at: <the store's URL>" to stdout, credentials and all.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        try:
            if local:
                (root / STORE).mkdir(parents=True, exist_ok=True)
            client = client_class(tracking_uri=uri)
            found = client.get_experiment_by_name(name)
            if found is None:  # a SQLite store keeps its artifacts beside its database, not in the cwd
                where = None if database is None else (database.parent / "artifacts").absolute().as_uri()
                experiment_id = client.create_experiment(name, artifact_location=where)
            elif found.lifecycle_stage != "active":
                raise ConfigError(f"--track mlflow: experiment {name!r} in {shown} was deleted; restore it "
                                  "(mlflow experiments restore) or set MLFLOW_EXPERIMENT_NAME to another name")
            else:
                experiment_id = found.experiment_id
        except ConfigError:
            raise
        except Exception as exc:  # any store failure: the walk has not started, so refuse it
            raise ConfigError(f"--track mlflow: cannot use the tracking store {shown}: "
                              f"{redact(first_line(exc))}") from None
        log.info("tracking: runs go to experiment %r in %s%s", name, shown,
                 " (the default store, beside the run folder: anyone who can write there shares it; "
                 "--tracking-uri picks another)" if local else "")
        return cls(client, uri, experiment_id, name)

    def run(self, record: Callable[[], RunRecord]) -> TrackedRun:
        """A run that starts on its first report (``record`` is called then, once the walk's
        key and prompts are final)."""
        return TrackedRun(self, record)


class TrackedRun:
    """One walk's run: ``report`` is the walk's :data:`pipeline.walk.StageReport`; ``finish``
    logs the artifacts and the outcome. A store failure stops the recording, not the walk."""

    def __init__(self, tracker: MlflowTracker, record: Callable[[], RunRecord]) -> None:
        self.tracker, self.record = tracker, record
        self.run_id: str | None = None
        self.problem: str | None = None  # the first store failure, said after the walk
        self.started = time.monotonic()
        self.stages: dict[str, float] = {}

    @property
    def client(self):
        return self.tracker.client

    def _safely(self, what: str, call: Callable[[], None]) -> None:
        if self.problem is not None:
            return
        try:
            call()
        except Exception as exc:  # the walk goes on; finish() warns
            self.problem = redact(f"{what}: {first_line(exc)}")
            log.debug("tracking failed (%s)", what, exc_info=True)

    def _start(self) -> None:
        from mlflow.entities import Param

        record = self.record()
        run = self.client.create_run(self.tracker.experiment_id, run_name=record.name,
                                     tags={k: _cut(v, MAX_TAG) for k, v in record.tags.items()})
        self.run_id = run.info.run_id
        params = [Param(k, _cut(_text(v), MAX_PARAM)) for k, v in record.params.items() if v is not None]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH], tags=[])
        for name, document in record.documents.items():
            self.client.log_dict(self.run_id, document, name)
        log.info("tracking: run %s (%s) in experiment %r", self.run_id, record.name, self.tracker.experiment)

    def report(self, stage: str, result: Any) -> None:
        if self.run_id is None and self.problem is None:
            self._safely("starting the run", self._start)
        if result is None:
            self.stages[stage] = time.monotonic()
            return
        self._safely(f"{stage}'s metrics", lambda: self._log_metrics(stage_metrics(stage, result)))

    def _log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def finish(self, result: Any, files: list[Path], error: BaseException | None = None) -> None:
        """The outcome: artifacts (the files that are there), the walk's metrics, the status
        (FINISHED, FAILED with the one-line error, KILLED when interrupted)."""
        if self.run_id is None:
            if self.problem is None and error is None:
                log.info("tracking: no stage ran (the walk is up to date): no run recorded")
            elif self.problem is not None:
                log.warning("warning: tracking: no run recorded in %s: %s (the walk itself is not affected)",
                            self.tracker.uri, self.problem)
            return
        if error is not None:
            self._safely("the error tag", lambda: self.client.set_tag(self.run_id, "artwalk.error",
                                                                       _cut(first_line(error), MAX_TAG)))
        totals = {"seconds": round(time.monotonic() - self.started, 3)}
        if result is not None:
            totals.update({"frames": result.frames, "duration_s": result.duration_s, "video_bytes": result.bytes})
        self._safely("the walk's metrics", lambda: self._log_metrics(totals))
        for path in files:
            if Path(path).is_file():
                self._safely(f"artifact {Path(path).name}", lambda p=path: self.client.log_artifact(self.run_id,
                                                                                                     str(p)))
        status = "FINISHED" if error is None else "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        if self.problem is not None:  # the status stays the walk's; the tag says what the record lacks
            log.warning("warning: tracking: run %s in %s is incomplete: %s (the walk itself is not affected)",
                        self.run_id, self.tracker.uri, self.problem)
            try:
                self.client.set_tag(self.run_id, "artwalk.incomplete", _cut(self.problem, MAX_TAG))
            except Exception:  # the store is gone: the warning said it
                pass
        try:  # even after a failure above: a run left RUNNING would look alive
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            log.warning("warning: tracking: run %s in %s could not be ended: %s", self.run_id, self.tracker.uri,
                        redact(first_line(exc)))
            return
        if self.problem is None:
            log.info("tracking: run %s %s", self.run_id, status.lower())


def stage_metrics(stage: str, result: Any) -> dict[str, float]:
    """A stage's seconds and units, from its result."""
    metrics = {f"{stage}.seconds": getattr(result, "seconds", None),
               f"{stage}.units_reused": getattr(result, "reused", None),
               f"{stage}.units_computed": getattr(result, "computed", None)}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def run_tracked(tracker: MlflowTracker | None, record: Callable[[], RunRecord], files: Callable[[], list[Path]],
                work: Callable[[Callable[[str, Any], None] | None], Any]) -> Any:
    """``work(report)`` (the walk, given its stage report), recorded as a run when ``tracker``."""
    if tracker is None:
        return work(None)
    run = tracker.run(record)
    try:
        result = work(run.report)
    except BaseException as exc:
        run.finish(None, files(), exc)
        raise
    run.finish(result, files())
    return result


# --------------------------------------------------------------------------- what a run holds


def record_of(planned, tags: dict[str, str] | None = None) -> RunRecord:
    """A planned walk's or zoom's run record; ``tags`` adds to its tags."""
    return zoom_record(planned) if planned.kind == "zoom" else walk_record(planned, tags)


def files_of(planned) -> list[Path]:
    """A run's artifacts: the video, its contact sheet and record, and walk.json or zoom.json."""
    video = planned.spec.video
    return [video.video_path, video.sheet_path, video.record_path,
            planned.spec.run_dir / ("zoom.json" if planned.kind == "zoom" else "walk.json")]


def walk_record(planned, tags: dict[str, str] | None = None) -> RunRecord:
    """A planned walk's run record (see the module docstring)."""
    spec, kf = planned.spec, planned.keyframes
    plan = spec.keyframes
    kind = "video-init" if plan.video_init is not None else "prompts" if kf.prompt_walk is not None else "images"
    up = spec.upscale
    params: dict[str, Any] = {
        "preset": spec.preset, "engine.keyframes": spec.engines.keyframes, "engine.motion": spec.engines.motion,
        "engine.upscale": spec.engines.upscale if up is not None else "off",
        "input": Path(spec.input_dir).absolute().name if spec.input_dir is not None else
        Path(plan.video_init).name if plan.video_init is not None else "prompts", "images": len(kf.images),
        "fps": spec.motion.fps, "S": kf.steps, "I": spec.motion.sec_interpolation, "F": spec.motion.sec_freeze,
        "easing": spec.motion.easing, "size": "x".join(str(v) for v in plan.size),
        "target": up.target if up is not None else "off", "format": spec.video.video_format,
        "seed": getattr(plan, "seed", None), "frames": planned.numbers.frames,
    }
    for stage, values in spec.given.items():
        if stage == "upscale" and up is None:
            continue  # --no-upscale: stage 3 does not run
        for name, value in values.items():
            params[f"{stage}.{name}"] = value
    inputs: dict[str, Any] = {"images": [{"name": p.name, "sha256": h, "prompt": kf.prompt_of(p)}
                                         for p, h in zip(kf.images, kf.hashes)]}
    if kf.prompt_walk is not None:
        keys = kf.prompt_walk.keyframes
        inputs["prompts"] = [{"frame": k.frame, "prompt": k.text, "negative": k.negative, "seed": k.seed}
                             for k in keys]
        for i, k in enumerate(keys[:MAX_PROMPTS]):
            params[f"prompt.{i:03d}"] = f"{k.frame}: {k.text}" + (f" --neg {k.negative}" if k.negative else "")
            params[f"seed.{i:03d}"] = k.seed
    elif kf.prompts is not None:  # an image walk's desc.csv
        for i, p in enumerate(kf.images[:MAX_PROMPTS]):
            params[f"prompt.{i:03d}"] = f"{p.name}: {kf.prompt_of(p)}"
    all_tags = {"artwalk.version": __version__, "artwalk.walk_key": planned.key, "artwalk.preset": spec.preset,
                "artwalk.kind": kind, "artwalk.run_dir": spec.run_dir.absolute().name, **(tags or {})}
    return RunRecord(spec.run_dir.absolute().name, params, all_tags, {"inputs.json": inputs})


def zoom_record(planned) -> RunRecord:
    """An infinite zoom's run record: its engines, key settings and the flags given."""
    zoom = planned.spec
    up, levels = zoom.upscale, zoom.levels
    params: dict[str, Any] = {
        "engine.levels": None if levels is None else levels.engine if levels.engine is not None else
        "none" if getattr(levels, "through", None) is not None else "sd",
        "engine.motion": zoom.motion.engine, "engine.upscale": up.engine if up is not None else "off",
        "fps": zoom.motion.fps, "target": up.target if up is not None else "off",
        "format": zoom.video.video_format, "frames": planned.numbers.frames, "steps": ",".join(zoom.steps),
    }
    for stage, values in zoom.given.items():
        for name, value in values.items():
            params[f"{stage}.{name}"] = value
    tags = {"artwalk.version": __version__, "artwalk.kind": "zoom", "artwalk.run_dir": zoom.run_dir.absolute().name}
    return RunRecord(zoom.run_dir.absolute().name, params, tags)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
