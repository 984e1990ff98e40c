"""The timeline studio: a local web app and HTTP API over run folders (top floor).

::

    artwalk studio [ROOT] [--host 127.0.0.1] [--port 8765] [--allow-host NAME] [--token-file FILE]
                   [--models DIR] [--max-upload-mb 50]       (a token also from $ARTWALK_STUDIO_TOKEN)

Keyframes (uploaded images, or prompts made into images by the keyframe engine) sit on
a timeline in the browser; "Create video" renders the project's walk in the background,
and only the units whose inputs changed are made again, because a project is a run
folder like any other (:mod:`studio.projects` draws ROOT's tree). The API is FastAPI's,
documented at ``/openapi.json``; the page (``studio/static/``) is plain HTML and one
JavaScript module, with no build step.

- :mod:`studio.walks`     a project's settings as the walk's flags; the timeline's units
- :mod:`studio.projects`  the projects on disk, and the one place ids become paths
- :mod:`studio.keyframes` settings and keyframes in, frame states, in-betweens (what the routes call)
- :mod:`studio.jobs`      the render worker and its jobs
- :mod:`studio.guard`     who may ask: the Host, the origin of a change, the token, the body
- :mod:`studio.schemas`   the API's JSON, in and out, as pydantic models
- :mod:`studio.routers`   the routes, one router per resource
- :mod:`studio.app`       the app: the routers, the error handlers, the guard
- :mod:`studio.cli`       the command: the token from the environment or a file, ROOT's lock
"""
