"""Prompts from images: tiny random BLIP and CLIP models, built from config, saved and loaded
back through the real loader; desc.csv; the walks that read it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import pipeline.interrogate as interrogation  # noqa: E402
from conftest import DEVICE, REPO, run_cli  # noqa: E402
from pipeline.interrogate import InterrogateConfig, Models, Tables, fit, interrogate  # noqa: E402
from artwalk.prompts import read_prompts_csv  # noqa: E402
from conftest import count_frames  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_built) -> dict[str, Path]:
    return tiny_built("blip", "clip", "sd")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each test its own artwalk cache (the phrase embeddings)."""
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "cache"))


def pictures(folder: Path, names=("b 2.png", "a1.jpg", "c10.webp"), seed=0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        rng = np.random.default_rng(seed + i)
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype("uint8")).save(folder / name)
    return folder


def config(tiny, folder: Path, **kw) -> InterrogateConfig:
    kw.setdefault("caption_model", str(tiny["blip"]))
    if kw.get("mode") != "caption":
        kw.setdefault("clip_model", str(tiny["clip"]))
    return InterrogateConfig(folder=folder, device=DEVICE, progress=False, **kw)


def image(seed=0) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((40, 56, 3)) * 255).astype("uint8"))


def tokens(tiny, text: str) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["sd"] / "tokenizer", local_files_only=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------
# The models

def test_caption_is_deterministic_across_loads(tiny, tmp_path):
    first = Models(config(tiny, tmp_path, mode="caption")).caption(image())
    again = Models(config(tiny, tmp_path, mode="caption"))
    assert first and again.caption(image()) == first == again.caption(image())
    assert "[" not in first  # no special tokens


def test_caption_cleaning():
    clean = interrogation.clean_caption
    assert clean("arafed woman  in a\nfield") == "woman in a field"
    assert clean("there is a cat on a mat") == "a cat on a mat"
    assert clean("a house where there is a cat,") == "a house where there is a cat"


def test_ranking_equals_an_independent_cosine_similarity(tiny, tmp_path):
    models = Models(config(tiny, tmp_path))
    tables = Tables(models, "test", progress=False)
    picture = image(3)
    ranked = tables.rank(models.image_features(picture), "mediums", 10)

    # The same numbers, one phrase at a time, straight from the model's own towers.
    model, processor, words = models.clip
    pixels = processor(images=picture, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        img = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)[0]
        phrases = interrogation.phrase_lists()["mediums"]
        scores = []
        for phrase in phrases:
            ids = words(phrase, return_tensors="pt")["input_ids"]
            txt = model.text_projection(model.text_model(input_ids=ids).pooler_output)[0]
            scores.append(float(torch.nn.functional.cosine_similarity(img, txt, dim=0)))
    order = sorted(range(len(phrases)), key=lambda i: -scores[i])[:10]
    assert [p for p, _ in ranked] == [phrases[i] for i in order]
    assert np.allclose([s for _, s in ranked], [scores[i] for i in order], atol=1e-5)


def test_phrase_lists_are_curated_and_sized():
    lists = interrogation.phrase_lists()
    assert set(lists) == set(interrogation.LISTS)
    total = sum(len(v) for v in lists.values())
    assert 1000 <= total <= 5000, total
    assert all(p.startswith("by ") for p in lists["artists"])
    for name, phrases in lists.items():
        assert len(phrases) == len(set(phrases)) >= 50, name
        assert not any("," in p for p in phrases), name


# --------------------------------------------------------------------------------------------
# Modes and tokens

@pytest.mark.parametrize("mode", interrogation.MODES)
@pytest.mark.parametrize("limit", [75, 30])
def test_each_mode_fits_the_target_tokenizer_at_phrase_boundaries(tiny, tmp_path, mode, limit):
    folder = pictures(tmp_path / "in", names=("x.png",))
    cfg = config(tiny, folder, mode=mode, max_tokens=limit, tokenizer=str(tiny["sd"]))
    interrogate(cfg)
    prompt = read_prompts_csv(folder / "desc.csv")["x.png"]
    assert 0 < tokens(tiny, prompt) <= limit
    caption, *parts = prompt.split(", ")
    full = Models(cfg).caption(image(0))
    assert (full + " ").startswith(caption + " ")  # the caption, cut at a word boundary at most
    phrases = {p for ps in interrogation.phrase_lists().values() for p in ps}
    assert all(p in phrases for p in parts)  # whole phrases only
    if mode == "caption":
        assert parts == []


def test_no_limit_keeps_every_part_and_classic_has_its_shape(tiny, tmp_path):
    models = Models(config(tiny, tmp_path))
    tables = Tables(models, "test", progress=False)
    features = models.image_features(image())
    parts = interrogation.classic_parts("a cat", tables, features)
    assert len(parts) == 5 + interrogation.CLASSIC_FLAVORS and parts[2].startswith("by ")
    assert fit(parts, models.count, 0) == ", ".join(parts)
    assert fit(parts, models.count, len("a cat")) == "a cat"
    assert fit(["a longer caption"], models.count, len("a longer")) == "a longer"  # never inside a word
    with pytest.raises(interrogation.ConfigError, match="--max-tokens 2"):
        fit(["caption"], models.count, 2)


def test_best_scores_at_least_classic_fast_and_the_caption(tiny, tmp_path):
    models = Models(config(tiny, tmp_path, mode="best"))
    tables = Tables(models, "test", progress=False)
    features = models.image_features(image(5))
    caption = models.caption(image(5))
    best = interrogation.best_prompt(caption, tables, features, models, 75)
    others = [fit(interrogation.classic_parts(caption, tables, features), models.count, 75),
              fit(interrogation.fast_parts(caption, tables, features), models.count, 75),
              fit([caption], models.count, 75)]
    sims = (models.text_features([best, *others]) @ features).tolist()
    assert sims[0] >= max(sims[1:]) - 1e-6


# --------------------------------------------------------------------------------------------
# The cache, desc.csv, reruns

def test_the_first_run_fills_the_cache_and_the_second_embeds_only_new_images(tiny, tmp_path, monkeypatch):
    folder = pictures(tmp_path / "in")
    cfg = config(tiny, folder)
    calls = {"text": 0, "caption": 0}
    text, caption = Models.text_features, Models.caption

    def counted_text(self, *a, **k):
        calls["text"] += 1
        return text(self, *a, **k)

    def counted_caption(self, *a, **k):
        calls["caption"] += 1
        return caption(self, *a, **k)

    monkeypatch.setattr(Models, "text_features", counted_text)
    monkeypatch.setattr(Models, "caption", counted_caption)
    first = interrogate(cfg)
    cached = sorted((tmp_path / "cache" / "interrogate").glob("*.safetensors"))
    assert first.made == 3 and len(cached) == len(interrogation.LISTS) and calls["caption"] == 3
    assert calls["text"] > 0
    stamps = [p.stat().st_mtime_ns for p in cached]

    calls.update(text=0, caption=0)
    pictures(folder, names=("d4.png",), seed=9)
    second = interrogate(cfg)
    assert (second.made, second.kept) == (1, 3) and calls == {"text": 0, "caption": 1}
    assert [p.stat().st_mtime_ns for p in cached] == stamps

    calls.update(text=0, caption=0)
    third = interrogate(cfg)  # nothing new: no model is even loaded
    assert (third.made, third.kept) == (0, 4) and calls == {"text": 0, "caption": 0}
    names = [row[0] for row in csv.reader(io.StringIO((folder / "desc.csv").read_text("utf-8")))]
    assert names == ["image", "a1.jpg", "b 2.png", "c10.webp", "d4.png"]  # natural order


def test_desc_csv_round_trips_unicode_commas_and_quotes(tiny, tmp_path):
    rows = [("café, “quoted” 1.png", 'a "red" house, at dusk'), ("ü 2.png", "naïve, 東京, 'x'")]
    path = tmp_path / "desc.csv"
    path.write_bytes(interrogation.csv_bytes(rows))
    assert read_prompts_csv(path) == dict(rows)
    # Through a run: odd file names, and a hand edit holding commas and quotes.
    folder = pictures(tmp_path / "in ü", names=[r[0] for r in rows] + ['q"uote.PNG'])
    interrogate(config(tiny, folder, mode="caption"))
    made = read_prompts_csv(folder / "desc.csv")
    assert set(made) == {r[0] for r in rows} | {'q"uote.PNG'}
    text = (folder / "desc.csv").read_text("utf-8")
    assert made["ü 2.png"] in text
    edited = text.replace(f'"{made["ü 2.png"]}"', '"hand, ""edited"", ✓"')  # as a text editor would
    (folder / "desc.csv").write_text(edited, "utf-8")
    interrogate(config(tiny, folder, mode="caption"))
    assert read_prompts_csv(folder / "desc.csv")["ü 2.png"] == 'hand, "edited", ✓'


def test_a_hand_edit_survives_reruns_and_force_redoes_it(tiny, tmp_path, caplog):
    folder = pictures(tmp_path / "in")
    cfg = config(tiny, folder, mode="caption")
    interrogate(cfg)
    desc = folder / "desc.csv"
    rows = read_prompts_csv(desc)
    desc.write_bytes(interrogation.csv_bytes([("a1.jpg", "my own words"), *[(k, v) for k, v in rows.items()
                                                                          if k != "a1.jpg"]]))
    assert interrogate(cfg).edited == 1
    assert read_prompts_csv(desc)["a1.jpg"] == "my own words"
    # A changed image: its generated row is made again, a hand-edited one kept (with a warning).
    pictures(folder, names=("a1.jpg", "b 2.png"), seed=20)
    with caplog.at_level(logging.WARNING):
        again = interrogate(cfg)
    assert again.made == 1 and read_prompts_csv(desc)["a1.jpg"] == "my own words"
    assert "keeping the hand-edited row of a1.jpg" in caplog.text
    # A changed setting remakes generated rows only; --force remakes every row.
    assert interrogate(config(tiny, folder, mode="caption", caption_length=3)).made == 2
    forced = interrogate(config(tiny, folder, mode="caption", force=True))
    assert forced.made == 3 and read_prompts_csv(desc)["a1.jpg"] != "my own words"


def test_rows_of_removed_images(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    cfg = config(tiny, folder, mode="caption")
    interrogate(cfg)
    desc = folder / "desc.csv"
    rows = read_prompts_csv(desc)
    desc.write_bytes(interrogation.csv_bytes([*rows.items(), ("gone.png", "written by hand")]))
    (folder / "c10.webp").unlink()
    interrogate(cfg)
    assert list(read_prompts_csv(desc)) == ["a1.jpg", "b 2.png", "gone.png"]  # generated row goes, hand row stays


def test_broken_input_is_one_line_before_any_model_loads(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    (folder / "zz.png").write_bytes(b"not a png")
    with pytest.raises(interrogation.InputError, match="zz.png"):
        interrogate(config(tiny, folder, mode="caption"))
    assert not (folder / "desc.csv").exists()
    (folder / "zz.png").unlink()
    (folder / "desc.csv").write_text('a1.jpg,"unterminated\n', "utf-8")
    with pytest.raises(interrogation.InputError, match="desc.csv"):
        interrogate(config(tiny, folder, mode="caption"))
    with pytest.raises(interrogation.InputError, match="no images"):
        interrogate(config(tiny, pictures(tmp_path / "empty", names=()), mode="caption"))


def test_cli_missing_weights_is_one_line_with_the_download_command(tmp_path):
    folder = pictures(tmp_path / "in")
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty hub"), "ARTWALK_CACHE": str(tmp_path / "c")}
    proc = run_cli("-m", "pipeline", "interrogate", str(folder), env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "artwalk models download blip-large" in proc.stderr
    proc = run_cli("-m", "pipeline", "interrogate", str(folder), "--mode", "fast", "--caption-model",
                   str(tmp_path / "nope"), env=env)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (folder / "desc.csv").exists()


def test_models_are_in_the_registry():
    from artwalk.download import model_allow
    from artwalk.models import REGISTRY

    for name in ("blip-large", "blip-base", "clip-vit-l-14", "clip-vit-h-14"):
        spec = REGISTRY[name]
        assert spec.kind == "hub" and spec.index == "config.json" and spec.licence
    # One copy of the weights: safetensors where the repository has them.
    files = ["config.json", "model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
             "open_clip_pytorch_model.bin", "tokenizer.json"]
    assert model_allow(files)[-1] == "model*.safetensors"
    assert model_allow(["config.json", "pytorch_model.bin"])[-1] == "pytorch_model*.bin"


# --------------------------------------------------------------------------------------------
# The walks that read it

SD_WALK = ["--steps", "2", "--w", "64", "--h", "40", "--fps", "6", "-I", "0.5", "-F", "0.5", "-S", "1",
           "--motion-engine", "blend", "--no-upscale", "-q"]


def hub_cache(tiny, tmp_path) -> dict[str, str]:
    """The tiny models where `artwalk models download` would put blip-large and clip-vit-l-14."""
    import tiny_models

    cache = tmp_path / "hub"
    tiny_models.install_in_hub_cache(tiny["blip"], "Salesforce/blip-image-captioning-large", cache)
    tiny_models.install_in_hub_cache(tiny["clip"], "openai/clip-vit-large-patch14", cache)
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "ARTWALK_CACHE": str(tmp_path / "cache")}


def test_images_to_desc_csv_to_sd_latent_walk_to_video(tiny, tmp_path):
    folder = pictures(tmp_path / "my images")
    env = hub_cache(tiny, tmp_path)
    out = tmp_path / "walk"
    proc = run_cli("-m", "pipeline", "run", str(folder), str(out), "--engine", "sd", "--model", str(tiny["sd"]),
                   "--interrogate", "--device", DEVICE, *SD_WALK, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = read_prompts_csv(folder / "desc.csv")
    assert list(rows) == ["a1.jpg", "b 2.png", "c10.webp"] and all(rows.values())
    assert tokens(tiny, rows["a1.jpg"]) <= 75  # counted by the sd model's own tokenizer
    frames, fps, _ = count_frames(out / "walk.mp4")
    assert fps == 6.0 and frames == json.loads((out / "walk.json").read_text())["frames"]
    units = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]

    # A hand edit of one prompt redoes only the pairs that use it.
    desc = folder / "desc.csv"
    edited = {**rows, "c10.webp": "a lighthouse in a storm"}
    desc.write_bytes(interrogation.csv_bytes(list(edited.items())))
    proc = run_cli("-m", "pipeline", "run", str(folder), str(out), "--engine", "sd", "--model", str(tiny["sd"]),
                   "--interrogate", "--device", DEVICE, *SD_WALK, env=env)
    assert proc.returncode == 0, proc.stderr
    assert read_prompts_csv(desc)["c10.webp"] == "a lighthouse in a storm"
    again = json.loads((out / "keyframes" / "manifest.json").read_text())["outputs"]
    changed = [a["path"] != b["path"] for a, b in zip(units, again)]
    assert changed == [False, False, False, True, False], changed  # A1 K1 A2 K2 A3: only the second pair


def test_interrogate_refuses_an_engine_without_prompts(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    proc = run_cli("-m", "pipeline", "run", str(folder), str(tmp_path / "out"), "--interrogate", "--preset", "cpu")
    assert proc.returncode == 2 and "reads no prompts" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (folder / "desc.csv").exists()


def test_images_to_prompt_walk_to_video(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    out = tmp_path / "prompt walk"
    base = ["-m", "pipeline", "prompts", "--from-images", str(folder), str(out), "--engine", "sd", "--model",
            str(tiny["sd"]), "--steps", "2", "--w", "64", "--h", "40", "--fps", "4", "--step", "3",
            "--motion-engine", "blend", "--no-upscale", "--device", DEVICE, "-q"]
    proc = run_cli(*base)
    assert proc.returncode == 1 and "artwalk interrogate" in proc.stderr and len(proc.stderr.splitlines()) == 1
    interrogate(config(tiny, folder, tokenizer=str(tiny["sd"])))
    proc = run_cli(*base)
    assert proc.returncode == 0, proc.stderr
    walk = json.loads((out / "walk.json").read_text())
    rows = read_prompts_csv(folder / "desc.csv")
    assert [(k["frame"], k["prompt"]) for k in walk["prompts"]] == [
        (0, rows["a1.jpg"]), (3, rows["b 2.png"]), (6, rows["c10.webp"])]
    frames, fps, _ = count_frames(out / "prompt walk.mp4")
    assert (frames, fps) == (9, 4.0)  # the last image held as long as the others


def test_full_pipeline_sh_interrogate(tiny, tmp_path):
    folder = pictures(tmp_path / "in", names=("a.png", "b.png"))
    out = tmp_path / "sh out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, **hub_cache(tiny, tmp_path)}
    proc = subprocess.run(["bash", str(REPO / "full_pipeline.sh"), "--input", str(folder), "--output", str(out),
                           "--engine", "sd", "--model", str(tiny["sd"]), "--interrogate", "--interrogate-mode",
                           "fast", "--device", DEVICE, *SD_WALK], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = read_prompts_csv(folder / "desc.csv")
    assert list(rows) == ["a.png", "b.png"]
    key = json.loads((out / "walk.json").read_text())["walk_key"]
    assert count_frames(out / "sh out.mp4")[0] == json.loads((out / "walk.json").read_text())["frames"]
    # walk.json was planned again after the interrogation: a plan now gives the same key.
    proc = run_cli("-m", "pipeline", "plan", str(folder), str(out), "--engine", "sd", "--model", str(tiny["sd"]),
                   "--interrogate", "--interrogate-mode", "fast", "--device", DEVICE, *SD_WALK,
                   env=hub_cache(tiny, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "walk.json").read_text())["walk_key"] == key


# --------------------------------------------------------------------------------------------
# What a user found

def test_odd_file_names_keep_their_rows(tiny, tmp_path):
    folder = pictures(tmp_path / "in", names=("#1.png", " lead.png", "plain.png"))
    cfg = config(tiny, folder, mode="caption")
    assert interrogate(cfg).made == 3
    assert set(read_prompts_csv(folder / "desc.csv")) == {"#1.png", " lead.png", "plain.png"}
    assert interrogate(cfg).made == 0


def test_a_model_of_the_wrong_kind_is_one_line_before_work(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    proc = run_cli("-m", "pipeline", "interrogate", str(folder), "--caption-model", str(tiny["clip"]),
                   "--clip-model", str(tiny["clip"]), env={"ARTWALK_CACHE": str(tmp_path / "c")})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "a clip model, not a blip one" in proc.stderr and not (folder / "desc.csv").exists()


def test_an_unwritable_cache_only_warns(tiny, tmp_path, monkeypatch, caplog):
    (tmp_path / "a file").write_text("x")
    monkeypatch.setenv("ARTWALK_CACHE", str(tmp_path / "a file" / "cache"))
    folder = pictures(tmp_path / "in", names=("x.png",))
    with caplog.at_level(logging.WARNING):
        assert interrogate(config(tiny, folder)).made == 1
    assert "cannot store the phrase cache" in caplog.text


def test_a_walk_keeps_rows_made_with_other_settings(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    interrogate(config(tiny, folder, mode="fast"))
    before = read_prompts_csv(folder / "desc.csv")
    pictures(folder, names=("d4.png",), seed=7)
    walk = interrogate(config(tiny, folder, mode="classic", tokenizer=str(tiny["sd"]), only_new=True))
    assert walk.made == 1 and {k: v for k, v in read_prompts_csv(folder / "desc.csv").items() if k in before} == before
    assert interrogate(config(tiny, folder, mode="fast")).made == 1  # the walk's row, made with classic


def test_changed_settings_without_the_models_is_one_line(tiny, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = pictures(tmp_path / "in")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", hub_cache(tiny, tmp_path)["HF_HUB_CACHE"])
    same = InterrogateConfig(folder=folder, mode="caption", progress=False)  # blip-large, from the hub cache
    interrogate(same)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty hub"))  # and now it is gone
    assert interrogate(same).made == 0  # every row is current: no model needed
    with pytest.raises(interrogation.WeightsMissingError, match="artwalk models download blip-large"):
        interrogate(InterrogateConfig(folder=folder, mode="caption", caption_length=5, progress=False))


def test_a_lost_record_and_duplicate_rows_are_said(tiny, tmp_path, caplog):
    folder = pictures(tmp_path / "in")
    cfg = config(tiny, folder, mode="caption")
    interrogate(cfg)
    interrogation.record_path(folder / "desc.csv").unlink()
    with open(folder / "desc.csv", "a", encoding="utf-8") as f:
        f.write('"a1.jpg","a second opinion"\n')
    with caplog.at_level(logging.WARNING):
        assert interrogate(cfg).made == 0
    assert "no record of how its rows were made" in caplog.text
    assert "a second row for a1.jpg; the last one is used" in caplog.text


def test_comments_are_kept_and_a_header_may_follow_them(tiny, tmp_path):
    folder = pictures(tmp_path / "in")
    (folder / "desc.csv").write_text("# my notes, keep them\nimage,prompt\na1.jpg,mine\n", "utf-8")
    interrogate(config(tiny, folder, mode="caption"))
    text = (folder / "desc.csv").read_text("utf-8")
    assert text.startswith("# my notes, keep them\nimage,prompt\n")
    rows = read_prompts_csv(folder / "desc.csv")
    assert "image" not in rows and rows["a1.jpg"] == "mine" and len(rows) == 3
    (folder / "desc.csv").write_text("prompt,image\nx,a1.jpg\n", "utf-8")
    with pytest.raises(interrogation.InputError, match="put the image first"):
        read_prompts_csv(folder / "desc.csv")


def test_an_edit_during_a_run_is_never_written_over(tiny, tmp_path, monkeypatch):
    folder = pictures(tmp_path / "in")
    cfg = config(tiny, folder, mode="caption")
    interrogate(cfg)
    desc = folder / "desc.csv"
    for image in ("b 2.png", "c10.webp"):
        pictures(folder, names=(image,), seed=30)  # two changed images: two rows to make again
    caption, calls = Models.caption, []

    def user_edits_meanwhile(self, picture):
        calls.append(1)
        if len(calls) == 2:  # while the run is on its second image, someone saves the file
            desc.write_text(desc.read_text("utf-8").replace('"a1.jpg",', '"a1.jpg","edited: "'), "utf-8")
        return caption(self, picture)

    monkeypatch.setattr(Models, "caption", user_edits_meanwhile)
    with pytest.raises(interrogation.InputError, match="changed by someone else"):
        interrogate(cfg)
    assert read_prompts_csv(desc)["a1.jpg"].startswith("edited: ")
    monkeypatch.setattr(Models, "caption", caption)
    assert interrogate(cfg).made == 1 and read_prompts_csv(desc)["a1.jpg"].startswith("edited: ")
