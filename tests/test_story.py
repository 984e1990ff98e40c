"""``artwalk story``: the seeded draw across sub-folders, the chain of visual neighbours, the story
folder (links, copies, names, story.json, atomic replacement) and its one-line refusals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artwalk import story as lib
from artwalk.fsutil import TMP_MARK, sha256_file
from artwalk.images import natural_key
from pipeline.cli import main

# Four families of images: each a colour with its own layout (a gradient in its own direction);
# the members of a family differ a little in tone and in the gradient's strength.
FAMILIES = {
    "red": ((200, 40, 30), "right"),
    "green": ((40, 170, 60), "down"),
    "blue": ((30, 60, 190), "left"),
    "sand": ((225, 205, 150), "up"),
}
PER_FAMILY = 5
FOLDERS = [".", "paintings", "paintings/old", "sketches", "photos"]


def family_image(rgb, direction: str, k: int) -> np.ndarray:
    h, w = 32, 48
    ramp = np.linspace(0.55 + 0.04 * k, 1.0, w if direction in ("right", "left") else h)
    if direction in ("left", "up"):
        ramp = ramp[::-1]
    ramp = ramp[None, :, None] if direction in ("right", "left") else ramp[:, None, None]
    colour = np.clip(np.array(rgb, np.float64) + 6 * (k - 2), 0, 255)
    return np.clip(np.broadcast_to(ramp * colour, (h, w, 3)), 0, 255).astype(np.uint8)


def write_collection(root: Path) -> dict[str, str]:
    """The four families shuffled across the collection's folders; returns {relative path: family}."""
    rng = np.random.default_rng(7)
    members = [(fam, k) for fam in FAMILIES for k in range(PER_FAMILY)]
    rng.shuffle(members)
    where = {}
    for i, (fam, k) in enumerate(members):
        folder = root / FOLDERS[i % len(FOLDERS)]
        folder.mkdir(parents=True, exist_ok=True)
        rgb, direction = FAMILIES[fam]
        rel = (folder / f"{fam} {k}.png").relative_to(root).as_posix()
        Image.fromarray(family_image(rgb, direction, k)).save(root / rel)
        where[rel] = fam
    (root / "notes.txt").write_text("not an image")
    (root / "sketches" / "Thumbs.db").write_bytes(b"\0" * 8)
    (root / ".DS_Store").write_bytes(b"\0")
    hidden = root / ".thumbnails"
    hidden.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hidden / "thumb.png")
    return where


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("story") / "my collection ü"
    return root, write_collection(root)


def story(collection_dir: Path, out: Path, *flags: str) -> dict:
    assert main(["story", str(collection_dir), str(out), "-q", *flags]) == 0
    return json.loads((out / lib.STORY).read_text(encoding="utf-8"))


def fail(capsys, *argv: str) -> tuple[int, str]:
    """Run a story that must fail: (exit code, its one stderr line)."""
    capsys.readouterr()
    code = main(["story", *argv, "-q"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and err.count("\n") == 1, err
    return code, err


def mean_colour_distance(out: Path, names: list[str]) -> float:
    """The test's own neighbour distance: consecutive images' mean RGB colours, Euclidean."""
    means = [np.asarray(Image.open(out / n).convert("RGB"), np.float64).mean(axis=(0, 1)) for n in names]
    return float(sum(np.linalg.norm(a - b) for a, b in zip(means, means[1:])))


# ---------------------------------------------------------------------------------------------
# The draw

def test_the_collection_is_every_image_of_every_sub_folder_and_nothing_else(collection):
    root, where = collection
    found = [p.as_posix() for p in lib.collection_images(root)]
    assert sorted(found) == sorted(where)  # root images too; no notes.txt, Thumbs.db, hidden thumbnails
    assert found == sorted(found, key=lambda r: [natural_key(p) for p in r.split("/")])


def test_the_same_seed_gives_the_same_story_byte_for_byte(collection, tmp_path):
    root, _ = collection
    a = story(root, tmp_path / "a", "-n", "6", "--seed", "3")
    b = story(root, tmp_path / "b", "-n", "6", "--seed", "3")
    assert (tmp_path / "a" / lib.STORY).read_bytes() == (tmp_path / "b" / lib.STORY).read_bytes()
    assert sorted(os.listdir(tmp_path / "a")) == sorted(os.listdir(tmp_path / "b"))
    assert a["seed"] == 3 and a["n"] == 6 and a["order"] == "random" and a["collection_images"] == 20
    assert a["collection"] == str(root.resolve()) and a["link"] == "symlink"
    # rerun in place: replaced by the same story, same bytes
    before = (tmp_path / "a" / lib.STORY).read_bytes()
    assert story(root, tmp_path / "a", "-n", "6", "--seed", "3") == b
    assert (tmp_path / "a" / lib.STORY).read_bytes() == before
    other = story(root, tmp_path / "c", "-n", "6", "--seed", "4")
    assert [i["source"] for i in other["images"]] != [i["source"] for i in a["images"]]
    assert lib.pick(20, 6, 3) == lib.pick(20, 6, 3) != lib.pick(20, 6, 4)


def test_picks_span_the_sub_folders_and_the_root(collection, tmp_path):
    root, _ = collection
    picks = [i["source"] for i in story(root, tmp_path / "s", "-n", "12", "--seed", "1")["images"]]
    assert len(set(picks)) == 12
    folders = {str(Path(p).parent) for p in picks}
    assert len(folders) >= 4, folders


# ---------------------------------------------------------------------------------------------
# The order

def test_similar_chains_the_families_and_shortens_the_walk(collection, tmp_path):
    root, where = collection
    rand = story(root, tmp_path / "random", "-n", "20", "--seed", "5")
    sim = story(root, tmp_path / "similar", "-n", "20", "--seed", "5", "--order", "similar")
    assert {i["source"] for i in rand["images"]} == {i["source"] for i in sim["images"]}
    assert sim["neighbour_distance"] < 0.5 * rand["neighbour_distance"]
    families = [where[i["source"]] for i in sim["images"]]
    changes = sum(a != b for a, b in zip(families, families[1:]))
    assert changes == len(FAMILIES) - 1, families  # each family in one stretch
    # the test's own measure agrees
    names = [i["name"] for i in sim["images"]]
    assert mean_colour_distance(tmp_path / "similar", names) < 0.5 * mean_colour_distance(
        tmp_path / "random", [i["name"] for i in rand["images"]])
    # deterministic too
    again = story(root, tmp_path / "similar2", "-n", "20", "--seed", "5", "--order", "similar")
    assert again == sim


def test_the_chain_of_points_on_a_line_is_the_line():
    rng = np.random.default_rng(0)
    xs = rng.permutation(np.arange(30, dtype=np.float64) ** 1.3)
    dist = lib.distance_matrix(xs[:, None])
    order = lib.similar_order(dist)
    assert sorted(order) == list(range(30))
    assert lib.path_length(order, dist) == pytest.approx(xs.max() - xs.min())


def test_features_are_zero_for_the_same_image_and_grow_with_the_difference():
    base = family_image((200, 40, 30), "right", 2) / 255.0
    near = family_image((200, 40, 30), "right", 3) / 255.0
    flipped = base[:, ::-1]  # the same colours, another layout
    far = family_image((30, 60, 190), "left", 2) / 255.0
    f = [lib.image_feature(x.astype(np.float32)) for x in (base, near, flipped, far)]
    d = lib.distance_matrix(np.stack(f))
    assert d[0, 0] == 0 and np.allclose(d, d.T)
    assert 0 < d[0, 1] < d[0, 2] < d[0, 3] <= 1.5


# ---------------------------------------------------------------------------------------------
# The story folder

def test_links_are_relative_and_resolve_to_the_picked_files(tmp_path):
    project = tmp_path / "a project"
    root = project / "art ü"
    write_collection(root)
    out = project / "story ✓ folder"
    s = story(root, out, "-n", "5", "--seed", "2")
    names = [i["name"] for i in s["images"]]
    assert sorted(os.listdir(out)) == sorted(names + [lib.STORY])
    assert names == sorted(names, key=natural_key) == sorted(names)  # the walk's order is the story's
    for k, img in enumerate(s["images"], 1):
        link = out / img["name"]
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (root / img["source"]).resolve()
        assert img["name"] == f"{k:03d}_{img['source'].replace('/', '__')}"  # where it came from
        assert sha256_file(link) == img["sha256"]
    # the story and the collection move together
    moved = tmp_path / "moved project"
    project.rename(moved)
    assert all(sha256_file(moved / out.name / i["name"]) == i["sha256"] for i in s["images"])


def test_copy_copies_the_bytes(collection, tmp_path):
    root, _ = collection
    s = story(root, tmp_path / "c", "-n", "4", "--copy")
    assert s["link"] == "copy"
    for img in s["images"]:
        path = tmp_path / "c" / img["name"]
        assert not path.is_symlink() and path.read_bytes() == (root / img["source"]).read_bytes()


def test_names_sort_past_999():
    names = lib.story_names([Path(f"{i}.png") for i in range(1000)])
    assert names[0] == "0001_0.png" and names[-1] == "1000_999.png" and names == sorted(names)
    assert names == sorted(names, key=natural_key)
    long = lib.story_names([Path("a" * 254 + ".png")])[0]
    assert len(long.encode()) <= 255 and long.startswith("001_a") and long.endswith(".png")
    deep = lib.story_names([Path("b" * 200) / ("é" * 40) / "photo.jpg"])[0]  # folders give way first
    assert len(deep.encode()) <= 255 and deep.startswith("001_") and deep.endswith("é__photo.jpg")


def test_names_say_where_each_pick_came_from():
    names = lib.story_names([Path("city/1.jpg"), Path("seaside/1.jpg"), Path("2.jpg"), Path("a/b/3.png")])
    assert names == ["001_city__1.jpg", "002_seaside__1.jpg", "003_2.jpg", "004_a__b__3.png"]


def test_a_walk_reads_the_story_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "walk in ü"
    s = story(image_folder, out, "-n", "3", "--seed", "0", "--order", "similar")
    capsys.readouterr()
    assert main(["plan", str(out), str(tmp_path / "run"), "--preset", "cpu", "-q"]) == 0
    walk = json.loads((tmp_path / "run" / "walk.json").read_text(encoding="utf-8"))
    assert walk["images"] == [i["name"] for i in s["images"]]  # in the story's order; story.json skipped


def test_a_previous_story_is_replaced_whole_and_a_crash_keeps_it(collection, tmp_path, monkeypatch):
    root, _ = collection
    out = tmp_path / "s"
    first = story(root, out, "-n", "5", "--seed", "1", "--copy")
    second = story(root, out, "-n", "4", "--seed", "2")
    assert sorted(os.listdir(out)) == sorted([i["name"] for i in second["images"]] + [lib.STORY])
    assert first != second

    calls, real_copyfile = [], shutil.copyfile

    def crash(src, dst, **kw):  # killed after the first copy of the new story
        if calls:
            raise KeyboardInterrupt
        calls.append(dst)
        return real_copyfile(src, dst, **kw)

    monkeypatch.setattr(lib.shutil, "copyfile", crash)
    with pytest.raises(KeyboardInterrupt):
        lib.make_story(lib.StoryConfig(collection=root, out=out, n=6, seed=9, copy=True))
    assert len(calls) == 1
    assert json.loads((out / lib.STORY).read_text()) == second  # untouched
    assert sorted(os.listdir(out)) == sorted([i["name"] for i in second["images"]] + [lib.STORY])
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name]


def test_stale_temporary_folders_of_a_killed_story_are_removed(collection, tmp_path):
    root, _ = collection
    stale = tmp_path / f"s{TMP_MARK}999999999-deadbeef"
    stale.mkdir()
    (stale / "001_x.png").write_bytes(b"half")
    story(root, tmp_path / "s", "-n", "2")
    assert not stale.exists()


# ---------------------------------------------------------------------------------------------
# One-line refusals, nothing written

def test_n_larger_than_the_collection(collection, tmp_path, capsys):
    root, _ = collection
    code, err = fail(capsys, str(root), str(tmp_path / "s"), "-n", "21")
    assert code == 2 and "-n 21" in err and "only 20 image(s)" in err
    code, err = fail(capsys, str(root), str(tmp_path / "s"), "-n", "1")
    assert code == 2 and "at least 2" in err
    assert not (tmp_path / "s").exists()


def test_an_empty_or_missing_collection(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    code, err = fail(capsys, str(empty), str(tmp_path / "s"))
    assert code == 1 and "no images in the collection" in err
    code, err = fail(capsys, str(tmp_path / "nowhere"), str(tmp_path / "s"))
    assert "does not exist" in err
    assert not (tmp_path / "s").exists()


def test_a_picked_file_that_is_no_image_is_named(tmp_path, capsys):
    root = tmp_path / "c"
    write_collection(root)
    (root / "sketches" / "broken one.png").write_bytes(b"this is text, not a PNG")
    code, err = fail(capsys, str(root), str(tmp_path / "s"), "-n", "21")
    assert code == 1 and "broken one.png" in err and "picked for the story" in err
    assert not (tmp_path / "s").exists()
    (root / "photos" / "gone.png").symlink_to(root / "missing.png")
    code, err = fail(capsys, str(root), str(tmp_path / "s"), "-n", "2")
    assert "gone.png" in err and "broken symbolic link" in err


def test_out_folder_refusals(collection, tmp_path, capsys):
    root, _ = collection
    code, err = fail(capsys, str(root), str(root / "paintings" / "story"), "-n", "2")
    assert code == 2 and "inside the collection" in err
    assert not (root / "paintings" / "story").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    code, err = fail(capsys, str(root), str(busy), "-n", "2")
    assert "no story.json" in err and (busy / "mine.txt").exists()
    prev = tmp_path / "prev"
    story(root, prev, "-n", "2")
    (prev / "desc.csv").write_text("image,prompt\n")
    code, err = fail(capsys, str(root), str(prev), "-n", "3")
    assert "did not write (desc.csv)" in err and (prev / "desc.csv").exists()


def test_story_and_run_folders_inside_a_collection_are_not_read(collection, tmp_path):
    src, _ = collection
    root = tmp_path / "big"
    shutil.copytree(src, root)
    story(src, root / "stories" / "one", "-n", "3")  # a story of another collection, inside this one
    (root / "runs" / "r").mkdir(parents=True)
    (root / "runs" / "r" / "walk.json").write_text("{}")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "runs" / "r" / "frame.png")
    assert len(lib.collection_images(root)) == 20
