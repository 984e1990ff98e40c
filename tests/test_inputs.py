"""Odd inputs are normalised; broken inputs stop with one clear line and no output."""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artwalk.errors import InputError
from artwalk.images import list_images, load_image
from conftest import EXAMPLES, run_cli, small_copy
from diffusion_models.conform import conform

RED = (200, 30, 40)


def test_natural_order_skips_stray_files(tmp_path):
    for name in ["b10.png", "b2.png", "B1.png", "notes.txt", ".DS_Store", "._b3.png", "desc.csv"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["B1.png", "b2.png", "b10.png"]


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no images found"):
        list_images(tmp_path)


def _save(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def test_modes_become_rgb(tmp_path):
    base = Image.new("RGB", (40, 30), RED)
    cases = {
        "cmyk.jpg": _save(base.convert("CMYK"), tmp_path / "cmyk.jpg", quality=100),
        "palette.png": _save(base.convert("P", palette=Image.Palette.ADAPTIVE), tmp_path / "palette.png"),
        "grey.png": _save(base.convert("L"), tmp_path / "grey.png"),
        "grey16.png": _save(Image.fromarray(np.full((30, 40), 65535 // 2, np.uint16)), tmp_path / "grey16.png"),
        "webp.webp": _save(base, tmp_path / "webp.webp", lossless=True),
        "tiff.tif": _save(base, tmp_path / "tiff.tif"),
    }
    for name, path in cases.items():
        rgb = load_image(path)
        assert rgb.shape == (30, 40, 3) and rgb.dtype == np.float32, name
        assert 0.0 <= rgb.min() and rgb.max() <= 1.0, name
    assert np.allclose(load_image(cases["palette.png"])[0, 0] * 255, RED, atol=8)
    assert np.allclose(load_image(cases["cmyk.jpg"])[0, 0] * 255, RED, atol=12)
    grey16 = load_image(cases["grey16.png"])
    assert np.allclose(grey16, 0.5, atol=1e-3)  # 16 bits kept, not clipped to 8 bits first
    grey = load_image(cases["grey.png"])
    assert np.allclose(grey[..., 0], grey[..., 1])


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    path = _save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png")
    rgb = load_image(path)
    assert np.allclose(rgb[0, 0], [1, 0, 0]) and np.allclose(rgb[0, 9], [1, 1, 1])


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = _save(im, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_image(path).shape == (60, 20, 3)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert np.allclose(load_image(path)[8, 8], [1, 0, 0], atol=0.02)


@pytest.mark.parametrize("fit", ["cover", "contain-blur", "contain-mirror"])
@pytest.mark.parametrize("size", [(1, 1), (3, 200), (2000, 9), (64, 36)])
def test_conform_any_shape(fit, size):
    rgb = np.random.default_rng(1).random((size[1], size[0], 3), dtype=np.float32)
    out = conform(rgb, 160, 90, fit)
    assert out.shape == (90, 160, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_contain_keeps_the_whole_image():
    rgb = np.zeros((100, 100, 3), np.float32)
    rgb[:, :, 1] = 1.0  # green square into a 16:9 frame
    out = conform(rgb, 160, 90, "contain-mirror")
    assert np.allclose(out[:, 35:125, 1], 1.0)  # the 90x90 image, centred


def test_huge_jpeg_is_reduced_while_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (8000, 6000), RED).save(path, quality=90)
    rgb = load_image(path, min_size=(160, 90))
    assert rgb.shape[1] >= 320 and rgb.shape[1] <= 1000  # decoded at 1/8, not 48 MP


# ---------------------------------------------------------------- broken inputs


def _bad_inputs(folder: Path) -> dict[str, Path]:
    good = EXAMPLES / "02_chelsea.png"
    data = good.read_bytes()
    corrupt = bytearray(data)
    corrupt[100:4000] = bytes(3900)  # zeroed compressed data: zlib/CRC errors
    return {
        "zero-byte": (folder / "zero.png", b""),
        "not an image": (folder / "letter.png", b"Dear artist, this is a text file.\n" * 20),
        "truncated": (folder / "truncated.png", data[: len(data) // 3]),
        "corrupt": (folder / "corrupt.png", bytes(corrupt)),
        "truncated jpeg": (folder / "cut.jpg", (EXAMPLES / "04_rocket.jpg").read_bytes()[:5000]),
    }


@pytest.mark.parametrize("case", ["zero-byte", "not an image", "truncated", "corrupt", "truncated jpeg"])
def test_bad_image_stops_with_one_line_and_no_output(tmp_path, case):
    folder = tmp_path / "in"
    folder.mkdir()
    small_copy(EXAMPLES / "01_astronaut.png", folder / "a1.png", 64)
    path, data = _bad_inputs(folder)[case]
    path.write_bytes(data)
    small_copy(EXAMPLES / "03_coffee.png", folder / "z9.png", 64)
    out = tmp_path / "out"
    proc = run_cli("-m", "diffusion_models", str(folder), str(out), "--w", "64", "--h", "36", "-q")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert path.name in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_empty_folder_cli(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli("-m", "diffusion_models", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'empty'}: no images found (looked for"
                                                " .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)"]


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-big write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_FSIZE")
def test_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, image_folder):
    out = tmp_path / "out"
    proc = run_cli("-m", "diffusion_models", str(image_folder), str(out), "--w", "160", "--h", "90", "-q",
                   preexec_fn=_limit_file_size)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: no space left writing") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    units = out / "keyframes" / "units"
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers and not (out / "keyframes" / "manifest.json").exists()
    assert all((u / "unit.json").exists() for u in units.iterdir())  # finished units only
    # With room again, the same command finishes the job.
    run_cli("-m", "diffusion_models", str(image_folder), str(out), "--w", "160", "--h", "90", "-q", check=True)
    assert (out / "keyframes" / "manifest.json").exists()


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A greyscale PNG that declares ``width`` x ``height`` black pixels in a few hundred KB
    (rows of zeros compress about a thousand times), written row by row without holding them."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, deflate, idat = b"\0" * (1 + width), zlib.compressobj(9), []
    for _ in range(height):
        idat.append(deflate.compress(row))
    idat.append(deflate.flush())
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b""))
    return path


BOMB_CHECK = """
import sys, time
from artwalk.errors import InputError
from artwalk.images import load_image
start = time.monotonic()
try:
    load_image(sys.argv[1], min_size=None if sys.argv[2] == "-" else (int(sys.argv[2]),) * 2)
    print("loaded", end=" ")
except InputError as exc:
    print("refused", exc, end=" ")
# This process's own peak (VmHWM: its memory since exec; ru_maxrss would count the forking parent's too).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(time.monotonic() - start, peak)
"""


def test_a_decompression_bomb_costs_little_and_is_one_line(tmp_path):
    import subprocess

    bomb = png_bomb(tmp_path / "bomb.png", 16384, 16384)
    assert bomb.stat().st_size < 400_000
    for size in ("-", "64"):  # the whole image (the studio's check), or for a small walk
        out = subprocess.run([sys.executable, "-c", BOMB_CHECK, str(bomb), size], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        seconds, peak_kb = float(out[-2]), int(out[-1])
        assert out[0] == "refused" and "16384x16384" in " ".join(out) and "cap on decoded pixels" in " ".join(out)
        assert seconds < 3 and peak_kb < 1.5 * 2**20, (seconds, peak_kb)
    # Just under the cap, the studio's upload check (a thumbnail's size) decodes it in bounded memory.
    big = png_bomb(tmp_path / "big.png", 12000, 11000)
    out = subprocess.run([sys.executable, "-c", BOMB_CHECK, str(big), "320"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[0] == "loaded" and float(out[-2]) < 10 and int(out[-1]) < 1.5 * 2**20, out
    # A panorama within the cap is read.
    wide = png_bomb(tmp_path / "panorama.png", 24000, 400)
    assert load_image(wide, min_size=(640, 360)).shape[1] >= 640
