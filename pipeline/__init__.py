"""The top floor: the ``artwalk`` command, which composes the stages into walks.

::

    artwalk/            ground floor: the core every stage shares (no stage imported)
    diffusion_models/   frame_interpolation/   super_resolution/   generate_videos.py
                        the four stages: each imports the core, never another stage
    pipeline/           this package: the only code that knows every stage

- :mod:`pipeline.walk`: a walk's flags (the stages' own, from their configs), its plan
  and checks, ``OUT/walk.json``, and the four stages run in order;
- :mod:`pipeline.presets`: the cpu and gpu engine sets, and ``auto``;
- :mod:`pipeline.cli`: ``artwalk run|plan|models``.

``python -m pipeline`` is the same as the ``artwalk`` command.
"""
