"""What the studio does to a project: settings and keyframes in, the timeline's state, in-betweens.

Each function takes the :class:`~studio.projects.Store` and ids, changes the project on
disk under its lock, and returns JSON-ready dicts; the HTTP handlers only translate.

A keyframe is an uploaded image (checked by the walk's own image loader, kept as it
came, bytes and format) or a prompt (``keyframe_from_prompt`` with the project's
keyframe engine, model and size; its PNG and its conditioning kept). Its position on
the timeline follows from its place in the order and the settings (S, I, F, fps):
``{"index": i, "frame": f, "seconds": s}``; moving a keyframe to a frame or a number of
seconds puts it in the slot nearest to that time.

Frame states (:func:`frame_states`): a unit of the timeline (a keyframe's hold, a
segment) is ``done`` when its signature (what its frames are made of) is the one the
last finished render made, ``stale`` when it changed since, ``none`` before any render,
and ``queued`` or ``rendering`` while a job that will make it is waiting or running.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
from PIL import Image

import diffusion_models
import frame_interpolation
from artwalk import limits
from artwalk.errors import ConfigError, InputError
from artwalk.fsutil import atomic_write_bytes, sha256_file, tmp_name
from artwalk.images import IMAGE_EXTENSIONS, encode_png, image_size, load_image, to_uint8
from diffusion_models import KeyframeConfig
from diffusion_models.conditioning import Conditioning
from diffusion_models.conform import conform
from diffusion_models.engines import ENGINES as KEYFRAME_ENGINES
from studio import walks
from studio.jobs import Job, Worker
from studio.projects import NotFound, Store, new_id

THUMB = 320  # px, the longer side of a thumbnail
MAX_INBETWEENS = 64
_models = threading.Lock()  # the neural engines: one request at a time uses them


# ------------------------------------------------------------------------- reading

def keyframe_json(store: Store, project: dict, index: int,
                  placed: tuple[list[walks.Unit], float] | None = None) -> dict:
    """One keyframe as the API shows it; ``placed``: the project's units and fps, if known."""
    units, fps = placed or _placed(store, project)
    kf, pid = project["keyframes"][index], project["id"]
    start = next((u.start for u in units if u.kind == "hold" and u.keyframes == (index,)), None)
    return {"id": kf["id"], "kind": kf["kind"], "name": kf.get("name"), "prompt": kf.get("prompt"),
            "negative": kf.get("negative"), "seed": kf.get("seed"), "sha256": kf["sha256"],
            "position": {"index": index, "frame": start, "seconds": None if start is None else start / fps},
            "image_url": f"/api/projects/{pid}/keyframes/{kf['id']}/image",
            "conditioning": kf["conditioning"]}


def _placed(store: Store, project: dict) -> tuple[list[walks.Unit], float]:
    """The project's units and its frame rate (one check of its settings)."""
    walk = walks.walk_for(project["settings"], models=store.models)
    return walks.layout(walk, [kf["sha256"] for kf in project["keyframes"]]), walk.motion.fps


def project_json(store: Store, worker: Worker, project: dict) -> dict:
    """The project, its keyframes with their positions, its last video and its running job."""
    placed, pid = _placed(store, project), project["id"]
    rendered = store.rendered(pid)
    video = None if rendered is None else {
        "url": f"/api/projects/{pid}/video", "format": rendered["format"], "frames": rendered["frames"],
        "version": rendered["job"], "filename": video_filename(project, rendered),
        "sheet_url": f"/api/projects/{pid}/contact-sheet" if rendered.get("sheet") else None}
    job = worker.active(pid)
    return {"id": pid, "name": project["name"], "created": project["created"], "settings": project["settings"],
            "keyframes": [keyframe_json(store, project, i, placed) for i in range(len(project["keyframes"]))],
            "video": video, "job": job.id if job else None}


def video_filename(project: dict, rendered: dict) -> str:
    """What a download of the video is called: the project's name, made safe, and the format."""
    name = "".join(c if c.isalnum() or c in "-_ " else "_" for c in project["name"]).strip() or "walk"
    return f"{name}.{rendered['format']}"


def frame_states(store: Store, worker: Worker, pid: str) -> dict:
    """The timeline as runs: each unit (a keyframe's hold, a segment) with its first frame,
    its frame count and its state, so the answer grows with the keyframes, not the frames."""
    with store.lock(pid):
        project = store.load(pid)
        units = walks.project_units(project, store.models)
        rendered = store.rendered(pid)
    made = {u["signature"] for u in rendered["units"]} if rendered else set()
    job: Job | None = worker.active(pid)
    coming = {u["signature"] for u in job.units} if job else set()
    runs = []
    for unit in units:
        if unit.signature in made:
            state = "done"
        elif unit.signature in coming:
            state = "rendering" if job.state == "running" else "queued"
        else:
            state = "stale" if rendered else "none"
        runs.append({**unit.as_json(), "state": state})
    return {"frames": sum(u.frames for u in units), "units": runs, "job": job.id if job else None}


def check_renderable(store: Store, pid: str) -> None:
    """What a render needs before it is queued: two keyframes (the settings were checked when set)."""
    with store.lock(pid):
        if len(store.load(pid)["keyframes"]) < 2:
            raise ConfigError("a walk needs at least two keyframes")


# ------------------------------------------------------------------------ changing

def change_settings(store: Store, pid: str, change) -> dict:
    """The project's settings with ``change``'s keys applied (:func:`studio.walks.merge`), saved
    once the walk they make passes the CLI's checks with the project's keyframes (its one-line
    errors otherwise); returns them."""
    with store.lock(pid):
        project = store.load(pid)
        merged = walks.merge(project["settings"], change)
        walk = walks.walk_for(merged, models=store.models)
        walks.layout(walk, [k["sha256"] for k in project["keyframes"]])  # its keyframes within the caps
        project["settings"] = merged
        store.save(project)
        return merged


def check_upload(store: Store, pid: str, data: bytes, filename: str) -> tuple[Path, np.ndarray, str]:
    """Write an upload to a temporary file in the project and read it with the walk's loader:
    (that file, the image, its extension); an :class:`InputError` naming the upload otherwise."""
    name = Path(filename or "upload").name
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        suffix = _suffix_of(data)
    tmp = tmp_name(store.path(pid, "keyframes", f"upload{suffix}"))
    tmp.write_bytes(data)
    try:
        image = load_image(tmp, min_size=(THUMB, THUMB))  # decoded reduced: the check and the thumbnail
    except InputError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(str(exc).replace(str(tmp), name)) from None
    return tmp, image, suffix


def _suffix_of(data: bytes) -> str:
    """The extension for what the bytes are, for an upload named without one (.png if unknown:
    the loader then says what is wrong with it)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
    except Exception:
        return ".png"
    return next((ext for ext, f in sorted(Image.registered_extensions().items())
                 if f == fmt and ext in IMAGE_EXTENSIONS), ".png")


def _place_image(store: Store, pid: str, kid: str, tmp: Path, image: np.ndarray, suffix: str) -> dict:
    final = store.path(pid, "keyframes", f"{kid}{suffix}")
    tmp.replace(final)
    _write_thumb(store, pid, kid, image)
    return {"file": final.name, "sha256": sha256_file(final)}


def _write_thumb(store: Store, pid: str, kid: str, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    scale = min(1.0, THUMB / max(h, w))
    im = Image.fromarray(to_uint8(image))
    if scale < 1.0:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    atomic_write_bytes(store.path(pid, "thumbs", f"{kid}.png"), encode_png(np.asarray(im, np.float32) / 255.0))


def add_image(store: Store, pid: str, data: bytes, filename: str, kid: str | None = None) -> dict:
    """A new keyframe from an upload at the end (or, with ``kid``, that keyframe's image replaced)."""
    tmp, image, suffix = check_upload(store, pid, data, filename)
    try:
        width, height = image_size(tmp)  # as it is shown, from its header (the image was decoded reduced)
        with store.lock(pid):
            project = store.load(pid)
            index = _index(project, kid) if kid else None
            if index is None:
                _check_one_more(store, project)
            new = kid or new_id()
            old = project["keyframes"][index] if index is not None else None
            placed = _place_image(store, pid, new, tmp, image, suffix)
            kf = {"id": new, "kind": "image", "name": Path(filename or "upload").name, **placed,
                  "conditioning": {"image": {"sha256": placed["sha256"], "size": [width, height]}}}
            _replace(store, project, index, old, kf)
            return keyframe_json(store, project, project["keyframes"].index(kf))
    finally:
        tmp.unlink(missing_ok=True)


def add_prompt(store: Store, pid: str, prompt: str, negative: str | None, seed: int | None,
               kid: str | None = None) -> dict:
    """A new keyframe made from a prompt by the project's keyframe engine (or, with ``kid``,
    that keyframe remade from the prompt)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError("prompt must be a non-empty string")
    limits.check_prompt("the prompt", prompt)
    with store.lock(pid):
        project = store.load(pid)
        if kid is None:
            _check_one_more(store, project)
    config = _text_config(store, project["settings"], negative, seed)
    with _models:
        image, cond = diffusion_models.keyframe_from_prompt(prompt, config)
    new = kid or new_id()
    with store.lock(pid):
        project = store.load(pid)
        index = _index(project, kid) if kid else None
        old = project["keyframes"][index] if index is not None else None
        final = store.path(pid, "keyframes", f"{new}.png")
        atomic_write_bytes(final, encode_png(image))
        atomic_write_bytes(store.path(pid, "keyframes", f"{new}.safetensors"), cond.to_bytes())
        _write_thumb(store, pid, new, image)
        kf = {"id": new, "kind": "prompt", "name": None, "file": final.name, "sha256": sha256_file(final),
              "prompt": prompt, "negative": negative, "seed": config.seed, "conditioning": cond.describe()}
        _replace(store, project, index, old, kf)
        return keyframe_json(store, project, project["keyframes"].index(kf))


def _check_one_more(store: Store, project: dict) -> None:
    """A :class:`ConfigError` if one keyframe more would take the walk over the frames a walk
    may have (:data:`artwalk.limits.MAX_FRAMES`): before anything is made or written."""
    walk = walks.walk_for(project["settings"], models=store.models)
    walks.layout(walk, [kf["sha256"] for kf in project["keyframes"]] + [""])


def _text_config(store: Store, settings: dict, negative: str | None, seed: int | None) -> KeyframeConfig:
    """The project's keyframe settings for one text-to-image keyframe (its engine must make images from text)."""
    walk = walks.walk_for(settings, models=store.models)
    diffusion_models.check_text2image(walk.engines.keyframes)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(f"seed must be a whole number 0 or more, got {json.dumps(seed)}")
    if negative is not None and not isinstance(negative, str):
        raise ConfigError("negative must be a string")
    limits.check_prompt("the negative prompt", negative)
    return dataclasses.replace(walk.keyframes, engine=walk.engines.keyframes, prompts=None,
                               seed=walk.keyframes.seed if seed is None else seed,
                               negative_prompt=negative or walk.keyframes.negative_prompt)


def _replace(store: Store, project: dict, index: int | None, old: dict | None, kf: dict) -> None:
    if index is None:
        project["keyframes"].append(kf)
    else:
        project["keyframes"][index] = kf
    store.save(project)
    if old is not None and old["file"] != kf["file"]:
        store.path(project["id"], "keyframes", old["file"]).unlink(missing_ok=True)
    if old is not None and old["kind"] == "prompt" and kf["kind"] != "prompt":
        store.path(project["id"], "keyframes", f"{old['id']}.safetensors").unlink(missing_ok=True)


def move(store: Store, pid: str, kid: str, index=None, position=None) -> dict:
    """Move a keyframe to ``index`` in the order, or to the slot nearest ``position``
    (frames, or seconds as ``"2.5s"``)."""
    with store.lock(pid):
        project = store.load(pid)
        current = _index(project, kid)
        count = len(project["keyframes"])
        if index is None:
            index = _slot_nearest(store, project, position)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise ConfigError(f"index must be a whole number in [0, {count - 1}], got {json.dumps(index)}")
        project["keyframes"].insert(index, project["keyframes"].pop(current))
        store.save(project)
        return keyframe_json(store, project, index)


def _slot_nearest(store: Store, project: dict, position) -> int:
    units, fps = _placed(store, project)
    if isinstance(position, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*s\s*", position):
        frame = float(position.strip()[:-1]) * fps
    elif isinstance(position, (int, float)) and not isinstance(position, bool) and position >= 0:
        frame = float(position)
    else:
        raise ConfigError(f"position must be a frame (48) or seconds ('2.5s'), got {json.dumps(position)}")
    starts = [u.start for u in units if u.kind == "hold"]
    return min(range(len(starts)), key=lambda i: (abs(starts[i] - frame), i))


def delete(store: Store, pid: str, kid: str) -> None:
    with store.lock(pid):
        project = store.load(pid)
        kf = project["keyframes"].pop(_index(project, kid))
        store.save(project)
        for name in (kf["file"], f"{kid}.safetensors"):
            store.path(pid, "keyframes", name).unlink(missing_ok=True)
        store.path(pid, "thumbs", f"{kid}.png").unlink(missing_ok=True)


def _index(project: dict, kid: str) -> int:
    for i, kf in enumerate(project["keyframes"]):
        if kf["id"] == kid:
            return i
    raise NotFound(f"no keyframe '{kid}' in project {project['id']}")


# ------------------------------------------------------------------- in-betweens

def interpolate(store: Store, pid: str, a: str, b: str, n: int) -> list[str]:
    """``n`` images between two different keyframes ``a`` and ``b``, evenly spaced: for two prompt
    keyframes and a text-to-image engine, their conditionings mixed (text embeddings and
    noise SLERPed, as a prompt walk's in-betweens); otherwise the motion engine's frames
    between the two images at the walk's size. Returns their URLs (cached by content)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_INBETWEENS:
        raise ConfigError(f"n must be a whole number in [1, {MAX_INBETWEENS}], got {json.dumps(n)}")
    with store.lock(pid):
        project = store.load(pid)
        ia, ib = (_index(project, k) for k in (a, b))
        if ia == ib:
            raise ConfigError(f"interpolate needs two different keyframes: from and to are both keyframe {ia + 1}")
        ka, kb = project["keyframes"][ia], project["keyframes"][ib]
        walk = walks.walk_for(project["settings"], models=store.models)
    limits.check_interpolate(*walk.keyframes.size, n)
    times = [k / (n + 1) for k in range(1, n + 1)]
    by_text = ka["kind"] == kb["kind"] == "prompt" and "text2image" in KEYFRAME_ENGINES.get(
        walk.engines.keyframes).features
    key = hashlib.sha256(json.dumps([ka["sha256"], kb["sha256"], n, by_text, walks.settings_signature(walk)])
                         .encode()).hexdigest()[:16]
    folder = store.path(pid, "inbetweens", key)
    urls = [f"/api/projects/{pid}/inbetweens/{key}/{i:03d}.png" for i in range(n)]
    if folder.is_dir() and all((folder / f"{i:03d}.png").is_file() for i in range(n)):
        return urls
    if by_text:
        conds = [Conditioning.from_bytes(store.path(pid, "keyframes", f"{k['id']}.safetensors").read_bytes())
                 for k in (ka, kb)]
        with _models:
            config = _text_config(store, project["settings"], None, None)
            images = diffusion_models.interpolate(*conds, times, config)
    else:
        width, height = walk.keyframes.size
        ends = [conform(load_image(store.path(pid, "keyframes", k["file"]), min_size=(width, height)), width, height,
                        walk.keyframes.effective_fit) for k in (ka, kb)]
        with _models:
            images = list(frame_interpolation.check(walk.motion).interpolate(*ends, times))
    tmp = tmp_name(folder)
    tmp.mkdir(parents=True)
    for i, image in enumerate(images):
        (tmp / f"{i:03d}.png").write_bytes(encode_png(image))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return urls
