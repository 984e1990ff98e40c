"""Prompt walks on tiny random SD 1.x, SDXL and Kandinsky models, through the real loader.

Composable prompts (weight 0, negative weights), long prompts, conditioning SLERP, the
keyframes at their exact frames in each density, the cache after an edit, and the
walk into a video through `artwalk prompts` and full_pipeline.sh.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from artwalk.images import read_frame  # noqa: E402
from artwalk.schedule import Part  # noqa: E402
from conftest import DEVICE, REPO  # noqa: E402
from diffusion_models import KeyframeConfig, interpolate, keyframe_from_prompt  # noqa: E402
from diffusion_models.conditioning import Conditioning, mix  # noqa: E402
from diffusion_models.engines import ENGINES  # noqa: E402
from diffusion_models.prompt_walk import plan_prompts  # noqa: E402
from diffusion_models.slerp import angle  # noqa: E402
from conftest import count_frames  # noqa: E402

W, H = 64, 40
STEPS = 2
SIZE = (W, H)


@pytest.fixture(scope="module")
def models(tiny_built) -> dict[str, Path]:
    return tiny_built("sd", "sdxl", "kandinsky-prior", "kandinsky-decoder")


def options(models, kind: str) -> dict:
    if kind == "kandinsky":
        return {"engine": "kandinsky", "model": str(models["kandinsky-decoder"]),
                "prior_model": str(models["kandinsky-prior"])}
    return {"engine": "sd", "model": str(models[kind])}


@pytest.fixture(scope="module")
def engines(models):
    """One engine per model kind, made through the stage's registry."""
    made = {}
    for kind in ("sd", "sdxl", "kandinsky"):
        opts = options(models, kind)
        made[kind] = ENGINES.create(opts.pop("engine"), {**opts, "steps": STEPS, "device": DEVICE}, progress=False)
    return made


def render(engine, parts, negative="", seed=3):
    cond = engine.conditioning(parts, negative, seed, None, SIZE)
    return engine.render(cond), cond


# --------------------------------------------------------------------------------------------
# Composable prompts

@pytest.mark.parametrize("kind", ["sd", "sdxl", "kandinsky"])
def test_composable_weights(engines, kind):
    engine = engines[kind]
    plain, _ = render(engine, [Part("a red house")])
    assert plain.shape == (H, W, 3) and plain.dtype == np.float32
    # A part of weight 0 has no effect at all.
    zero, _ = render(engine, [Part("a red house"), Part("a lightning storm", 0.0)])
    assert np.array_equal(zero, plain)
    # Two parts differ from one.
    both, _ = render(engine, [Part("a red house"), Part("a lightning storm")])
    assert not np.array_equal(both, plain)
    # A negative weight puts the part on the negative side: the same as --neg.
    negative_part, cond = render(engine, [Part("a red house"), Part("blurry", -1.0)])
    as_neg, _ = render(engine, [Part("a red house")], negative="blurry")
    assert np.array_equal(negative_part, as_neg) and not np.array_equal(as_neg, plain)
    assert [t.text for t in cond.positive] == ["a red house"] and [t.text for t in cond.negative] == ["blurry"]
    # The same prompt and seed give the same bytes; another seed another image.
    assert np.array_equal(render(engine, [Part("a red house")])[0], plain)
    assert not np.array_equal(render(engine, [Part("a red house")], seed=4)[0], plain)


def test_short_prompts_encode_and_render_as_diffusers_does(engines):
    """One prompt of weight 1 (within 75 tokens): the same embeddings and the same image as
    diffusers' own pipeline from the same initial noise."""
    for kind in ("sd", "sdxl"):
        engine = engines[kind]
        pipe = engine.text2image.pipe
        image, cond = render(engine, [Part("a red house")], seed=5)
        if kind == "sd":
            theirs = pipe.encode_prompt("a red house", pipe._execution_device, 1, False)[0]
            assert torch.equal(cond.positive[0].tensors["embeds"], theirs.float())
        out = pipe(prompt="a red house", height=H, width=W, num_inference_steps=STEPS, guidance_scale=engine.guidance,
                   latents=cond.noise.to(pipe.unet.dtype), output_type="np").images[0]
        assert np.array_equal(image, out.astype(np.float32)), kind


def test_long_prompts_are_chunked_for_sd_and_cut_for_kandinsky(engines, caplog):
    # The tiny tokenizer makes one token of each character: 150 of them are exactly two chunks.
    encode = engines["sd"].text2image.encode
    two = encode("x" * 75 + " " + "y" * 75)["embeds"]
    assert two.shape[1] == 2 * 77
    assert torch.equal(two[:, :77], encode("x" * 75)["embeds"]) and torch.equal(two[:, 77:], encode("y" * 75)["embeds"])
    words = ("lighthouse on a cliff at dusk, " * 400)[:10_000]
    cond = engines["sd"].conditioning([Part(words)], "", 1, None, SIZE)
    embeds = cond.positive[0].tensors["embeds"]
    assert embeds.shape[1] % 77 == 0 and embeds.shape[1] > 77  # 75-token chunks, concatenated
    xl = engines["sdxl"].conditioning([Part(words)], "", 1, None, SIZE)
    assert xl.positive[0].tensors["embeds"].shape[1] == embeds.shape[1] and "pooled" in xl.positive[0].tensors
    assert engines["sdxl"].render(xl).shape == (H, W, 3)
    with caplog.at_level(logging.WARNING):
        engines["kandinsky"].conditioning([Part(words)], "", 1, None, SIZE)
    cut = [r.getMessage() for r in caplog.records if "cut" in r.getMessage()]
    assert len(cut) == 1 and "dropping: " in cut[0] and "words)" in cut[0]


# --------------------------------------------------------------------------------------------
# SLERP of conditionings

@pytest.mark.parametrize("kind", ["sd", "kandinsky"])
def test_mix_ends_exact_and_keeps_norms(engines, kind):
    engine = engines[kind]
    image_a, a = render(engine, [Part("a corgi")], seed=1)
    image_b, b = render(engine, [Part("a lion"), Part("a storm", 0.5)], seed=2)
    start, end = mix(a, b, 0.0), mix(a, b, 1.0)
    name = "embeds" if kind == "sd" else "image_embeds"
    assert torch.equal(start.noise, a.noise) and torch.equal(end.noise, b.noise)
    assert torch.equal(start.positive[0].tensors[name], a.positive[0].tensors[name])
    assert len(start.positive) == 1  # b's second part is at weight 0 at t = 0: left out
    assert [t.weight for t in end.positive] == [1.0, 0.5]
    # The images at the ends are the keyframes' own bytes.
    ends = interpolate_with(engine, a, b, [0.0, 1.0])
    assert np.array_equal(ends[0], image_a) and np.array_equal(ends[1], image_b)
    # In between: the noise keeps its norm and moves at a constant angle.
    theta = angle(a.noise, b.noise)
    for t in (0.25, 0.5):
        m = mix(a, b, t)
        assert float(m.noise.norm()) == pytest.approx(float(a.noise.norm()) * (1 - t) + float(b.noise.norm()) * t,
                                                      rel=1e-5)
        assert angle(a.noise, m.noise) == pytest.approx(t * theta, rel=1e-4)
        assert m.positive[1].weight == pytest.approx(0.5 * t) and m.positive[1].text == "a storm"
    # A conditioning survives its file.
    again = Conditioning.from_bytes(b.to_bytes())
    assert np.array_equal(engine.render(again), image_b)


def test_in_betweens_move_smoothly_through_the_middle(engines):
    """No jump where the in-between's nearer keyframe changes: Kandinsky's decoder draws noise
    at every step (DDPM), so prompt walks run it deterministically."""
    engine = engines["kandinsky"]
    _, a = render(engine, [Part("a corgi")], seed=1)
    _, b = render(engine, [Part("a lion")], seed=2)
    frames = interpolate_with(engine, a, b, [0.48, 0.49, 0.5, 0.51])
    steps = [float(np.abs(y - x).mean()) for x, y in zip(frames, frames[1:])]
    # Equal steps of t, equal changes: the step across 0.5 is no bigger than its neighbours
    # (with the per-step noise of one seed, then the other's, it was 1.6 times as big).
    assert max(steps) < 1.2 * min(steps), steps


def interpolate_with(engine, a, b, times):
    from diffusion_models.prompt_walk import interpolate as run_interpolate

    return list(run_interpolate(a, b, times, engine))


def test_turbo_checkpoints_bring_their_steps_guidance_and_scheduler(models):
    from diffusers import AutoPipelineForText2Image

    engine = ENGINES.create("sd", {"model": "sd-turbo", "device": DEVICE}, progress=False)
    assert (engine.steps, engine.guidance) == (1, 0.0)  # the registry row's, not the engine's 50 and 7.5
    assert ENGINES.create("sd", {"model": "sd-turbo", "steps": 4}, progress=False).steps == 4  # a flag still wins
    engine.attach(text=AutoPipelineForText2Image.from_pretrained(models["sd"], local_files_only=True))
    scheduler = engine.text2image.pipe.scheduler
    assert type(scheduler).__name__ == "EulerDiscreteScheduler" and scheduler.config.timestep_spacing == "trailing"
    image, cond = render(engine, [Part("a corgi")])
    assert image.shape == (H, W, 3) and cond.guidance == 0.0
    assert engine.text_identity()["scheduler"] == {"class": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}


def test_library_functions(models):
    settings = KeyframeConfig(width=W, height=H, steps=STEPS, device=DEVICE, **options(models, "sd"))
    image, cond = keyframe_from_prompt("a red house:1.2 | a storm:0.8 --neg blurry", settings)
    assert image.shape == (H, W, 3)
    assert [(t.text, t.weight) for t in cond.positive] == [("a red house", 1.2), ("a storm", 0.8)]
    assert cond.negative_text == "blurry"
    other, cond_b = keyframe_from_prompt("a lion", settings)
    frames = interpolate(cond, cond_b, [0.0, 0.5, 1.0], settings)
    assert np.array_equal(frames[0], image) and np.array_equal(frames[2], other)
    assert not np.array_equal(frames[1], image) and not np.array_equal(frames[1], other)


# --------------------------------------------------------------------------------------------
# Frames: keyframes at their exact frames, in each density

SCHEDULE = "0: a corgi\n5: a lion | a storm:0.5\n12: a lighthouse --neg fog\n"


def plan(density, frames=None, schedule=SCHEDULE):
    config = KeyframeConfig(prompts=schedule, run_dir=Path("unused"), engine="sd", diffuse=density, frames=frames,
                            width=W, height=H)
    return plan_prompts(config, {"engine": "test"}, 7.5)


def test_in_between_positions_for_each_density():
    assert [kf.frame for kf in plan("keyframes").keyframes] == [0, 5, 12]
    assert plan("keyframes").segments == [] and plan("keyframes").frames == 13
    every = plan("every", frames=15)
    assert [s.frames for s in every.segments] == [[1, 2, 3, 4], list(range(6, 12))]
    assert every.frames == 15 and every.unique_frames == 13
    assert all(0 < t < 1 for s in every.segments for t in s.fractions)
    assert every.segments[0].fractions == sorted(every.segments[0].fractions)
    two = plan("2")
    assert [s.frames for s in two.segments] == [[2, 3], [7, 10]]
    assert two.segments[1].fractions == [2 / 7, 5 / 7]
    many = plan("50")  # never more than a segment's gap
    assert [s.frames for s in many.segments] == [[1, 2, 3, 4], list(range(6, 12))]
    # No frame 0: the first prompt holds from frame 0.
    late = plan("keyframes", schedule="3: a corgi\n8: a lion")
    assert [kf.frame for kf in late.keyframes] == [3, 8] and late.frames == 9 and late.unique_frames == 6


def test_seeds_follow_the_prompt_text_not_the_position():
    a = plan("keyframes", schedule="0: a corgi\n10: a lion")
    b = plan("keyframes", schedule="0: a fox\n4: a corgi\n10: a lion")
    assert a.keyframes[0].seed == b.keyframes[1].seed and a.keyframes[1].seed == b.keyframes[2].seed
    fixed = KeyframeConfig(prompts="0: a corgi\n10: a lion", run_dir=Path("x"), engine="sd",
                           seed_schedule="0:(42), 10:(7)")
    assert [k.seed for k in plan_prompts(fixed, {}, 7.5).keyframes] == [42, 7]
    guided = KeyframeConfig(prompts="0: a corgi\n10: a lion", run_dir=Path("x"), engine="sd", diffuse="every",
                            guidance_schedule="0:(2), 10:(12)")
    walk = plan_prompts(guided, {}, 7.5)
    assert [k.guidance for k in walk.keyframes] == [2.0, 12.0]
    assert walk.segments[0].guidances == [2.0 + k for k in range(1, 10)]


def run_walk(models, kind, tmp_path, density, schedule=SCHEDULE, motion="flow", extra=(), name="walk",
             quiet=True):
    from pipeline.cli import main

    out = tmp_path / name
    opts = options(models, kind)
    args = ["prompts", schedule, str(out), "--engine", opts["engine"], "--keyframe-model", opts["model"],
            "--steps", str(STEPS), "--w", str(W), "--h", str(H), "--no-upscale", "--diffuse", density,
            "--device", DEVICE, *(["-q"] if quiet else []), *extra]
    if "prior_model" in opts:
        args += ["--prior-model", opts["prior_model"]]
    if motion is not None:
        args += ["--motion-engine", motion]
    assert main(args) == 0
    return out


@pytest.mark.parametrize("kind", ["sd", "sdxl", "kandinsky"])
@pytest.mark.parametrize("density", ["every", "keyframes", "2"])
def test_prompt_walk_into_a_video(models, tmp_path, kind, density):
    schedule = tmp_path / "walk prompts ü.txt"
    schedule.write_text(SCHEDULE)
    out = run_walk(models, kind, tmp_path, density, schedule=str(schedule), extra=["--frames", "15", "--fps", "6"],
                   motion=None if density == "every" else "flow")
    frames, fps, size = count_frames(out / "walk.mp4")
    assert (frames, fps, size) == (15, 6.0, (W, H))
    motion = json.loads((out / "frames" / "manifest.json").read_text())
    keys = json.loads((out / "keyframes" / "manifest.json").read_text())
    timeline, unique = motion["timeline"], motion["frames"]
    assert len(timeline) == 15
    assert motion["engine"]["engine"] == ("none" if density == "every" else "flow")
    # Each keyframe sits at exactly its frame, and that frame is its text-to-image bytes.
    settings = KeyframeConfig(width=W, height=H, steps=STEPS, device=DEVICE, **options(models, kind))
    by_frame = {e["frame"]: e for e in keys["outputs"]}
    for frame, prompt in ((0, "a corgi"), (5, "a lion | a storm:0.5"), (12, "a lighthouse --neg fog")):
        entry = unique[timeline[frame]]
        assert entry["path"] == by_frame[frame]["path"] and entry["kind"] == "keyframe"
        image, _ = keyframe_from_prompt(prompt, settings)
        assert np.array_equal(read_frame(out / entry["path"]), np.clip(np.rint(image * 255), 0, 255) / 255)
    assert timeline[12:] == [timeline[12]] * 3  # held after the last keyframe
    diffused = {"every": 10, "keyframes": 0, "2": 4}[density]
    assert sum(e["kind"] == "inbetween" for e in keys["outputs"]) == diffused
    assert sum(e["kind"] == "motion" for e in unique) == 10 - diffused
    assert len(set(timeline)) == 13  # frames 0..12 all differ in reference
    # The contact sheet shows the schedule's three keyframes, not every diffused frame.
    from PIL import Image

    from generate_videos import sheet_size

    with Image.open(out / "walk_keyframes.png") as sheet:
        assert sheet.size == sheet_size(3, (W, H))


def test_editing_one_prompt_recomputes_its_two_segments(models, tmp_path, capsys):
    five = "0: a corgi\n4: a lion\n8: a storm\n12: a lighthouse\n16: a fox\n"
    out = run_walk(models, "sd", tmp_path, "every", schedule=five, motion=None)
    before = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    capsys.readouterr()
    run_walk(models, "sd", tmp_path, "every", schedule=five.replace("a storm", "a tornado"), motion=None, quiet=False)
    log_lines = capsys.readouterr().err.splitlines()
    summary = next(line for line in log_lines if line.startswith("keyframes:"))
    # 5 keyframes and 4 segments: the edited keyframe and its two segments are new.
    assert "6 unit(s) reused, 3 recomputed" in summary, summary
    after = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    changed = [b["frame"] for a, b in zip(before, after) if a["sha256"] != b["sha256"]]
    assert changed == list(range(5, 12)), changed  # the segments 4 -> 8 -> 12, and frame 8 itself
    assert [e["frame"] for e in after] == list(range(17))


def test_prompt_walk_refusals(models, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "refused"
    opts = options(models, "sd")
    base = ["prompts", "0: a corgi\n6: a lion", str(out), "-q"]
    model = ["--engine", "sd", "--keyframe-model", opts["model"]]
    cases = [
        (["--engine", "none"], "makes its keyframes from text"),
        ([*model, "--motion-engine", "none"], "motion engine none"),
        ([*model, "--diffuse", "sometimes"], "--diffuse must be every, keyframes or a number"),
        ([*model, "--frames", "4"], "line 2"),
        ([*model, "--guidance-schedule", "0:(x)"], "--guidance-schedule, line 1, column 4"),
    ]
    for flags, expected in cases:
        capsys.readouterr()
        code = main([*base, *flags])
        err = capsys.readouterr().err.strip()
        assert code != 0 and expected in err and len(err.splitlines()) == 1, (flags, err)
        assert not (out / "keyframes").exists()
    with pytest.raises(SystemExit):  # an image walk has no --diffuse: argparse's one line
        main(["run", str(tmp_path), str(out), "--diffuse", "every", "-q"])
    assert "artwalk run: unknown flag --diffuse" in capsys.readouterr().err


def test_full_pipeline_sh_prompts(models, tmp_path):
    schedule = tmp_path / "prompts.txt"
    schedule.write_text("0: a corgi\n0.5s: a lion\n")
    out = tmp_path / "sh walk"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    opts = options(models, "sd")
    proc = subprocess.run(
        ["bash", str(REPO / "full_pipeline.sh"), "--prompts", str(schedule), "--output", str(out), "--engine", "sd",
         "--keyframe-model", opts["model"], "--steps", str(STEPS), "--w", str(W), "--h", str(H), "--fps", "8",
         "--diffuse", "1", "--motion-engine", "blend", "--no-upscale", "--device", DEVICE, "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    frames, fps, _ = count_frames(out / "sh walk.mp4")
    assert (frames, fps) == (5, 8.0)
    keys = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    assert [(e["frame"], e["kind"]) for e in keys] == [(0, "keyframe"), (2, "inbetween"), (4, "keyframe")]


def test_what_changes_a_keyframe_changes_its_key():
    base = plan("keyframes", schedule="0: a red house\n8: a lion")
    # A weight-0 part changes nothing, not even the seed.
    zero = plan("keyframes", schedule="0: a red house | a storm:0\n8: a lion")
    assert [k.key for k in zero.keyframes] == [k.key for k in base.keyframes]
    assert [k.seed for k in zero.keyframes] == [k.seed for k in base.keyframes]
    # The guidance does, given as --guidance (the engine's) or by a schedule.
    config = KeyframeConfig(prompts="0: a red house\n8: a lion", run_dir=Path("x"), engine="sd", width=W, height=H)
    assert plan_prompts(config, {"engine": "test"}, 2.0).keyframes[0].key != base.keyframes[0].key
    # Moving a keyframe keeps its unit (same prompt, same seed) but not the walk's layout.
    moved = plan("keyframes", schedule="0: a red house\n12: a lion")
    assert [k.key for k in moved.keyframes] == [k.key for k in base.keyframes] and moved.frames == 13


def test_a_moved_keyframe_makes_later_stages_refuse_the_old_timeline(models, tmp_path, walk_cli):
    out = run_walk(models, "sd", tmp_path, "keyframes", schedule="0: a corgi\n4: a lion")
    walk_cli("-m", "diffusion_models", "--prompts", "0: a corgi\n9: a lion", "--engine", "sd", "--model",
             str(models["sd"]), "--steps", str(STEPS), "--w", str(W), "--h", str(H), "-q", "--", str(out), check=True)
    proc = walk_cli("generate_videos.py", str(out), "--source", "frames", "-q")
    assert proc.returncode != 0 and "frames is out of date" in proc.stderr and len(proc.stderr.splitlines()) == 1
    # Stage 2 again (at the frame rate that placed the keyframes), and the video has the new length.
    proc = walk_cli("-m", "frame_interpolation", str(out), "--fps", "12", "-q")
    assert proc.returncode != 0 and "placed at 24 fps" in proc.stderr and len(proc.stderr.splitlines()) == 1
    walk_cli("-m", "frame_interpolation", str(out), "-q", check=True)
    walk_cli("generate_videos.py", str(out), "--source", "frames", "-q", check=True)
    assert count_frames(out / "walk.mp4")[0] == 10


def test_stage_one_keeps_a_prompt_walks_settings(models, tmp_path, walk_cli):
    out = tmp_path / "kept"
    walk_cli("-m", "diffusion_models", "--prompts", "0: a corgi\n3: a lion", "--engine", "sd", "--model",
             str(models["sd"]), "--steps", str(STEPS), "--w", str(W), "--h", str(H), "--diffuse", "every", "-q", "--",
             str(out), check=True)
    proc = walk_cli("-m", "diffusion_models", "--keep-settings", str(out))  # the schedule comes back too
    assert proc.returncode == 0, proc.stderr
    assert "3 unit(s) reused, 0 recomputed" in proc.stderr  # two keyframes, one segment


def test_refusals_before_any_work(models, tmp_path, walk_cli):
    img = tmp_path / "images"
    img.mkdir()
    from PIL import Image

    for k in range(2):
        Image.new("RGB", (64, 40), (40 * k, 90, 200)).save(img / f"{k}.png")
    out = tmp_path / "out"
    sd = ["--engine", "sd", "--model", str(models["sd"])]
    cases = [
        (["-m", "pipeline", "run", str(img), str(out), "--engine", "sd", "--model", str(models["sdxl"]), "-S", "1"],
         "an SDXL checkpoint"),
        (["-m", "pipeline", "plan", "--prompts", "0: a\n4: b", str(out), "--engine", "sd", "-S", "3", "-I", "2"],
         "--interpolation_steps, --sec_interpolation: for image walks"),
        (["-m", "pipeline", "prompts", "0: a\n4: b", str(out), *sd, "--fps", "0"], "--fps must be"),
        (["-m", "pipeline", "prompts", "0: a\n4: b", str(out), *sd, "--guidance-schedule", "0:(-1)"],
         "guidance must be in [0, 100]"),
        (["-m", "pipeline", "prompts", "0: a\n4: blurry:-1", str(out), *sd], "line 2, column 4"),
        (["-m", "pipeline", "prompts", "0: a\n4: b", str(out), *sd, "--diffuse", "every", "--motion-engine", "flow"],
         "--diffuse every leaves no frame to move"),
    ]
    for args, expected in cases:
        proc = walk_cli(*args, "-q")
        assert proc.returncode != 0 and expected in proc.stderr and len(proc.stderr.splitlines()) == 1, \
            (args, proc.stderr)
        assert not (out / "keyframes").exists()


@pytest.fixture
def walk_cli():
    """``python ARGS`` in a fresh interpreter, as a user runs the stage commands."""
    from conftest import run_cli

    def call(*args, check=False):
        return run_cli(*args, env={"HF_HUB_OFFLINE": "1"}, check=check)

    return call


def test_schedule_into_a_closed_pipe_is_quiet(tmp_path):
    proc = subprocess.run(f"'{sys.executable}' -m pipeline schedule '0: a corgi' --frames 200000 | head -1",
                          shell=True, cwd=REPO, capture_output=True, text=True, env={**os.environ,
                                                                                   "PYTHONPATH": str(REPO)})
    assert proc.stdout.split()[:2] == ["0", "0.00s"] and proc.stderr == ""
