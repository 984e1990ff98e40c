"""``artwalk inspire``: the phrase engine, the schedule text, the CLI, and MagicPrompt's
real loading path on a tiny random GPT-2 built from config (nothing is downloaded)."""

from __future__ import annotations

import json
import logging
import re
import tomllib
from pathlib import Path

import pytest

from artwalk.errors import ConfigError, WeightsMissingError
from conftest import REPO
from pipeline import inspire as lib
from pipeline.cli import main

FORBIDDEN = ("#", "|", ":", "\\", "\n", "\r", "--neg")
MAGICPROMPT_REPO = "Gustavosta/MagicPrompt-Stable-Diffusion"


def assert_clean(prompt: str, max_words: int = 40) -> None:
    assert prompt.strip() == prompt and prompt, repr(prompt)
    assert not [c for c in FORBIDDEN if c in prompt.lower()], repr(prompt)
    assert len(prompt.split()) <= max_words
    lib.check_prompt(prompt)


def parts(prompt: str) -> list[str]:
    return prompt.split(", ")


# ---------------------------------------------------------------------------------------------
# The phrase engine

def test_phrases_are_about_the_topic_distinct_clean_and_seeded():
    prompts = lib.inspire(["a lighthouse"], 8, seed=1, engine="phrases")
    assert len(prompts) == 8 and len(set(prompts)) == 8
    lists = lib.phrase_lists()
    for prompt in prompts:
        assert_clean(prompt)
        topic, medium, style, light, palette = parts(prompt)
        assert topic == "a lighthouse"
        assert medium in lists["mediums"] and style in lists["styles"]
        assert light in lists["light"] and palette in lists["palettes"]
    for a, b in zip(prompts, prompts[1:]):  # consecutive prompts share no part
        assert not set(parts(a)[1:]) & set(parts(b)[1:])
    assert lib.inspire(["a lighthouse"], 8, seed=1, engine="phrases") == prompts
    assert lib.inspire(["a lighthouse"], 8, seed=2, engine="phrases") != prompts


def test_topic_words_join_and_no_topic_draws_subjects():
    prompts = lib.inspire(["a", "red", "fox:", "#1"], 3, engine="phrases")
    assert all(p.startswith("a red fox - 1, ") for p in prompts)
    drawn = lib.inspire([], 30, seed=5, engine="phrases")
    subjects = [parts(p)[0] for p in drawn]
    assert set(subjects) <= set(lib.phrase_lists()["subjects"]) and len(set(subjects)) == 30
    for prompt in drawn:
        assert_clean(prompt)


def test_a_thousand_prompts_never_repeat():
    prompts = lib.inspire(["a lighthouse"], 1000, seed=3, engine="phrases")
    assert len(set(prompts)) == 1000


def test_max_words_cuts_and_refuses_when_too_few_for_distinct_prompts():
    lists = lib.phrase_lists()
    every_part = {phrase for name in lib.PARTS for phrase in lists[name]}
    for prompt in lib.inspire(["a lighthouse"], 5, engine="phrases", max_words=5):
        assert_clean(prompt, max_words=5)
        topic, *rest = parts(prompt)
        assert topic == "a lighthouse" and rest and set(rest) <= every_part  # whole parts only
    with pytest.raises(ConfigError, match="--max-words"):
        lib.inspire(["a tall lighthouse"], 5, engine="phrases", max_words=2)
    # A drawn subject is never cut to fit (to "a" or "an"): a limit under every subject is refused.
    with pytest.raises(ConfigError, match="--max-words 1 is shorter than every subject"):
        lib.inspire([], 2, engine="phrases", max_words=1)
    for prompt in lib.inspire([], 8, engine="phrases", max_words=6, seed=3):
        assert parts(prompt)[0] in lib.phrase_lists()["subjects"]


def test_shipped_phrase_lists_are_sizeable_and_safe():
    lists = lib.phrase_lists()
    assert set(lists) == {"subjects", "mediums", "styles", "light", "palettes"}
    for name, phrases in lists.items():
        assert 30 <= len(phrases) <= 250, name
        assert len(set(phrases)) == len(phrases), name
        for phrase in phrases:
            assert phrase == lib.clean_prompt(phrase) and "," not in phrase, (name, phrase)
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "phrases/*.txt" in package_data["pipeline"]


@pytest.mark.parametrize("text, expected", [
    ("a: b | c # d\nsecond line", "a - b, c d"),
    ("x :-neg y --NEG z", "x y z"),
    ("a ,, b , ,c", "a, b, c"),
    ("see https://example.com now\\", "see now"),
    ("tab\there\x00\u2028next", "tab here"),
    ("\n\nonly later lines", ""),
])
def test_clean_prompt(text, expected):
    assert lib.clean_prompt(text) == expected
    assert lib.clean_prompt("one two three four", max_words=2) == "one two"


# ---------------------------------------------------------------------------------------------
# The schedule text

def test_schedule_text_in_seconds_and_frames():
    prompts = ["a", "b", "c", "d"]
    assert lib.schedule_text(prompts, "2s") == "0s: a\n2s: b\n4s: c\n6s: d\n"
    assert lib.schedule_text(prompts, "2.5s") == "0s: a\n2.5s: b\n5s: c\n7.5s: d\n"
    assert lib.schedule_text(prompts, "0.1s").splitlines()[3] == "0.3s: d"
    assert lib.schedule_text(prompts, "48") == "0: a\n48: b\n96: c\n144: d\n"


@pytest.mark.parametrize("every", ["0s", "0", "-2s", "2", "abc", "2.5", "1e1s", "2 s", "inf", "", "0.01s"])
def test_bad_every_is_one_line(every):
    if every == "2":
        assert lib.parse_every(every).key(3) == "6"
        return
    with pytest.raises(ConfigError, match="--every") as err:
        lib.parse_every(every)
    assert "\n" not in str(err.value)


def test_schedule_refuses_a_prompt_that_would_break_a_line():
    for bad in ("a: b", "a | b", "a # b", "a \\ b", "two\nlines", "x --neg y", " "):
        with pytest.raises(ConfigError):
            lib.schedule_text([bad], "2s")


def test_the_schedule_parses_with_the_schedule_parser(tiny_gpt2):
    schedule = pytest.importorskip("artwalk.schedule")
    for prompts in (lib.inspire(["a lighthouse"], 4, engine="phrases"),
                    lib.inspire(["a: lighthouse | #2"], 4, seed=3, model=str(tiny_gpt2))):
        for every in ("2s", "48"):
            parsed = schedule.parse_prompts(lib.schedule_text(prompts, every), fps=24)
            assert [key.frame for key in parsed.keys] == [0, 48, 96, 144]
            assert [[part.text for part in key.parts] for key in parsed.keys] == [[p] for p in prompts]
            assert all(key.negative == "" and key.parts[0].weight == 1.0 for key in parsed.keys)


# ---------------------------------------------------------------------------------------------
# The CLI

@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    """No hub model on this machine, whatever the real cache holds; never the network."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_cli_prints_to_stdout_and_writes_a_file(tmp_path, capsys, empty_hf_cache):
    assert main(["inspire", "a lighthouse", "-n", "4", "--seed", "7"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["0s", "2s", "4s", "6s"]
    assert all(line.split(": ", 1)[1].startswith("a lighthouse, ") for line in lines)
    assert "inspire: no MagicPrompt weights here (artwalk models download magicprompt); using the phrase lists" \
        in err.splitlines()

    target = tmp_path / "new folder" / "prompts.txt"
    assert main(["inspire", "a lighthouse", "-n", "4", "--seed", "7", "--out", str(target), "-q"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert target.read_text("utf-8") == "\n".join(lines) + "\n"
    assert [p.name for p in target.parent.iterdir()] == ["prompts.txt"]  # no temporary left

    assert main(["inspire", "--engine", "phrases", "--every", "48", "-q"]) == 0
    out = capsys.readouterr().out
    assert [line.split(": ", 1)[0] for line in out.splitlines()] == ["0", "48", "96", "144", "192", "240"]


def run_main(argv: list[str]) -> int:
    """``main``'s exit code, also for argparse's own errors (which leave through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("flags, needle", [
    (["-n", "0"], "-n 0"), (["-n", "1001"], "-n 1001"), (["-n", "x"], "invalid int"),
    (["--every", "0s"], "--every"), (["--every", "soon"], "--every"), (["--max-words", "0"], "--max-words"),
    (["--engine", "gpt"], "invalid choice"), (["--engine", "phrases", "--model", "x"], "--model"),
])
def test_cli_bad_flags_are_one_line_exit_2(flags, needle, capsys, tmp_path):
    out_file = tmp_path / "p.txt"
    assert run_main(["inspire", "a lighthouse", "--out", str(out_file), *flags]) == 2
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert out == "" and len(errors) == 1 and errors[0].startswith("error:") and needle in errors[0]
    assert not out_file.exists()


def test_cli_out_that_is_a_folder_is_one_line(tmp_path, capsys):
    assert main(["inspire", "--engine", "phrases", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --out {tmp_path}: is a folder; give a file path for the schedule"]


def test_magicprompt_without_weights_is_one_line_exit_2(capsys, empty_hf_cache):
    assert main(["inspire", "a lighthouse", "--engine", "magicprompt"]) == 2
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert out == "" and len(errors) == 1 and errors[0].startswith("error: ")
    assert "magicprompt" in errors[0] and "artwalk models download magicprompt" in errors[0]
    with pytest.raises(WeightsMissingError, match="artwalk models download magicprompt"):
        lib.check_magicprompt()


def test_magicprompt_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["inspire", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["inspire", "--model", str(tmp_path)]) == 2  # a folder, but no model in it
    assert "no config.json" in capsys.readouterr().err


def test_registry_has_magicprompt():
    from artwalk.models import REGISTRY

    spec = REGISTRY["magicprompt"]
    assert (spec.kind, spec.source, spec.stage) == ("hub", MAGICPROMPT_REPO, "keyframes")
    assert spec.licence.startswith("MIT")


# ---------------------------------------------------------------------------------------------
# MagicPrompt through the real loader, on tiny random GPT-2 models

def _gpt2_folder(folder: Path, mute: bool = False) -> Path:
    """A 2-layer GPT-2 over single bytes (256 tokens + <|endoftext|>, no merges), saved as the hub
    has it. ``mute``: its only likely next token is <|endoftext|>, so it never adds any text."""
    import torch
    from tiny_models import _bytes_to_unicode
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = eos = 256
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=[])
    assert tokenizer.eos_token_id == eos
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=257, n_positions=128,
                                       bos_token_id=eos, eos_token_id=eos)).eval()
    if mute:
        with torch.no_grad():
            towards_eos = torch.full((32,), 10.0)
            model.transformer.wte.weight[eos] = towards_eos
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.copy_(towards_eos)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return _gpt2_folder(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def mute_gpt2(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return _gpt2_folder(tmp_path_factory.mktemp("mute-gpt2"), mute=True)


def test_tiny_gpt2_gives_cleaned_seeded_prompts_and_leaves_the_global_rng(tiny_gpt2):
    import torch

    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    prompts = lib.inspire(["a lighthouse"], 5, seed=11, engine="magicprompt", model=str(tiny_gpt2), max_words=12)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(prompts) == 5 and len(set(prompts)) == 5
    for prompt in prompts:
        assert_clean(prompt, max_words=12)
        assert prompt.startswith("a lighthouse")
    assert lib.inspire(["a lighthouse"], 5, seed=11, model=str(tiny_gpt2), max_words=12) == prompts
    assert lib.inspire(["a lighthouse"], 5, seed=12, model=str(tiny_gpt2), max_words=12) != prompts
    drawn = lib.inspire([], 3, seed=11, model=str(tiny_gpt2))
    for prompt in drawn:
        assert_clean(prompt)


def test_tiny_gpt2_through_the_cli(tiny_gpt2, tmp_path, capsys):
    target = tmp_path / "schedule.txt"
    argv = ["inspire", "a", "lighthouse", "-n", "3", "--every", "2.5s", "--model", str(tiny_gpt2),
            "--out", str(target), "-q"]
    assert main(argv) == 0
    lines = target.read_text("utf-8").splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["0s", "2.5s", "5s"]
    for line in lines:
        assert_clean(line.split(": ", 1)[1])
    first = target.read_text("utf-8")
    assert main(argv) == 0 and target.read_text("utf-8") == first


def test_empty_generations_fall_back_to_phrase_parts(mute_gpt2, caplog):
    caplog.set_level(logging.DEBUG, logger="pipeline.inspire")
    prompts = lib.inspire(["a lighthouse"], 4, seed=2, engine="magicprompt", model=str(mute_gpt2))
    assert len(set(prompts)) == 4
    lists = lib.phrase_lists()
    for prompt in prompts:
        assert_clean(prompt)
        topic, medium, style, light, palette = parts(prompt)
        assert topic == "a lighthouse" and medium in lists["mediums"] and palette in lists["palettes"]
    fallbacks = [r.getMessage() for r in caplog.records if "using the phrase lists for it" in r.getMessage()]
    assert len(fallbacks) == 4 and "adds nothing once cleaned" in fallbacks[0]


def test_auto_uses_magicprompt_from_the_hub_cache(tiny_gpt2, empty_hf_cache, caplog):
    import tiny_models
    from artwalk.download import is_present
    from artwalk.models import REGISTRY

    assert not is_present(REGISTRY["magicprompt"])
    tiny_models.install_in_hub_cache(tiny_gpt2, MAGICPROMPT_REPO, empty_hf_cache)
    assert lib.check_magicprompt() == MAGICPROMPT_REPO
    assert is_present(REGISTRY["magicprompt"])  # `artwalk models list` says so (a model has no model_index.json)
    caplog.set_level(logging.INFO, logger="pipeline.inspire")
    prompts = lib.inspire(["a lighthouse"], 2, seed=4)
    assert any(re.match(r"inspire: MagicPrompt weights found", r.getMessage()) for r in caplog.records)
    assert prompts == lib.inspire(["a lighthouse"], 2, seed=4, engine="magicprompt", model=str(tiny_gpt2))


def test_a_folder_that_is_not_a_language_model_is_one_line(tmp_path, capsys):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    assert main(["inspire", "--model", str(folder), "-q"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {folder}: not a causal language model")
