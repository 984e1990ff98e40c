"""Render jobs: one background worker renders the projects' walks, one job at a time.

A job is a JSON file in ``ROOT/.jobs/`` (:class:`Job`), rewritten as it moves::

    queued -> running -> done | failed

``progress`` is 0..1 over the walk's stages (each stage an equal share, its progress
bar's fraction within it), ``eta_s`` the seconds left at the pace so far, and
``stages`` each finished stage's units ``{"reused": r, "recomputed": c}``.

A job is the walk of ``artwalk run`` (:func:`pipeline.walk.run_planned`) over the
project's input and run folder, so it reuses every unit whose key is unchanged. A
server killed mid-job leaves its job ``queued`` or ``running`` on disk; the next
server keeps it aside, and the first time it is asked for (its status, its events,
or a new render of its project) it goes back in the queue and resumes from the run
folder.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from artwalk.errors import ArtwalkError, first_line
from artwalk.fsutil import atomic_write_json
from artwalk.progress import observed
from pipeline.walk import plan_walk, run_planned
from studio import walks
from studio.projects import RENDERED, Busy, NotFound, Store

log = logging.getLogger("artwalk.studio")

ACTIVE = ("queued", "running")
SAVE_EVERY_S = 0.5  # progress is written to disk at most this often (state changes always)


@dataclass
class Job:
    id: str
    project: str
    state: str = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    stage: str | None = None
    error: str | None = None
    stages: dict = field(default_factory=dict)  # stage -> {"reused": r, "recomputed": c}
    units: list = field(default_factory=list)  # the timeline's units this job renders (walks.Unit.as_json)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0  # bumped on every change: the events stream sends what is new

    def public(self) -> dict:
        data = asdict(self)
        data.pop("units")
        return data


class Worker:
    """The queue of render jobs and the thread that works through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.jobs: dict[str, Job] = {}
        self.interrupted: set[str] = set()
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._saved = 0.0
        for path in sorted((store.root / ".jobs").glob("*.json")):
            try:
                job = Job(**json.loads(path.read_text("utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if job.state in ACTIVE:  # the server stopped while it was queued or running
                job.state, job.stage = "queued", None
                self.interrupted.add(job.id)
            self.jobs[job.id] = job
        self._thread = threading.Thread(target=self._loop, name="studio-render", daemon=True)
        self._thread.start()

    # --------------------------------------------------------------- asking
    def get(self, job_id: str) -> Job:
        self.store.job_path(job_id)  # refuses a malformed id
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise NotFound(f"no job '{job_id}'")
            if job_id in self.interrupted:  # asked again after a restart: resume it
                self.interrupted.discard(job_id)
                self._queue.put(job_id)
                log.info("job %s: resuming the render of project %s", job_id, job.project)
            return job

    def active(self, pid: str) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs.values() if j.project == pid and j.state in ACTIVE), None)

    def submit(self, pid: str) -> Job:
        """Queue a render of project ``pid``; :class:`Busy` while one is queued or running
        (an interrupted one is resumed and returned instead)."""
        current = self.active(pid)
        if current is not None:
            if current.id in self.interrupted:
                return self.get(current.id)
            raise Busy(f"project {pid} is already rendering (job {current.id}); wait for it to finish")
        with self.store.lock(pid):  # what it will make, as the project is now (the start updates it)
            units = [u.as_json() for u in walks.project_units(self.store.load(pid))]
        job = Job(id=secrets.token_hex(8), project=pid, units=units)
        with self._lock:
            self.jobs[job.id] = job
        self._save(job, force=True)
        self._queue.put(job.id)
        return job

    # -------------------------------------------------------------- working
    def _loop(self) -> None:
        while True:
            job = self.jobs[self._queue.get()]
            try:
                self._render(job)
            except Exception as exc:  # a bug: the job fails with its type, the server goes on
                log.exception("job %s failed", job.id)
                self._update(job, state="failed", error=f"internal error: {type(exc).__name__}: {first_line(exc)}",
                             finished=time.time(), force=True)

    def _render(self, job: Job) -> None:
        store, pid = self.store, job.project
        self._update(job, state="running", started=time.time(), progress=0.0, error=None, stages={}, force=True)
        try:
            with store.lock(pid):  # the project as it is when the job starts is what it renders
                project = store.load(pid)
                input_dir = store.rebuild_input(project)
                self._update(job, units=[u.as_json() for u in walks.project_units(project)])
            run_dir = store.path(pid, "run")
            walk = plan_walk(walks.walk_args(project["settings"], input_dir, run_dir))
            order = ["keyframes", "motion", *(["upscale"] if walk.upscale is not None else []), "video"]
            pace = _Pace(order, lambda p, eta: self._update(job, progress=p, eta_s=eta))

            def stage(name: str, result) -> None:
                if result is None:
                    pace.begin(name)
                    self._update(job, stage=name, force=True)
                else:
                    pace.end(name)
                    self._update(job, stages={**job.stages, name: {"reused": result.reused,
                                                                     "recomputed": result.computed}}, force=True)

            with observed(pace.step):
                result = run_planned(walk, stage)
            video = walk.video.video_path
            atomic_write_json(store.path(pid, RENDERED), {
                "job": job.id, "units": job.units, "video": video.name, "format": walk.video.video_format,
                "frames": None if result is None else result.frames, "finished": time.time(),
                "sheet": walk.video.sheet_path.name if walk.video.sheet_path.is_file() else None})
        except ArtwalkError as exc:
            self._update(job, state="failed", error=first_line(exc), finished=time.time(), force=True)
            return
        self._update(job, state="done", progress=1.0, eta_s=0.0, stage=None, finished=time.time(), force=True)

    def _update(self, job: Job, force: bool = False, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.version += 1
        self._save(job, force)

    def _save(self, job: Job, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._saved >= SAVE_EVERY_S:
            self._saved = now
            atomic_write_json(self.store.job_path(job.id), asdict(job))


class _Pace:
    """The job's progress over its stages, and the seconds left at the pace so far."""

    def __init__(self, order: list[str], report: Callable[[float, float | None], None]) -> None:
        self.order, self.report = order, report
        self.index, self.fraction = 0, 0.0
        self.started = time.monotonic()

    def begin(self, name: str) -> None:
        self.index, self.fraction = self.order.index(name), 0.0
        self._send()

    def end(self, name: str) -> None:
        self.index, self.fraction = self.order.index(name), 1.0
        self._send()

    def step(self, desc: str, n: int, total: int | None) -> None:
        if total:  # a stage's bars run one after another: its share only grows
            self.fraction = max(self.fraction, min(1.0, n / total))
            self._send()

    def _send(self) -> None:
        done = (self.index + self.fraction) / len(self.order)
        spent = time.monotonic() - self.started
        self.report(done, spent * (1 - done) / done if done > 0.01 else None)
