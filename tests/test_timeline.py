"""The timeline maths of DESIGN.md section 4, checked frame by frame."""

from __future__ import annotations

import pytest

from artwalk.errors import ConfigError
from artwalk.timeline import MIN_STEP, EASINGS, Keyframe, TimelineSpec, build_timeline, ease, total_frames


def walk(n: int, s: int, spec: TimelineSpec, loop: bool) -> list[int]:
    """Build a timeline the way stage 2 does: keyframes 0..K-1, motion refs after them."""
    keys = []
    for i in range(n):
        keys.append(Keyframe(len(keys), True))
        if i < n - 1 or (loop and n > 1):
            keys.extend(Keyframe(len(keys), False) for _ in range(s))
    joins = len(keys) - 1 + (1 if loop and n > 1 else 0)
    next_ref = len(keys)
    segments = []
    for _ in range(joins):
        segments.append(list(range(next_ref, next_ref + spec.intervals - 1)))
        next_ref += spec.intervals - 1
    return build_timeline(keys, segments, spec)


CASES = [
    # n, S, I, F, fps, easing, loop
    (2, 0, 1.0, 1.0, 24, "linear", False),
    (4, 0, 3.0, 2.0, 24, "smoothstep", False),
    (3, 5, 2.5, 0.5, 30, "alpha", False),
    (5, 2, 0.5, 0.0, 25, "sinh", True),
    (1, 3, 2.0, 4.0, 24, "linear", True),
    (3, 1, 1 / 24, 1.0, 24, "linear", False),  # N = 1: keyframes back to back
    (2, 0, 1.0, 0.01, 29.97, "smoothstep", True),
]


@pytest.mark.parametrize("n,s,i,f,fps,easing,loop", CASES)
def test_total_matches_formula_and_layout(n, s, i, f, fps, easing, loop):
    spec = TimelineSpec(fps, i, f, easing)
    timeline = walk(n, s, spec, loop)
    pairs = n if (loop and n > 1) else n - 1
    h, big_n = max(1, round(f * fps)), round(i * fps)
    assert len(timeline) == n * h + pairs * s + pairs * (s + 1) * (big_n - 1)
    assert len(timeline) == total_frames(n, s, spec, loop)


def test_holds_are_references_and_joins_have_no_duplicates():
    spec = TimelineSpec(24, 1.0, 0.5, "smoothstep")  # H = 12, N = 24
    timeline = walk(3, 2, spec, loop=False)
    # Originals: refs 0, 3, 6 (each followed by its pair's two in-betweens) are held 12 times.
    runs = []
    for ref in timeline:
        if runs and runs[-1][0] == ref:
            runs[-1][1] += 1
        else:
            runs.append([ref, 1])
    held = [r for r in runs if r[1] > 1]
    assert held == [[0, 12], [3, 12], [6, 12]]
    # Every other reference appears exactly once: no keyframe repeated at a join.
    singles = [r for r in runs if r[1] == 1]
    assert len({r[0] for r in singles}) == len(singles)
    assert len(timeline) == 3 * 12 + 2 * 2 + 2 * 3 * 23


@pytest.mark.parametrize("name", list(EASINGS))
def test_easings_fix_endpoints_and_increase(name):
    assert ease(name, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert ease(name, 1.0) == pytest.approx(1.0, abs=1e-12)
    xs = [k / 100 for k in range(101)]
    ys = [ease(name, x) for x in xs]
    assert all(b > a for a, b in zip(ys, ys[1:]))


def test_segment_times_exact():
    spec = TimelineSpec(fps=4, sec_interpolation=1.0, sec_freeze=1.0, easing="linear")
    assert spec.segment_times() == [0.25, 0.5, 0.75]
    smooth = TimelineSpec(fps=4, sec_interpolation=1.0, sec_freeze=1.0, easing="smoothstep").segment_times()
    assert smooth == pytest.approx([0.15625, 0.5, 0.84375])
    alpha = TimelineSpec(fps=50, sec_interpolation=1.0, sec_freeze=1.0, easing="alpha").segment_times()
    assert alpha[16] == pytest.approx(0.25)  # t = 17/50 = 0.34 maps to a quarter
    assert alpha[32] == pytest.approx(0.75)  # t = 0.66 maps to three quarters
    eased = TimelineSpec(fps=4, sec_interpolation=1.0, sec_freeze=1.0, easing="eased").segment_times()
    assert eased == pytest.approx([(0.15625 + 0.25) / 2, 0.5, (0.84375 + 0.75) / 2])


@pytest.mark.parametrize("easing", list(EASINGS))
@pytest.mark.parametrize("seconds", [1, 3, 6, 10, 20, 60])
def test_no_time_is_within_one_8_bit_step_of_a_keyframe(easing, seconds):
    times = TimelineSpec(24, seconds, 0.0, easing).segment_times()
    assert times[0] >= MIN_STEP and 1 - times[-1] >= MIN_STEP
    assert all(a < b for a, b in zip(times, times[1:]))  # still rising strictly: no repeated time
    n = round(seconds * 24)
    raw = [ease(easing, k / n) for k in range(1, n)]
    if raw[0] >= MIN_STEP and 1 - raw[-1] >= MIN_STEP:
        assert times == raw  # curves that keep off the ends by themselves are untouched
    else:  # moved by one affine map: the midpoint of a symmetric curve stays the midpoint
        assert times == pytest.approx([MIN_STEP + (1 - 2 * MIN_STEP) * t for t in raw])


def test_rejects_bad_settings():
    with pytest.raises(ConfigError, match="under one frame"):
        TimelineSpec(24, 0.01, 1.0, "linear")
    with pytest.raises(ConfigError, match="easing"):
        TimelineSpec(24, 1.0, 1.0, "bouncy")
    with pytest.raises(ConfigError, match="fps"):
        TimelineSpec(0, 1.0, 1.0, "linear")
    for bad in (float("nan"), float("inf"), -1.0):  # a traceback before, from round(nan)
        with pytest.raises(ConfigError, match="--sec_interpolation"):
            TimelineSpec(24, bad, 1.0, "linear")
        with pytest.raises(ConfigError, match="--sec_freeze"):
            TimelineSpec(24, 1.0, bad, "linear")
        with pytest.raises(ConfigError, match="--fps"):
            TimelineSpec(bad, 1.0, 1.0, "linear")
