"""The realesrgan engine on tiny, seeded, random networks in the official layouts.

Each network is saved as the official files are (``{"params_ema": sd}`` / ``{"params": sd}``
.pth, or safetensors) and loaded back through the engine's real loader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch.nn import functional as F

from artwalk.errors import ConfigError, InputError, WeightsMissingError
from artwalk.models import REGISTRY, ModelSpec
from conftest import DEVICE, EXAMPLES, run_cli, small_copy
from artwalk.errors import GpuMemoryError, UnsupportedWeightsError
from artwalk.sizes import target_size
from super_resolution.engines import ENGINES
from super_resolution.realesrgan import RealESRGANEngine, interpolate_state_dicts, load_state_dict
from super_resolution.rrdbnet import RRDBNet, RRDBParams
from super_resolution.srvgg import SRVGGNetCompact, SRVGGParams

def upscale(engine, rgb, width, height):
    """One frame through the engine's interface."""
    return engine.upscale_batch([rgb], width, height)[0]


# name -> (network, how it is saved); small stand-ins for the official five.
LAYOUTS = {
    "RealESRGAN_x4plus.pth": (lambda: RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=4)),
                              "params_ema"),
    "RealESRGAN_x2plus.pth": (lambda: RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)),
                              "params_ema+params"),
    "realesr-general-x4v3.pth": (lambda: SRVGGNetCompact(SRVGGParams(num_feat=8, num_conv=4, scale=4)), "params"),
    "realesr-general-wdn-x4v3.pth": (lambda: SRVGGNetCompact(SRVGGParams(num_feat=8, num_conv=4, scale=4)),
                                     "params"),
    "realesr-animevideov3.safetensors": (lambda: SRVGGNetCompact(SRVGGParams(num_feat=8, num_conv=2, scale=4)),
                                         "safetensors"),
}
EXPECTED = {
    "RealESRGAN_x4plus.pth": ("RRDBNet", RRDBParams(8, 1, 4, 4)),
    "RealESRGAN_x2plus.pth": ("RRDBNet", RRDBParams(8, 1, 4, 2)),
    "realesr-general-x4v3.pth": ("SRVGGNetCompact", SRVGGParams(8, 4, 4)),
    "realesr-animevideov3.safetensors": ("SRVGGNetCompact", SRVGGParams(8, 2, 4)),
}
MODELS = list(EXPECTED)


def _state_dict(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = {k: v.clone() for k, v in LAYOUTS[name][0]().state_dict().items()}
    if "conv_last.bias" in sd:  # centre RRDB's random output in [0, 1], so clamping hides nothing
        sd["conv_last.bias"] += 0.5
    return sd


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> dict[str, Path]:
    """The five files in one folder; x2plus holds a different ``params`` that must be ignored."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for seed, (name, (_, how)) in enumerate(LAYOUTS.items()):
        sd, path = _state_dict(name, seed), folder / name
        if how == "safetensors":
            save_file(sd, str(path))
        elif how == "params_ema+params":
            torch.save({"params_ema": sd, "params": _state_dict(name, 100 + seed)}, path)
        else:
            torch.save({how: sd}, path)
        files[name] = path
    return files


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def engine(path: Path, **options) -> RealESRGANEngine:
    return RealESRGANEngine(model=str(path), device=DEVICE, **options)


@pytest.mark.parametrize("name", MODELS)
def test_architecture_and_scale_are_read_from_the_state_dict(weights, name):
    e = engine(weights[name], **({"denoise_strength": 1.0} if "general" in name else {}))
    arch, params = EXPECTED[name]
    assert (e.arch, e.params, e.scale) == (arch, params, params.scale)
    ident = e.identity()
    assert ident["arch"] == arch and ident["scale"] == params.scale and ident["dtype"] == "float32"
    assert len(ident["weights_sha256"]) == 64
    loaded = e.upscaler.net.state_dict()
    expected = load_state_dict(weights[name])
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)



# The official forward passes (BasicSR ``archs/rrdbnet_arch.py``, Real-ESRGAN
# ``archs/srvgg_arch.py``), transcribed as functions of a state dict with the official key
# names: an independent check of our modules, not only of their self-consistency.

def _official_rrdbnet(sd: dict, x: torch.Tensor, scale: int) -> torch.Tensor:
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    def unshuffle(t, s):  # BasicSR's arch_util.pixel_unshuffle
        b, c, hh, hw = t.shape
        return t.view(b, c, hh // s, s, hw // s, s).permute(0, 1, 3, 5, 2, 4).reshape(b, c * s * s, hh // s, hw // s)

    feat = conv("conv_first", {4: x, 2: unshuffle(x, 2), 1: unshuffle(x, 4)}[scale])
    body = feat
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    for i in range(n_blocks):
        rrdb_in = body
        for r in (1, 2, 3):
            feats = [body]
            for k in (1, 2, 3, 4):
                feats.append(lrelu(conv(f"body.{i}.rdb{r}.conv{k}", torch.cat(feats, 1))))
            body = conv(f"body.{i}.rdb{r}.conv5", torch.cat(feats, 1)) * 0.2 + body
        body = body * 0.2 + rrdb_in
    feat = feat + conv("conv_body", body)
    feat = lrelu(conv("conv_up1", F.interpolate(feat, scale_factor=2, mode="nearest")))
    feat = lrelu(conv("conv_up2", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))


def _official_srvgg(sd: dict, x: torch.Tensor, upscale: int) -> torch.Tensor:
    out, last = x, max(int(k.split(".")[1]) for k in sd)
    for i in range(last + 1):
        w = sd[f"body.{i}.weight"]
        out = F.prelu(out, w) if w.ndim == 1 else F.conv2d(out, w, sd[f"body.{i}.bias"], padding=1)
    return F.pixel_shuffle(out, upscale) + F.interpolate(x, scale_factor=upscale, mode="nearest")


@pytest.mark.parametrize("name", MODELS)
def test_networks_match_the_official_forward_pass(weights, name):
    e = engine(weights[name], **({"denoise_strength": 1.0} if "general" in name else {}))
    sd = load_state_dict(weights[name])
    x = torch.from_numpy(frame(12, 16, seed=5)).permute(2, 0, 1)[None]
    with torch.no_grad():
        ours = e.upscaler.net(x)
        ref = (_official_rrdbnet(sd, x, e.scale) if e.arch == "RRDBNet" else _official_srvgg(sd, x, e.scale))
    assert ours.shape == ref.shape == (1, 3, 12 * e.scale, 16 * e.scale)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert float(ref.std()) > 1e-3  # not a constant image: the comparison means something

def test_params_ema_is_preferred_and_bare_dicts_load(weights, tmp_path):
    path = weights["RealESRGAN_x2plus.pth"]
    raw = torch.load(path, weights_only=True)
    assert all(torch.equal(load_state_dict(path)[k], v) for k, v in raw["params_ema"].items())
    bare = tmp_path / "bare.pth"
    torch.save(raw["params"], bare)
    assert all(torch.equal(load_state_dict(bare)[k], v) for k, v in raw["params"].items())


@pytest.mark.parametrize("name", MODELS)
def test_odd_sizes_give_exact_shapes(weights, name):
    e = engine(weights[name])
    net_out = e.upscaler(torch.from_numpy(frame(13, 9)).permute(2, 0, 1)[None])
    assert net_out.shape == (1, 3, 13 * e.scale, 9 * e.scale)
    assert float(net_out.min()) >= 0.0 and float(net_out.max()) <= 1.0
    for w, h in [(23, 31), (17, 13), (40, 26)]:  # up, down and odd targets: Lanczos/area to exact size
        out = upscale(e, frame(13, 9), w, h)
        assert out.shape == (h, w, 3) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("name", MODELS)
def test_tiled_equals_untiled(weights, name):
    h, w = 61, 54  # wider than a tile plus two receptive radii: inner tiles do not see the whole frame
    rgb = frame(h, w, seed=1)
    whole = upscale(engine(weights[name]), rgb, w * 4, h * 4)
    tiled_engine = engine(weights[name], tile=12)
    np.testing.assert_allclose(upscale(tiled_engine, rgb, w * 4, h * 4), whole, atol=1e-5)
    assert tiled_engine.identity() == engine(weights[name]).identity()  # exact tiling shares the cache
    rough = engine(weights[name], tile=12, tile_pad=0)  # no context: the seams show
    assert np.abs(upscale(rough, rgb, w * 4, h * 4) - whole).max() > 1e-3
    assert rough.identity() != tiled_engine.identity()


def test_same_input_same_bytes_and_batches_match_single_frames(weights):
    path = weights["RealESRGAN_x2plus.pth"]
    a, b = frame(11, 15, seed=2), frame(11, 15, seed=3)
    first = upscale(engine(path), a, 30, 22)
    assert upscale(engine(path), a, 30, 22).tobytes() == first.tobytes()
    batch = engine(path).upscale_batch([a, b, frame(7, 9)], 30, 22)
    np.testing.assert_allclose(batch[0], first, atol=1e-5)
    np.testing.assert_allclose(batch[1], upscale(engine(path), b, 30, 22), atol=1e-5)
    assert batch[2].shape == (22, 30, 3)


def test_bfloat16_runs_on_cpu_and_is_in_the_identity(weights):
    e = engine(weights["realesr-animevideov3.safetensors"], dtype="bfloat16")
    out = upscale(e, frame(9, 11), 44, 36)
    ref = upscale(engine(weights["realesr-animevideov3.safetensors"]), frame(9, 11), 44, 36)
    assert out.dtype == np.float32 and np.abs(out - ref).mean() < 0.02
    assert e.identity()["dtype"] == "bfloat16"


def test_denoise_strength_is_the_weighted_sum_with_the_wdn_model(weights):
    general = weights["realesr-general-x4v3.pth"]
    a, b = load_state_dict(general), load_state_dict(weights["realesr-general-wdn-x4v3.pth"])
    e = engine(general, denoise_strength=0.3)
    got = e.upscaler.net.state_dict()
    for k in a:
        torch.testing.assert_close(got[k], 0.3 * a[k] + 0.7 * b[k])
    assert interpolate_state_dicts(a, b, 1.0)["body.0.weight"].equal(a["body.0.weight"])
    ident = e.identity()
    assert ident["denoise_strength"] == 0.3 and len(ident["wdn_weights_sha256"]) == 64
    default = engine(general)
    assert default.denoise_strength == 0.5 and default.identity() != ident
    alone = engine(general, denoise_strength=1.0)  # no interpolation: the x4v3 weights as they are
    assert "wdn_weights_sha256" not in alone.identity()
    assert all(torch.equal(alone.upscaler.net.state_dict()[k], a[k]) for k in a)


def test_denoise_strength_errors(weights, tmp_path):
    with pytest.raises(ConfigError, match="only to realesr-general-x4v3"):
        engine(weights["RealESRGAN_x4plus.pth"], denoise_strength=0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        engine(weights["realesr-general-x4v3.pth"], denoise_strength=1.5)
    lonely = tmp_path / "realesr-general-x4v3.pth"
    lonely.write_bytes(weights["realesr-general-x4v3.pth"].read_bytes())
    with pytest.raises(WeightsMissingError, match="realesr-general-wdn-x4v3.pth") as err:
        engine(lonely)
    assert "\n" not in str(err.value)
    assert engine(lonely, denoise_strength=1).scale == 4


def test_registry_names_find_the_wdn_companion_in_the_cache(weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("ARTWALK_CACHE", str(cache))
    for name in ("realesr-general-x4v3", "realesr-general-wdn-x4v3"):  # unpinned: these are random stand-ins
        monkeypatch.setitem(REGISTRY, name, ModelSpec(name, "file", f"https://example.invalid/{name}.pth",
                                                      "upscale", "BSD-3-Clause", "test", filename=f"{name}.pth"))
    (cache / "realesr-general-x4v3.pth").write_bytes(weights["realesr-general-x4v3.pth"].read_bytes())
    with pytest.raises(WeightsMissingError) as err:
        RealESRGANEngine(model="realesr-general-x4v3", device=DEVICE)
    assert "artwalk models download realesr-general-wdn-x4v3" in str(err.value)
    assert "--denoise-strength 1" in str(err.value) and "\n" not in str(err.value)
    (cache / "realesr-general-wdn-x4v3.pth").write_bytes(weights["realesr-general-wdn-x4v3.pth"].read_bytes())
    by_name = RealESRGANEngine(model="realesr-general-x4v3", device=DEVICE, denoise_strength=0.3)
    by_path = engine(weights["realesr-general-x4v3.pth"], denoise_strength=0.3)
    assert by_name.identity() == by_path.identity()


def test_missing_weights_name_the_download_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "empty cache"))
    if "RealESRGAN_x4plus" not in REGISTRY:  # the registry entry may land separately
        monkeypatch.setitem(REGISTRY, "RealESRGAN_x4plus", ModelSpec(
            "RealESRGAN_x4plus", "file", "https://example.invalid/RealESRGAN_x4plus.pth", "upscale", "BSD-3-Clause",
            "test stand-in", filename="RealESRGAN_x4plus.pth"))
    with pytest.raises(WeightsMissingError) as err:
        ENGINES.create("realesrgan", {"device": DEVICE})  # the default model
    message = str(err.value)
    assert "\n" not in message and "artwalk models download RealESRGAN_x4plus" in message
    with pytest.raises(WeightsMissingError, match="nowhere.pth"):
        RealESRGANEngine(model=str(tmp_path / "nowhere.pth"))


def test_unknown_layouts_and_unsafe_files_are_one_line_errors(tmp_path):
    odd = tmp_path / "odd.pth"
    torch.save({"params": {"encoder.weight": torch.zeros(3, 3)}}, odd)
    with pytest.raises(UnsupportedWeightsError, match="not a Real-ESRGAN RRDBNet or SRVGGNetCompact") as err:
        engine(odd)
    assert "\n" not in str(err.value)
    # An old-style ESRGAN / partial RRDB layout is refused too.
    sd = _state_dict("RealESRGAN_x4plus.pth", 0)
    del sd["conv_hr.weight"]
    torch.save({"params_ema": sd}, tmp_path / "partial.pth")
    with pytest.raises(UnsupportedWeightsError):
        engine(tmp_path / "partial.pth")
    pickled = tmp_path / "pickle.pth"
    torch.save({"params": {"x": Path("not a tensor")}}, pickled)
    with pytest.raises(InputError, match="holds Python objects besides tensors") as err:
        engine(pickled)
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)  # never suggests the unsafe load
    (tmp_path / "notes.pth").write_text("hello world\n")  # a text file: torch.load raised KeyError before
    with pytest.raises(InputError, match="notes.pth: cannot use these Real-ESRGAN weights: it is not a PyTorch"):
        engine(tmp_path / "notes.pth")


# ---------------------------------------------------------------- the stage, end to end

W, H = 24, 16


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """keyframes + motion frames of a two-image walk (4 unique frames, 24x16)."""
    from diffusion_models import KeyframeConfig
    from diffusion_models import run as run_keyframes
    from frame_interpolation import MotionConfig
    from frame_interpolation import run as run_motion

    root = tmp_path_factory.mktemp("walk")
    inp = root / "in"
    inp.mkdir()
    for k, src in enumerate(sorted(EXAMPLES.glob("0*"))[:2]):
        small_copy(src, inp / f"{k}.png", 40)
    out = root / "out"
    run_keyframes(KeyframeConfig(inp, out, width=W, height=H, progress=False))
    run_motion(MotionConfig(out, fps=4, sec_interpolation=0.75, sec_freeze=0.25, engine="blend", progress=False))
    return out


def test_stage_cli_upscales_every_frame_to_the_target(run_folder, weights):
    model = str(weights["RealESRGAN_x2plus.pth"])
    args = ["-m", "super_resolution", str(run_folder), "--engine", "realesrgan", "--model", model,
            "--target", "x2", "--device", "cpu"]
    run_cli(*args, "--batch", "3", "-q", check=True)
    manifest = json.loads((run_folder / "upscaled" / "manifest.json").read_text())
    source = json.loads((run_folder / "frames" / "manifest.json").read_text())
    assert manifest["size"] == [2 * W, 2 * H] == list(target_size("x2", W, H))
    assert manifest["engine"]["arch"] == "RRDBNet" and manifest["engine"]["scale"] == 2
    assert manifest["timeline"] == source["timeline"] and len(manifest["frames"]) == len(source["frames"]) == 4
    for f in manifest["frames"]:
        assert Image.open(run_folder / f["path"]).size == (2 * W, 2 * H)
    rerun = run_cli(*args, "--batch", "1", check=True)  # another batch size reuses every frame
    assert "4 unit(s) reused, 0 recomputed" in rerun.stderr


@pytest.mark.parametrize("model", ["RealESRGAN_x4plus", "a missing file.pth"])
def test_stage_cli_missing_weights_is_one_error_line(run_folder, tmp_path, monkeypatch, model):
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "empty cache"))
    if model.endswith(".pth"):
        model = str(tmp_path / model)
    proc = run_cli("-m", "super_resolution", str(run_folder), "--engine", "realesrgan", "--model", model)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    if model == "RealESRGAN_x4plus":  # where it looked, and how to get it
        assert lines[0] == (f"error: weights for RealESRGAN_x4plus (RealESRGAN_x4plus.pth) are not in {tmp_path}/empty "
                            "cache: run `artwalk models download RealESRGAN_x4plus` on a machine with network")
    else:  # a path the user gave: that file, and what else to give
        assert lines[0] == (f"error: weights file {model} not found (give a registry name from `artwalk models list` "
                            "or an existing file)")


def _out_of_memory(module, args):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_gpu_memory_is_one_line_that_says_what_to_lower(weights):
    e = engine(weights["RealESRGAN_x4plus.pth"])
    hook = e.upscaler.net.register_forward_pre_hook(_out_of_memory)
    try:
        with pytest.raises(GpuMemoryError, match=r"^realesrgan on a 13x9 input, batch 1: out of GPU memory; lower "
                                                 r"--batch, or pass --tile") as err:
            e.upscale_batch([frame(9, 13)], 52, 36)
    finally:
        hook.remove()
    assert "\n" not in str(err.value)
