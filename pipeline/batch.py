"""``artwalk batch``: a walk for each folder of a collection, safe to start from cron.

::

    artwalk batch COLLECTION [--out ROOT] [--max-hours H] [walk flags]   a walk per sub-folder
    artwalk batch --list FILE [--out ROOT] [--max-hours H] [walk flags]  a walk per listed folder

Input and output::

    COLLECTION/                      ROOT/                  (default: COLLECTION-walks/ beside it)
      seaside/   a.png b.jpg ...       seaside/               the walk's run folder, as `artwalk run`
      portraits/ ...                     walk.json  keyframes/ ...  seaside.mp4  seaside.mp4.json
      notes/     (no images: no walk)  portraits/ ...
                                       batch-report.json      the latest batch's report
                                       .batch-reports/        every batch's report, <UTC time>-<pid>.json

Each walk is ``artwalk run FOLDER ROOT/NAME [walk flags]``, the same code in this process:
the walk flags are exactly ``artwalk run``'s (without ``--video``: each video is
``ROOT/NAME/NAME.mp4``). ``--list FILE`` names one folder per line (blank lines and lines
starting with ``#`` skipped; a relative path is relative to FILE's folder); a walk's NAME is
its folder's name, and two folders of one name are refused before any walk starts.

Per walk, in order: take the run folder's lock without waiting (held by another process,
such as an overlapping cron batch: ``busy``, next walk; with ``--wait``, wait for it), plan
it, and if its video is current (:func:`pipeline.walk.is_current`: the video's record holds
this walk's key, and the file its recorded size) skip it without running a stage; else
run the four stages. A walk that fails is reported and the next one starts. With
``--max-hours H`` no walk starts once H hours have passed since the batch began (the one
running then finishes); the rest are ``not started (time limit)``.

With ``--track mlflow`` each walk that runs stages is a run of its own (named after the
walk, tagged ``artwalk.batch`` with this batch's report name), by default in the store
``ROOT/mlruns/`` (:mod:`pipeline.tracking`); the store is opened before any walk.

The batch ends with one line on stdout (for cron's mail; the walks log on stderr)::

    7 done, 2 skipped (up to date), 1 skipped (busy: another run holds it), 1 failed: NAME: reason

and a JSON report (written after every walk, atomically). The exit code is 1 when a walk
failed, else 0; arguments that cannot work (no COLLECTION, one with no folder of images, a
bad list, ``--max-hours``, the walk flags, an engine or weights not here) are one ``error:``
line and exit 2 before any walk.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from artwalk import __version__
from artwalk.cli import add_common_flags
from artwalk.errors import ArtwalkError, ConfigError, RunFolderBusyError, first_line
from artwalk.fsutil import atomic_write_json, make_dir
from artwalk.images import IMAGE_EXTENSIONS, natural_key
from artwalk.runfolder import run_lock
from diffusion_models import check_folders
from pipeline.flags import add_walk_flags, settings_of
from pipeline.spec import WalkSpec, walk_spec
from pipeline.tracking import open_tracker
from pipeline.walk import check_engines, plan, run_tracked

log = logging.getLogger("artwalk")

REPORT = "batch-report.json"
HISTORY = ".batch-reports"
BATCH_KEYS = ("collection", "list", "out", "max_hours")  # the batch's own settings, not its walks'
# Status -> how the summary line counts it, in the order the line gives them.
STATUSES = {"done": "done", "skipped": "skipped (up to date)", "busy": "skipped (busy: another run holds it)",
            "not_started": "not started (time limit)", "failed": "failed"}


@dataclass(frozen=True)
class BatchWalk:
    """One walk of the batch: its name (the run folder's) and its folder of images."""

    name: str
    input: Path


@dataclass
class WalkOutcome:
    name: str
    input: str
    run_dir: str
    status: str  # one of STATUSES
    reason: str = ""
    seconds: float = 0.0
    video: str | None = None


@dataclass
class BatchResult:
    root: Path
    report: Path
    outcomes: list[WalkOutcome]
    ignored: list[str] = field(default_factory=list)  # sub-folders with no images
    summary: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if any(o.status == "failed" for o in self.outcomes) else 0


def add_command(sub) -> None:
    """Register ``batch`` on the ``artwalk`` command line."""
    p = sub.add_parser(
        "batch", help="a walk per folder of a collection, into ROOT/NAME (for cron: locks, skips, one summary line)",
        description="Walk each sub-folder of COLLECTION (or each folder named in --list FILE) into its own run "
        "folder ROOT/NAME, as `artwalk run FOLDER ROOT/NAME [walk flags]` would. A walk whose video is current "
        "is skipped at once; one that another process holds (an overlapping cron run) is skipped as busy; one "
        "that fails is reported and the others go on. Ends with one summary line on stdout (the walks log on "
        "stderr) and a JSON report, ROOT/batch-report.json; the exit code is 1 when a walk failed, else 0 (busy "
        "and not started walks are no failure), 2 for arguments refused before any walk. The walk flags are "
        "`artwalk run`'s, each with its stage's default.")
    p.add_argument("collection", type=Path, nargs="?", metavar="COLLECTION",
                   help="folder of folders of images: each sub-folder with images is a walk named after it "
                   "(hidden ones and ones with no image are skipped); not with --list")
    b = p.add_argument_group("the batch")
    b.add_argument("--list", type=Path, metavar="FILE",
                   help="instead of COLLECTION: a file naming one folder of images per line (blank lines and "
                   "lines starting with # skipped; relative paths are relative to FILE's folder); the walk is "
                   "named after the folder, and two folders of one name are refused")
    b.add_argument("--out", type=Path, metavar="ROOT",
                   help="where the run folders go, ROOT/NAME, with ROOT/batch-report.json (default: "
                   "COLLECTION-walks beside COLLECTION, or FILE-walks beside the list, FILE without its suffix); "
                   "never inside COLLECTION")
    b.add_argument("--max-hours", type=_hours, metavar="H",
                   help="start no walk once H hours (a number above 0, such as 0.5) have passed since the "
                   "batch began; the walk running then finishes, the rest are reported as not started and "
                   "the next batch takes them up (default: no limit)")
    add_walk_flags(p, source="batch")
    add_common_flags(p)
    p.set_defaults(func=batch_command)


def _hours(text: str) -> float:
    """argparse type of --max-hours: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of hours above 0")
    return value


@dataclass(frozen=True)
class Batch:
    """What a batch was asked: its walks' source, where they go, its time limit, and the walk
    settings every walk shares (as ``artwalk run``'s, see :mod:`pipeline.spec`)."""

    collection: Path | None
    list: Path | None
    out: Path | None
    max_hours: float | None
    walk: Mapping[str, Any]

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> "Batch":
        walk = {k: v for k, v in settings.items() if k not in BATCH_KEYS}
        return cls(*(settings.get(k) for k in BATCH_KEYS), MappingProxyType(walk))


def batch_command(args: argparse.Namespace) -> int:
    """Run the batch; print its one summary line; the exit code (1 when a walk failed)."""
    result = run_batch(Batch.of(settings_of(args)))
    print(result.summary, flush=True)
    return result.exit_code


def run_batch(batch: Batch, clock=time.monotonic) -> BatchResult:
    """Find the walks, check what can be checked, then each walk in turn (see the module
    docstring). ``clock``: seconds, for --max-hours."""
    started, started_at = clock(), _utc_now()
    walks, ignored = find_walks(batch)
    root = output_root(batch)
    check_batch(batch, walks, root)
    make_dir(root, "batch's output folder")
    history = make_dir(root / HISTORY, "batch's report folder") / f"{_stamp(started_at)}-{os.getpid()}.json"
    # --track: the store, checked before any walk (ROOT/mlruns by default)
    tracker = open_tracker(batch.walk.get("track", "none"), batch.walk.get("tracking_uri"), root)
    tags = {"artwalk.batch": history.stem}
    source = f"--list {batch.list}" if batch.list is not None else str(batch.collection)
    log.info("batch: %d walk(s) from %s into %s", len(walks), source, root)
    result = BatchResult(root, root / REPORT, [], ignored)
    limit = None if batch.max_hours is None else batch.max_hours * 3600.0
    try:
        for i, item in enumerate(walks, start=1):
            run_dir = root / item.name
            if limit is not None and clock() - started >= limit:
                outcome = WalkOutcome(item.name, str(item.input), str(run_dir), "not_started",
                                      f"--max-hours {batch.max_hours:g} reached")
            else:
                outcome = run_one(batch, item, run_dir, tracker, tags)
                log.info("batch %d/%d: %s: %s%s (%.2f s)", i, len(walks), item.name, STATUSES[outcome.status],
                         f": {outcome.reason}" if outcome.status in ("failed", "busy") else "", outcome.seconds)
            result.outcomes.append(outcome)
            _write_report(result, history, batch, started_at, done=False)
    except KeyboardInterrupt:  # the report says how far it got; the next batch takes up the rest
        rest = walks[len(result.outcomes):]
        result.outcomes += [WalkOutcome(w.name, str(w.input), str(root / w.name), "failed" if k == 0 else
                                        "not_started", "interrupted") for k, w in enumerate(rest)]
        _write_report(result, history, batch, started_at, done=True)
        raise
    result.summary = summary_line(result.outcomes)
    _write_report(result, history, batch, started_at, done=True)
    log.info("batch report: %s", result.report)
    return result


def run_one(batch: Batch, item: BatchWalk, run_dir: Path, tracker=None,
            tags: dict[str, str] | None = None) -> WalkOutcome:
    """One walk, as `artwalk run` does it, under its run folder's lock taken without waiting
    (unless --wait): busy, skipped (current), done or failed, never raised. With ``tracker``
    (--track) a walk that runs is a run of its own, tagged with ``tags``."""
    t0 = time.monotonic()
    outcome = WalkOutcome(item.name, str(item.input), str(run_dir), "failed")
    try:
        # The lock first: a folder another batch works in is neither read nor planned.
        with run_lock(run_dir, bool(batch.walk.get("wait", False))):
            planned = plan(walk_of(batch, item, run_dir))
            if planned.current:
                log.info("%s is current (its inputs and settings are unchanged): skipped",
                         planned.spec.video.video_path)
                outcome.status = "skipped"
            else:
                run_tracked(planned, tracker, tags)
                outcome.status = "done"
            outcome.video = str(planned.spec.video.video_path)
    except RunFolderBusyError as exc:
        outcome.status, outcome.reason = "busy", first_line(exc)
    except ArtwalkError as exc:
        log.error("error: %s: %s", item.name, first_line(exc))
        outcome.reason = first_line(exc)
    except Exception as exc:  # a bug; the other walks still run, and the traceback is in the log
        log.error("error: %s: unexpected %s", item.name, type(exc).__name__, exc_info=True)
        outcome.reason = f"{type(exc).__name__}: {first_line(exc)}"
    outcome.seconds = round(time.monotonic() - t0, 3)
    return outcome


def walk_of(batch: Batch, item: BatchWalk, run_dir: Path) -> WalkSpec:
    """One walk of the batch, as `artwalk run item.input run_dir [walk flags]` makes it."""
    return walk_spec({**batch.walk, "input": item.input, "output": run_dir}, "images")


def find_walks(batch: Batch) -> tuple[list[BatchWalk], list[str]]:
    """The walks (from COLLECTION's sub-folders or --list's lines) and the sub-folders
    skipped for having no images."""
    if batch.list is not None:
        if batch.collection is not None:
            raise ConfigError(f"give COLLECTION ({batch.collection}) or --list {batch.list}, not both")
        return read_list(batch.list), []
    if batch.collection is None:
        raise ConfigError("give COLLECTION, a folder of folders of images (or --list FILE)")
    collection = batch.collection
    if not collection.is_dir():
        raise ConfigError(f"{collection}: " + ("is a file, not a folder of folders of images" if collection.exists()
                                              else "no such collection folder"))
    walks, ignored = [], []
    folders = sorted((e for e in collection.iterdir() if e.is_dir() and not e.name.startswith(".")),
                     key=lambda e: natural_key(e.name))
    for folder in folders:
        if _has_images(folder):
            walks.append(BatchWalk(folder.name, folder))
        else:
            log.info("batch: skipping %s: no images in it", folder)
            ignored.append(str(folder))
    if not walks:
        own = _has_images(collection)
        raise ConfigError(f"{collection}: no sub-folder with images (each sub-folder of COLLECTION is one walk)" +
                          (f"; for a walk of its own images: artwalk run {collection} OUT" if own else ""))
    return walks, ignored


def _has_images(folder: Path) -> bool:
    """Whether ``folder`` holds a file named as an image (one that is not an image is the
    walk's to refuse, so that the report names it)."""
    try:
        return any(e.suffix.lower() in IMAGE_EXTENSIONS and not e.name.startswith(".") and not e.is_dir()
                   for e in folder.iterdir())
    except OSError:  # unreadable: the walk fails and says why
        return True


def read_list(path: Path) -> list[BatchWalk]:
    """--list FILE: a folder per line; the names must differ (each is a run folder of ROOT)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--list {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    walks, seen = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        folder = Path(os.path.normpath(path.parent / Path(line).expanduser()))
        name = folder.name
        if not name or name.startswith("."):
            raise ConfigError(f"--list {path}, line {number}: {line!r} names no folder a run folder can be named "
                              "after (hidden, or a root)")
        if name in seen:
            raise ConfigError(f"--list {path}, line {number}: {line} and line {seen[name][0]} ({seen[name][1]}) "
                              f"would both walk into ROOT/{name}: rename one folder")
        seen[name] = number, line
        walks.append(BatchWalk(name, folder))
    if not walks:
        raise ConfigError(f"--list {path}: names no folder (one folder of images per line)")
    return walks


def output_root(batch: Batch) -> Path:
    """--out, or the default: COLLECTION-walks beside COLLECTION (FILE-walks beside the list)."""
    if batch.out is not None:
        return batch.out
    source = Path(os.path.abspath(batch.list if batch.list is not None else batch.collection))
    return source.parent / f"{source.stem if batch.list is not None else source.name}-walks"


def check_batch(batch: Batch, walks: list[BatchWalk], root: Path) -> None:
    """What can be checked before any walk: ROOT outside the inputs, each run folder apart
    from its input, and what is the same for every walk, so checked once: the walk flags,
    the engines and their weights."""
    if batch.collection is not None:
        inside = Path(root).resolve().is_relative_to(batch.collection.resolve())
        if inside:
            raise ConfigError(f"--out {root}: inside COLLECTION {batch.collection}, whose folders are the walks; "
                              "pick a ROOT outside it")
    for item in walks:
        check_folders(item.input, root / item.name)
    check_engines(walk_of(batch, walks[0], root / walks[0].name), models=True)


def summary_line(outcomes: list[WalkOutcome]) -> str:
    """``7 done, 2 skipped (up to date), 1 failed: NAME: reason`` (counts of 0 left out, but
    done's; walks that failed for the same reason share it: ``A, B: reason``)."""
    counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
    parts = [f"{counts[s]} {words}" for s, words in STATUSES.items() if s != "failed" and (counts[s] or s == "done")]
    if counts["failed"]:
        reasons: dict[str, list[str]] = {}  # one cause that fails several walks is said once
        for o in outcomes:
            if o.status == "failed":
                reasons.setdefault(o.reason, []).append(o.name)
        parts.append(f"{counts['failed']} failed: " + "; ".join(f"{', '.join(names)}: {reason}"
                                                                for reason, names in reasons.items()))
    return ", ".join(parts)


def _write_report(result: BatchResult, history: Path, batch: Batch, started_at: datetime,
                  done: bool) -> None:
    """This batch's report into .batch-reports/, and as ROOT/batch-report.json (the latest)."""
    report = {
        "artwalk": __version__, "pid": os.getpid(), "started": started_at.isoformat(timespec="seconds"),
        "finished": _utc_now().isoformat(timespec="seconds") if done else None,
        "collection": None if batch.collection is None else str(batch.collection),
        "list": None if batch.list is None else str(batch.list), "root": str(result.root),
        "max_hours": batch.max_hours, "summary": summary_line(result.outcomes) if done else None,
        "exit_code": result.exit_code if done else None,
        "counts": {s: sum(o.status == s for o in result.outcomes) for s in STATUSES},
        "walks": [asdict(o) for o in result.outcomes], "ignored": result.ignored,
    }
    try:
        atomic_write_json(history, report)
        atomic_write_json(result.report, report)
    except ArtwalkError as exc:  # a full disk: the walks' outcomes still go to the log and stdout
        log.warning("warning: the batch report was not written: %s", first_line(exc))


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S.%fZ")
