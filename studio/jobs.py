"""Render jobs: one background worker renders the projects' walks, one job at a time.

A job is a JSON file in ``ROOT/.jobs/`` (:class:`Job`), rewritten as it moves::

    queued -> running -> done | failed | cancelled
    queued -> cancelled

``progress`` is 0..1 over the walk's stages and moves within each: a stage's share of the
whole is the pixels it makes (its keyframes, its motion frames, the upscaled frames, the
video's frames; a streamed upscale makes none, the encode resizes), and within a stage its
progress bars' steps count its frames (:class:`_Pace`). It only grows, and is 1 only when
the job is done. ``eta_s`` is the seconds left at the pace of the last
:data:`ETA_WINDOW_S` seconds. ``stages`` holds each finished stage's units
``{"reused": r, "recomputed": c}``.

The stages run with their progress bars on, each bar reporting its steps to the job
(:func:`artwalk.progress.observed`) instead of drawing; what they log is up to the server's
logging. :meth:`Worker.cancel` stops a job: a queued one at once, a running one at its
next step (a bar's step or the start of a stage), where :class:`Cancelled` is raised in
the job's thread. Each unit of work is written atomically, so the run folder keeps every
unit finished before the cancel and the next render reuses them.

A job is the walk of ``artwalk run`` (:func:`pipeline.walk.run`) over the
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
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

from artwalk.errors import ArtwalkError, first_line
from artwalk.fsutil import atomic_write_json
from artwalk.progress import observed
from artwalk.sizes import target_size
from pipeline.presets import REGISTRIES
from pipeline.walk import Plan, plan, run
from studio import walks
from studio.projects import RENDERED, Busy, NotFound, Store

log = logging.getLogger("artwalk.studio")

ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
SAVE_EVERY_S = 0.5  # progress is written to disk at most this often (state changes always)
ETA_WINDOW_S = 10.0  # the ETA follows the pace of this many seconds back


class Cancelled(BaseException):
    """Raised in the job's thread at its next step once the job is cancelled. A BaseException,
    like KeyboardInterrupt, so that no stage's ``except Exception`` takes it for an error of its own."""


class Finished(ArtwalkError):
    """The job has finished already: there is nothing to cancel."""


@dataclass
class Job:
    id: str
    project: str
    state: str = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    stage: str | None = None
    error: str | None = None  # one line (public(): in the page's words)
    cancelling: bool = False  # asked to stop: it stops at its next step
    stages: dict = field(default_factory=dict)  # stage -> {"reused": r, "recomputed": c}
    units: list = field(default_factory=list)  # the timeline's units this job renders (walks.Unit.as_json)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    version: int = 0  # bumped on every change: the events stream sends what is new

    def public(self, words: Callable[[str], str]) -> dict:
        """The job as the API shows it; its error as ``words`` says it (:meth:`Store.words`:
        the page's names for settings, no path of the server)."""
        data = asdict(self)
        data.pop("units")
        data["error"] = None if self.error is None else words(self.error)
        return data


class Worker:
    """The queue of render jobs and the thread that works through it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.jobs: dict[str, Job] = {}
        self.interrupted: set[str] = set()
        self._queue: queue.Queue[str | None] = queue.Queue()  # None: close
        self._lock = threading.Lock()
        self._saved = 0.0
        for path in sorted((store.root / ".jobs").glob("*.json")):
            try:
                job = Job(**json.loads(path.read_text("utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if job.state in ACTIVE and job.cancelling:  # stopped before it reached its next step
                job.state, job.eta_s, job.finished = "cancelled", None, job.finished or time.time()
            elif job.state in ACTIVE:  # the server stopped while it was queued or running
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
            units = [u.as_json() for u in walks.project_units(self.store.load(pid), self.store.models)]
        job = Job(id=secrets.token_hex(8), project=pid, units=units)
        with self._lock:
            self.jobs[job.id] = job
        self._save(job, force=True)
        self._queue.put(job.id)
        return job

    def cancel(self, job_id: str) -> Job:
        """Stop job ``job_id``: a queued one (or one a restart left aside) is cancelled now, a
        running one at its next step; :class:`Finished` once it is done or failed."""
        self.store.job_path(job_id)  # refuses a malformed id
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise NotFound(f"no job '{job_id}'")
            if job.state in ("done", "failed"):
                raise Finished(f"job {job_id} has already finished ({job.state}): there is nothing to cancel")
            if job.state == "cancelled" or job.cancelling:
                return job
            job.cancelling = True
            if job.state == "queued":  # not started: the loop skips it when its turn comes
                self.interrupted.discard(job_id)
                job.state, job.eta_s, job.finished = "cancelled", None, time.time()
            job.version += 1
        self._save(job, force=True)
        log.info("job %s: %s", job_id, "cancelled" if job.state == "cancelled" else "cancelling at its next step")
        return job

    def close(self) -> None:
        """Take no more jobs: the thread ends once the render it is on (if any) ends. Jobs still
        queued stay queued on disk, and the next studio on this folder resumes them."""
        self._queue.put(None)

    # -------------------------------------------------------------- working
    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.jobs[job_id]
            with self._lock:  # the job is this thread's from here; a cancel now stops it at its first step
                if job.state != "queued":  # cancelled while it waited
                    continue
                job.state = "running"
            try:
                self._render(job)
            except Exception as exc:  # a bug: the job fails with its type, the server goes on
                log.exception("job %s failed", job.id)
                self._update(job, state="failed", error=f"internal error: {type(exc).__name__}: {first_line(exc)}",
                             finished=time.time(), force=True)

    def _render(self, job: Job) -> None:
        store, pid = self.store, job.project
        self._update(job, state="running", started=time.time(), progress=0.0, eta_s=None, error=None, stages={},
                     force=True)
        pace: _Pace | None = None

        def step(desc: str, n: int, total: int | None) -> None:  # a bar's step in any stage
            if pace is not None:
                pace.step(desc, n, total)
            self._stop_if_cancelled(job)

        def stage(name: str, result) -> None:
            if result is None:
                self._stop_if_cancelled(job)
                pace.begin(name)
                self._update(job, stage=name, force=True)
            else:
                pace.end(name)
                self._update(job, stages={**job.stages, name: {"reused": result.reused,
                                                                 "recomputed": result.computed}}, force=True)

        try:
            with store.lock(pid):  # the project as it is when the job starts is what it renders
                project = store.load(pid)
                input_dir = store.rebuild_input(project)
                self._update(job, units=[u.as_json() for u in walks.project_units(project, store.models)])
            run_dir = store.path(pid, "run")
            with observed(step):  # every bar of this thread, from the plan's input check on
                planned = plan(walks.walk_for(project["settings"], input_dir, run_dir, store.models, quiet=False))
                pace = _Pace(_stage_work(planned), lambda p, eta: self._update(job, progress=p, eta_s=eta))
                result = run(planned, stage)
            video = planned.spec.video
            atomic_write_json(store.path(pid, RENDERED), {
                "job": job.id, "units": job.units, "video": video.video_path.name, "format": video.video_format,
                "frames": None if result is None else result.frames, "finished": time.time(),
                "sheet": video.sheet_path.name if video.sheet_path.is_file() else None})
        except ArtwalkError as exc:
            self._update(job, state="failed", error=first_line(exc), finished=time.time(), force=True)
            return
        except Cancelled:
            log.info("job %s: cancelled; its run folder keeps every unit finished so far", job.id)
            self._update(job, state="cancelled", eta_s=None, finished=time.time(), force=True)
            return
        self._update(job, state="done", progress=1.0, eta_s=0.0, stage=None, finished=time.time(), force=True)

    def _stop_if_cancelled(self, job: Job) -> None:
        """Raise :class:`Cancelled` in the job's own thread once the job is cancelled (a bar
        stepped from a stage's worker thread only reports)."""
        if job.cancelling and threading.current_thread() is self._thread:
            raise Cancelled(job.id)

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


def _stage_work(planned: Plan) -> dict[str, tuple[int, int]]:
    """Each stage of a planned walk, in order: the frames it makes (what its bars count) and
    the pixels of each (its keyframes, its motion frames, the upscaled frames, the video's
    frames at the video's size; a streamed upscale makes none: the encode resizes each frame)."""
    walk, kf = planned.spec, planned.keyframes
    images = len(kf.images)
    keyframes = images + max(0, images - 1) * kf.steps  # a studio walk has no loop
    unique = planned.numbers.unique_frames
    width, height = walk.keyframes.size
    pixels = width * height
    work = {"keyframes": (keyframes, pixels), "motion": (max(0, unique - keyframes), pixels)}
    if walk.upscale is not None:
        width, height = target_size(walk.upscale.target, width, height)
        stored = walk.upscale.keep_frames or "streamed" not in REGISTRIES["upscale"].get(walk.upscale.engine).features
        work["upscale"] = (unique if stored else 0, width * height)
    work["video"] = (planned.numbers.frames, width * height)
    return work


class _Pace:
    """The job's progress over its stages, and the seconds left at the recent pace.

    ``work``: stage -> (frames, pixels per frame), in order. A stage's share of the whole is
    the pixels it makes; within a stage, the steps its bars have counted (each bar's latest
    count, summed over the stage's bars) over its frames. Progress never goes back, and stays
    under 1 until the job is done."""

    def __init__(self, work: dict[str, tuple[int, int]], report: Callable[[float, float | None], None]) -> None:
        self.frames = {name: frames for name, (frames, _) in work.items()}
        self.weight = {name: frames * pixels for name, (frames, pixels) in work.items()}
        self.whole = max(1, sum(self.weight.values()))
        self.report = report
        self.stage: str | None = None
        self.before = 0  # the weight of the stages before this one
        self.counts: dict[str, int] = {}  # this stage's bars: desc -> steps counted
        self.done = 0.0
        self.samples: deque[tuple[float, float]] = deque([(time.monotonic(), 0.0)])
        self._lock = threading.Lock()

    def begin(self, name: str) -> None:
        with self._lock:
            names = list(self.weight)
            self.stage, self.counts = name, {}
            self.before = sum(self.weight[n] for n in names[:names.index(name)])

    def end(self, name: str) -> None:
        with self._lock:
            self._send(1.0)

    def step(self, desc: str, n: int, total: int | None) -> None:
        with self._lock:
            if self.stage is None:  # the plan's own check of the inputs: no stage's work yet
                return
            self.counts[desc] = max(self.counts.get(desc, 0), n)
            frames = self.frames[self.stage]
            self._send(min(1.0, sum(self.counts.values()) / frames) if frames else 0.0)

    def _send(self, fraction: float) -> None:
        done = min(0.999, (self.before + fraction * self.weight[self.stage]) / self.whole)
        if done <= self.done:
            return  # nothing new to say
        self.done = done
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= ETA_WINDOW_S:
            self.samples.popleft()
        then, at = self.samples[0]
        rate = (done - at) / (now - then) if now > then else 0.0
        self.report(done, (1 - done) / rate if rate > 0 and done > 0.01 else None)
