"""Benchmark: the example walk with ``--executor pool`` (2 processes) against the local executor.

Runs README's main walk (the bundled examples, the cpu engines: flow motion, lanczos streamed
into the encode; 1280x720 upscaled to 2560x1440, 405 frames) into fresh run folders, first in
this process (``local``: units one after the other), then with the units of motion and the
encode's chunks in a pool of ``--workers`` processes. Prints each stage's wall time, the
speed-up, and whether the two videos are byte-identical. Pool start-up is inside the walk's
time (it is paid by every walk that asks for the pool).

::

    python bench/bench_pool.py                      # README's walk, 2 workers
    python bench/bench_pool.py --w 640 --h 360 --target 1280x720   # a quicker one

Nothing here is a test: the figures depend on the machine. bench/RESULTS.md keeps them.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ray import walk_once  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--w", type=int, default=1280)
    p.add_argument("--h", type=int, default=720)
    p.add_argument("--target", default="2k")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    size = ["--w", str(args.w), "--h", str(args.h), "--target", args.target]
    with tempfile.TemporaryDirectory() as tmp:
        local = walk_once(Path(tmp) / "local" / "walk", size)
        pool = walk_once(Path(tmp) / "pool" / "walk", [*size, "--executor", "pool", "--pool-workers",
                                                          str(args.workers)])
    print(f"# example walk, {args.w}x{args.h} -> {args.target}, cpu engines; pool of {args.workers}; "
          f"{platform.machine()}, python {platform.python_version()}")
    print("| stage | local | pool | speed-up |")
    print("|---|---|---|---|")
    for stage in ("plan", "keyframes", "motion", "upscale", "video", "walk"):
        print(f"| {stage} | {local[stage]:.1f} s | {pool[stage]:.1f} s | {local[stage] / pool[stage]:.2f}x |")
    print(f"videos byte-identical: {local['sha256'] == pool['sha256']}")


if __name__ == "__main__":
    main()
