"""bench/gpu_suite.py, the GPU suite of issue 32, kept from rotting until a device runs it.

The smoke runs every section's code on tiny models on the CPU, as a subprocess, the way the
device would run the real one; the full-size configurations are built on the meta device (no
memory, no compute) and their sizes checked against the published models; the budget and row
bookkeeping is checked in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "bench" / "gpu_suite.py"


def load_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return load_suite()


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run: its JSON, its markdown, and the folders it must not have written to."""
    root = tmp_path_factory.mktemp("gpu-suite")
    out, home, tmp = root / "out", root / "home", root / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "XDG_CACHE_HOME", "HF_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, str(SUITE), "--smoke", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads((out / "gpu_suite.json").read_text("utf-8"))
    return types.SimpleNamespace(out=out, home=home, tmp=tmp, data=data, stdout=proc.stdout,
                                 markdown=(out / "gpu_suite.md").read_text("utf-8"))


def test_smoke_fills_every_section_with_numbers(smoke, suite):
    data = smoke.data
    assert data["smoke"] is True and data["peak"]["bf16_tflops"] > 0
    assert set(data["sections"]) == set(suite.SECTIONS)
    for name, sec in data["sections"].items():
        assert sec["status"] == "done", (name, sec["status"], sec["reason"])
        assert sec["rows"], name
        for row in sec["rows"]:
            # smoke rows all run; on a device a row may be skipped, out of memory or unavailable, with a reason
            assert row["status"] == "ok", (name, row)
            assert any(is_number(v) for k, v in row.items() if k not in ("batch", "wall_s")), (name, row)
    names = {name: [r["name"] for r in sec["rows"]] for name, sec in data["sections"].items()}
    networks = ("RealESRGAN_x4plus", "RealESRGAN_x2plus", "realesr-general-x4v3", "realesr-animevideov3")
    for net in networks:
        for dtype in ("float16", "bfloat16", "float32"):
            for batch in suite.SMOKE.up_batches:
                assert f"{net} {dtype} b{batch}" in names["upscale"]
        assert any(n.startswith(net) and n.endswith("engine end to end") for n in names["upscale"])
        assert any(n.startswith(net) and n.endswith("channels_last") for n in names["upscale"])
        assert any(n.startswith(net) and n.endswith("compiled") for n in names["upscale"])
    for row in data["sections"]["upscale"]["rows"]:
        assert row["fps"] > 0
        if row["kind"] == "net":
            assert row["tflops"] > 0 and row["frac_peak"] > 0
    film = data["sections"]["film"]["rows"]
    grid = 3 * len(suite.SMOKE.film_sizes) * len(suite.SMOKE.film_batches)  # dtypes x sizes x batches
    assert len([r for r in film if r["kind"] == "net"]) == grid
    assert {r.get("time_mode") for r in film if r["kind"] == "engine"} == {"bisect", "exact"}
    kinds = [r["kind"] for r in data["sections"]["keyframes"]["rows"]]
    assert kinds.count("inbetween") == 3 and kinds.count("outpaint") == 1 and kinds.count("interrogate") == 1
    batched = [r for r in data["sections"]["keyframes"]["rows"] if r["kind"] in ("prompt walk", "video init")]
    assert sorted(r["batch"] for r in batched) == sorted(list(suite.SMOKE.prompt_batches) * 2)
    for row in batched:  # the batched emulation computes what the engine computes
        assert row["max_abs_diff"] < 1e-4, row


def test_smoke_walk_compares_the_two_configurations(smoke, suite):
    walk = smoke.data["sections"]["walk"]
    summary = walk["summary"]
    assert summary["ratio"] > 0 and summary["ratio_without_keyframes"] > 0
    counts = summary["counts"]
    n, S, fps = suite.WALK["images"], suite.WALK["S"], suite.SMOKE.walk_fps
    k = int(__import__("math").log2(suite.WALK["I"] * fps - 1))
    assert counts["artwalks"]["intervals"] == 2**k
    assert counts["ours"]["intervals"] == round(suite.WALK["I"] * fps)
    assert counts["artwalks"]["video_frames"] == suite.artwalks_frames(n, S, 2**k, int(suite.WALK["F"] * fps))
    assert counts["artwalks"]["extra_upscaled"] == counts["artwalks"]["video_frames"] - counts["artwalks"]["upscaled"]
    assert summary["ours_video_frames"] == counts["ours"]["timeline"]
    assert set(summary["stages"]["ours"]) == {"keyframes", "motion", "upscale", "encode"}
    assert set(summary["stages"]["artwalks"]) == {"keyframes", "motion", "upscale", "upscale_extra"}


def test_smoke_writes_only_under_out(smoke):
    assert sorted(p.name for p in smoke.out.iterdir()) == ["gpu_suite.json", "gpu_suite.log", "gpu_suite.md"]
    assert not any(smoke.home.iterdir()) and not any(smoke.tmp.iterdir())
    for name in ("upscale", "film", "keyframes", "walk"):
        assert f"## {name}: done" in smoke.markdown
    assert "| measurement | status |" in smoke.markdown
    assert smoke.stdout.strip().endswith("|")  # the tables are printed last, for the device's output tail


def test_artwalks_frame_count_follows_its_generate_videos(suite):
    # ArtWalks at I = 2 s, F = 1 s, 30 fps, S = 2, three images: times_to_interpolate = int(log2(59)) = 5, so
    # each pair's clip is 3 * 32 + 1 frames, and every image is frozen 30 frames.
    assert suite.artwalks_frames(3, 2, 32, 30) == 30 + 2 * (97 + 30)


def test_full_size_configs_build_on_the_meta_device(suite):
    """Every full-size model the suite builds on the device, built on the meta device here: the
    configurations are accepted by the constructors and give the published models' sizes."""
    import torch

    from frame_interpolation.film_net import FilmConfig, FilmNet

    cfg = {k: v for k, v in json.loads(suite.CONFIGS.read_text("utf-8")).items() if not k.startswith("_")}
    ctx = types.SimpleNamespace(device=torch.device("meta"), smoke=False, cfg=cfg,
                                conf=lambda key: {k: v for k, v in cfg[key].items() if not k.startswith("_")},
                                free=lambda collect=False: None)

    def millions(module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    kandinsky = suite.build_kandinsky(ctx, "float16")
    sd = suite.build_sd15(ctx, "float16")
    unclip = suite.build_unclip(ctx, "float16")["pipe"]
    inpaint = suite.build_sd2_inpaint(ctx, "float16")["inpaint"]
    words = suite.phrase_words()
    blip = suite.blip_large(ctx, suite.word_tokenizer(words, "[DEC]", "[SEP]", "[PAD]", 512), "float16")
    clip = suite.clip_vit_l14(ctx, suite.word_tokenizer(words, "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", 77),
                              "float16")
    sizes = {
        "kandinsky decoder unet": (kandinsky["decoder"].unet, 1253),
        "vit-bigG": (kandinsky["prior"].image_encoder, 1845),
        "sd15 unet": (sd["pipe"].unet, 860), "sd vae": (sd["pipe"].vae, 84),
        "clip-l text": (sd["pipe"].text_encoder, 123),
        "unclip unet": (unclip.unet, 870), "vit-h": (unclip.image_encoder, 632),
        "openclip-h text": (unclip.text_encoder, 340),
        "sd2 inpaint unet": (inpaint.unet, 866), "blip-large": (blip, 446), "clip vit-l/14": (clip, 428),
        "film": (FilmNet(FilmConfig(**ctx.conf("film"))), 34.4),
    }
    published = {"RealESRGAN_x4plus": 16.70, "RealESRGAN_x2plus": 16.70, "realesr-general-x4v3": 1.213,
                 "realesr-animevideov3": 0.621}  # the official .pth files' parameter counts
    for name, spec in ctx.conf("realesrgan").items():
        with torch.device("meta"):
            sizes[name] = (suite.sr_network(spec), published[name])
    for name, (module, expected) in sizes.items():
        got = millions(module)
        assert abs(got - expected) / expected < 0.01, (name, got, expected)
    assert sd["text"].unet is sd["pipe"].unet  # the prompt walk and the image walk share one SD 1.5


def test_flops_are_counted_on_the_meta_device(suite):
    """The FLOP counts the suite divides by: x4plus ~33 TFLOP per 720p frame, x2plus a quarter."""
    cfg = json.loads(suite.CONFIGS.read_text("utf-8"))["realesrgan"]
    x4 = suite.count_flops(lambda: suite.sr_network(cfg["RealESRGAN_x4plus"]), (1, 3, 720, 1280))
    x2 = suite.count_flops(lambda: suite.sr_network(cfg["RealESRGAN_x2plus"]), (1, 3, 720, 1280))
    assert 32e12 < x4 < 34e12 and abs(x2 / x4 - 0.25) < 0.01


def test_budget_is_shared_and_rows_record_why(suite):
    """Sections share the time left in proportion; a measurement that does not fit is skipped with its
    reason; one that fails or is unavailable is recorded and the run goes on."""
    order = ["upscale", "film", "walk", "keyframes"]
    budget = suite.Budget(100.0, order)
    now = suite.time.monotonic()
    assert budget.section_end("upscale") - now == pytest.approx(100.0 * suite.SHARES["upscale"], abs=1.0)
    budget.end = suite.time.monotonic() + 50.0  # upscale overran into film's time: the rest is shared by those left
    left = {s: suite.SHARES[s] for s in order[1:]}
    now = suite.time.monotonic()
    assert budget.section_end("film") - now == pytest.approx(50.0 * left["film"] / sum(left.values()), abs=1.0)

    ctx = types.SimpleNamespace(budget=budget, free=lambda collect=False: None)
    sec = suite.Section(ctx, "film")
    sec.end = suite.time.monotonic() + 5.0
    skipped = sec.run("too big", lambda row: row.update(fps=1.0), need_s=10.0)
    assert skipped["status"] == "skipped" and "budget" in skipped["reason"] and "fps" not in skipped

    def broken(row):
        raise ValueError("a bad shape")

    def absent(row):
        raise suite.Unavailable("unavailable: no compiler")

    assert sec.run("fails", broken)["reason"] == "ValueError: a bad shape"
    assert sec.run("absent", absent)["status"] == "unavailable"
    assert sec.run("fits", lambda row: row.update(fps=2.0), need_s=1.0)["status"] == "ok"
    assert [r["status"] for r in sec.rows] == ["skipped", "error", "unavailable", "ok"]
