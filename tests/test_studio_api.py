"""The studio's HTTP API through FastAPI's TestClient: every route, the 409, the 413, bad
uploads, traversal attempts, the token, and a real server killed mid-job and restarted.

Renders use the classical engines at 64x48 (and tiny random SD through the real loader
for prompt keyframes), so each takes about a second.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import EXAMPLES, REPO, count_frames, small_copy  # noqa: E402
from studio.app import create_app  # noqa: E402
from studio_server import FAST, free_port, own, start_server  # noqa: E402

PORT = 8765  # what create_app answers to by default (the TestClient's address)
BASE = f"http://127.0.0.1:{PORT}"
TOKEN = "0123456789abcdef0123"


def studio_client(root: Path, **options) -> TestClient:
    """A client of the studio at ``root`` as its own page is: its address, its Origin."""
    return TestClient(create_app(root, **options), base_url=BASE, headers={"Origin": BASE})


def png_bytes(src: Path, tmp: Path, width: int = 96) -> bytes:
    return small_copy(src, tmp / f"{src.stem}.png", width).read_bytes()


def upload(client, pid, data: bytes, name: str = "a.png", kid: str | None = None):
    url = f"/api/projects/{pid}/keyframes" + (f"/{kid}" if kid else "")
    method = client.patch if kid else client.post
    return method(url, files={"file": (name, data, "image/png")})


def wait_job(client, job: str, timeout: float = 120, states=("done", "failed")) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] in states:
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish")


@pytest.fixture
def client(tmp_path):
    with studio_client(tmp_path / "studio root") as c:
        yield c


@pytest.fixture
def photos(tmp_path) -> list[bytes]:
    return [png_bytes(p, tmp_path) for p in sorted(EXAMPLES.glob("0*"))]


def make_project(client, photos, count=3, settings=FAST) -> str:
    pid = client.post("/api/projects", json={"name": "walk ü"}).json()["id"]
    for i in range(count):
        assert upload(client, pid, photos[i], f"photo {i}.png").status_code == 201
    assert client.put(f"/api/projects/{pid}/settings", json=settings).status_code == 200
    return pid


def states(client, pid) -> list[str]:
    return [u["state"] for u in client.get(f"/api/projects/{pid}/frames").json()["units"]]


def test_projects_keyframes_settings_and_a_render(client, photos, tmp_path):
    assert client.get("/api/projects").json() == []
    pid = make_project(client, photos)
    assert [p["id"] for p in client.get("/api/projects").json()] == [pid]
    project = client.get(f"/api/projects/{pid}").json()
    assert project["name"] == "walk ü" and project["settings"]["fps"] == 8 and project["video"] is None
    kfs = project["keyframes"]
    # H = 2 frames of hold, N - 1 = 3 motion frames: keyframes at frames 0, 5, 10.
    assert [k["position"] for k in kfs] == [{"index": i, "frame": 5 * i, "seconds": 5 * i / 8} for i in range(3)]
    thumb = client.get(kfs[0]["image_url"])
    assert thumb.headers["content-type"] == "image/png" and Image.open(io.BytesIO(thumb.content)).width == 96
    assert kfs[0]["conditioning"]["image"]["size"] == [96, 96]

    frames = client.get(f"/api/projects/{pid}/frames").json()
    assert frames["frames"] == 12 and {u["state"] for u in frames["units"]} == {"none"}
    assert [(u["kind"], u["keyframes"], u["start"], u["frames"]) for u in frames["units"]] == [
        ("hold", [0], 0, 2), ("segment", [0, 1], 2, 3), ("hold", [1], 5, 2), ("segment", [1, 2], 7, 3),
        ("hold", [2], 10, 2)]

    job = client.post(f"/api/projects/{pid}/render")
    assert job.status_code == 202
    second = client.post(f"/api/projects/{pid}/render")
    assert second.status_code == 409 and "already rendering" in second.json()["detail"]
    done = wait_job(client, job.json()["job"])
    assert done["state"] == "done" and done["progress"] == 1.0 and done["error"] is None
    assert done["stages"]["keyframes"] == {"reused": 0, "recomputed": 3}
    assert done["stages"]["motion"] == {"reused": 0, "recomputed": 2}
    assert set(states(client, pid)) == {"done"}
    manifest = json.loads((tmp_path / "studio root" / pid / "run" / "keyframes" / "manifest.json").read_text())
    sources = [e["source"] for e in manifest["outputs"] if e["kind"] == "original"]  # the sheet's labels
    assert sources == ["0001_photo 0.png", "0002_photo 1.png", "0003_photo 2.png"]  # the names given

    video = client.get(f"/api/projects/{pid}/video")
    assert video.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(video.content)
    assert count_frames(tmp_path / "got.mp4")[0] == 12
    sheet = client.get(f"/api/projects/{pid}/contact-sheet")
    assert sheet.headers["content-type"] == "image/png" and sheet.content[:4] == b"\x89PNG"

    # Replace the middle keyframe: its hold and both segments turn stale, the end holds stay done.
    assert upload(client, pid, photos[3], "new.png", kid=kfs[1]["id"]).status_code == 200
    assert states(client, pid) == ["done", "stale", "stale", "stale", "done"]
    again = wait_job(client, client.post(f"/api/projects/{pid}/render").json()["job"])
    assert again["stages"]["keyframes"] == {"reused": 2, "recomputed": 1}
    assert again["stages"]["motion"] == {"reused": 0, "recomputed": 2}
    assert set(states(client, pid)) == {"done"}

    # Move the last keyframe first, by index; then by seconds (nearest slot), then delete.
    moved = client.patch(f"/api/projects/{pid}/keyframes/{kfs[2]['id']}", json={"index": 0}).json()
    assert moved["position"]["index"] == 0
    order = [k["id"] for k in client.get(f"/api/projects/{pid}").json()["keyframes"]]
    assert order == [kfs[2]["id"], kfs[0]["id"], kfs[1]["id"]]
    back = client.patch(f"/api/projects/{pid}/keyframes/{kfs[2]['id']}", json={"position": "1.3s"}).json()
    assert back["position"] == {"index": 2, "frame": 10, "seconds": 1.25}
    assert client.delete(f"/api/projects/{pid}/keyframes/{kfs[0]['id']}").status_code == 204
    assert len(client.get(f"/api/projects/{pid}").json()["keyframes"]) == 2
    assert client.get(f"/api/projects/{pid}/keyframes/{kfs[0]['id']}/image").status_code == 404

    # Interpolate two image keyframes: the motion engine's frames at the walk's size.
    ids = [k["id"] for k in client.get(f"/api/projects/{pid}").json()["keyframes"]]
    urls = client.post(f"/api/projects/{pid}/interpolate", json={"a": ids[0], "b": ids[1], "n": 2}).json()["images"]
    assert len(urls) == 2
    images = [np.asarray(Image.open(io.BytesIO(client.get(u).content))) for u in urls]
    assert images[0].shape == (48, 64, 3) and not np.array_equal(images[0], images[1])


def test_settings_are_checked_as_the_cli_checks_them(client, photos):
    pid = make_project(client, photos, count=0, settings={"fps": 12})
    put = lambda body: client.put(f"/api/projects/{pid}/settings", json=body)  # noqa: E731
    assert put({"w": 320}).json() == {"fps": 12, "w": 320}  # keys left out keep their value
    assert put({"w": None}).json() == {"fps": 12}  # null: back to the default
    # The CLI's checks, in the page's words: "the motion engine", "width", not --motion-engine, --w.
    cases = [({"fps": -1}, "fps must be a number"), ({"easing": "wobbly"}, "easing: invalid choice: 'wobbly'"),
             ({"S": "many"}, "S in-betweens: 'many' is not a whole number"), ({"w": 3}, "width must be between 16"),
             ({"h": "tall"}, "height: 'tall' is not a whole number"), ({"colour": 1}, "unknown setting 'colour'"),
             ({"engines": {"motion": "warp"}}, "the motion engine: invalid choice: 'warp'"),
             ({"target": "huge"}, "target: unknown target 'huge'"),
             ({"engines": {"sound": "x"}}, "engines must be an object"),
             ({"engines": {"keyframes": "none"}, "steps": 4}, "does not take diffusion steps"),
             ({"engines": {"motion": "flow"}, "models": {"motion": "m"}}, "does not take the motion model"),
             ({"engines": {"upscale": "none"}, "target": "2k"}, "the upscale engine none skips stage 3, so target"),
             ({"engines": {"motion": "none"}}, "the motion engine none cannot walk between keyframes")]
    for body, words in cases:
        reply = put(body)
        assert reply.status_code == 400, body
        detail = reply.json()["detail"]
        assert words in detail and "\n" not in detail, detail
        assert not re.search(r"(?<![\w-])--?[A-Za-z]|argument ", detail), detail  # no flag: the page has none
    assert client.get(f"/api/projects/{pid}").json()["settings"] == {"fps": 12}  # nothing half-applied
    assert client.post(f"/api/projects/{pid}/render").json()["detail"] == "a walk needs at least two keyframes"


def test_bad_uploads_and_bodies(client, photos, tmp_path):
    pid = make_project(client, photos, count=1)
    text = upload(client, pid, b"just some text, not a picture", "notes.png")
    assert text.status_code == 400 and text.json() == {
        "detail": "notes.png: not an image, or a format this tool cannot read"}
    assert upload(client, pid, b"", "empty.png").json()["detail"] == "empty.png: empty file (0 bytes)"
    cut = photos[0][: len(photos[0]) // 2]
    assert "truncated or corrupt" in upload(client, pid, cut, "cut.png").json()["detail"]
    # Odd but good images: CMYK JPEG, 16-bit greyscale, palette with alpha, an animated GIF.
    odd = []
    rgb = Image.open(io.BytesIO(photos[1])).convert("RGB")
    for mode, fmt in (("CMYK", "JPEG"), ("I;16", "PNG"), ("P", "PNG"), ("RGBA", "PNG")):
        buf = io.BytesIO()
        im = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
        im.save(buf, fmt, **({"transparency": 0} if mode == "P" else {}))
        odd.append((f"odd {mode}.{fmt.lower()}", buf.getvalue()))
    buf = io.BytesIO()
    rgb.save(buf, "GIF", save_all=True, append_images=[rgb.rotate(90)])
    odd.append(("moving.gif", buf.getvalue()))
    for name, data in odd:
        reply = upload(client, pid, data, name)
        assert reply.status_code == 201, reply.json()
    files = sorted(p.name for p in (tmp_path / "studio root" / pid / "keyframes").iterdir())
    assert not [f for f in files if ".tmp-" in f]  # the refused uploads left nothing behind
    assert len(client.get(f"/api/projects/{pid}").json()["keyframes"]) == 6

    no_type = client.post("/api/projects", content=b'{"name": "x"}')
    assert no_type.status_code == 415 and "application/json" in no_type.json()["detail"]
    form = client.post("/api/projects", data={"name": "x"})
    assert form.status_code == 415
    assert client.post("/api/projects", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/api/projects", json={}).json()["detail"].startswith("name:")
    assert client.post(f"/api/projects/{pid}/keyframes", json={"prompt": "a house"}).json()["detail"].startswith(
        "a prompt walk makes its keyframes from text: engine 'none' cannot")
    missing = client.patch(f"/api/projects/{pid}/keyframes/abcdefabcdef", json={"index": 0})
    assert missing.status_code == 404 and "no keyframe" in missing.json()["detail"]


def test_uploads_over_the_limit_get_413(tmp_path, photos):
    with studio_client(tmp_path / "root", max_upload_mb=0.05) as client:
        pid = client.post("/api/projects", json={"name": "small"}).json()["id"]
        big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, "PNG")
        assert len(buf.getvalue()) > 0.05 * 2**20
        reply = upload(client, pid, buf.getvalue(), "big.png")
        assert reply.status_code == 413 and "--max-upload-mb" in reply.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            data = buf.getvalue()
            for i in range(0, len(data), 8192):
                yield data[i:i + 8192]

        streamed = client.post(f"/api/projects/{pid}/keyframes", content=chunks(),
                               headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.get(f"/api/projects/{pid}").json()["keyframes"] == []


def test_no_request_reaches_outside_the_root(client, photos, tmp_path):
    root = tmp_path / "studio root"
    pid = make_project(client, photos, count=1)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (root / "abcdefabcdef").symlink_to(tmp_path, target_is_directory=True)  # a link placed in ROOT
    (root / pid / "thumbs" / "bbbbbbbbbbbb.png").symlink_to(secret)
    tries = ["/api/projects/..", "/api/projects/../secret.txt", "/api/projects/%2e%2e%2fsecret.txt",
             "/api/projects/%2e%2e%2f%2e%2e%2fetc%2fpasswd/frames", f"/api/projects/{pid}/keyframes/..%2f..%2f/image",
             f"/api/projects/{pid}/keyframes/%2e%2e%2f{pid}/image", "/api/projects/abcdefabcdef",
             "/api/projects/abcdefabcdef/video", f"/api/projects/{pid}/keyframes/bbbbbbbbbbbb/image",
             f"/api/projects/{pid}/inbetweens/..%2f..%2f..%2f..%2f/secret.txt",
             "/api/projects/%2Ftmp%2Fsecret.txt", "/static/..%2fapp.py", "/static/%2Fetc%2Fpasswd",
             "/api/jobs/..%2f..%2fsecret", f"/api/projects/{tmp_path}/frames"]
    for url in tries:
        reply = client.get(url)
        assert reply.status_code in (404, 405), (url, reply.status_code)
        assert b"do not serve" not in reply.content and b"import" not in reply.content
    assert [p["id"] for p in client.get("/api/projects").json()] == [pid]  # the link is no project
    assert client.get("/static/studio.js").status_code == 200


def test_the_token_when_bound_elsewhere(tmp_path):
    with studio_client(tmp_path / "root", token=TOKEN) as client:
        assert client.get("/api/projects").status_code == 401
        assert client.get("/api/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/projects", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        page = client.get(f"/?token={TOKEN}", follow_redirects=False)  # traded for the cookie, and dropped
        assert page.status_code == 303 and page.headers["location"] == "/"
        assert f"artwalk_token_{PORT}={TOKEN}" in page.headers["set-cookie"]
        assert "SameSite=Strict" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
        assert client.get("/api/projects").status_code == 200  # the page's cookie now carries it
        client.cookies.clear()
        assert client.get("/openapi.json").status_code == 401
    for short in ("", "s3cret", "x" * 15, "a token with spaces in it"):
        with pytest.raises(ValueError):
            create_app(tmp_path / "root", token=short)


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, methods in {
        "/api/projects": {"get", "post"}, "/api/projects/{pid}": {"get"},
        "/api/projects/{pid}/keyframes": {"post"}, "/api/projects/{pid}/keyframes/{kid}": {"patch", "delete"},
        "/api/projects/{pid}/settings": {"put"}, "/api/projects/{pid}/interpolate": {"post"},
        "/api/projects/{pid}/render": {"post"}, "/api/jobs/{job}": {"get"}, "/api/jobs/{job}/events": {"get"},
        "/api/projects/{pid}/frames": {"get"}, "/api/projects/{pid}/video": {"get"},
        "/api/projects/{pid}/contact-sheet": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    body = paths["/api/projects/{pid}/keyframes"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}


def test_prompt_keyframes_and_their_in_betweens(tmp_path, photos, tiny_built):
    pytest.importorskip("diffusers")
    shutil.copytree(tiny_built("sd")["sd"], tmp_path / "tiny" / "sd")  # the models folder the studio is started with
    settings = {**FAST, "S": 1, "steps": 2, "engines": {**FAST["engines"], "keyframes": "sd"},
                "models": {"keyframes": "sd"}}
    with studio_client(tmp_path / "root", models=tmp_path / "tiny") as client:
        pid = make_project(client, photos, count=1, settings=settings)
        a = client.post(f"/api/projects/{pid}/keyframes", json={"prompt": "a red house | a storm:0.5", "seed": 3})
        assert a.status_code == 201, a.json()
        a = a.json()
        assert a["kind"] == "prompt" and a["seed"] == 3
        assert [(t["text"], t["weight"]) for t in a["conditioning"]["prompts"]] == [("a red house", 1.0),
                                                                                   ("a storm", 0.5)]
        b = client.post(f"/api/projects/{pid}/keyframes", json={"prompt": "a lion", "negative": "blurry"}).json()
        assert b["conditioning"]["negative"] == "blurry"
        urls = client.post(f"/api/projects/{pid}/interpolate", json={"a": a["id"], "b": b["id"], "n": 3}).json()
        pictures = [np.asarray(Image.open(io.BytesIO(client.get(u).content))) for u in urls["images"]]
        assert len(pictures) == 3 and pictures[0].shape == (48, 64, 3)
        assert len({p.tobytes() for p in pictures}) == 3
        # The same prompt and seed give the same image (the keyframe engine is deterministic).
        again = client.patch(f"/api/projects/{pid}/keyframes/{a['id']}",
                             json={"prompt": "a red house | a storm:0.5", "seed": 3}).json()
        assert again["sha256"] == a["sha256"]
        done = wait_job(client, client.post(f"/api/projects/{pid}/render").json()["job"])
        assert done["state"] == "done", done
        assert done["stages"]["keyframes"]["recomputed"] == 3 + 2  # 3 originals, S=1 in-betweens per pair


def follow_job(client, job: str, timeout: float = 120) -> list[dict]:
    """Every state the job shows, read as fast as the server answers, until it has finished."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        seen.append(client.get(f"/api/jobs/{job}").json())
        if seen[-1]["state"] in ("done", "failed", "cancelled"):
            return seen
        time.sleep(0.005)
    raise AssertionError(f"job {job} did not finish")


def test_progress_and_eta_move_within_each_stage(client, photos):
    # 4 keyframes, 3 segments of 23 motion frames, a video at twice the size: about a second.
    settings = {**FAST, "I": 2, "fps": 12, "w": 160, "h": 120, "target": "320x240"}
    pid = make_project(client, photos, count=4, settings=settings)
    seen = follow_job(client, client.post(f"/api/projects/{pid}/render").json()["job"])
    assert seen[-1]["state"] == "done", seen[-1]
    for stage in ("motion", "video"):  # each moves within itself, not only from one stage to the next
        inside = [s for s in seen if s["stage"] == stage and s["state"] == "running"]
        values = sorted({s["progress"] for s in inside})
        assert len(values) >= 3, (stage, values)
        etas = [s["eta_s"] for s in inside if s["eta_s"] is not None]
        assert len(set(etas)) >= 2 and max(etas) > 0, (stage, etas)
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0 and max(progress[:-1]) < 1.0  # never back
    video = [s for s in seen if s["stage"] == "video"]
    assert video[0]["progress"] < 0.5 < video[-1]["progress"]  # the encode of the larger frames is most of it


def finished_units(stage_dir: Path) -> set[str]:
    units = stage_dir / "units"
    return {u.name for u in units.iterdir() if ".tmp-" not in u.name and (u / "unit.json").is_file()} \
        if units.is_dir() else set()


def test_a_cancelled_render_resumes_to_the_same_video(client, photos, tmp_path):
    root = tmp_path / "studio root"
    # 4 keyframes, 3 segments of 35 motion frames at 320x240: long enough to cancel in the middle.
    settings = {**FAST, "I": 3, "fps": 12, "w": 320, "h": 240, "target": "x0.5"}
    cut, whole = (make_project(client, photos, count=4, settings=settings) for _ in range(2))
    waiting = make_project(client, photos, count=2, settings=FAST)
    job = client.post(f"/api/projects/{cut}/render").json()["job"]
    queued = client.post(f"/api/projects/{waiting}/render").json()["job"]  # behind the first: one worker
    stopped = client.delete(f"/api/jobs/{queued}")
    assert stopped.status_code == 200 and stopped.json()["state"] == "cancelled"  # at once: it never started

    end = time.monotonic() + 60
    while not finished_units(root / cut / "run" / "frames"):  # the first motion segment is on disk
        assert time.monotonic() < end and client.get(f"/api/jobs/{job}").json()["state"] == "running"
        time.sleep(0.005)
    reply = client.delete(f"/api/jobs/{job}")
    assert reply.status_code == 200 and reply.json()["cancelling"] is True
    state = wait_job(client, job, states=("cancelled", "done", "failed"))
    assert state["state"] == "cancelled" and state["stage"] == "motion" and state["error"] is None, state
    kept = finished_units(root / cut / "run" / "frames")
    assert 1 <= len(kept) < 3  # stopped within the stage, and what it finished stays
    assert not list((root / cut / "run").glob("*.mp4")) and not (root / cut / "rendered.json").exists()
    assert client.delete(f"/api/jobs/{job}").json()["state"] == "cancelled"  # again: nothing changes
    assert set(states(client, cut)) == {"none"}  # nothing rendered yet, and nothing coming
    after = client.get(f"/api/jobs/{queued}").json()
    assert after["state"] == "cancelled" and after["started"] is None and not (root / waiting / "run").exists()

    again = wait_job(client, client.post(f"/api/projects/{cut}/render").json()["job"])
    assert again["state"] == "done", again
    assert again["stages"]["keyframes"] == {"reused": 4, "recomputed": 0}
    assert again["stages"]["motion"] == {"reused": len(kept), "recomputed": 3 - len(kept)}
    assert kept <= finished_units(root / cut / "run" / "frames")
    reference = wait_job(client, client.post(f"/api/projects/{whole}/render").json()["job"])
    assert reference["stages"]["motion"] == {"reused": 0, "recomputed": 3}
    assert client.get(f"/api/projects/{cut}/video").content == client.get(f"/api/projects/{whole}/video").content
    over = client.delete(f"/api/jobs/{reference['id']}")
    assert over.status_code == 409 and "already finished (done)" in over.json()["detail"]
    assert client.delete("/api/jobs/0123456789abcdef").status_code == 404


def test_interpolate_refuses_one_keyframe_twice(client, photos):
    pid = make_project(client, photos, count=2)
    kid = client.get(f"/api/projects/{pid}").json()["keyframes"][1]["id"]
    reply = client.post(f"/api/projects/{pid}/interpolate", json={"a": kid, "b": kid, "n": 2})
    assert reply.status_code == 400
    assert reply.json()["detail"] == "interpolate needs two different keyframes: from and to are both keyframe 2"
    assert not (client.app.state.store.root / pid / "inbetweens").exists()


def test_a_failed_render_says_why_in_the_page_words(client, photos):
    # A target that the settings' check lets through, and that only the render's plan refuses.
    pid = make_project(client, photos, count=2, settings={**FAST, "target": "x0.2"})
    failed = wait_job(client, client.post(f"/api/projects/{pid}/render").json()["job"])
    assert failed["state"] == "failed"
    assert failed["error"] == "target x0.2 makes 12x10 frames, under 16 pixels a side"  # not --target


# ----------------------------------------------------------------------------------------------
# A real server: killed in the middle of a job, started again, the job resumes.

def test_a_restart_mid_job_resumes_from_the_run_folder(tmp_path, photos):
    import httpx

    root, port = tmp_path / "root", free_port()
    slow = {**FAST, "I": 4, "fps": 12, "w": 320, "h": 240, "target": "640x480"}  # seconds of motion
    server = start_server(root, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with own(base) as page:
            pid = page.post("/api/projects", json={"name": "restart"}).json()["id"]
            for i in range(3):
                page.post(f"/api/projects/{pid}/keyframes", files={"file": (f"{i}.png", photos[i], "image/png")})
            assert page.put(f"/api/projects/{pid}/settings", json=slow).status_code == 200
            job = page.post(f"/api/projects/{pid}/render").json()["job"]
        end = time.monotonic() + 60
        while httpx.get(f"{base}/api/jobs/{job}").json()["stage"] in (None, "keyframes"):  # until stage 1 is done
            assert time.monotonic() < end
            time.sleep(0.02)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    on_disk = json.loads((root / ".jobs" / f"{job}.json").read_text())
    assert on_disk["state"] == "running"
    server = start_server(root, port)
    try:
        assert httpx.get(f"{base}/api/projects/{pid}/frames").json()["units"][0]["state"] == "queued"
        end = time.monotonic() + 120
        while (state := httpx.get(f"{base}/api/jobs/{job}").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < end
            time.sleep(0.1)
        assert state["state"] == "done", state
        assert state["stages"]["keyframes"] == {"reused": 3, "recomputed": 0}  # resumed, not redone
        video = httpx.get(f"{base}/api/projects/{pid}/video")
        (tmp_path / "v.mp4").write_bytes(video.content)
        assert count_frames(tmp_path / "v.mp4")[0] == httpx.get(f"{base}/api/projects/{pid}/frames").json()["frames"]
        with httpx.stream("GET", f"{base}/api/jobs/{job}/events") as events:  # a finished job: one event, the end
            text = "".join(events.iter_text())
        assert text.startswith("event: progress\ndata: ") and json.loads(text.split("data: ", 1)[1])["state"] == "done"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_the_command_checks_its_flags_before_serving(tmp_path, capsys):
    from studio.cli import main

    assert main([str(tmp_path), "--max-upload-mb", "0"]) == 2
    assert main([str(REPO / "studio")]) == 2
    assert "the studio's own source folder" in capsys.readouterr().err
    assert not (REPO / "studio" / ".jobs").exists() and not (tmp_path / ".jobs").exists()


def run_studio(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_root_that_is_a_file_is_one_line(tmp_path):
    file = tmp_path / "walks.txt"
    file.write_text("not a folder")
    done = run_studio(str(file), "--port", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: ROOT {file} is a file: give the folder of the studio's projects (made if missing)\n"


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as other:  # another server on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = run_studio(str(tmp_path / "root"), "--port", str(port))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: port {port} on 127.0.0.1 is in use by another server: stop it, or give another " \
                          "--port\n"  # and no "open http://..." line for the other server's address
    assert not (tmp_path / "root").exists()


def test_a_stopped_studio_leaves_no_render_thread(tmp_path, photos):
    """An app that shuts down (a server stopped, a notebook's or a test's client closed) ends its
    render thread once the thread is idle; nothing stays behind in the process."""
    def renderers() -> int:
        return sum(t.name == "studio-render" for t in threading.enumerate())

    before = renderers()
    with studio_client(tmp_path / "root") as client:
        pid = make_project(client, photos, count=2)
        assert wait_job(client, client.post(f"/api/projects/{pid}/render").json()["job"])["state"] == "done"
        assert renderers() == before + 1
    for _ in range(100):
        if renderers() == before:
            break
        time.sleep(0.05)
    assert renderers() == before
