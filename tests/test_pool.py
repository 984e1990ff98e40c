"""``--executor pool``: a walk's motion segments and chunks in processes of this machine give
the very bytes of a local walk; its flags are checked before any work."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from conftest import refused, run_cli

WALK = ["--w", "64", "--h", "48", "--preset", "cpu", "-S", "0", "--sec_interpolation", "1", "--sec_freeze", "0.5",
        "--fps", "8", "--target", "96x72", "--quiet"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pool_walk_is_byte_identical_to_a_local_one(image_folder, tmp_path):
    # Both in processes of their own, as users run them.
    run_cli("-m", "pipeline", "run", str(image_folder), str(tmp_path / "local"), *WALK, check=True)
    pooled = run_cli("-m", "pipeline", "run", str(image_folder), str(tmp_path / "pool"), *WALK[:-1], "--executor",
                     "pool", "--pool-workers", "2", check=True)
    # The units were built by the pool's processes, not by a silent fall back to this one.
    built = re.findall(r"pool: (\d+) unit\(s\) built in (\d+) worker process\(es\)", pooled.stderr)
    assert built and built[0][0] == "2" and all(1 <= int(n) <= 2 for _, n in built), pooled.stderr
    assert sha(tmp_path / "pool" / "pool.mp4") == sha(tmp_path / "local" / "local.mp4")
    assert sha(tmp_path / "pool" / "frames" / "manifest.json") == sha(tmp_path / "local" / "frames" / "manifest.json")
    # A rerun on the pool reuses every unit.
    again = run_cli("-m", "pipeline", "run", str(image_folder), str(tmp_path / "pool"), *WALK[:-1], "--executor",
                    "pool", check=True)
    assert "0 recomputed" in again.stderr and "2 unit(s) reused" in again.stderr


def test_pool_flags_are_checked_first(image_folder, tmp_path, capsys):
    for extra, words in ((["--pool-workers", "2"], "--pool-workers: for --executor pool"),
                         (["--executor", "pool", "--pool-workers", "0"], "--pool-workers must be 1 or more"),
                         (["--executor", "pool", "--ray-write", "driver"], "--ray-write: for --executor ray")):
        line = refused(capsys, "run", str(image_folder), str(tmp_path / "out"), *WALK, *extra)
        assert line.startswith(f"error: {words}"), line
        assert not (tmp_path / "out").exists()
