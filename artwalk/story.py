"""A story: a seeded random subset of a big collection, laid out as a walk's input folder.

    COLLECTION/                          OUT/
      a.png                                story.json       what was picked, and how
      paintings/x.jpg                      001_x.jpg   ->   ../COLLECTION/paintings/x.jpg
      sketches/2021/y.png                  002_y.png   ->   ../COLLECTION/sketches/2021/y.png
      notes.txt          (skipped)         003_a.png   ->   ../COLLECTION/a.png
      .thumbs/           (hidden: skipped)

The collection is COLLECTION's images and those of its sub-folders at any depth (hidden
files and folders, files that are no image, and artwalk's own story and run folders are
skipped). ``n`` of them are drawn uniformly, without replacement, by a generator seeded with
``seed``: the same collection and seed give the same picks, in the same order, and the same
bytes of story.json. Each pick is loaded once, so a file that is no image stops the story
with one line naming it, before anything is written.

The order is the drawing order (``random``), or a chain of visual neighbours (``similar``):
each image's feature is a Lab colour histogram plus an 8x8 Lab thumbnail (its layout), both
from a 64x64 thumbnail; the distance of two images mixes the histograms' Hellinger distance
and the thumbnails' RMS colour difference (in Lab units / 100). The chain is the best greedy
nearest-neighbour path over every starting image, improved by 2-opt moves until none helps.

OUT gets one entry per pick, named ``{i:03d}_{folders}__{original name}`` (``001_city__1.jpg``
for ``city/1.jpg``; wider for 1000 picks and more) so that the walk's natural order is the
story's and each name says where it came from: a relative symbolic link (the story
folder and the collection can move together), or with ``copy`` a copy of the bytes.
The story is built in a temporary folder beside OUT and renamed into place; a previous story
in OUT is replaced the same way, and any other content in OUT is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from artwalk.config import setting
from artwalk.errors import ConfigError, InputError
from artwalk.fsutil import (TMP_MARK, atomic_write_json, disk_errors, make_dir, sha256_file, tmp_name,
                            tmp_owner_alive)
from artwalk.images import IMAGE_EXTENSIONS, list_images, load_image, natural_key, resize

log = logging.getLogger(__name__)

STORY = "story.json"
FORMAT = "artwalk-story"
VERSION = 1
ORDERS = ("random", "similar")
FEATURES = "lab-histogram-4x4x4+lab-layout-8x8"
RUN_FILE = "walk.json"  # a walk's run folder; its frames are no part of a collection

_THUMB = 64  # features are computed on a THUMB x THUMB thumbnail
_LAYOUT = 8  # the layout part is an 8x8 grid of mean Lab colours
_BINS = 4  # histogram bins per Lab axis
_AB_RANGE = 80.0  # a and b bins span [-80, 80]; beyond is clipped into the edge bins
_ALL_STARTS = 256  # up to this many picks every start of the greedy chain is tried, beyond only the first
_NAME_BYTES = 255  # longest file name most file systems take


@dataclass(frozen=True)
class StoryConfig:
    collection: Path | None = setting(None, "folder of images, with sub-folders at any depth", cli=False)
    out: Path | None = setting(None, "the story folder to write (a walk's input folder)", cli=False)
    n: int = setting(10, "how many images the story picks (at least 2, at most the collection's)", flags=("-n",),
                     metavar="N")
    seed: int = setting(0, "the seed of the draw: the same collection and seed give the same story",
                        metavar="S")
    order: str = setting("random", "random: the order of the draw; similar: a chain of visual neighbours "
                         "(Lab colour histogram + 8x8 layout, greedy nearest neighbour + 2-opt), so the walk "
                         "flows", choices=ORDERS)
    copy: bool = setting(False, "copy the picked files' bytes into OUT_FOLDER instead of linking to them "
                         "(a story that stands alone)")

    def check(self) -> None:
        if self.collection is None or self.out is None:
            raise ConfigError("give the COLLECTION folder and the OUT_FOLDER")
        if self.n < 2:
            raise ConfigError(f"-n {self.n}: a walk needs at least 2 images")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: give 0 or more")
        if self.order not in ORDERS:
            raise ConfigError(f"--order {self.order!r}: choose one of {', '.join(ORDERS)}")


@dataclass(frozen=True)
class StoryResult:
    folder: Path  # the story folder (OUT, resolved)
    story_json: Path
    names: tuple[str, ...]  # the entries of the folder, in story order
    sources: tuple[str, ...]  # their paths in the collection (POSIX, relative), same order
    collection_images: int  # how many images the collection holds
    neighbour_distance: float  # sum of the feature distances of consecutive images
    replaced: bool  # a previous story in OUT was replaced


# ---------------------------------------------------------------------------------------------
# The collection

def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_story(folder: Path) -> dict | None:
    """``folder``'s story.json if it is one of ours, else None."""
    data = _read_json(Path(folder) / STORY)
    return data if data is not None and data.get("format") == FORMAT else None


def _own_output(folder: Path) -> str | None:
    """What artwalk wrote ``folder`` as (a story, a walk's run folder), or None."""
    if read_story(folder) is not None:
        return "a story folder"
    if (folder / RUN_FILE).is_file():
        return "a walk's run folder"
    return None


def _rel_key(rel: Path) -> list:
    return [natural_key(part) for part in rel.parts]


def collection_images(root: Path | str) -> list[Path]:
    """Every image of ``root`` and its sub-folders at any depth, relative to ``root``, in natural order.

    Hidden files and folders and non-image files are skipped (one log line counts them);
    symbolic links to folders are followed, each real folder is read once (no loops); a
    sub-folder that artwalk wrote (a story's links, a walk's frames) is skipped.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: collection folder does not exist")
    if not root.is_dir():
        raise InputError(f"{root}: is a file, not a collection folder")
    found: list[Path] = []
    seen: set[Path] = set()
    folders = others = 0
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        if folder != root and (what := _own_output(folder)) is not None:
            log.info("story: skipping %s: %s", folder, what)
            continue
        try:
            entries = sorted(folder.iterdir(), key=lambda p: natural_key(p.name), reverse=True)
        except PermissionError:
            raise InputError(f"{folder}: permission denied listing the collection folder") from None
        has_images = False
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry)
            elif entry.suffix.lower() in IMAGE_EXTENSIONS:
                has_images = True  # a broken link too: list_images names it
            elif entry.is_file():
                others += 1
        if has_images:
            found += [p.relative_to(root) for p in list_images(folder, report=False)]
            folders += 1
    if not found:
        raise InputError(f"{root}: no images in the collection or its sub-folders "
                         f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    log.info("story: %d image(s) in %d folder(s) of %s%s", len(found), folders, root,
             f" ({others} non-image file(s) skipped)" if others else "")
    return sorted(found, key=_rel_key)


def pick(count: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``range(count)``, in the order a generator seeded with ``seed`` draws them."""
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(count, size=n, replace=False)]


# ---------------------------------------------------------------------------------------------
# Features and the chain of neighbours

def image_feature(rgb: np.ndarray) -> np.ndarray:
    """One vector per image (RGB float32 in [0, 1]): the Euclidean distance of two is their distance.

    Half of the squared distance is the squared Hellinger distance of the Lab colour
    histograms (4x4x4 bins; in [0, 1]); half is the mean squared Lab difference of the 8x8
    thumbnails, in Lab units / 100 (about [0, 1]).
    """
    thumb = resize(np.asarray(rgb, np.float32), _THUMB, _THUMB)
    lab = cv2.cvtColor(np.ascontiguousarray(thumb, np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
    li = np.clip((lab[:, 0] / 100.0 * _BINS).astype(int), 0, _BINS - 1)
    ab = np.clip(((lab[:, 1:] + _AB_RANGE) / (2 * _AB_RANGE) * _BINS).astype(int), 0, _BINS - 1)
    hist = np.bincount((li * _BINS + ab[:, 0]) * _BINS + ab[:, 1], minlength=_BINS ** 3).astype(np.float64)
    colour = np.sqrt(hist / hist.sum()) / math.sqrt(2.0)
    grid = cv2.cvtColor(np.ascontiguousarray(resize(thumb, _LAYOUT, _LAYOUT), np.float32), cv2.COLOR_RGB2Lab)
    layout = grid.reshape(-1).astype(np.float64) / 100.0 / math.sqrt(_LAYOUT * _LAYOUT)
    return np.concatenate([colour, layout]) * math.sqrt(0.5)


def distance_matrix(features: np.ndarray) -> np.ndarray:
    """The (n, n) Euclidean distances of the rows of ``features``."""
    f = np.asarray(features, np.float64)
    sq = np.einsum("ij,ij->i", f, f)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)
    d = np.sqrt(np.maximum(d2, 0.0))
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2.0  # exactly symmetric


def path_length(order: list[int], dist: np.ndarray) -> float:
    """The summed distance of consecutive images along ``order``."""
    return float(sum(dist[a, b] for a, b in zip(order, order[1:])))


def _greedy(start: int, dist: np.ndarray) -> list[int]:
    left = np.ones(len(dist), bool)
    left[start] = False
    order = [start]
    for _ in range(len(dist) - 1):
        nxt = int(np.argmin(np.where(left, dist[order[-1]], np.inf)))
        left[nxt] = False
        order.append(nxt)
    return order


def _two_opt(order: list[int], dist: np.ndarray, max_passes: int = 100) -> list[int]:
    """Reverse stretches of the open path while one shortens it (first-improvement, deterministic)."""
    p = np.array(order)
    n = len(p)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 1):
            js = np.arange(i + 1, n)
            nxt = p[np.minimum(js + 1, n - 1)]
            inner = js < n - 1
            delta = np.where(inner, dist[p[i], nxt] - dist[p[js], nxt], 0.0)
            if i > 0:
                delta += dist[p[i - 1], p[js]] - dist[p[i - 1], p[i]]
            k = int(np.argmin(delta))
            if delta[k] < -1e-12:
                j = int(js[k])
                p[i:j + 1] = p[i:j + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return [int(i) for i in p]


def similar_order(dist: np.ndarray) -> list[int]:
    """A short open path through every image: the best greedy nearest-neighbour chain, then 2-opt."""
    n = len(dist)
    starts = range(n) if n <= _ALL_STARTS else range(1)
    best = min((_greedy(s, dist) for s in starts), key=lambda o: path_length(o, dist))
    return _two_opt(best, dist)


# ---------------------------------------------------------------------------------------------
# The story folder

def story_names(sources: list[Path]) -> list[str]:
    """``001_<where>__<name>``, ...: each pick's path in the collection, its folders joined by
    ``__`` (``city/1.jpg`` and ``seaside/1.jpg`` become ``001_city__1.jpg`` and ``002_seaside__1.jpg``),
    after its place in the story, zero padded for the count so natural and plain order agree.
    A name too long for the file system loses the start of its folders first."""
    width = max(3, len(str(len(sources))))
    names = []
    for i, src in enumerate(sources, 1):
        prefix = f"{i:0{width}d}_"
        where, stem, suffix = "__".join(src.parts[:-1]), src.stem, src.suffix
        joined = lambda: f"{where}__{stem}" if where else stem  # noqa: E731
        while len((prefix + joined() + suffix).encode("utf-8")) > _NAME_BYTES and (where or stem):
            if where:
                where = where[1:]
            else:
                stem = stem[:-1]
        names.append(prefix + joined() + suffix)
    return names


def _check_out(out: Path, root: Path) -> bool:
    """Refuse an OUT that a story may not write; return whether it holds a previous story."""
    if out == root or out.is_relative_to(root):
        raise ConfigError(f"{out}: the story folder is inside the collection {root}, so a later story would "
                          "pick its images again; give a folder outside the collection")
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"{out}: the story folder is a file, not a folder; give a folder path")
    entries = {e.name for e in out.iterdir()}
    if not entries:
        return False
    old = read_story(out)
    if old is None:
        raise InputError(f"{out}: holds other files and no {STORY}; give a new or empty folder, or a previous "
                         "story's folder")
    listed = {img.get("name") for img in old.get("images", []) if isinstance(img, dict)}
    extra = sorted(entries - listed - {STORY}, key=natural_key)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise InputError(f"{out}: holds files the story did not write ({shown}); move them away, or give "
                         "another OUT_FOLDER")
    return True


def _remove_stale(final: Path) -> None:
    """Delete the temporary folders a killed story run left beside ``final``."""
    for entry in final.parent.iterdir():
        if entry.name.startswith(final.name + TMP_MARK) and not tmp_owner_alive(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _load(path: Path) -> np.ndarray:
    try:
        return load_image(path, min_size=(_THUMB, _THUMB))
    except InputError as exc:
        raise InputError(f"{exc}; it was picked for the story: fix it or move it out of the collection") from None


def make_story(config: StoryConfig) -> StoryResult:
    """Pick, order and write the story folder (see the module docstring)."""
    config.check()
    root = Path(config.collection).resolve()
    final = Path(config.out).resolve()
    replaced = _check_out(final, root)
    images = collection_images(config.collection)
    if config.n > len(images):
        raise ConfigError(f"-n {config.n}: the collection {config.collection} holds only {len(images)} image(s)")
    sources = [images[i] for i in pick(len(images), config.n, config.seed)]
    features = np.stack([image_feature(_load(root / rel)) for rel in sources])
    dist = distance_matrix(features)
    order = similar_order(dist) if config.order == "similar" else list(range(len(sources)))
    sources = [sources[i] for i in order]
    distance = path_length(order, dist)
    names = story_names(sources)

    make_dir(final.parent, "folder of the story folder")
    _remove_stale(final)
    tmp = tmp_name(final)
    try:
        with disk_errors(final):
            tmp.mkdir()
            entries = []
            for rel, name in zip(sources, names):
                src = root / rel
                entries.append({"name": name, "source": rel.as_posix(), "sha256": sha256_file(src)})
                if config.copy:
                    shutil.copyfile(src, tmp / name)
                else:
                    os.symlink(os.path.relpath(src, final), tmp / name)
            atomic_write_json(tmp / STORY, {
                "format": FORMAT, "version": VERSION, "collection": str(root),
                "collection_images": len(images), "seed": config.seed, "n": config.n, "order": config.order,
                "link": "copy" if config.copy else "symlink", "features": FEATURES,
                "neighbour_distance": round(distance, 6), "images": entries,
            })
            if final.exists():
                old = tmp_name(final)
                os.replace(final, old)  # from here until the next rename OUT is absent, never half a story
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("story: %d of %d image(s), seed %d, order %s (neighbour distance %.4f)%s -> %s", len(names),
             len(images), config.seed, config.order, distance, ", replacing the previous story" if replaced else "",
             final)
    return StoryResult(folder=final, story_json=final / STORY, names=tuple(names),
                       sources=tuple(s.as_posix() for s in sources), collection_images=len(images),
                       neighbour_distance=distance, replaced=replaced)
