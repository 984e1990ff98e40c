"""Caps on what one walk may ask for, so that any setting, from the command line or over the
studio's HTTP API, has a bounded cost. The values are here, once; the checks that use them
are the stages' config checks (``KeyframeConfig``, ``MotionConfig``), the walk's plan
(:func:`artwalk.plan.plan_counts`) and the studio, each through the functions below, so a
setting over a cap is the same one line wherever it is given.

Each cap is generous (far past what a walk is made with) and bounded (what it lets through
fits in a workstation's memory and in a JSON answer):

- :data:`MAX_INBETWEENS`: S, in-between artworks per pair. ArtWalks uses 5 to 30; each
  is a diffusion image, so 1,000 per pair is already hours of GPU time.
- :data:`MAX_FRAMES`: frames of one walk (and a prompt walk's ``--frames``). 1,000,000 is
  11.6 hours at 24 fps, 4.6 hours at 60; a walk's timeline is a list of frame references
  in stage 2's manifest, about 40 MB at this cap.
- :data:`MAX_FRAME_PIXELS`: W x H of the walk's frames, before upscaling: 8K UHD
  (7680 x 4320, 33 Mpx, 400 MB as float32 RGB). Each side stays in [16, 16384]
  (:mod:`artwalk.sizes`).
- :data:`MAX_INTERPOLATE_PIXELS`: W x H x n of the studio's "Interpolate" (n in-betweens of
  two keyframes, held at once): 2^26 pixels (67 Mpx), 64 at 1280 x 720 or 4 at 4096 x 4096
  (about 1.4 GB while they are made; 4096 x 4096 x 8 took 2.9 GB).
- :data:`MAX_PROMPT_CHARS`: characters of one prompt (``--prompt``, ``--negative``, a
  studio prompt keyframe); the same as a schedule line may have
  (``artwalk.schedule.MAX_LINE_CHARS``). CLIP reads 77 tokens, about 300 characters, a part.
"""

from __future__ import annotations

from artwalk.errors import ConfigError

MAX_INBETWEENS = 1_000
MAX_FRAMES = 1_000_000
MAX_FRAME_PIXELS = 7680 * 4320
MAX_INTERPOLATE_PIXELS = 2**26
MAX_PROMPT_CHARS = 20_000


def check_inbetweens(flag: str, steps: int) -> None:
    """One line unless ``steps`` in-betweens per pair is within [0, :data:`MAX_INBETWEENS`]."""
    if not 0 <= steps <= MAX_INBETWEENS:
        raise ConfigError(f"{flag} must be a whole number in [0, {MAX_INBETWEENS}] (in-betweens per pair), "
                          f"got {steps}")


def check_frames(frames: int, what: str = "the walk") -> None:
    """One line if ``what`` would have more than :data:`MAX_FRAMES` frames."""
    if frames > MAX_FRAMES:
        raise ConfigError(f"{what} would have {frames} frames, over the {MAX_FRAMES} a walk may have: fewer "
                          "in-betweens, shorter seconds or a lower fps")


def check_frame_pixels(width: int, height: int) -> None:
    """One line if a W x H frame is over :data:`MAX_FRAME_PIXELS`."""
    if width * height > MAX_FRAME_PIXELS:
        raise ConfigError(f"a {width}x{height} frame is {width * height / 1e6:.1f} Mpx, over the "
                          f"{MAX_FRAME_PIXELS / 1e6:.1f} Mpx (7680x4320) a walk's frame may have before upscaling")


def check_interpolate(width: int, height: int, n: int) -> None:
    """One line if n in-betweens of W x H are over :data:`MAX_INTERPOLATE_PIXELS` together."""
    if width * height * n > MAX_INTERPOLATE_PIXELS:
        most = max(1, MAX_INTERPOLATE_PIXELS // (width * height))
        raise ConfigError(f"{n} in-betweens of {width}x{height} are {width * height * n / 1e6:.0f} Mpx, over the "
                          f"{MAX_INTERPOLATE_PIXELS / 1e6:.0f} Mpx made at once: ask for at most {most}, or make the "
                          "frames smaller")


def check_prompt(what: str, text: str | None) -> None:
    """One line if the prompt ``text`` is over :data:`MAX_PROMPT_CHARS` characters."""
    if text is not None and len(text) > MAX_PROMPT_CHARS:
        raise ConfigError(f"{what} is {len(text)} characters long, over the {MAX_PROMPT_CHARS} a prompt may have")
