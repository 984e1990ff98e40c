"""Tiny twins of every model in the registry, run through every engine path each serves (issue 26).

A twin has the real checkpoint's model_index.json (its pipeline and component classes), its
scheduler classes and scheduler configs (tests/twins/<registry name>/, each file naming where
it was taken from) and tiny random networks (tests/tiny_models.py). The twins are laid out in a
Hugging Face cache under the registry's hub ids, as `artwalk models download` leaves the real
ones, and the walks name them as a user does: by registry name, or not at all (the engines'
defaults). So SD 1.5 runs with PNDM, SD 2 inpainting with PNDM, SDXL with Euler, the turbo
checkpoints with their Euler schedulers and the registry's settings, Kandinsky with DDPM.

Then every scheduler of SD 1.5's ``compatibles`` that a checkpoint may ship runs a prompt walk
and an image walk, as a checkpoint folder of its own (the twin's networks, that scheduler).

    model                    paths run here
    sd15                     image walk, prompt walk, video init, zoom level 0
    sd2-inpaint              outpaint (image walks of sd and unclip), zoom levels 1+
    sd21-unclip              image walk
    sd-turbo                 image walk, prompt walk
    sdxl, sdxl-turbo         prompt walk, video init
    kandinsky-2-2-*          image walk, prompt walk, outpaint
    blip-*, clip-vit-*       interrogate
    magicprompt              inspire
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from artwalk.images import read_frame  # noqa: E402
from artwalk.models import REGISTRY  # noqa: E402
from conftest import DEVICE, EXAMPLES, small_copy  # noqa: E402

W, H = 64, 48  # 4:3, so every example image (1:1, 3:2) is outpainted
STEPS = 2
SCHEDULE = "0: a red house\n4: a blue boat | a storm:0.5 --neg fog\n"

_twins_dir = Path(__file__).resolve().parent / "twins"
TWINS = sorted(p.name for p in _twins_dir.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Every twin in a Hugging Face cache of its own, under its registry hub id; offline."""
    import huggingface_hub.constants as constants
    import tiny_models

    root = tmp_path_factory.mktemp("twins")
    cache = root / "hf" / "hub"
    folders = tiny_models.install_twins(cache, TWINS, root / "built")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(root / "hf"))
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        mp.setattr(constants, "HF_HUB_OFFLINE", True)
        yield folders


def pictures(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[1 : 1 + n], start=1):
        small_copy(src, folder / f"art{k}.png", 60)
    return folder


def outputs(out: Path) -> list[dict]:
    return json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]


def image(out: Path, entry: dict) -> np.ndarray:
    return read_frame(out / entry["path"])


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > 1e-3


def swaps(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "prompt walk:" in r.getMessage()]


# --------------------------------------------------------------------------------------------
# The twins are the real checkpoints' configurations

def test_every_registry_model_of_the_hub_has_a_twin():
    hub_models = {name for name, spec in REGISTRY.items() if spec.kind == "hub"}
    assert hub_models == set(TWINS)
    for name in TWINS:
        index = "model_index.json" if (_twins_dir / name / "model_index.json").is_file() else "config.json"
        assert REGISTRY[name].index == index
        for path in (_twins_dir / name).rglob("*.json"):
            assert json.loads(path.read_text())["_source"].strip(), path  # each says where it comes from


def test_twins_load_with_the_published_classes(hub):
    """What the loader reads from the cache is the checkpoint's own model_index and scheduler configs."""
    import diffusers
    import tiny_models

    for name in TWINS:
        folder = hub[name]
        if not (_twins_dir / name / "model_index.json").is_file():
            assert json.loads((folder / "config.json").read_text())["architectures"] == \
                tiny_models.twin_json(name, "config.json")["architectures"]
            continue
        index = tiny_models.twin_json(name, "model_index.json")
        assert json.loads((folder / "model_index.json").read_text()) == index
        for role in ("scheduler", "image_noising_scheduler"):
            if role in index:
                want = tiny_models.twin_json(name, f"{role}/scheduler_config.json")
                loaded = getattr(diffusers, index[role][1]).from_pretrained(folder, subfolder=role)
                assert type(loaded).__name__ == want["_class_name"] == index[role][1]
                for key, value in want.items():
                    if not key.startswith("_"):
                        assert loaded.config[key] == value, (name, role, key)
    assert tiny_models.twin_json("sd15", "model_index.json")["scheduler"] == ["diffusers", "PNDMScheduler"]


# --------------------------------------------------------------------------------------------
# Image walks, with the originals outpainted (each engine's own inpainting model)

@pytest.mark.parametrize("engine, model, inpaint", [
    ("sd", "sd15", "sd2-inpaint"),
    ("sd", "sd-turbo", "sd2-inpaint"),
    ("unclip", "sd21-unclip", "sd2-inpaint"),
    ("kandinsky", "kandinsky-2-2-decoder", "kandinsky-2-2-decoder-inpaint"),
])
def test_image_walk_with_outpainting(hub, tmp_path, engine, model, inpaint):
    from diffusion_models import KeyframeConfig, run
    from diffusion_models.outpaint import prepare
    from artwalk.images import load_image

    inp = pictures(tmp_path / "in")
    out = tmp_path / "out"
    # The engine's defaults name the registry models, except sd-turbo.
    result = run(KeyframeConfig(inp, out, width=W, height=H, engine=engine, interpolation_steps=1, outpaint=True,
                                steps=STEPS, device=DEVICE, progress=False,
                                **({"model": model} if model == "sd-turbo" else {})))
    assert (result.originals, result.inbetweens) == (2, 1)
    manifest = json.loads((out / "keyframes" / "manifest.json").read_text())
    ident = manifest["engine"]
    assert ident.get("model", ident.get("decoder")) == REGISTRY[model].source
    assert manifest["outpaint"]["inpaint"] == REGISTRY[inpaint].source
    entries = outputs(out)
    assert [e["kind"] for e in entries] == ["original", "inbetween", "original"]
    a, k, b = (image(out, e) for e in entries)
    assert a.shape == (H, W, 3) and differ(k, a) and differ(k, b)
    for src, got in ((inp / "art1.png", a), (inp / "art2.png", b)):
        canvas, mask = prepare(load_image(src), W, H)
        kept, bars = mask == 0, mask == 1
        assert bars.any() and np.abs(got[kept] - canvas[kept]).max() <= 1 / 255 + 1e-6  # the picture is kept
        assert differ(got[bars], canvas[bars])  # the bars were painted, not left as the blurred fill


# --------------------------------------------------------------------------------------------
# Prompt walks: the checkpoint's own scheduler (or the registry's, for the turbo models)

@pytest.mark.parametrize("engine, model, swap", [
    ("sd", "sd15", None),
    ("sd", "sd-turbo", "runs EulerDiscreteScheduler, timestep_spacing trailing, as the registry says (the "
                       "checkpoint ships EulerDiscreteScheduler)"),
    ("sd", "sdxl", None),
    ("sd", "sdxl-turbo", "runs EulerDiscreteScheduler, timestep_spacing trailing, as the registry says (the "
                         "checkpoint ships EulerAncestralDiscreteScheduler)"),
    ("kandinsky", None, "DDPMScheduler draws noise at every step; using DDIMScheduler"),
])
def test_prompt_walk(hub, tmp_path, caplog, engine, model, swap):
    from diffusion_models import KeyframeConfig, run

    caplog.set_level(logging.INFO, logger="diffusion_models")
    out = tmp_path / "walk"
    turbo = model is not None and "turbo" in model
    result = run(KeyframeConfig(prompts=SCHEDULE, run_dir=out, engine=engine, model=model, width=W, height=H,
                                diffuse="1", steps=None if turbo else STEPS, device=DEVICE, progress=False))
    manifest = json.loads((out / "keyframes" / "manifest.json").read_text())
    assert manifest["frames"] == 5 and result.inbetweens == 1
    entries = outputs(out)
    assert [(e["kind"], e["frame"]) for e in entries] == [("keyframe", 0), ("inbetween", 2), ("keyframe", 4)]
    first, middle, last = (image(out, e) for e in entries)
    assert first.shape == (H, W, 3) and differ(first, last) and differ(middle, first) and differ(middle, last)
    if turbo:
        assert manifest["engine"]["steps"] == 1 and manifest["engine"]["scheduler"]["class"] == "EulerDiscreteScheduler"
    said = swaps(caplog)
    if swap is None:
        assert said == []
    else:
        assert len([m for m in said if swap in m]) == 1, said


# --------------------------------------------------------------------------------------------
# Video init and zoom levels

@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from conftest import write_video

    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=6, fps=6, size=(W, H), audio=False)


@pytest.mark.parametrize("model", ["sd15", "sdxl", "sdxl-turbo"])
def test_video_init(hub, tmp_path, video, model):
    from diffusion_models import KeyframeConfig, run

    out = tmp_path / "restyled"
    turbo = "turbo" in model
    run(KeyframeConfig(prompts="0: a red fox\n3: a blue storm", video_init=video, run_dir=out, engine="sd",
                       model=model, every=3, strength=0.5 if turbo else 0.6, steps=None if turbo else STEPS,
                       width=W, height=H, color_match="none", device=DEVICE, progress=False))
    entries = outputs(out)
    assert [e["frame"] for e in entries] == [0, 3, 5]
    frames = [image(out, e) for e in entries]
    from artwalk.video import decode_frames, probe_video
    from diffusion_models.conform import conform

    info = probe_video(video)
    sources = dict(decode_frames(info.path, {e["source"]: None for e in entries}))
    for entry, got in zip(entries, frames):
        source = conform(sources[entry["source"]].astype(np.float32) / 255.0, W, H, "cover")
        assert got.shape == (H, W, 3) and differ(got, source)  # restyled, not copied
    assert differ(frames[0], frames[1])


def test_zoom_levels_with_the_default_models(hub, tmp_path):
    """sd15 draws level 0, sd2-inpaint paints the border of each level after it (its PNDM, its config)."""
    from diffusion_models.zoom import ZoomLevelsConfig, run_zoom

    out = tmp_path / "zoom"
    result = run_zoom(ZoomLevelsConfig(run_dir=out, prompts="0: a forest\n1: a city", levels=3, width=W, height=H,
                                       steps=STEPS, device=DEVICE, progress=False))
    assert result.levels == 3
    manifest = json.loads((out / "keyframes" / "manifest.json").read_text())
    levels = [image(out, e) for e in manifest["outputs"]]
    assert differ(levels[0], levels[1]) and differ(levels[1], levels[2])
    ident = json.dumps(manifest["engine"])
    assert REGISTRY["sd15"].source in ident and REGISTRY["sd2-inpaint"].source in ident


# --------------------------------------------------------------------------------------------
# Every scheduler a checkpoint of SD 1.5 may ship

def _needs_missing_package(cls) -> bool:
    try:
        cls()
    except ImportError:
        return True
    return False


def _compatibles():
    import diffusers

    names = sorted(c.__name__ for c in diffusers.PNDMScheduler().compatibles)
    return [n for n in names if not _needs_missing_package(getattr(diffusers, n))]


STOCHASTIC = {"DDPMScheduler": "DDIMScheduler", "EulerAncestralDiscreteScheduler": "EulerDiscreteScheduler",
              "KDPM2AncestralDiscreteScheduler": "KDPM2DiscreteScheduler"}


@pytest.fixture(scope="module")
def sd15_with(hub, tmp_path_factory):
    """name -> a folder of the sd15 twin that ships scheduler ``name`` (from the real PNDM config)."""
    import diffusers
    import tiny_models

    root = tmp_path_factory.mktemp("schedulers")
    real = tiny_models.twin_json("sd15", "scheduler/scheduler_config.json")
    index = tiny_models.twin_json("sd15", "model_index.json")

    def folder(name: str) -> Path:
        path = root / name
        if not path.is_dir():
            path.mkdir()
            for part in hub["sd15"].iterdir():
                if part.name not in ("scheduler", "model_index.json"):
                    (path / part.name).symlink_to(part)
            getattr(diffusers, name).from_config(real).save_pretrained(path / "scheduler")
            (path / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", name]}))
        return path

    return folder


def test_the_compatibles_cover_the_schedulers_that_crashed():
    names = set(_compatibles())
    assert {"PNDMScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler"} <= names
    assert set(STOCHASTIC) <= names


@pytest.mark.parametrize("scheduler", _compatibles())
def test_each_compatible_scheduler_walks_prompts_and_images(sd15_with, tmp_path, caplog, scheduler):
    from artwalk.schedule import Part
    from diffusion_models.conditioning import mix
    from diffusion_models.engines import ENGINES

    caplog.set_level(logging.INFO, logger="diffusion_models")
    folder = sd15_with(scheduler)
    engine = ENGINES.create("sd", {"model": str(folder), "steps": STEPS, "device": DEVICE}, progress=False)
    # Prompt walk: two keyframes and the conditioning halfway between them.
    a = engine.conditioning([Part("a red house")], "", 1, None, (W, H))
    b = engine.conditioning([Part("a blue boat"), Part("a storm", 0.5)], "fog", 2, None, (W, H))
    first, last, middle = engine.render(a), engine.render(b), engine.render(mix(a, b, 0.5))
    assert np.isfinite(middle).all() and differ(first, last) and differ(middle, first) and differ(middle, last)
    assert np.array_equal(engine.render(a), first)  # the same conditioning, the same bytes
    # One prompt of weight 1: diffusers' own pipeline, with the same scheduler, gives the same bytes.
    pipe = engine.text2image.pipe
    theirs = pipe(prompt="a red house", height=H, width=W, num_inference_steps=STEPS, guidance_scale=engine.guidance,
                  latents=a.noise.to(pipe.unet.dtype), output_type="np").images[0]
    assert np.array_equal(first, theirs.astype(np.float32))
    used = type(engine.text2image.pipe.scheduler).__name__
    said = swaps(caplog)
    if scheduler in STOCHASTIC:
        assert used == STOCHASTIC[scheduler]
        assert said == [f"prompt walk: {scheduler} draws noise at every step; using {used} so the in-betweens "
                        "move smoothly"]
    else:
        assert used == scheduler and said == []
    # Video init's img2img through the same loop.
    assert differ(engine.restyle(a, first, 0.5), first)
    # Image walk: the checkpoint's scheduler as it ships, in diffusers' img2img pipeline.
    pa, pb = (np.asarray(x, np.float32) for x in (first, last))
    (k,) = engine.inbetweens(pa, pb, [0.5], seed=3)
    assert type(engine.pipe.scheduler).__name__ == scheduler
    assert k.shape == (H, W, 3) and differ(k, pa) and differ(k, pb)


@pytest.fixture(scope="module")
def decoder_with(hub, tmp_path_factory):
    """name -> a folder of the Kandinsky 2.2 decoder twin that ships scheduler ``name``."""
    import diffusers
    import tiny_models

    root = tmp_path_factory.mktemp("decoders")
    real = tiny_models.twin_json("kandinsky-2-2-decoder", "scheduler/scheduler_config.json")
    index = tiny_models.twin_json("kandinsky-2-2-decoder", "model_index.json")

    def folder(name: str) -> Path:
        path = root / name
        if not path.is_dir():
            path.mkdir()
            for part in ("movq", "unet"):
                (path / part).symlink_to(hub["kandinsky-2-2-decoder"] / part)
            getattr(diffusers, name).from_config(real).save_pretrained(path / "scheduler")
            (path / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", name]}))
        return path

    return folder


def _decoder_compatibles():
    import diffusers

    names = sorted(c.__name__ for c in diffusers.DDPMScheduler().compatibles)
    return [n for n in names if not _needs_missing_package(getattr(diffusers, n))]


@pytest.mark.parametrize("scheduler", _decoder_compatibles())
def test_each_compatible_scheduler_in_kandinsky(decoder_with, caplog, scheduler):
    """Kandinsky's own loops (image walks, prompt walks) with a decoder that ships each scheduler."""
    from artwalk.schedule import Part
    from diffusion_models.engines import ENGINES

    caplog.set_level(logging.INFO, logger="diffusion_models")
    # PNDM from a config without skip_prk_steps begins with Runge-Kutta steps: four at least (diffusers').
    steps = 4 if scheduler == "PNDMScheduler" else STEPS
    engine = ENGINES.create("kandinsky", {"model": str(decoder_with(scheduler)), "steps": steps, "device": DEVICE},
                            progress=False)
    a = engine.conditioning([Part("a red house")], "", 1, None, (W, H))
    b = engine.conditioning([Part("a blue boat")], "", 2, None, (W, H))
    first, last = engine.render(a), engine.render(b)
    assert np.isfinite(first).all() and differ(first, last)
    said = swaps(caplog)
    assert said == ([f"prompt walk: {scheduler} draws noise at every step; using {STOCHASTIC[scheduler]} so the "
                     "in-betweens move smoothly"] if scheduler in STOCHASTIC else [])
    (k,) = engine.inbetweens(first, last, [0.5], seed=3)
    assert type(engine.decoder.scheduler).__name__ == scheduler
    assert k.shape == (H, W, 3) and np.isfinite(k).all() and differ(k, first) and differ(k, last)


# --------------------------------------------------------------------------------------------
# Interrogation and prompt inspiration

@pytest.mark.parametrize("caption, clip, target", [
    ("blip-large", "clip-vit-l-14", "sd1"),
    ("blip-base", "clip-vit-h-14", "sd2"),
])
def test_interrogate(hub, tmp_path, caption, clip, target):
    from pipeline.interrogate import InterrogateConfig, interrogate, read_rows

    folder = pictures(tmp_path / "images")
    config = InterrogateConfig(folder=folder, mode="fast", target=target, device=DEVICE, progress=False,
                               **({"caption_model": caption} if caption != "blip-large" else {}))
    assert config.caption_name == caption and config.clip_name == clip
    result = interrogate(config)
    rows = read_rows(config.csv_path)
    assert result.made == 2 and sorted(rows) == ["art1.png", "art2.png"] and all(rows.values())


def test_inspire_with_magicprompt(hub):
    from pipeline import inspire as lib

    assert lib.check_magicprompt() == REGISTRY["magicprompt"].source
    prompts = lib.inspire(["a lighthouse"], 3, seed=5, engine="magicprompt")
    assert len(set(prompts)) == 3 and all(p.startswith("a lighthouse") for p in prompts)
