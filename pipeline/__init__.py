"""The top floor: walks composed of the stages, for the ``artwalk`` command and for Python.

::

    artwalk/            ground floor: the core every stage shares (no stage imported)
    diffusion_models/   frame_interpolation/   super_resolution/   generate_videos.py
                        the four stages: each imports the core, never another stage
    pipeline/           this package: the only code (with studio/) that knows every stage

The Python API, the same walk as ``artwalk run`` (a notebook: ``examples/walk.ipynb``)::

    from pipeline import render, walk_spec, plan, run

    result = render({"input": "examples", "output": "out/nb", "width": 320, "height": 180,
                     "sec_interpolation": 1.0, "target": "720p"})
    result.video.path, result.video.frames, result.stages["motion"].computed, result.seconds

    spec = walk_spec(settings, "prompts")   # the frozen spec: images | prompts | video
    planned = plan(spec)                    # every check, the plan line; writes nothing
    run(planned)                            # the four stages; stage 4's result

Settings are keyed as the command line's flags land (``pipeline.spec.setting_names``:
``interpolation_steps`` for -S, ``sec_interpolation`` for -I, ``width`` for --w,
``motion_engine``...); :func:`zoom_spec` makes an infinite zoom's spec, which ``plan`` and
``run`` take too. Progress bars show in a terminal and in Jupyter.

- :mod:`pipeline.spec`: the walk spec and how settings become one;
- :mod:`pipeline.walk`: its plan and checks, ``OUT/walk.json``, the stages run in order;
- :mod:`pipeline.zoom`: an infinite zoom's spec and plan;
- :mod:`pipeline.flags`: the command line's flags (the one place argparse meets settings);
- :mod:`pipeline.presets`: the cpu and gpu engine sets, and ``auto``;
- :mod:`pipeline.cli`: ``artwalk run|prompts|video-init|zoom|plan|batch|...``.

``python -m pipeline`` is the same as the ``artwalk`` command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline.spec import WalkSpec, walk_spec
from pipeline.walk import Plan, plan, run, run_tracked
from pipeline.zoom import ZoomPlan, ZoomSpec, zoom_spec

__all__ = ["WalkResult", "WalkSpec", "ZoomSpec", "Plan", "ZoomPlan", "walk_spec", "zoom_spec", "plan", "run",
           "run_tracked", "render"]


@dataclass(frozen=True)
class WalkResult:
    """A finished walk: stage 4's result (the video's path, frames, duration, bytes; None
    when the walk was up to date), each stage's result (units reused and computed, timings),
    the plan it ran, and the seconds it took."""

    video: Any
    stages: Mapping[str, Any]
    plan: Any
    seconds: float


def render(settings: Mapping[str, Any], source: str = "images") -> WalkResult:
    """A whole walk (``source``: images, prompts, video; or zoom) from plain settings:
    spec, plan, the stages. Errors are :class:`artwalk.errors.ArtwalkError` with one line."""
    start = time.monotonic()
    spec = zoom_spec(settings) if source == "zoom" else walk_spec(settings, source)
    planned = plan(spec)
    stages: dict[str, Any] = {}

    def report(stage: str, result: Any) -> None:
        if result is not None:
            stages[stage] = result

    video = run(planned, report)
    return WalkResult(video, stages, planned, time.monotonic() - start)
