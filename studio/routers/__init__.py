"""The studio's routes, one router per resource (FastAPI's "Bigger Applications" layout).

- :mod:`studio.routers.projects`  /api/options, /api/projects, a project, its settings
- :mod:`studio.routers.keyframes` a project's keyframes, their thumbnails, interpolate, in-betweens
- :mod:`studio.routers.jobs`      render, a job, its cancel, its events
- :mod:`studio.routers.media`     the page (/ and /static), frame states, the video, the contact sheet
- :mod:`studio.routers.common`    the dependencies they share (the store, the worker, bodies, files)

Each handler is a model in (:mod:`studio.schemas`), a call into :mod:`studio.keyframes`, the
store or the worker, and a model out; errors are raised, and :mod:`studio.app` says them.
"""

from studio.routers import jobs, keyframes, media, projects

ROUTERS = (projects.router, keyframes.router, jobs.router, media.router)
