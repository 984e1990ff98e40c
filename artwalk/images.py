"""The one image I/O boundary.

In memory an image is RGB float32 in [0, 1], shape (H, W, 3) as numpy. BGR exists
only at the cv2 call sites in this file. Frames on disk are 8-bit RGB PNG, the only
lossy step being the final video encode.

Inputs are normalised here: EXIF orientation applied; palette, CMYK, greyscale,
16-bit and float modes converted to RGB; alpha composited over white; animated
images read at their first frame. A file that cannot be read raises
:class:`InputError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artwalk.errors import InputError, first_line
from artwalk.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
# Decoded pixels are capped: an image is refused once its header declares more than
# MAX_PIXELS at the scale it will be decoded at, before any pixel is decoded (a 0.3 MB PNG can
# declare 16384 x 16384). A JPEG decodes at 1/2, 1/4 or 1/8 scale when a smaller size is asked
# for, so a JPEG scan up to MAX_DRAFT_PIXELS passes. PIL's own bomb guard stays as a backstop.
MAX_PIXELS = 128 * 2**20  # 134 Mpx: 16384 x 8192, or an 11585 x 11585 square (400 MB as RGB, 8-bit)
MAX_DRAFT_PIXELS = 2**30
Image.MAX_IMAGE_PIXELS = MAX_DRAFT_PIXELS

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def natural_key(name: str) -> list:
    """Sort key where 'img2' < 'img10' and case does not matter."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path | str, report: bool = True) -> list[Path]:
    """The image files of ``folder`` in natural order.

    Hidden files and files without an image extension (notes, thumbnail caches,
    .DS_Store) are skipped, and with ``report`` the skip is logged once. A file with an
    image extension is taken, and if it turns out not to be an image, loading it fails
    loudly. An entry with an image extension that is no file is named: a folder is
    skipped with a warning, a broken or looping symbolic link is an error.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: input folder does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder}: is a file, not a folder of images; give the folder that holds it")
    try:
        entries = list(folder.iterdir())
    except PermissionError:
        raise InputError(f"{folder}: permission denied listing the input folder") from None
    images, skipped = [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        is_image = entry.suffix.lower() in IMAGE_EXTENSIONS
        if is_image and entry.is_symlink() and not entry.exists():
            raise InputError(f"{entry}: broken symbolic link (its target is missing, or it points back at itself)")
        if entry.is_file():
            (images if is_image else skipped).append(entry)
        elif is_image:
            kind = "a folder" if entry.is_dir() else "not a regular file"
            log.warning("skipping %s: %s, not an image", entry, kind)
    if skipped and report:
        log.info("skipping %d non-image file(s) in %s", len(skipped), folder)
    if not images:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(f"{folder}: no images found (looked for {exts})")
    return sorted(images, key=lambda p: natural_key(p.name))


def _open_pil(path: Path, min_size: tuple[int, int] | None) -> Image.Image:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied reading the image")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.seek(0)  # animated GIF/WebP/APNG: the first frame
            declared = im.size
            if min_size is not None:
                # JPEG can decode straight to a smaller scale; other formats reduce after.
                im.draft("RGB", (min_size[0] * 2, min_size[1] * 2))
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{path}: image too large: {declared[0]}x{declared[1]} is "
                                 f"{declared[0] * declared[1] / 1e6:.0f} Mpx, over the {MAX_PIXELS / 1e6:.0f} Mpx "
                                 "cap on decoded pixels")
            im.load()
            im = ImageOps.exif_transpose(im)
            if min_size is not None:
                factor = int(min(im.width / (2 * min_size[0]), im.height / (2 * min_size[1])))
                if factor >= 2:
                    im = im.reduce(factor)
            return im
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format this tool cannot read") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied reading the image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: image too large (over {Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: truncated or corrupt image ({first_line(exc)})") from None


def image_size(path: Path | str) -> tuple[int, int]:
    """(W, H) of an image as it is shown (EXIF rotation applied), from its header: nothing decoded."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not an image, or a format this tool cannot read ({first_line(exc)})") from None
    return (h, w) if turned else (w, h)


def _to_rgb_float(im: Image.Image) -> np.ndarray:
    """Any PIL mode to RGB float32 in [0, 1]; alpha is composited over white."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        peak = float(grey.max()) if grey.size else 1.0
        grey = grey / peak if peak > 1.0 else grey
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
    if mode == "CMYK":
        im = im.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: Path | str, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an input image as RGB float32 (H, W, 3) in [0, 1].

    ``min_size`` (w, h): the size the caller will resize to; very large images are
    decoded or reduced to no less than twice that, which saves memory and time.
    """
    im = _open_pil(Path(path), min_size)
    return np.ascontiguousarray(_to_rgb_float(im))


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking and Lanczos (8x8) when enlarging, in [0, 1].

    The resize of the project's float images: conforming inputs and the exact-size finish
    of the neural upscalers. 8-bit frames (the lanczos upscale engine) go through
    :func:`resize_u8`, with the same filters.
    """
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LANCZOS4
    return np.clip(cv2.resize(rgb, (width, height), interpolation=interp), 0.0, 1.0)


def resize_u8(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """:func:`resize` of an 8-bit RGB frame, in 8 bits: the same filters, rounded once by OpenCV.

    Within one level of the float path and twice as fast (a 1280x720 frame to 2560x1440: 30
    against 61 ms here, where OpenCV's Lanczos has no SIMD path). The lanczos upscale engine
    uses it, both when stage 3 stores frames and when stage 4 resizes them as it encodes, so
    the two give the same pixels.
    """
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LANCZOS4
    return cv2.resize(rgb, (width, height), interpolation=interp)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB float image (or uint8 image) — deterministic."""
    u8 = rgb if rgb.dtype == np.uint8 else to_uint8(rgb)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise InputError(f"could not encode a {u8.shape} image as PNG")
    return buf.tobytes()


def save_png(path: Path | str, rgb: np.ndarray) -> str:
    """Write a frame atomically; return the sha256 of the bytes written."""
    data = encode_png(rgb)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_frame_u8(path: Path | str) -> np.ndarray:
    """Read one of our own PNG frames as RGB uint8 (H, W, 3)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:  # missing (a unit pruned by a later rerun of an earlier stage) or unreadable
        data = np.empty(0, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"{path}: frame is missing or corrupt; rerun the stage that writes it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_frame(path: Path | str) -> np.ndarray:
    """Read one of our own PNG frames as RGB float32 in [0, 1]."""
    return read_frame_u8(path).astype(np.float32) / 255.0
