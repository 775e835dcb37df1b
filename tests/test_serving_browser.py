"""End to end in a real browser: Debian's chromium, headless, driven by Playwright, uploads a
photo on the page of a live `agegender serve` and reads the table it renders.

`AGEGENDER_SCREENSHOT=docs/serve_page.png` also saves the screenshot there (the README's).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")
from playwright import sync_api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "astronaut_face.jpg"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="Debian's chromium is not installed (apt-get install "
                                       "chromium); .ci/run installs it")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server():
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "agegender.cli.main", "serve", "--port",
                                str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail(f"the server stopped: {process.stderr.read().decode()}")
            time.sleep(0.1)
        else:
            pytest.fail("the server was not ready within 60 s")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def test_upload_on_the_page_shows_the_faces(server, tmp_path):
    elsewhere: list[str] = []

    def only_the_server(route):
        if urlparse(route.request.url).netloc == urlparse(server).netloc:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.route("**/*", only_the_server)
            page.goto(server)
            page.set_input_files("#file", str(EXAMPLE))
            page.wait_for_selector("#faces tbody tr", timeout=30_000)
            cells = page.locator("#faces tbody tr").first.locator("td").all_inner_texts()
            status = page.inner_text("#status")
            screenshot = tmp_path / "serve_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    api = httpx.post(f"{server}/v1/predict", content=EXAMPLE.read_bytes()).json()["faces"][0]
    assert status == "1 face found."
    assert cells[0] == str(api["face"]) == "0"  # numbered as the API and the CLI number faces
    assert float(cells[1]) == api["age"]
    assert cells[3] == api["gender"]
    assert cells[6] == ", ".join(map(str, api["box"]))
    assert elsewhere == []  # the page needs nothing from another host
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("AGEGENDER_SCREENSHOT"):
        shutil.copyfile(screenshot, ROOT / os.environ["AGEGENDER_SCREENSHOT"])


def test_a_webcam_photo_is_sent_and_answered(server):
    """Chromium's fake camera (a test pattern, no face) stands in for a webcam."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            page = browser.new_page()
            page.goto(server)
            page.click("#camera-start")
            page.click("#camera-shoot", timeout=15_000)  # shown once the video has a size
            page.locator("#status", has_text="found.").wait_for(timeout=30_000)
            status = page.inner_text("#status")
            camera_hidden = page.is_hidden("#camera")
            canvas_width = int(page.get_attribute("#canvas", "width"))
        finally:
            browser.close()
    assert status == "0 faces found."
    assert camera_hidden  # the camera is stopped once the photo is taken
    assert canvas_width > 0


def test_a_failed_upload_clears_the_previous_result_and_says_what_failed(server, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image at all")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(server)
            page.set_input_files("#file", str(EXAMPLE))
            page.wait_for_selector("#faces tbody tr", timeout=30_000)
            page.set_input_files("#file", str(notes))
            page.locator("#status.error").wait_for(timeout=30_000)
            status = page.inner_text("#status")
            result_hidden = page.is_hidden("#result")
            rows = page.locator("#faces tbody tr").count()
        finally:
            browser.close()
    assert result_hidden and rows == 0  # the astronaut's faces are gone
    assert status.startswith("Analysing notes.jpg failed: 415")


def test_the_api_docs_render_offline(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_()
                       if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort())
            page.goto(f"{server}/docs")
            page.locator(".opblock-summary-path", has_text="/v1/predict/batch").wait_for(
                timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
        finally:
            browser.close()
    assert {"/v1/predict", "/v1/predict/batch", "/healthz", "/readyz", "/metrics"} <= {
        path.strip() for path in paths}


def _fake_camera(path: Path, frames: int = 50) -> None:
    """A Y4M clip (what Chromium's fake camera plays, in a loop) of the example face swaying
    left and right over a grey background (smoothly across the loop)."""
    from PIL import Image

    face = Image.open(EXAMPLE).convert("RGB")
    with path.open("wb") as stream:
        stream.write(b"YUV4MPEG2 W640 H480 F25:1 Ip A1:1 C420jpeg\n")
        for step in range(frames):
            canvas = Image.new("RGB", (640, 480), (90, 100, 110))
            canvas.paste(face.resize((200, 200)),
                         (220 + round(60 * math.sin(2 * math.pi * step / frames)), 140))
            y, cb, cr = canvas.convert("YCbCr").split()
            stream.write(b"FRAME\n" + y.tobytes() + cb.resize((320, 240)).tobytes()
                         + cr.resize((320, 240)).tobytes())


def test_live_mode_draws_tracked_faces_with_steady_labels(server, tmp_path):
    """Chromium's fake camera plays a clip of the example face; the page sends its frames to
    /v1/live and lists each tracked face with its track's answer."""
    camera = tmp_path / "camera.y4m"
    _fake_camera(camera)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-video-capture={camera}"])
        try:
            page = browser.new_page()
            page.goto(server)
            page.click("#live-start")
            page.wait_for_selector("#live-tracks li", timeout=30_000)
            labels = []
            for _ in range(5):  # the label, read off the page five times over 1.5 s
                page.wait_for_timeout(300)
                labels.append(page.inner_text("#live-tracks li"))
            page.click("#live-stop")
        finally:
            browser.close()
    assert len({label.split()[0] for label in labels}) == 1, labels  # one track: #n
    assert all(label.split()[1] == "F" for label in labels), labels
