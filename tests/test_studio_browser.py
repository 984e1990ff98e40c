"""The studio page in a real headless Chromium (Debian's, driven by Playwright's Python
package), against a real server: three images and a prompt keyframe (tiny random SD),
a video, one keyframe replaced, only its neighbours stale then done again, the job's
reused and recomputed units, the download's frame count, and a screenshot.

The screenshot is written to $ARTWALK_TEST_ARTIFACTS (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("diffusers")

from conftest import EXAMPLES, small_copy  # noqa: E402
from test_end_to_end import count_frames  # noqa: E402
from test_studio_api import free_port, start_server  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs Debian's)")
STALE_RED = "rgb(217, 48, 37)"
DONE_GREEN = "rgb(24, 128, 56)"


@pytest.fixture
def studio(tmp_path):
    import tiny_models

    sd = tiny_models.save_all(tmp_path / "tiny", names=("sd",))["sd"]
    port = free_port()
    server = start_server(tmp_path / "root", port)
    yield f"http://127.0.0.1:{port}", sd
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


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


def test_the_studio_in_a_browser(studio, tmp_path):
    base, sd = studio
    photos = [small_copy(p, tmp_path / f"photo {i}.png", 96) for i, p in enumerate(sorted(EXAMPLES.glob("0*")))]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
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
        page.fill("#model-keyframes", str(sd))
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
        browser.close()
