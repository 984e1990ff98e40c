"""The studio page in a real headless Chromium (Debian's, driven by Playwright's Python
package), against one real server for the module: three images and a prompt keyframe (tiny
random SD), a video, one keyframe replaced, only its neighbours stale then done again, the
job's reused and recomputed units, the download's frame count, and a screenshot; then, one
test each, what a person meets using it: progress that moves within a stage and a Cancel
button, a prompt typed while another is made, a new project that starts clean, an old error
that goes when a new action starts, errors in the page's words, and Interpolate refusing
one keyframe twice.

The screenshot is written to $ARTWALK_TEST_ARTIFACTS (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("diffusers")
import httpx  # noqa: E402

from conftest import EXAMPLES, small_copy  # noqa: E402
from conftest import count_frames  # noqa: E402
from studio_server import FAST, free_port, own, start_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs Debian's)")
STALE_RED = "rgb(217, 48, 37)"
# The studio's Content-Security-Policy forbids eval, which Playwright's wait_for_function uses
# for its predicates; these tests' pages bypass it (test_studio_attacks.py opens the page
# under it and sees it work).
DONE_GREEN = "rgb(24, 128, 56)"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_built):
    tmp = tmp_path_factory.mktemp("studio")
    shutil.copytree(tiny_built("sd")["sd"], tmp / "tiny" / "sd")  # the studio's models folder: projects name "sd"
    port = free_port()
    server = start_server(tmp / "root", port, "--models", str(tmp / "tiny"))
    yield f"http://127.0.0.1:{port}", "sd"
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("photos")
    return [small_copy(p, tmp / f"photo {i}.png", 96) for i, p in enumerate(sorted(EXAMPLES.glob("0*")))]


def new_project(base: str, name: str, images: list[Path], settings: dict) -> str:
    """A project made through the API (what the tests below look at is the page)."""
    with own(base) as page:
        pid = page.post("/api/projects", json={"name": name}).json()["id"]
        for image in images:
            reply = page.post(f"/api/projects/{pid}/keyframes",
                              files={"file": (image.name, image.read_bytes(), "image/png")})
            assert reply.status_code == 201, reply.json()
        assert page.put(f"/api/projects/{pid}/settings", json=settings).status_code == 200
    return pid


@pytest.fixture
def open_page(studio, browser):
    """A page on a project; at the end, no script error happened on it."""
    base, _ = studio
    pages: list[tuple] = []

    def opened(pid: str):
        page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/#project={pid}")
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector("#workspace:not([hidden])")
        pages.append((page, errors))
        return page

    yield opened
    for page, errors in pages:
        page.close()
        assert errors == []


def drop_file(page, selector: str, path: Path) -> None:
    """Drop a file on an element as a user dragging it from their desktop would."""
    import base64

    page.evaluate("""([selector, name, data]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: "image/png"}));
        document.querySelector(selector).dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    }""", [selector, path.name, base64.b64encode(path.read_bytes()).decode()])


def unit_states(page) -> list[str]:
    return page.eval_on_selector_all("#frames .unit", "bars => bars.map(b => b.dataset.state)")


def wait_states(page, expected: list[str]) -> None:
    page.wait_for_function("want => [...document.querySelectorAll('#frames .unit')].map(b => b.dataset.state)"
                           ".join() === want", arg=",".join(expected), timeout=60_000)


def test_the_studio_in_a_browser(studio, browser, photos, tmp_path):
    base, sd = studio
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base)
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#new-project-name", "my walk")
    page.click("#new-project")
    page.wait_for_selector("#workspace:not([hidden])")

    # Settings through the form: small and fast, tiny SD for the prompt keyframe.
    for key, value in {"S": "0", "I": "0.5", "F": "0.25", "fps": "8", "w": "64", "h": "48",
                       "target": "128x96", "steps": "2"}.items():
        page.fill(f"#set-{key}", value)
    page.select_option("#engine-keyframes", "sd")
    page.fill("#model-keyframes", sd)
    page.select_option("#engine-motion", "flow")
    page.select_option("#engine-upscale", "lanczos")
    page.click("#save-settings")
    page.wait_for_selector("#settings-saved:text('saved')")

    page.set_input_files("#file-input", [str(x) for x in photos[:2]])
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 2")
    drop_file(page, "#drop-zone", photos[2])  # the third one dropped on the page
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 3")
    page.fill("#prompt-text", "a lighthouse at dusk | a storm:0.5")
    page.fill("#prompt-seed", "7")
    page.click("#add-prompt")
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 4", timeout=60_000)
    assert page.inner_text("#timeline .keyframe[data-index='3'] p").startswith("4. a lighthouse at dusk")
    wait_states(page, ["none"] * 7)  # hold, segment, hold, ... for 4 keyframes

    # Drag the last image before the first, and back: the order follows the drop.
    first = page.get_attribute("#timeline .keyframe[data-index='0']", "data-id")
    third = page.get_attribute("#timeline .keyframe[data-index='2']", "data-id")
    page.drag_and_drop("#timeline .keyframe[data-index='2']", "#timeline .keyframe[data-index='0']")
    page.wait_for_function(f"document.querySelector('#timeline .keyframe[data-index=\"0\"]').dataset.id "
                           f"=== '{third}'")
    page.drag_and_drop("#timeline .keyframe[data-index='0']", "#timeline .keyframe[data-index='2']")
    page.wait_for_function(f"document.querySelector('#timeline .keyframe[data-index=\"0\"]').dataset.id "
                           f"=== '{first}'")

    page.click("#interpolate")  # keyframes 1 and 2, three in-betweens from the motion engine
    page.wait_for_function("[...document.querySelectorAll('#inbetweens img')].filter(i => i.complete && "
                           "i.naturalWidth === 64).length === 3")

    page.click("#render")
    page.wait_for_selector("#progress-text[data-state='done']", timeout=120_000)
    wait_states(page, ["done"] * 7)
    assert "keyframes: 0 reused, 4 recomputed" in page.inner_text("#job-stages")

    # Replace the second keyframe: only its hold and its two segments turn stale (red).
    page.set_input_files("#timeline .keyframe[data-index='1'] .replace-input", str(photos[3]))
    stale = ["done", "stale", "stale", "stale", "done", "done", "done"]
    wait_states(page, stale)
    colours = page.eval_on_selector_all("#frames .unit", "bars => bars.map(b => getComputedStyle(b)"
                                        ".backgroundColor)")
    assert colours[1] == colours[2] == colours[3] == STALE_RED and colours[0] == colours[6] == DONE_GREEN

    seen: set[str] = set()
    page.click("#render")
    while page.get_attribute("#progress-text", "data-state") != "done":
        seen.update(unit_states(page))
        assert page.get_attribute("#progress-text", "data-state") != "failed", page.inner_text("#error")
        page.wait_for_timeout(50)
    wait_states(page, ["done"] * 7)
    assert seen <= {"done", "stale", "queued", "rendering"}
    stages = page.inner_text("#job-stages")
    assert "keyframes: 3 reused, 1 recomputed" in stages and "motion: 1 reused, 2 recomputed" in stages

    page.wait_for_selector("#preview:not([hidden])")
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "downloaded.mp4"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "my walk.mp4"
    total = int(page.get_attribute("#frames", "data-frames"))
    assert count_frames(saved)[0] == total == 4 * 2 + 3 * 3

    artifacts = Path(os.environ.get("ARTWALK_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "studio.png"), full_page=True)
    assert (artifacts / "studio.png").stat().st_size > 10_000
    assert errors == []
    page.close()


def wait_opened_empty(page, old: str) -> None:
    """Until the page shows a new, empty project instead of project ``old`` (its frames drawn too)."""
    page.wait_for_function("old => !location.hash.endsWith(old) && !document.querySelector('#timeline .keyframe')"
                           " && !document.querySelector('#frames .unit')", arg=old)


def wait_job_state(base: str, job: str, states: tuple[str, ...]) -> dict:
    end = time.monotonic() + 60
    while (job_state := httpx.get(f"{base}/api/jobs/{job}").json())["state"] not in states:
        assert time.monotonic() < end, job_state
        time.sleep(0.05)
    return job_state


def test_progress_moves_within_a_stage_and_cancel_stops_the_render(studio, open_page, photos):
    base, _ = studio
    # 3 segments of 71 motion frames at 320x240: a few seconds, most of it in the motion stage (35 frames
    # were over in under a second on an idle machine, before the page had seen three readings).
    slow = {**FAST, "I": 6, "fps": 12, "w": 320, "h": 240, "target": "x0.5"}
    page = open_page(new_project(base, "slow", photos[:4], slow))
    assert page.is_hidden("#cancel")
    page.click("#render")
    shown: set[str] = set()
    end = time.monotonic() + 60
    while len(shown) < 3:  # three different readings within the motion stage, each with an ETA
        text = page.inner_text("#progress-text")
        if text.startswith("running") and "· motion · ETA" in text:
            shown.add(text.split(" · ")[0])
        assert time.monotonic() < end and page.get_attribute("#progress-text", "data-state") != "done", shown
        page.wait_for_timeout(20)
    assert page.is_visible("#cancel") and page.is_disabled("#render")
    page.click("#cancel")
    page.wait_for_selector("#progress-text[data-state='cancelled']", timeout=30_000)
    assert page.is_hidden("#cancel") and page.is_enabled("#render") and page.is_hidden("#error")
    wait_states(page, ["none"] * 7)  # nothing rendered, nothing coming
    assert httpx.get(f"{base}/api/projects/{page.url.split('=')[-1]}").json()["job"] is None


def test_a_prompt_typed_while_another_is_made_is_kept(studio, open_page):
    base, sd = studio
    settings = {**FAST, "steps": 2, "engines": {**FAST["engines"], "keyframes": "sd"},
                "models": {"keyframes": sd}}
    page = open_page(new_project(base, "prompts", [], settings))
    held: list = []
    page.route("**/api/projects/*/keyframes", lambda route: held.append(route))  # the first one, held a moment
    page.fill("#prompt-text", "a lighthouse at dusk")
    page.click("#add-prompt")
    while not held:
        page.wait_for_timeout(10)
    assert page.is_disabled("#add-prompt")
    page.fill("#prompt-text", "a storm at sea")  # typed while the first keyframe is being made
    held[0].continue_()
    page.unroute("**/api/projects/*/keyframes")
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 1", timeout=60_000)
    page.wait_for_selector("#add-prompt:enabled")
    assert page.input_value("#prompt-text") == "a storm at sea"
    page.click("#add-prompt")  # and that one is added, and the box cleared
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 2", timeout=60_000)
    assert page.inner_text("#timeline .keyframe[data-index='1'] p").startswith("2. a storm at sea")
    assert page.input_value("#prompt-text") == ""


def test_a_new_project_shows_nothing_of_the_last_one(studio, open_page, photos):
    base, _ = studio
    page = open_page(new_project(base, "first", photos[:2], FAST))
    page.click("#interpolate")
    page.wait_for_function("document.querySelectorAll('#inbetweens img').length === 3")
    page.click("#render")
    page.wait_for_selector("#progress-text[data-state='done']", timeout=60_000)
    assert "keyframes: 0 reused, 2 recomputed" in page.inner_text("#job-stages")
    page.fill("#new-project-name", "second")
    page.click("#new-project")
    wait_opened_empty(page, page.url.split("=")[-1])
    assert page.inner_text("#progress-text") == "" and page.inner_text("#job-stages") == ""
    assert page.eval_on_selector("#progress", "p => p.value") == 0
    assert page.query_selector_all("#inbetweens img") == [] and page.is_hidden("#preview")
    assert page.is_hidden("#cancel") and page.is_enabled("#render")


def test_an_old_error_goes_and_errors_use_the_page_words(studio, open_page, photos):
    base, _ = studio
    pid = new_project(base, "too small", photos[:2], {**FAST, "target": "x0.2"})  # only the render refuses it
    page = open_page(pid)
    # A render whose news is held back until another project is open: that news is not the new project's.
    held: list = []
    page.route("**/api/jobs/*/events", lambda route: held.append(route))
    page.click("#render")
    while not held:
        page.wait_for_timeout(10)
    page.fill("#new-project-name", "after")
    page.click("#new-project")
    wait_opened_empty(page, pid)
    wait_job_state(base, held[0].request.url.split("/")[-2], ("failed",))
    for route in held:
        try:
            route.continue_()
        except sync_api.Error:  # the page has closed that stream already
            pass
    page.unroute("**/api/jobs/*/events")
    page.wait_for_timeout(500)
    assert page.is_hidden("#error") and page.inner_text("#progress-text") == ""

    # Back on the first project: its render fails, and says why in the page's words.
    page.select_option("#project-select", pid)
    page.wait_for_function("document.querySelectorAll('#timeline .keyframe').length === 2")
    page.click("#render")
    page.wait_for_selector("#progress-text[data-state='failed']", timeout=60_000)
    assert page.inner_text("#error") == "target x0.2 makes 12x10 frames, under 16 pixels a side"  # not --target
    page.click("#interpolate")  # a new action: the old error goes
    page.wait_for_function("document.querySelectorAll('#inbetweens img').length === 3")
    assert page.is_hidden("#error")


def test_interpolate_refuses_one_keyframe_twice_on_the_page(studio, open_page, photos):
    base, _ = studio
    page = open_page(new_project(base, "twice", photos[:2], FAST))
    page.select_option("#interp-b", index=0)  # from and to: the same keyframe
    page.click("#interpolate")
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert page.inner_text("#error") == "interpolate needs two different keyframes: from and to are both keyframe 1"
    assert page.query_selector_all("#inbetweens img") == []
