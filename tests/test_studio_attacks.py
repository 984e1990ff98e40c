"""The studio from the attacker's side (issue 27): real servers, asked as a hostile web page,
another local user or a careless script would ask them, and a real Chromium on another origin.

- another Host (DNS rebinding), in httpx and in Chromium with ``--host-resolver-rules``;
- a change from another origin: a ``no-cors`` fetch, a form POST, with no token, and with
  the token's cookie sent from another port of the same host; the page framed;
- a path on the server named as a model; an absolute server path in an error;
- sizes: S, frames (``/frames`` answers runs, not frames), W x H, W x H x n, a prompt;
- two studios on one ROOT; the token on the command line, empty, short, or in the log, and
  in the address bar after the page has traded it for its cookie.

Each of these passed (the attack worked) before the studio's guard, and fails there now.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from artwalk.errors import ConfigError  # noqa: E402
from conftest import EXAMPLES, REPO, small_copy  # noqa: E402
from studio_server import FAST, free_port, own, start_server  # noqa: E402

TOKEN = "k3Qx-9vT2_mLr8Zp0aWc"  # what the guarded studio reads from its --token-file
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ABSOLUTE = re.compile(r"(?:^|[\s'\"(=])/[\w.-]+/")  # an absolute path in a message


def one_line(reply: httpx.Response) -> str:
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, detail
    return detail


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[bytes]:
    tmp = tmp_path_factory.mktemp("photos")
    return [small_copy(p, tmp / f"{p.stem}.png", 64).read_bytes() for p in sorted(EXAMPLES.glob("0*"))]


@pytest.fixture(scope="module")
def studios(tmp_path_factory):
    """Two real studios: ``open`` as it starts by default (127.0.0.1, no token) with a models
    folder, and ``guarded``, whose token comes from a file only its user reads."""
    tmp = tmp_path_factory.mktemp("studios")
    secret = tmp / "token"
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o600)
    models = tmp / "models"
    (models / "mine").mkdir(parents=True)
    (models / "escape").symlink_to(tmp, target_is_directory=True)  # a link in the models folder, leading out
    ports = {"open": free_port(), "guarded": free_port()}
    servers = [start_server(tmp / "open", ports["open"], "--models", str(models)),
               start_server(tmp / "guarded", ports["guarded"], "--token-file", str(secret))]
    yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()} | {"tmp": tmp, "models": models}
    for server in servers:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def project(base: str, photos: list[bytes], count: int = 2, settings: dict = FAST, **client) -> str:
    with own(base) if not client else httpx.Client(base_url=base, **client) as page:
        pid = page.post("/api/projects", json={"name": "mine"}).json()["id"]
        for i in range(count):
            assert page.post(f"/api/projects/{pid}/keyframes",
                             files={"file": (f"{i}.png", photos[i], "image/png")}).status_code == 201
        assert page.put(f"/api/projects/{pid}/settings", json=settings).status_code == 200
    return pid


def snapshot(base: str, pid: str, **client) -> tuple:
    """What an attack could change: the projects, the project's keyframes and settings, its
    render (one running, or a video made)."""
    with httpx.Client(base_url=base, **client) as page:
        names = sorted(p["name"] for p in page.get("/api/projects").json())
        state = page.get(f"/api/projects/{pid}").json()
    return names, [k["sha256"] for k in state["keyframes"]], state["settings"], state["job"], state["video"]


# ------------------------------------------------------------------------------ who may ask

def test_a_foreign_host_is_refused_before_any_route(studios):
    base = studios["open"]
    port = base.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", f"127.0.0.1:{int(port) + 1}", "127.0.0.1", f"localhost.evil.example:{port}"):
        for method, path in (("GET", "/api/projects"), ("GET", "/"), ("POST", "/api/projects")):
            reply = httpx.request(method, f"{base}{path}", json={"name": "rebound"},
                                  headers={"Host": host, "Origin": f"http://{host}"})
            assert reply.status_code == 400, (host, method, path, reply.status_code)
            assert "this studio answers to" in one_line(reply)
    for host in (f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}"):  # its own names
        assert httpx.get(f"{base}/api/projects", headers={"Host": host}).status_code == 200
    assert "rebound" not in [p["name"] for p in httpx.get(f"{base}/api/projects").json()]


def test_a_change_from_another_origin_is_refused_without_a_token(studios, photos):
    base = studios["open"]
    pid = project(base, photos)
    kid = httpx.get(f"{base}/api/projects/{pid}").json()["keyframes"][0]["id"]
    before = snapshot(base, pid)
    other = f"http://127.0.0.1:{free_port()}"  # a page on another port of this machine
    # What Chromium sends for a no-cors fetch and for a form POST from that page, and from afar.
    senders = [{"Origin": other, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"},
               {"Origin": other, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"},
               {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
               {"Origin": "null"},  # a sandboxed frame, a file:// page
               {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
               {}]  # no browser at all, and no token: a script must say where it comes from
    attacks = [("POST", f"/api/projects/{pid}/render", {}),  # no body: no preflight, no content type
               ("POST", f"/api/projects/{pid}/keyframes", {"files": {"file": ("x.png", photos[3], "image/png")}}),
               ("POST", "/api/projects", {"json": {"name": "pwned"}}),
               ("PUT", f"/api/projects/{pid}/settings", {"json": {"fps": 1}}),
               ("PATCH", f"/api/projects/{pid}/keyframes/{kid}", {"json": {"index": 1}}),
               ("DELETE", f"/api/projects/{pid}/keyframes/{kid}", {})]
    for headers in senders:
        for method, path, body in attacks:
            reply = httpx.request(method, f"{base}{path}", headers=headers, **body)
            assert reply.status_code == 403, (headers, method, path, reply.status_code)
            assert one_line(reply).startswith("refused: a request that changes something")
    assert snapshot(base, pid) == before
    # The studio's own page (its Origin; or no Origin and Sec-Fetch-Site same-origin) still may.
    assert httpx.put(f"{base}/api/projects/{pid}/settings", json={"fps": 8},
                     headers={"Origin": base}).status_code == 200
    assert httpx.put(f"{base}/api/projects/{pid}/settings", json={"fps": 8},
                     headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_with_a_token_its_cookie_lets_no_other_port_in(studios, photos):
    base = studios["guarded"]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    pid = project(base, photos, headers=bearer)  # a script: the token in a header, no Origin, no cookie
    before = snapshot(base, pid, headers=bearer)
    browser = httpx.Client(base_url=base)  # the person's browser, which opened the page once
    opened = browser.get(f"/?token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"  # the address keeps no token
    cookie = browser.cookies.get(f"artwalk_token_{base.rsplit(':', 1)[1]}")
    assert cookie == TOKEN
    other = f"http://127.0.0.1:{free_port()}"
    for headers in ({"Origin": other, "Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "same-site"}, {}):
        render = browser.post(f"/api/projects/{pid}/render", headers=headers)  # the cookie goes with it
        upload = browser.post(f"/api/projects/{pid}/keyframes", headers=headers,
                              files={"file": ("x.png", photos[3], "image/png")})
        assert render.status_code == upload.status_code == 403, (headers, render.status_code, upload.status_code)
    # The token in a header does not excuse a foreign Origin, nor a cookie that came with it.
    assert browser.post("/api/projects", json={"name": "pwned"}, headers={**bearer, "Origin": other}).status_code == 403
    assert browser.post("/api/projects", json={"name": "pwned"}, headers=bearer).status_code == 403
    assert httpx.post(f"{base}/api/projects", json={"name": "pwned"}, headers={"Origin": base}).status_code == 401
    assert snapshot(base, pid, headers=bearer) == before
    own_page = browser.put(f"/api/projects/{pid}/settings", json={"fps": 8}, headers={"Origin": base})
    assert own_page.status_code == 200  # the page itself, with its cookie and its Origin
    browser.close()


def test_every_answer_forbids_framing_and_sniffing(studios):
    base = studios["open"]
    port = base.rsplit(":", 1)[1]
    answers = [httpx.get(f"{base}/"), httpx.get(f"{base}/static/studio.js"), httpx.get(f"{base}/api/projects"),
               httpx.get(f"{base}/api/projects/abcdefabcdef"),  # 404
               httpx.get(f"{base}/", headers={"Host": f"evil.example:{port}"}),  # 400
               httpx.post(f"{base}/api/projects", json={"name": "x"})]  # 403
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 400, 403]
    for answer in answers:
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cross-origin-resource-policy"] == "same-origin"


# ------------------------------------------------------------------------------ no paths

def test_a_path_on_the_server_is_no_model(studios, photos):
    base, models = studios["open"], studios["models"]
    pid = project(base, photos, count=0)
    with own(base) as page:
        put = lambda model: page.put(f"/api/projects/{pid}/settings",  # noqa: E731
                                     json={"engines": {"motion": "film"}, "models": {"motion": model}})
        for path in ("/etc/passwd", "../../../etc/passwd", "~/.ssh/id_rsa", "./studio", "studio", "a/b/c", "..",
                     "film/../../x", "C:\\Windows\\win.ini", str(models / "mine"), "escape"):
            reply = put(path)
            assert reply.status_code == 400, (path, reply.json())
            detail = one_line(reply)
            assert "the motion model" in detail and "is not a model name" in detail or "leads out" in detail, detail
            assert str(models) not in detail and str(REPO) not in detail
        for name in ("film", "someone/film-weights", "mine"):  # a registry name, a hub id, the models folder's
            reply = put(name)
            assert reply.status_code == 200, (name, reply.json())
            assert reply.json()["models"] == {"motion": name}  # kept as the name: no path goes out either


def test_an_error_names_no_path_of_the_server(studios, photos):
    base, models, tmp = studios["open"], studios["models"], studios["tmp"]
    root = tmp / "open"
    pid = project(base, photos)
    errors = []
    with own(base) as page:
        # No Real-ESRGAN weights here: the render fails naming the cache it looked in.
        page.put(f"/api/projects/{pid}/settings", json={"engines": {"upscale": "realesrgan"}, "target": None})
        errors.append(wait_failed(page, page.post(f"/api/projects/{pid}/render").json()["job"]))
        # A keyframe model in the models folder that is no model: its folder is named in the error.
        prompts = project(base, photos, count=0, settings={**FAST, "engines": {**FAST["engines"], "keyframes": "sd"},
                                                           "models": {"keyframes": "mine"}})
        reply = page.post(f"/api/projects/{prompts}/keyframes", json={"prompt": "a lighthouse"})
        assert reply.status_code == 400
        errors.append(one_line(reply))
        # A keyframe's file gone from ROOT under the studio: the render fails on it.
        page.put(f"/api/projects/{pid}/settings", json={"engines": {"upscale": "lanczos"}, "target": "128x96"})
        kept = page.get(f"/api/projects/{pid}").json()["keyframes"][0]["id"]
        next((root / pid / "keyframes").glob(f"{kept}.*")).unlink()
        errors.append(wait_failed(page, page.post(f"/api/projects/{pid}/render").json()["job"]))
    assert "MODELS/mine" in errors[1] and "ROOT/" in errors[2], errors
    for error in errors:
        assert not ABSOLUTE.search(error) and str(tmp) not in error and str(Path.home()) + "/" not in error, error


def wait_failed(page: httpx.Client, job: str) -> str:
    end = time.monotonic() + 60
    while (state := page.get(f"/api/jobs/{job}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < end
        time.sleep(0.05)
    assert state["state"] == "failed", state
    events = page.get(f"/api/jobs/{job}/events").text  # the stream says it the same way
    assert json.loads(events.split("data: ", 1)[1])["error"] == state["error"]
    return state["error"]


# ------------------------------------------------------------------------------ sizes

def test_sizes_are_capped_and_frames_come_as_runs(studios, photos):
    base = studios["open"]
    pid = project(base, photos)
    with own(base) as page:
        put = lambda body: page.put(f"/api/projects/{pid}/settings", json=body)  # noqa: E731
        for body, words in (({"S": 10**6}, "S in-betweens must be a whole number in [0, 1000]"),
                            ({"S": 10**14}, "in [0, 1000]"),
                            ({"w": 8192, "h": 8192}, "over the 33.2 Mpx (7680x4320)"),
                            ({"I": 1000, "fps": 1000, "F": 0}, "over the 1000000 a walk may have"),
                            ({"I": 2000, "fps": 1000}, "a segment of")):
            reply = put(body)
            assert reply.status_code == 400, (body, reply.json())
            assert words in one_line(reply), one_line(reply)
        # A walk just under the cap: 999,001 frames, answered as its three units, not frame by frame.
        assert put({"I": 1000, "fps": 999, "F": 0}).status_code == 200
        frames = page.get(f"/api/projects/{pid}/frames")
        assert len(frames.content) < 2000, len(frames.content)
        runs = frames.json()
        assert runs["frames"] == 999_001 and "states" not in runs
        assert [(u["kind"], u["start"], u["frames"], u["state"]) for u in runs["units"]] == [
            ("hold", 0, 1, "none"), ("segment", 1, 998_999, "none"), ("hold", 999_000, 1, "none")]
        one_more = page.post(f"/api/projects/{pid}/keyframes", files={"file": ("x.png", photos[2], "image/png")})
        assert one_more.status_code == 400 and "over the 1000000" in one_line(one_more)
        # In-betweens of two keyframes at 4096 x 4096: 8 at once is over the cap, 4 are not asked for here.
        assert put({"I": 0.5, "fps": 8, "w": 4096, "h": 4096}).status_code == 200
        a, b = (k["id"] for k in page.get(f"/api/projects/{pid}").json()["keyframes"])
        started = time.monotonic()
        reply = page.post(f"/api/projects/{pid}/interpolate", json={"a": a, "b": b, "n": 8})
        assert reply.status_code == 400 and "ask for at most 4" in one_line(reply)
        assert time.monotonic() - started < 5  # refused before any picture is made
        huge = page.post(f"/api/projects/{pid}/keyframes", json={"prompt": "a lighthouse " * 400_000})
        assert huge.status_code == 400 and one_line(huge) == ("the prompt is 5200000 characters long, over the 20000 "
                                                               "a prompt may have")
        assert len(page.get(f"/api/projects/{pid}").json()["keyframes"]) == 2


def test_the_command_line_has_the_same_caps():
    from diffusion_models import KeyframeConfig
    from frame_interpolation import MotionConfig

    for options, words in (({"interpolation_steps": 10**6}, "--interpolation_steps must be a whole number in"),
                           ({"width": 8192, "height": 8192}, "Mpx (7680x4320)"),
                           ({"prompt": "x" * 20_001}, "--prompt is 20001 characters long"),
                           ({"negative_prompt": "x" * 20_001}, "--negative-prompt is 20001"),
                           ({"prompts": "0: a lion", "frames": 10**9}, "--frames: the walk would have")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            KeyframeConfig(**options)
    with pytest.raises(ConfigError, match="a segment of --sec_interpolation seconds would have 2000000 frames"):
        MotionConfig(run_dir=Path("out"), fps=1000, sec_interpolation=2000)
    KeyframeConfig(interpolation_steps=1000, width=7680, height=4320, prompt="x" * 20_000)  # at the caps


# ------------------------------------------------------------------------------ the command

def run_studio(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_two_studios_on_one_root_is_one_line(studios, tmp_path):
    root = studios["tmp"] / "open"  # served by the open studio
    second = run_studio(str(root), "--port", "0")
    assert second.returncode == 2 and second.stdout == ""
    assert re.fullmatch(rf"error: ROOT {re.escape(str(root))} is served by another studio \(PID \d+\): open that "
                        r"one, or stop it first \(two studios on one ROOT would lose each other's edits\)\n",
                        second.stderr), second.stderr


def test_the_token_is_never_on_the_command_line_empty_short_or_logged(tmp_path):
    root = str(tmp_path / "root")
    given = run_studio(root, "--port", "0", "--token", TOKEN)
    assert given.returncode == 2 and given.stderr.count("\n") == 1 and "$ARTWALK_STUDIO_TOKEN" in given.stderr
    for token, words in (("", "is set but empty"), ("  ", "is set but empty"), ("short", "at least 16")):
        refused = run_studio(root, "--port", "0", env={"ARTWALK_STUDIO_TOKEN": token})
        assert refused.returncode == 2 and words in refused.stderr and refused.stderr.count("\n") == 1, refused
    shared = tmp_path / "token"
    shared.write_text(TOKEN + "\n")
    shared.chmod(0o644)
    refused = run_studio(root, "--port", "0", "--token-file", str(shared), env={"ARTWALK_STUDIO_TOKEN": None})
    assert refused.returncode == 2 and "can be read by every user" in refused.stderr, refused
    assert not (tmp_path / "root" / ".jobs").exists()  # refused before anything was made

    # Another --host and no token: one is made, shown once on stdout, and never in the log.
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "wb") as out:
        server = start_server(tmp_path / "root", port, "--host", "127.0.0.2", output=out, host="127.0.0.2")
    try:
        base = f"http://127.0.0.2:{port}"
        shown = re.search(rf"open {re.escape(base)}/\?token=([\w-]+) ", log.read_text())
        assert shown, log.read_text()
        made = shown.group(1)
        assert len(made) >= 16 and httpx.get(f"{base}/api/projects").status_code == 401
        with httpx.Client(base_url=base) as browser:
            traded = browser.get(f"/api/projects?token={made}", follow_redirects=False)
            assert traded.status_code == 303 and traded.headers["location"] == "/api/projects"
            assert browser.get("/api/projects").status_code == 200  # the cookie
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    text = log.read_text()
    assert text.count(made) == 1, text  # the line that showed it; the access log says token=…
    assert "token=…" in text


# ------------------------------------------------------------------------------ a real browser

ATTACK = """<!doctype html>
<html><head><title>a page about cats</title></head><body>
<form id="upload" method="post" enctype="multipart/form-data" target="sink"><input type="file" name="file" id="file">
</form>
<iframe name="sink"></iframe>
<iframe id="framed"></iframe>
<script>
const [studio, pid] = decodeURIComponent(location.hash.slice(1)).split("|");
const bytes = Uint8Array.from(atob("PNG"), c => c.charCodeAt(0));
document.getElementById("framed").src = studio + "/";
fetch(`${studio}/api/projects/${pid}/render`, {method: "POST", mode: "no-cors", credentials: "include"})
  .finally(() => { document.body.dataset.fetched = "1"; });
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], "cat.png", {type: "image/png"}));
document.getElementById("file").files = transfer.files;
const form = document.getElementById("upload");
form.action = `${studio}/api/projects/${pid}/keyframes`;
form.submit();
</script></body></html>
"""


@pytest.fixture(scope="module")
def attacker(photos):
    """A web page on another port of this machine, served by a plain HTTP server."""
    page = ATTACK.replace("PNG", base64.b64encode(photos[3]).decode()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cats.html"
    server.shutdown()


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        pytest.skip("no chromium here (.ci/run installs Debian's)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        yield browser
        browser.close()


def attack(context, attacker: str, studio: str, pid: str) -> int:
    """Open the attacker's page in ``context`` until the studio has answered each of its three
    requests (the browser may hide the answer from the page, and from us: a no-cors answer is
    opaque, a framed one blocked); how many studio pages its frame shows."""
    done: dict[str, str] = {}
    page = context.new_page()
    for event in ("requestfinished", "requestfailed"):
        page.on(event, lambda r: done.setdefault(f"{r.method} {r.url}", r.failure or "answered")
                if r.url.startswith(studio) else None)
    page.goto(f"{attacker}#{studio}|{pid}")
    wanted = {f"POST {studio}/api/projects/{pid}/render", f"POST {studio}/api/projects/{pid}/keyframes",
              f"GET {studio}/"}
    end = time.monotonic() + 20
    while not wanted <= set(done):
        assert time.monotonic() < end, done
        page.wait_for_timeout(50)
    page.wait_for_timeout(300)  # a studio page in the frame would have started by now
    shown = page.frame_locator("#framed").locator("body[data-ready='1']").count()
    page.close()
    return shown


def test_a_page_on_another_port_changes_nothing_in_a_real_browser(studios, photos, chromium, attacker):
    # The person's own page works under its policy, and draws the frame strip from runs.
    base = studios["open"]
    pid = project(base, photos)
    context = chromium.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{base}/#project={pid}")
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#frames .unit")
    bars = page.eval_on_selector_all("#frames .unit", "bars => bars.map(b => [b.dataset.kind, b.style.flexGrow])")
    assert bars == [["hold", "2"], ["segment", "3"], ["hold", "2"]] and refused == []
    page.close()

    before = snapshot(base, pid)
    assert attack(context, attacker, base, pid) == 0  # not framed
    assert snapshot(base, pid) == before  # no render from the no-cors fetch, no keyframe from the form
    context.close()

    # With a token: the browser holds its cookie (the page was opened with ?token=), and the
    # same page on another port sends it along. The address bar lost the token at once.
    guarded = studios["guarded"]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    pid = project(guarded, photos, headers=bearer)
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{guarded}/?token={TOKEN}#project={pid}")
    page.wait_for_selector("#frames .unit")
    history = context.new_cdp_session(page).send("Page.getNavigationHistory")["entries"]
    assert page.url == f"{guarded}/#project={pid}" and not [e for e in history if TOKEN in e["url"]], history
    assert [c["name"] for c in context.cookies()] == [f"artwalk_token_{guarded.rsplit(':', 1)[1]}"]
    page.close()
    before = snapshot(guarded, pid, headers=bearer)
    assert attack(context, attacker, guarded, pid) == 0
    assert snapshot(guarded, pid, headers=bearer) == before
    context.close()


def test_dns_rebinding_in_a_real_browser(studios, chromium):
    base = studios["open"]
    rebound = base.replace("127.0.0.1", "evil.example")  # a name of the attacker's, resolving to 127.0.0.1
    context = chromium.new_context()
    page = context.new_page()
    assert page.goto(f"{rebound}/").status == 400
    status = page.evaluate("""async () => (await fetch('/api/projects', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'rebound'})})).status""")
    listed = page.evaluate("async () => (await fetch('/api/projects')).status")
    assert status == listed == 400
    context.close()
    assert "rebound" not in [p["name"] for p in httpx.get(f"{base}/api/projects").json()]
