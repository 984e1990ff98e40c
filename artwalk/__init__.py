"""artwalk: videos that walk from one artwork to the next.

The core package every stage shares: the run folder and manifests
(:mod:`artwalk.runfolder`), image I/O (:mod:`artwalk.images`), the timeline maths
(:mod:`artwalk.timeline`), errors, atomic writes and the command line.
"""

__version__ = "0.1.0"
