"""Arguments a user gets wrong: each is one line before any work, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, refused, shell, small_copy
from pipeline.cli import main

SMALL = ("--w", "64", "--h", "36", "-I", "0.5", "-F", "0.25", "--fps", "8", "--target", "x2", "-q")


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "my images"
    folder.mkdir()
    for src in sorted(EXAMPLES.glob("0*"))[:3]:
        small_copy(src, folder / (src.stem + ".png"), 80)
    return folder


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


def parse_error(capsys, *argv: str) -> str:
    """The one line argparse's refusal prints (exit 2)."""
    with pytest.raises(SystemExit) as stop:
        main(list(argv))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---------------------------------------------------------------------------------------------
# INPUT and OUT

def test_swapped_input_and_out_write_nothing_into_the_images(tmp_path, images, capsys):
    out = tmp_path / "walk"
    assert main(["run", str(images), str(out), *SMALL]) == 0
    before_images, before_out = listing(images), listing(out)
    line = refused(capsys, "run", str(out), str(images), *SMALL)
    assert "run folder" in line and "swapped" in line, line
    assert listing(images) == before_images and listing(out) == before_out
    fresh = tmp_path / "fresh images"  # OUT holds images, INPUT is another folder of images
    fresh.mkdir()
    for p in images.iterdir():
        (fresh / p.name).write_bytes(p.read_bytes())
    line = refused(capsys, "run", str(fresh), str(images), *SMALL)
    assert "holds 3 image(s)" in line and "swapped" in line, line
    assert listing(images) == before_images


def test_a_run_folder_of_another_command_is_refused(tmp_path, images, capsys):
    walk, zoom = tmp_path / "walk", tmp_path / "zoom"
    assert main(["run", str(images), str(walk), *SMALL]) == 0
    assert main(["zoom", "--through", str(images), str(zoom), "--w", "64", "--h", "36", "--fps", "8",
                 "--seconds-per-level", "0.5", "--no-upscale", "-q"]) == 0
    walk_files, zoom_files = listing(walk), listing(zoom)
    line = refused(capsys, "zoom", "--through", str(images), str(walk), "--w", "64", "--h", "36", "-q")
    assert "run folder of a walk" in line, line
    line = refused(capsys, "run", str(images), str(zoom), *SMALL)
    assert "run folder of a zoom" in line, line
    assert listing(walk) == walk_files and listing(zoom) == zoom_files


def test_a_walk_of_one_image_is_refused(tmp_path, images, capsys):
    one = tmp_path / "one"
    one.mkdir()
    (one / "only.png").write_bytes(next(images.iterdir()).read_bytes())
    line = refused(capsys, "run", str(one), str(tmp_path / "out"), *SMALL)
    assert "needs at least 2" in line and str(one) in line, line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Flags

def test_a_mistyped_flag_names_the_command_and_the_nearest_flag(capsys, tmp_path):
    line = parse_error(capsys, "run", "in", "out", "--sec-interpolaton", "2")
    assert line.startswith("error: artwalk run: ") and "did you mean --sec_interpolation?" in line, line
    line = parse_error(capsys, "zoom", "p.txt", "out", "--seconds-per-levl", "2")
    assert line.startswith("error: artwalk zoom: ") and "did you mean --seconds-per-level?" in line, line
    line = parse_error(capsys, "run", "in", "out", "--frobnicate")
    assert "unknown flag --frobnicate" in line and "did you mean" not in line, line


def test_artwalks_underscore_flags_take_their_dash_form():
    from pipeline.cli import build_parser

    p = build_parser()
    dashed = p.parse_args(["run", "in", "out", "--sec-interpolation", "2", "--sec-freeze=1", "--interpolation-steps",
                           "3", "--no-originals", "--square-crop"])
    underscored = p.parse_args(["run", "in", "out", "--sec_interpolation", "2", "--sec_freeze=1",
                                "--interpolation_steps", "3", "--no_originals", "--square_crop"])
    assert vars(dashed) == vars(underscored)
    assert (dashed.sec_interpolation, dashed.sec_freeze, dashed.interpolation_steps) == (2.0, 1.0, 3)


def test_full_pipeline_help_lists_what_it_takes_and_refuses_what_it_cannot_forward(tmp_path, images):
    ran = shell("--help", terminal=False)
    assert ran.returncode == 0 and "--sec_interpolation" in ran.stdout and "--motion-engine" in ran.stdout
    assert "--executor {" not in ran.stdout and "--track {" not in ran.stdout
    for flags in (("--executor", "pool", "--pool-workers", "2"), ("--track", "mlflow"), ("--track=mlflow",),
                  ("--ray-address", "auto")):
        ran = shell("--input", str(images), "--output", str(tmp_path / "out"), *flags, terminal=False)
        lines = ran.stderr.strip().splitlines()
        assert ran.returncode == 2 and len(lines) == 1 and "artwalk run" in lines[0], (flags, ran.stderr)
        assert lines[0].startswith(f"error: full_pipeline.sh: {flags[0].split('=')[0]}: ")
        assert not (tmp_path / "out").exists()


def test_a_prompt_walk_without_an_engine_asks_for_the_text_to_image_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty hub"))
    line = refused(capsys, "prompts", "0: a corgi\n8: a lion", str(tmp_path / "out"), "--preset", "cpu")
    assert "artwalk models download sd15" in line, line
    assert not (tmp_path / "out").exists()


def test_gif_with_a_soundtrack_is_refused_by_the_plan(tmp_path, images, capsys):
    song = tmp_path / "song.wav"
    import wave

    with wave.open(str(song), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000)
    line = refused(capsys, "run", str(images), str(tmp_path / "out"), *SMALL, "--format", "gif", "--audio", str(song))
    assert "--format gif has no sound" in line, line
    assert not (tmp_path / "out").exists()


def test_the_audio_preview_and_the_walk_follow_the_same_events_by_default():
    from artwalk import audio
    from diffusion_models import KeyframeConfig
    from pipeline.cli import build_parser

    preview = build_parser().parse_args(["audio", "song.wav"])
    walk = KeyframeConfig(input_dir=Path("in"), run_dir=Path("out"), sync_audio=Path("song.wav")).song_settings
    assert (preview.on, preview.component) == (walk["on"], walk["component"]) == (audio.DEFAULT_ON,
                                                                                   audio.DEFAULT_COMPONENT)


def test_an_upscale_past_8k_is_refused_before_any_work(tmp_path, images, capsys):
    line = refused(capsys, "run", str(images), str(tmp_path / "out"), "--w", "3840", "--h", "2160", "--target", "x4")
    assert "15360x8640" in line and "over the 33.2 Mpx" in line, line
    assert not (tmp_path / "out").exists()
