"""Keyframe engines kandinsky, unclip and sd on tiny random models, offline.

The tiny pipelines (tests/tiny_models.py) are built once per session, saved with
``save_pretrained`` into bundle folders, and loaded back through the loader the
CLI uses (``--model <folder>``). Geometry, SLERP, prompts and outpaint masks are
tested without torch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from artwalk.errors import ConfigError, GpuMemoryError, InputError, WeightsMissingError
from conftest import DEVICE, EXAMPLES, run_cli, small_copy
from diffusion_models import outpaint as op
from diffusion_models.conform import conform
from diffusion_models.engines import ENGINES, engine_for_model
from artwalk.prompts import prompt_for, read_prompts_csv
from diffusion_models.runtime import crop_to, pad_to, padded_size
from diffusion_models.slerp import angle, slerp

NEURAL = ["kandinsky", "unclip", "sd"]


def create_engine(name: str, progress: bool = False, **options):
    """An engine through the stage's registry, as the stage makes it."""
    return ENGINES.create(name, options, progress=progress)
W, H = 70, 42  # a multiple of none of the models' factors (4 and 8 here, 64 and 8 for real)
STEPS = 2


# --------------------------------------------------------------------------------------------
# SLERP

def test_slerp_starts_and_ends_at_the_endpoints():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    assert np.array_equal(slerp(a, b, 0.0), a) and np.array_equal(slerp(a, b, 1.0), b)
    assert np.allclose(slerp(a, b, 1e-9), a, atol=1e-6) and np.allclose(slerp(a, b, 1 - 1e-9), b, atol=1e-6)
    assert slerp(a, b, 0.3).dtype == np.float32 and slerp(a, b, 0.3).shape == a.shape


def test_slerp_keeps_the_norm_and_moves_at_constant_angle():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 8, 8))
    b = rng.normal(size=(4, 8, 8))
    b *= np.linalg.norm(a) / np.linalg.norm(b)  # equal norms: every point keeps it
    theta = angle(a, b)
    for t in (0.1, 0.25, 0.5, 0.9):
        p = slerp(a, b, t)
        assert np.linalg.norm(p) == pytest.approx(np.linalg.norm(a), rel=1e-9)
        assert angle(a, p) == pytest.approx(t * theta, rel=1e-7)
    # Unlike lerp, whose midpoint sinks towards the origin.
    assert np.linalg.norm((a + b) / 2) < 0.8 * np.linalg.norm(slerp(a, b, 0.5))
    # Different norms: the norm moves linearly from |a| to |b|.
    c = 3.0 * b
    for t in (0.2, 0.7):
        expected = (1 - t) * np.linalg.norm(a) + t * np.linalg.norm(c)
        assert np.linalg.norm(slerp(a, c, t)) == pytest.approx(expected, rel=1e-9)


def test_slerp_nearly_parallel_and_opposite_vectors():
    rng = np.random.default_rng(3)
    a = rng.normal(size=256)
    for eps in (0.0, 1e-12, 1e-7):
        b = a + eps * rng.normal(size=256)
        p = slerp(a, b, 0.5)
        assert np.all(np.isfinite(p)) and np.allclose(p, (a + b) / 2, atol=1e-6)
    p = slerp(a, -a, 0.5)  # antipodal: still finite, on the sphere, deterministic
    assert np.all(np.isfinite(p)) and np.linalg.norm(p) == pytest.approx(np.linalg.norm(a))
    assert abs(np.dot(p, a)) < 1e-9 * np.linalg.norm(a) ** 2
    assert np.array_equal(p, slerp(a, -a, 0.5))
    assert np.array_equal(slerp(np.zeros(3), np.ones(3), 0.5), np.full(3, 0.5))
    with pytest.raises(ValueError):
        slerp(np.zeros(3), np.zeros(4), 0.5)


def test_slerp_on_half_precision_tensors():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 1280, generator=g).half(), torch.randn(1, 1280, generator=g).half()
    p = slerp(a, b, 0.5)
    assert p.dtype == torch.float16 and p.shape == a.shape
    ref = slerp(a.double().numpy(), b.double().numpy(), 0.5)
    assert np.allclose(p.double().numpy(), ref, atol=2e-3)


# --------------------------------------------------------------------------------------------
# Geometry, prompts, options (no torch)

def test_pad_and_crop_round_trip_to_the_model_multiple():
    rgb = np.random.default_rng(0).random((H, W, 3), dtype=np.float32)
    for multiple in (8, 64):
        pw, ph = padded_size(W, H, multiple)
        assert pw % multiple == ph % multiple == 0 and pw >= W and ph >= H and pw - W < multiple
        padded = pad_to(rgb, pw, ph)
        assert padded.shape == (ph, pw, 3)
        assert np.array_equal(crop_to(padded, W, H), rgb)


def test_prompts_csv(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('filename,prompt\nimg1.png,"a red house, at night"\n# skipped\nimg2,a storm\n\n', "utf-8")
    prompts = read_prompts_csv(path)
    assert prompts == {"img1.png": "a red house, at night", "img2": "a storm"}
    assert prompt_for("img1.png", prompts) == "a red house, at night"
    assert prompt_for("img2.jpg", prompts) == "a storm"  # by stem
    assert prompt_for("img3.png", prompts, "default") == "default"
    path.write_text("img1.png\n", "utf-8")
    with pytest.raises(InputError, match="line 1"):
        read_prompts_csv(path)


def test_engine_options_are_checked():
    with pytest.raises(ConfigError, match="unknown keyframes engine 'dalle'"):
        create_engine("dalle")
    with pytest.raises(ConfigError, match="does not take --steps"):
        create_engine("none", steps=4)
    assert create_engine("none", steps=None).identity() == {"engine": "none"}
    pytest.importorskip("diffusers")
    with pytest.raises(ConfigError, match="does not take --noise-level"):
        create_engine("sd", noise_level=3, device="cpu")
    with pytest.raises(ConfigError, match="does not take --vae-tiling"):
        create_engine("kandinsky", vae_tiling=True, device="cpu")
    with pytest.raises(ConfigError, match="--strength"):
        create_engine("kandinsky", strength=1.5, device="cpu")
    with pytest.raises(ConfigError, match="no denoising step"):
        create_engine("kandinsky", steps=1, strength=0.5, device="cpu")
    # sd's img2img always runs a step: one step at strength 0.5 (a turbo model) becomes two, one run.
    assert create_engine("sd", steps=1, strength=0.5, device="cpu").img2img_steps == 2
    assert create_engine("sd", steps=50, strength=0.6, device="cpu").img2img_steps == 50
    with pytest.raises(ConfigError, match="--cpu-offload"):
        create_engine("sd", cpu_offload=True, device="cpu")
    assert create_engine("sd", device="cpu").identity()["dtype"] == "float32"  # CPU default
    assert create_engine("sd", device="cpu", dtype="bfloat16").identity()["dtype"] == "bfloat16"


def test_engine_for_model():
    assert engine_for_model("kandinsky-2-2-decoder") == "kandinsky"
    assert engine_for_model("sd21-unclip") == "unclip"
    assert engine_for_model("stable-diffusion-v1-5/stable-diffusion-v1-5") == "sd"
    assert engine_for_model("someone/something") is None


# --------------------------------------------------------------------------------------------
# Outpaint geometry

def test_contain_box_is_where_conform_puts_the_image():
    rgb = np.random.default_rng(0).random((50, 30, 3), dtype=np.float32)
    x, y, w, h = op.contain_box(30, 50, W, H)
    assert (w, h) == (25, 42) and y == 0 and x == (W - 25) // 2
    mirror = conform(rgb, W, H, "contain-mirror")
    canvas, mask = op.prepare(rgb, W, H)
    assert np.array_equal(canvas[y : y + h, x : x + w], mirror[y : y + h, x : x + w])


@pytest.mark.parametrize("src", [(30, 50), (120, 40), (70, 42)])
def test_outpaint_mask_covers_exactly_the_added_area(src):
    x, y, w, h = op.contain_box(*src, W, H)
    added = np.ones((H, W), dtype=bool)
    added[y : y + h, x : x + w] = False
    hard = op.outpaint_mask(W, H, (x, y, w, h), feather=0)
    assert np.array_equal(hard > 0, added) and np.array_equal(hard == 1, added)
    soft = op.outpaint_mask(W, H, (x, y, w, h), feather=4)
    assert np.array_equal(soft == 1, added)  # the bars are painted fully
    ramp = (soft > 0) & (soft < 1)
    assert not (ramp & added).any()
    if added.any():
        assert ramp.any()
        # The ramp stays within 4 px of the added area, and falls as it goes inward.
        ys, xs = np.nonzero(ramp)
        by, bx = np.nonzero(added)
        near = np.min(np.abs(ys[:, None] - by[None]) + np.abs(xs[:, None] - bx[None]), axis=1)
        assert near.max() <= 4
    else:
        assert not soft.any()
    rgb = np.random.default_rng(0).random((src[1], src[0], 3), dtype=np.float32)
    canvas, mask = op.prepare(rgb, W, H, feather=4)
    painted = np.random.default_rng(1).random((H, W, 3), dtype=np.float32)
    out = op.composite(canvas, painted, mask)
    keep = mask == 0
    assert np.array_equal(out[keep], canvas[keep])
    assert np.allclose(out[mask == 1], painted[mask == 1])


# --------------------------------------------------------------------------------------------
# The engines on tiny models

@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, tiny_built) -> dict[str, Path]:
    """Bundle folders per engine (prior/, decoder/, unclip/, sd/, inpaint/), saved once."""
    pytest.importorskip("diffusers")
    import tiny_models

    root = tmp_path_factory.mktemp("tiny-models")
    built = tiny_built(*tiny_models.BUILDERS)
    layout = {
        "kandinsky": {"prior": "kandinsky-prior", "decoder": "kandinsky-decoder", "inpaint": "kandinsky-inpaint"},
        "unclip": {"unclip": "unclip", "inpaint": "sd-inpaint"},
        "sd": {"sd": "sd", "inpaint": "sd-inpaint"},
    }
    bundles = {}
    for engine, roles in layout.items():
        for role, name in roles.items():
            shutil.copytree(built[name], root / engine / role)
        bundles[engine] = root / engine
    return bundles


@pytest.fixture(scope="session")
def engines(tiny_bundles):
    """One engine per name, its models loaded once (lazily) for the whole session."""
    return {name: create_engine(name, model=str(tiny_bundles[name]), steps=STEPS, device=DEVICE, progress=False)
            for name in NEURAL}


@pytest.fixture(scope="session")
def pair():
    rng = np.random.default_rng(7)
    a = conform(rng.random((60, 80, 3), dtype=np.float32), W, H, "cover")
    b = conform(rng.random((60, 80, 3), dtype=np.float32), W, H, "cover")
    return a, b


@pytest.mark.parametrize("name", NEURAL)
def test_inbetweens_count_size_seed(engines, pair, name):
    engine = engines[name]
    a, b = pair
    fractions = [1 / 3, 2 / 3]
    first = list(engine.inbetweens(a, b, fractions, seed=11))
    assert len(first) == 2
    for img in first:
        assert img.shape == (H, W, 3) and img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
    again = list(engine.inbetweens(a, b, fractions, seed=11))
    assert all(np.array_equal(x, y) for x, y in zip(first, again))  # same seed: same bytes
    other = list(engine.inbetweens(a, b, fractions, seed=12))
    assert all(not np.array_equal(x, y) for x, y in zip(first, other))
    assert not np.array_equal(first[0], first[1])
    # One shared noise per pair: an in-between depends on its fraction and the pair's seed only,
    # so the order is the fractions' order and a lone fraction reproduces its image exactly.
    alone = list(engine.inbetweens(a, b, [2 / 3], seed=11))
    assert np.array_equal(alone[0], first[1])


def test_kandinsky_anchoring_and_negative_prompt(tiny_bundles, engines, pair):
    a, b = pair
    free = list(engines["kandinsky"].inbetweens(a, b, [0.25], seed=5))[0]
    anchored = create_engine("kandinsky", model=str(tiny_bundles["kandinsky"]), steps=4, strength=0.5,
                             negative_prompt="blurry", device=DEVICE, progress=False)
    ident = anchored.identity()
    assert ident["strength"] == 0.5 and ident["negative_prompt"] == "blurry"
    assert ident["decoder"].endswith("decoder") and ident["prior"].endswith("prior")
    one = list(anchored.inbetweens(a, b, [0.25, 0.75], seed=5))
    two = list(anchored.inbetweens(a, b, [0.25, 0.75], seed=5))
    assert all(np.array_equal(x, y) for x, y in zip(one, two))
    assert one[0].shape == (H, W, 3) and not np.array_equal(one[0], free)
    # Strength alone (same steps, no negative prompt) changes the in-between ...
    only_strength = create_engine("kandinsky", model=str(tiny_bundles["kandinsky"]), steps=STEPS, strength=0.5,
                                  device=DEVICE, progress=False)
    seen = []
    hook = only_strength.decoder.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(int(kwargs["timestep"])), with_kwargs=True)
    try:
        anchored_free = list(only_strength.inbetweens(a, b, [0.25], seed=5))[0]
    finally:
        hook.remove()
    assert not np.array_equal(anchored_free, free)
    # ... and the denoising runs only the last int(steps * strength) timesteps, as diffusers' img2img does.
    scheduler = only_strength.decoder.scheduler
    scheduler.set_timesteps(STEPS)
    assert seen == [int(t) for t in scheduler.timesteps[STEPS - int(STEPS * 0.5):]]


def test_sd_prompts_per_image(engines, pair):
    a, b = pair
    sd = engines["sd"]
    plain = list(sd.inbetweens(a, b, [0.5], seed=3))[0]
    prompted = list(sd.inbetweens(a, b, [0.5], seed=3, prompts=("a red house", "a storm")))
    again = list(sd.inbetweens(a, b, [0.5], seed=3, prompts=("a red house", "a storm")))
    assert np.array_equal(prompted[0], again[0]) and not np.array_equal(prompted[0], plain)


@pytest.mark.parametrize("name", NEURAL)
def test_outpaint_keeps_the_original_pixels(engines, name):
    engine = engines[name]
    rgb = np.random.default_rng(4).random((50, 30, 3), dtype=np.float32)  # portrait into a landscape frame
    out = op.outpaint(rgb, W, H, lambda canvas, region: engine.outpaint(canvas, region, 9), feather=3)
    canvas, mask = op.prepare(rgb, W, H, feather=3)
    assert out.shape == (H, W, 3) and out.dtype == np.float32
    keep = mask == 0
    assert keep.any() and np.array_equal(out[keep], canvas[keep])
    assert not np.allclose(out[mask == 1], canvas[mask == 1])  # the bars were painted
    again = op.outpaint(rgb, W, H, lambda canvas, region: engine.outpaint(canvas, region, 9), feather=3)
    assert np.array_equal(out, again)
    assert "inpaint" in engine.outpaint_identity()


# --------------------------------------------------------------------------------------------
# The stage: caching, outpainting inside the originals' units

def _images(folder: Path, n: int = 3, width: int = 72) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:n], start=1):
        small_copy(src, folder / f"art{k}.png", width)
    return folder


def test_stage_reuses_untouched_pairs(tmp_path, tiny_bundles):
    from diffusion_models import KeyframeConfig, run

    inp = _images(tmp_path / "in")
    out = tmp_path / "out"
    cfg = KeyframeConfig(inp, out, width=W, height=H, engine="kandinsky", interpolation_steps=2,
                         model=str(tiny_bundles["kandinsky"]), steps=STEPS, device=DEVICE, progress=False)
    first = run(cfg)
    assert (first.originals, first.inbetweens, first.computed) == (3, 4, 5)
    manifest = json.loads(first.manifest.read_text())
    assert manifest["engine"]["engine"] == "kandinsky" and manifest["engine"]["steps"] == STEPS
    seeds = [o["seed"] for o in manifest["outputs"] if o["kind"] == "inbetween"]
    assert len(seeds) == 4 and len(set(seeds)) == 2  # one seed per pair, recorded
    assert run(cfg).computed == 0
    # A changed third image: its original and the one pair that uses it are recomputed.
    small_copy(sorted(EXAMPLES.glob("0*"))[3], inp / "art3.png", 72)
    third = run(cfg)
    assert (third.computed, third.reused) == (2, 3)
    # Different steps: every pair again, the originals stay.
    fourth = run(replace(cfg, steps=STEPS + 1))
    assert (fourth.computed, fourth.reused) == (2, 3)


def test_stage_outpaint_and_prompts_csv(tmp_path, tiny_bundles):
    from artwalk.images import read_frame, save_png
    from diffusion_models import KeyframeConfig, run

    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    save_png(inp / "tall.png", rng.random((60, 36, 3), dtype=np.float32))
    save_png(inp / "wide.png", rng.random((42, 70, 3), dtype=np.float32))  # the walk's aspect: untouched
    (tmp_path / "p.csv").write_text("tall.png,a tower\nwide,a field\n", "utf-8")
    out = tmp_path / "out"
    cfg = KeyframeConfig(inp, out, width=W, height=H, engine="sd", interpolation_steps=1, outpaint=True,
                         model=str(tiny_bundles["sd"]), steps=STEPS, device=DEVICE, progress=False,
                         prompts_csv=tmp_path / "p.csv")
    result = run(cfg)
    manifest = json.loads(result.manifest.read_text())
    assert manifest["outpaint"]["inpaint"].endswith("inpaint")
    originals = [o for o in manifest["outputs"] if o["kind"] == "original"]
    tall = read_frame(out / originals[0]["path"])
    canvas, mask = op.prepare(read_frame(inp / "tall.png"), W, H)
    assert np.abs(tall[mask == 0] - canvas[mask == 0]).max() <= 0.5 / 255 + 1e-6  # kept, up to 8-bit PNG
    assert not np.allclose(tall[mask == 1], canvas[mask == 1])
    wide = read_frame(out / originals[1]["path"])
    assert np.array_equal(wide, read_frame(inp / "wide.png"))
    units = [json.loads(p.read_text()) for p in (out / "keyframes" / "units").glob("*/unit.json")]
    assert [u["prompts"] for u in units if "pair" in u] == [["a tower", "a field"]]
    assert run(cfg).computed == 0
    # The outpainting model's settings are part of the originals' keys.
    changed = run(replace(cfg, guidance=3.0))
    assert changed.computed == 3


# --------------------------------------------------------------------------------------------
# Missing weights

def test_missing_weights_is_one_typed_error(monkeypatch):
    pytest.importorskip("diffusers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = create_engine("sd", model="artwalk-tests/no-such-model", device=DEVICE, progress=False)
    a = np.zeros((16, 16, 3), dtype=np.float32)
    with pytest.raises(WeightsMissingError) as err:
        list(engine.inbetweens(a, a, [0.5], seed=0))
    msg = str(err.value)
    assert "\n" not in msg and "artwalk-tests/no-such-model" in msg and "artwalk models download" in msg
    with pytest.raises(WeightsMissingError, match="does not exist"):
        create_engine("sd", model="/no/such/folder", device="cpu").identity()


def test_missing_weights_cli_is_one_line(tmp_path):
    pytest.importorskip("diffusers")
    inp = _images(tmp_path / "in", n=2, width=48)
    proc = run_cli("-m", "diffusion_models", str(inp), str(tmp_path / "out"), "--engine", "kandinsky",
                   "--model", "artwalk-tests/no-such-decoder", "-S", "1", "--w", "32", "--h", "32", "-q")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "artwalk-tests/no-such-decoder" in errors[0]
    assert "artwalk models download" in errors[0]


def test_hub_id_loads_from_the_hf_cache_offline(tmp_path, tiny_bundles, monkeypatch):
    """A hub id resolves through HF_HUB_CACHE with HF_HUB_OFFLINE=1 (as after `artwalk models download`)."""
    import tiny_models

    cache = tmp_path / "hub"
    tiny_models.install_in_hub_cache(tiny_bundles["sd"] / "sd", "artwalk-tests/tiny-sd", cache)
    inp = _images(tmp_path / "in", n=2, width=48)
    out = tmp_path / "out"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run_cli("-m", "diffusion_models", str(inp), str(out), "--model", "artwalk-tests/tiny-sd", "-S", "1",
            "--w", "32", "--h", "24", "--steps", "2", "-q", check=True)
    manifest = json.loads((out / "keyframes" / "manifest.json").read_text())
    assert manifest["engine"]["model"] == "artwalk-tests/tiny-sd" and manifest["inbetweens_per_pair"] == 1


@pytest.mark.parametrize("name", NEURAL)
def test_out_of_gpu_memory_is_one_line_in_every_engine(engines, pair, name):
    import torch

    engine = engines[name]
    unet = engine.decoder.unet if name == "kandinsky" else engine.pipe.unet

    def out_of_memory(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = unet.register_forward_pre_hook(out_of_memory, with_kwargs=True)
    try:
        with pytest.raises(GpuMemoryError, match=rf"^{name} at \d+x\d+: out of GPU memory; try --attention-slicing"):
            list(engine.inbetweens(*pair, [0.5], seed=1))
    finally:
        hook.remove()
