"""Benchmark: the example walk on the Ray executor, 1 worker against 2, and the local executor.

Runs README's main walk (the bundled examples, the cpu engines: flow motion, lanczos streamed
into the encode; 1280x720 upscaled to 2560x1440, 405 frames) three times into fresh run folders:

- ``local``: the local executor (this process, units one after the other);
- ``ray x1``: ``--executor ray`` on a local cluster of 1 CPU (``ray.init(num_cpus=1)``): one unit at a time;
- ``ray x2``: the same with 2 CPUs: two units at a time.

It prints the wall time of each stage and of the walk, the speed-ups (ray x2 / ray x1, and each
against local), and whether the three videos are byte-identical. Cluster start-up is timed apart
(it is paid once per process, not per walk).

::

    python bench/bench_ray.py                       # README's walk
    python bench/bench_ray.py --w 640 --h 360 --target 1280x720   # a quicker one
    python bench/bench_ray.py --write driver --json out.json

Nothing here is a test: the figures depend on the machine. bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def walk_once(out: Path, extra: list[str]) -> dict[str, float]:
    from pipeline.cli import build_parser
    from pipeline.walk import plan_walk, run_planned

    args = build_parser().parse_args(["run", str(REPO / "examples"), str(out), "--preset", "cpu", "--quiet", *extra])
    times: dict[str, float] = {}
    started = time.perf_counter()
    walk = plan_walk(args)
    times["plan"] = time.perf_counter() - started
    marks = {}

    def report(stage, result):
        if result is None:
            marks[stage] = time.perf_counter()
        else:
            times[stage] = time.perf_counter() - marks[stage]

    run_planned(walk, report)
    times["walk"] = time.perf_counter() - started
    times["sha256"] = hashlib.sha256(walk.video.video_path.read_bytes()).hexdigest()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--w", default="1280")
    p.add_argument("--h", default="720")
    p.add_argument("--target", default="2k")
    p.add_argument("--write", default="shared", choices=("shared", "driver"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import ray

    size = ["--w", args.w, "--h", args.h, "--target", args.target]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        results["local"] = walk_once(Path(tmp) / "local" / "walk", size)
        for cpus in (1, 2):
            started = time.perf_counter()
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
            ray.get([ray.remote(lambda: None).remote() for _ in range(cpus)])  # the workers up
            start_s = time.perf_counter() - started
            name = f"ray x{cpus}"
            results[name] = walk_once(Path(tmp) / name.replace(" ", "") / "walk",
                                      [*size, "--executor", "ray", "--ray-write", args.write])
            results[name]["cluster start"] = start_s
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    stages = ("plan", "keyframes", "motion", "upscale", "video", "walk")
    print(f"{'':10}" + "".join(f"{s:>11}" for s in stages))
    for name, t in results.items():
        print(f"{name:10}" + "".join(f"{t.get(s, 0.0):10.1f}s" for s in stages))
    for s in ("motion", "video", "walk"):
        print(f"speed-up {s}: ray x2 / ray x1 {results['ray x1'][s] / results['ray x2'][s]:.2f}x, "
              f"ray x2 / local {results['local'][s] / results['ray x2'][s]:.2f}x, "
              f"ray x1 / local {results['local'][s] / results['ray x1'][s]:.2f}x")
    same = len({t["sha256"] for t in results.values()}) == 1
    print(f"videos byte-identical: {same}; cluster start {results['ray x1']['cluster start']:.1f} s (1 CPU), "
          f"{results['ray x2']['cluster start']:.1f} s (2 CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
