"""A real studio server for the tests: started as a user starts it, asked as its own page asks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

# A render that takes a second: no weights, a tiny walk.
FAST = {"S": 0, "I": 0.5, "F": 0.25, "fps": 8, "w": 64, "h": 48, "target": "128x96",
        "engines": {"keyframes": "none", "motion": "flow", "upscale": "lanczos"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int, *extra: str, env: dict | None = None, output=subprocess.DEVNULL,
                 host: str = "127.0.0.1") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "studio", str(root), "--port", str(port), *extra], cwd=REPO,
                            env=env, stdout=output, stderr=subprocess.PIPE if output is subprocess.DEVNULL else output,
                            start_new_session=True)
    import httpx

    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the studio exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(f"http://{host}:{port}/openapi.json", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the studio did not start")


def own(base: str):
    """An httpx client that asks the studio at ``base`` as its own page does (its Origin)."""
    import httpx

    return httpx.Client(base_url=base, headers={"Origin": base})
