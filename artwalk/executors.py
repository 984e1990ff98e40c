"""Executors: where a stage's units of work run.

A stage hands its executor the units it found missing in its :class:`~artwalk.runfolder.UnitStore`,
as :class:`Unit` rows (the cache key, the record's metadata, a module-level function that fills
the unit's folder, its arguments, and the run-folder files it reads), and gets back each unit's
record, in the order it gave them, whatever order they finished in::

    for record in executor.build(store, run_dir, units, engine, recipe, tick=bar.update):
        ...

A unit function is pure: ``fn(unit, root, engine, *args, tick)`` reads its inputs under
``root`` (a run folder, or a worker's copy of the files it needs), writes its files through
``unit`` (a :class:`~artwalk.runfolder.UnitBuilder`) and calls ``tick(n)`` for progress.

- ``local`` (the default, :class:`LocalExecutor`): each unit in this process, one after the
  other, with the stage's own engine. Ray is never imported.
- ``pool`` (:class:`PoolExecutor`): the units of classical engines and the encode's chunks in
  ``--pool-workers`` processes of this machine (default: one per core), built in the run
  folder with the same atomic unit writes; a neural engine's units stay in this process (one
  copy of the model). No Ray needed.
- ``ray`` (:class:`RayExecutor`): each unit is a Ray task that makes the engine from its
  :class:`EngineRecipe` (kept per worker process); a neural engine's units (``recipe.neural``,
  an engine that loads models) go to actors instead, each holding the engine loaded once and
  serving many units, with ``num_gpus`` per actor (``--ray-gpus``; default 1 when the cluster
  has GPUs and the engine's device is not the CPU, else 0). A worker that dies in the middle of
  a unit is retried (tasks: ``max_retries``; actors: restarted, the unit retried), and the
  unit's bytes do not depend on which worker made them.

Write modes (``--ray-write``): ``shared`` (the default): the workers see the run folder (a
shared filesystem, or one machine) and build each unit there with the same atomic unit writes,
the driver checks it is there; ``driver``: no shared filesystem: the driver ships each input
file once into Ray's object store, a worker builds the unit in a temporary folder of its own
and returns its files' bytes, and the driver writes them through the same
:meth:`UnitStore.build <artwalk.runfolder.UnitStore.build>`. Either way the run folder's atomic
unit writes are the only commit, and the manifest (written by the stage, in timeline order) last.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from artwalk.errors import ConfigError, StageOrderError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "pool", "ray")
WRITE_MODES = ("shared", "driver")
INSTALL = "pip install -r requirements/cluster.txt"
MAX_RETRIES = 3  # a unit whose worker died is run again this many times


def _noop(n: int = 1) -> None:
    return None


@dataclass(frozen=True)
class EngineRecipe:
    """How a worker makes an engine: its class (``module:Class``) and keyword arguments.
    ``neural``: it loads models, so its units go to actors that load it once each."""

    target: str
    kwargs: dict = field(default_factory=dict)
    neural: bool = False
    device: str | None = None

    @property
    def tag(self) -> str:
        return json.dumps([self.target, self.kwargs], sort_keys=True, default=str)

    def make(self):
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)(**self.kwargs)


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``fn(unit, root, engine, *args, tick=...)`` fills the folder of ``key``
    (its record gets ``meta``); ``inputs``: the run-folder files (relative, forward slashes) it
    reads; ``size``: its progress count (frames)."""

    key: str
    meta: dict
    fn: Callable[..., None]
    args: tuple = ()
    inputs: tuple[str, ...] = ()
    size: int = 1


class Executor(Protocol):
    """What a stage asks of an executor (local or ray)."""

    name: str

    def build(self, store, run_dir: Path, units: Iterable[Unit], engine: Any = None,
              recipe: EngineRecipe | None = None, tick: Callable[[int], None] = _noop) -> Iterator[dict]: ...

    def describe(self) -> str: ...


class LocalExecutor:
    """Every unit here, in order, with the stage's engine: what artwalk always did."""

    name = "local"

    def build(self, store, run_dir: Path, units: Iterable[Unit], engine: Any = None,
              recipe: EngineRecipe | None = None, tick: Callable[[int], None] = _noop) -> Iterator[dict]:
        for u in units:
            with store.build(u.key, **u.meta) as builder:
                u.fn(builder, Path(run_dir), engine, *u.args, tick=tick)
            yield builder.record

    def describe(self) -> str:
        return "local"


# ---------------------------------------------------------------------------------------------
# A pool of processes on this machine

class PoolExecutor:
    """Units in ``workers`` processes of this machine (``spawn``ed, so no lock or thread of this
    process is inherited), each making the engine once from its recipe; results are committed in
    the order asked, as with Ray's shared writes. A neural engine's units run here instead."""

    name = "pool"

    def __init__(self, workers: int | None = None) -> None:
        self._pool = None  # started by the first build, shut down by close() or when dropped
        if workers is not None and workers < 1:
            raise ConfigError(f"--pool-workers must be 1 or more, got {workers}")
        self.workers = workers or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count() or 1)

    def describe(self) -> str:
        return f"a pool of {self.workers} process(es)"

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def build(self, store, run_dir: Path, units: Iterable[Unit], engine: Any = None,
              recipe: EngineRecipe | None = None, tick: Callable[[int], None] = _noop) -> Iterator[dict]:
        units = list(units)
        if recipe is not None and recipe.neural or (recipe is None and engine is not None):
            yield from LocalExecutor().build(store, run_dir, units, engine, recipe, tick)  # one model, here
            return
        if not units:
            return
        pool = self._executor()
        window = 2 * self.workers  # bounds the units submitted ahead of the one awaited
        pending = []
        nxt = 0
        workers = set()
        for u in units:
            while nxt < len(units) and len(pending) < window:
                w = units[nxt]
                pending.append(pool.submit(run_task, recipe, "shared", str(store.stage_dir), str(run_dir), w.key,
                                           w.meta, w.fn, w.args, None))
                nxt += 1
            workers.add(pending.pop(0).result()["pid"])  # a unit's own error is raised here, as it would be locally
            record = store.adopt(u.key)
            if record is None:
                raise StageOrderError(f"a pool worker built unit {u.key[:12]} but {store.path(u.key)} is not there")
            tick(u.size)
            yield record
        log.info("pool: %d unit(s) built in %d worker process(es)", len(units), len(workers - {os.getpid()}))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __del__(self) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Ray

def require_ray():
    """The ray module, or a one-line :class:`ConfigError` saying how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL}")
    import ray

    return ray


class RayExecutor:
    """Units as Ray tasks (or actor calls, for engines that load models); see the module docstring.

    ``address``: None starts a local cluster (unless this process is connected already),
    ``auto`` joins the one ``ray start`` runs on this machine, ``ray://HOST:10001`` a remote head.
    Connects on the first :meth:`build`, not before (a plan connects to nothing).
    """

    name = "ray"

    def __init__(self, address: str | None = None, write: str = "shared", gpus: float | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        if write not in WRITE_MODES:
            raise ConfigError(f"--ray-write {write}: choose {' or '.join(WRITE_MODES)}")
        if gpus is not None and gpus < 0:
            raise ConfigError(f"--ray-gpus must be 0 or more, got {gpus:g}")
        require_ray()
        self.address, self.write, self.gpus, self.max_retries = address, write, gpus, max_retries

    def describe(self) -> str:
        return f"ray ({self.address or 'a local cluster'}, {self.write} writes)"

    def _ray(self):
        ray = require_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": self.address, "include_dashboard": False,
                                      "log_to_driver": False}
            if self.address is None:  # a local cluster: its workers import this very checkout
                root = str(Path(__file__).resolve().parent.parent)
                path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
                kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
            log.info("ray: connecting to %s", self.address or "a new local cluster")
            ray.init(**kwargs)
        return ray

    def build(self, store, run_dir: Path, units: Iterable[Unit], engine: Any = None,
              recipe: EngineRecipe | None = None, tick: Callable[[int], None] = _noop) -> Iterator[dict]:
        units = list(units)
        if not units:
            return
        if recipe is None and engine is not None:
            raise ConfigError("this stage's engine cannot run on Ray (it is not made from the engine registry)")
        ray = self._ray()
        run_dir = Path(run_dir)
        shipped: dict[str, Any] = {}

        def inputs_of(u: Unit):
            if self.write == "shared":
                return None
            for rel in u.inputs:
                if rel not in shipped:  # each file once into the object store, however many units read it
                    shipped[rel] = ray.put(run_dir.joinpath(*PurePosixPath(rel).parts).read_bytes())
            return {rel: shipped[rel] for rel in u.inputs}

        def call(u: Unit) -> tuple:
            return (self.write, str(store.stage_dir), str(run_dir), u.key, u.meta, u.fn, u.args, inputs_of(u))

        resources = ray.cluster_resources()
        if recipe is not None and recipe.neural:
            gpus = self.gpus
            if gpus is None:
                gpus = 1.0 if resources.get("GPU", 0) >= 1 and recipe.device != "cpu" else 0.0
            slots = int(resources.get("GPU", 0) // gpus) if gpus else int(resources.get("CPU", 1))
            count = max(1, min(len(units), slots))
            actor_cls = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=-1,
                                   max_task_retries=self.max_retries)(EngineActor)
            actors = [actor_cls.remote(recipe) for _ in range(count)]
            log.info("ray: %d unit(s) on %d actor(s) holding %s (%g GPU each)", len(units), count,
                     recipe.target, gpus)
            from ray.util import ActorPool

            pool = ActorPool(actors)
            results = pool.map(lambda actor, u: actor.run.remote(*call(u)), units)
        else:
            task = ray.remote(num_cpus=1, max_retries=self.max_retries)(run_task)
            engine_ref = ray.put(recipe)
            window = max(2, 2 * int(resources.get("CPU", 1)))  # bounds what is shipped ahead
            log.info("ray: %d unit(s) as tasks (%s)", len(units), recipe.target if recipe else "no engine")
            results = _windowed([lambda u=u: task.remote(engine_ref, *call(u)) for u in units], window, ray)
            actors = []
        try:
            for u, result in zip(units, results):
                yield self._commit(store, u, result)
                tick(u.size)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        finally:
            for actor in actors:
                ray.kill(actor)

    def _commit(self, store, u: Unit, result: dict) -> dict:
        if self.write == "shared":
            record = store.adopt(u.key)
            if record is None:
                raise StageOrderError(
                    f"a Ray worker built unit {u.key[:12]} but {store.path(u.key)} is not there: the workers do not "
                    "share this run folder; rerun with --ray-write driver")
            return record
        made = result["record"]
        with store.build(u.key, **u.meta) as builder:
            for entry in made["files"]:
                builder.add_bytes(entry["name"], result["files"][entry["name"]])
            builder.record.update({k: v for k, v in made.items() if k not in ("files", "key")})
        return builder.record


def _windowed(submits: Sequence[Callable[[], Any]], window: int, ray) -> Iterator[Any]:
    """Submit at most ``window`` tasks ahead of the one awaited; yield results in order."""
    pending: list[Any] = []
    nxt = 0
    for _ in range(len(submits)):
        while nxt < len(submits) and len(pending) < window:
            pending.append(submits[nxt]())
            nxt += 1
        yield ray.get(pending.pop(0))


# What runs on the workers ---------------------------------------------------------------------

_ENGINES: dict[str, Any] = {}  # recipe tag -> engine, one per worker process


def _engine(recipe: EngineRecipe | None):
    if recipe is None:  # a unit that needs no engine (an encode)
        return None
    engine = _ENGINES.get(recipe.tag)
    if engine is None:
        engine = _ENGINES[recipe.tag] = recipe.make()
    return engine


def run_task(recipe: EngineRecipe | None, *call) -> dict:
    """A Ray task: one unit with the engine of ``recipe`` (made once per worker process)."""
    return run_unit(_engine(recipe), *call)


class EngineActor:
    """A Ray actor that holds one engine, loaded once, and builds many units with it."""

    def __init__(self, recipe: EngineRecipe) -> None:
        self.engine = recipe.make()

    def run(self, *call) -> dict:
        return run_unit(self.engine, *call)


def run_unit(engine, write: str, stage_dir: str, run_dir: str, key: str, meta: dict, fn, args: tuple,
             inputs: dict | None) -> dict:
    """Build one unit on a worker. ``shared``: into the run folder itself, through the same atomic
    unit write; ``driver``: into a temporary folder, returning the record and the files' bytes."""
    from artwalk.runfolder import UnitStore

    if write == "shared":
        with UnitStore(Path(stage_dir)).build(key, **meta) as builder:
            fn(builder, Path(run_dir), engine, *args, tick=_noop)
        return {"key": key, "pid": os.getpid()}
    import ray

    with tempfile.TemporaryDirectory(prefix="artwalk-unit-") as tmp:
        root = Path(tmp) / "run"
        names = list(inputs or {})
        for rel, data in zip(names, ray.get([inputs[n] for n in names]) if names else []):
            path = root.joinpath(*PurePosixPath(rel).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        store = UnitStore(Path(tmp) / "unit")
        with store.build(key, **meta) as builder:
            fn(builder, root, engine, *args, tick=_noop)
        folder = store.path(key)
        files = {e["name"]: (folder / e["name"]).read_bytes() for e in builder.record["files"]}
        shutil.rmtree(folder, ignore_errors=True)
        return {"record": builder.record, "files": files}


# ---------------------------------------------------------------------------------------------
# Choosing one

def make_executor(name: str = "local", *, workers: int | None = None, ray_address: str | None = None,
                  ray_write: str | None = None, ray_gpus: float | None = None):
    """The executor called ``name`` (local, pool or ray) with its settings; a setting of
    another executor is one line (``--pool-workers`` without pool, ``--ray-*`` without ray)."""
    ray = {"--ray-address": ray_address, "--ray-write": ray_write, "--ray-gpus": ray_gpus}
    given = [flag for flag, value in ray.items() if value is not None]
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if name != "ray" and given:
        raise ConfigError(f"{', '.join(given)}: for --executor ray")
    if name != "pool" and workers is not None:
        raise ConfigError("--pool-workers: for --executor pool")
    if name == "pool":
        return PoolExecutor(workers)
    if name == "local":
        return LocalExecutor()
    return RayExecutor(address=ray_address, write=ray_write or "shared", gpus=ray_gpus)


def resolve(executor) -> Any:
    """``executor``, or the local one when None."""
    return executor if executor is not None else LocalExecutor()
